//! The init as a process: what it reads, what it passes on, what it reports.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const KEY: &str = "00112233445566778899aabbccddeeff";

/// The init, as a user that is not root: it refuses to start anything with id 0, so
/// where the tests run as root they drop to nobody first (util-linux's setpriv).
fn init() -> Command {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let root = status
        .lines()
        .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(2) == Some("0"));
    if !root {
        return Command::new(env!("CARGO_BIN_EXE_skillhost-init"));
    }
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_skillhost-init"));
    command
}

#[test]
fn the_init_refuses_to_start_anything_as_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    if !status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    {
        eprintln!("not root: the refusal cannot be shown from here");
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_skillhost-init"))
        .args(["sh", "-c", "echo ran"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The init refuses before it reads its key, and may be gone before the key is
    // written (a broken pipe, seen in CI): either way it must not have run anything.
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{KEY}\n").as_bytes());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(out.stdout.is_empty(), "nothing ran: {:?}", out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to run the skill with id 0 (Uid:"),
        "{stderr}"
    );
}

fn run(stdin: &[u8], argv: &[&str]) -> Output {
    let mut child = init()
        .args(argv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn trailer(code: u8) -> String {
    format!("\0skillhost-exit:{KEY}:{code}:")
}

#[test]
fn the_command_gets_all_of_stdin_after_the_key_and_its_exit_is_reported() {
    let stdin = format!("{KEY}\nline one\nline two\n");
    let out = run(
        stdin.as_bytes(),
        &["sh", "-c", "cat; echo to-stderr >&2; exit 3"],
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stdout.starts_with(&format!("line one\nline two\n{}", trailer(3))),
        "{stdout:?}"
    );
    assert!(stdout.ends_with('\n'));
    assert!(
        stderr.starts_with(&format!("to-stderr\n{}", trailer(3))),
        "{stderr:?}"
    );
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn a_command_killed_by_a_signal_reports_128_plus_the_signal() {
    let out = run(format!("{KEY}\n").as_bytes(), &["sh", "-c", "kill -9 $$"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&trailer(137)));
    assert_eq!(out.status.code(), Some(137));
}

#[test]
fn a_missing_command_is_reported_as_127_with_its_name() {
    let out = run(format!("{KEY}\n").as_bytes(), &["/no/such/skill"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot run /no/such/skill"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&trailer(127)));
    assert_eq!(out.status.code(), Some(127));
}

#[test]
fn without_a_key_line_nothing_runs_and_no_trailer_is_written() {
    for stdin in ["", "not-a-key\n", "00112233445566778899aabbccddeeff00\n"] {
        let out = run(stdin.as_bytes(), &["sh", "-c", "echo ran"]);
        assert_eq!(out.status.code(), Some(125), "stdin {stdin:?}");
        assert!(out.stdout.is_empty(), "stdin {stdin:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("skillhost-init:"));
    }
}

#[test]
fn termination_signals_reach_the_command() {
    let mut child = init()
        .args([
            "sh",
            "-c",
            "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{KEY}\n").as_bytes()).unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut ready = [0u8; 6];
    std::io::Read::read_exact(&mut stdout, &mut ready).unwrap();
    assert_eq!(&ready, b"ready\n");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(42));
    // The sender is visible in the init's PID namespace, so it is not "outside" (0);
    // only a sender beyond the container's namespace, the engine, shows as pid 0.
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let line = rest.trim_end();
    assert!(line.starts_with(&trailer(42)), "{rest:?}");
    assert!(line.ends_with(":0"), "{rest:?}");
}

#[test]
fn a_prestarted_command_runs_before_the_key_and_gets_only_what_follows_it() {
    let started =
        std::env::temp_dir().join(format!("skillhost-init-prestart-{}", std::process::id()));
    let _ = std::fs::remove_file(&started);
    let mut child = init()
        .args([
            "sh",
            "-c",
            "touch \"$1\"; echo \"var=${SKILLHOST_INIT_PRESTART:-unset}\"; cat",
            "sh",
        ])
        .arg(&started)
        .env("SKILLHOST_INIT_PRESTART", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The command runs while the init still waits for its key.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the command did not start before the key"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{KEY}\nthe request\n").as_bytes())
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with(&format!("var=unset\nthe request\n{}", trailer(0))),
        "{stdout:?}"
    );
    assert!(
        !stdout.contains(&format!("{KEY}\n")),
        "the key never reaches the command"
    );
    let _ = std::fs::remove_file(&started);
}

#[test]
fn a_prestarted_command_is_killed_when_no_key_comes() {
    let out = init()
        .args(["sh", "-c", "cat"])
        .env("SKILLHOST_INIT_PRESTART", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stdin ended before the key line"));
}

/// Send `signal` to the init once it waits for its key; its exit code.
fn stopped_before_the_key(prestart: bool) -> Option<i32> {
    let mut command = init();
    command.args(["sh", "-c", "cat"]);
    if prestart {
        command.env("SKILLHOST_INIT_PRESTART", "1");
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Give it time to reach the read of its key; a stop that comes even earlier is
    // remembered all the same.
    std::thread::sleep(std::time::Duration::from_millis(200));
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    // Bounded, so a hung init fails the test instead of blocking it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("stopped by signal 15 before the key"),
                "{stderr}"
            );
            return status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the init kept waiting for its key after SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_stop_before_the_key_ends_the_init_as_that_signal_would() {
    assert_eq!(stopped_before_the_key(false), Some(143));
    assert_eq!(stopped_before_the_key(true), Some(143));
}
