//! The bundled python and shell skills against the real engine: they answer as soon as the
//! user's main process ends (what it left running is killed), stop the code when a capture
//! bound is full, finish before the host's deadline with what was printed, and collect
//! only regular files. One test per bundled image: each removes the image it built.

use crate::common;

use std::time::Duration;

use common::{cleanup_if_built_now, workspace_root, BundledImage};
use serde_json::{json, Value};
use skillhost::{Host, HostConfig, InvokeOptions, Status};

async fn bundled() -> Host {
    Host::new(HostConfig::new(vec![workspace_root().join("skills")]))
        .await
        .unwrap()
}

/// Run `args` with a deadline of `seconds`, insisting the action itself succeeded.
async fn run(host: &Host, skill: &str, args: Value, seconds: u64) -> Value {
    let options = InvokeOptions::default().timeout(Duration::from_secs(seconds));
    let result = host.invoke_with(skill, "run", args, options).await;
    assert_eq!(result.status, Status::Ok, "{result:?}");
    result.output.unwrap()
}

struct Case {
    name: &'static str,
    args: Value,
    stdout_starts: &'static str,
    timed_out: bool,
    truncated: bool,
}

async fn check(skill: &str, cases: Vec<Case>) {
    let host = bundled().await;
    for case in cases {
        // A 20 s deadline, so a runner that waited for what the code left running would
        // time out; 5 s where the code is meant to.
        let seconds = if case.timed_out { 5 } else { 20 };
        let out = run(&host, skill, case.args, seconds).await;
        let stdout = out["stdout"].as_str().unwrap();
        assert!(
            stdout.starts_with(case.stdout_starts),
            "{skill}, {}: stdout {:?}",
            case.name,
            &stdout[..stdout.len().min(200)]
        );
        assert_eq!(
            out["timed_out"], case.timed_out,
            "{skill}, {}: {out}",
            case.name
        );
        assert_eq!(
            out["truncated"], case.truncated,
            "{skill}, {}: {out}",
            case.name
        );
    }
    host.shutdown().await;
}

#[tokio::test]
async fn python_answers_when_the_code_ends_whatever_it_left_running() {
    let _cleanup: BundledImage = cleanup_if_built_now("python");
    check(
        "python",
        vec![
            Case {
                name: "a background process",
                args: json!({"code": "import subprocess\nsubprocess.Popen(['sleep', '1000'])\nprint('bye')"}),
                stdout_starts: "bye\n",
                timed_out: false,
                truncated: false,
            },
            Case {
                name: "a flood",
                args: json!({"code": "while True: print('y')"}),
                stdout_starts: "y\ny\n",
                timed_out: false,
                truncated: true,
            },
            Case {
                name: "code that runs too long",
                args: json!({"code": "import time\nprint('start', flush=True)\ntime.sleep(1000)"}),
                stdout_starts: "start\n",
                timed_out: true,
                truncated: false,
            },
        ],
    )
    .await;
    collects_regular_files_only(
        "python",
        json!({"code": "import os\nos.mkfifo('f1')\nos.symlink('/dev/zero', 'z')\nopen('real.txt', 'w').write('kept')\nprint('made')"}),
    )
    .await;
}

#[tokio::test]
async fn shell_answers_when_the_command_ends_whatever_it_left_running() {
    let _cleanup: BundledImage = cleanup_if_built_now("shell");
    check(
        "shell",
        vec![
            Case {
                name: "a background process",
                args: json!({"command": "sleep 1000 & echo bye"}),
                stdout_starts: "bye\n",
                timed_out: false,
                truncated: false,
            },
            Case {
                name: "a flood",
                args: json!({"command": "yes"}),
                stdout_starts: "y\ny\n",
                timed_out: false,
                truncated: true,
            },
            Case {
                name: "a command that runs too long",
                args: json!({"command": "echo start; sleep 1000"}),
                stdout_starts: "start\n",
                timed_out: true,
                truncated: false,
            },
        ],
    )
    .await;
    collects_regular_files_only(
        "shell",
        json!({"command": "mkfifo f1 && ln -s /dev/zero z && echo kept > real.txt && echo made"}),
    )
    .await;
    escape_sequences_reach_a_terminal_shown_not_obeyed();
}

/// A FIFO, a link to /dev/zero and a regular file left in the work directory: the
/// runner answers (one that opened the FIFO would wait for a writer until the deadline)
/// and collects the regular file alone.
async fn collects_regular_files_only(skill: &str, args: Value) {
    let host = bundled().await;
    let out = run(&host, skill, args, 20).await;
    assert_eq!(out["stdout"], "made\n", "{skill}: {out}");
    assert_eq!(out["timed_out"], false, "{skill}: {out}");
    let files: Vec<&String> = out["files"].as_object().unwrap().keys().collect();
    assert_eq!(files, ["real.txt"], "{skill}: {out}");
    assert!(
        out["files"]["real.txt"]["content"]
            .as_str()
            .unwrap()
            .starts_with("kept"),
        "{skill}: {out}"
    );
    host.shutdown().await;
}

/// Escape sequences the shell skill prints, through the human CLI on a terminal.
fn escape_sequences_reach_a_terminal_shown_not_obeyed() {
    let command =
        r#"printf '\033]0;owned\007\033[2Jvisible\n'; printf '\033[31mred\n' >&2; exit 3"#;
    let invoke = format!(
        "{} --skills-dir {} invoke shell run --args {}",
        env!("CARGO_BIN_EXE_skillhost"),
        workspace_root().join("skills").display(),
        shell_quote(&json!({ "command": command }).to_string()),
    );
    // script(1) gives the CLI a terminal for stdout and stderr, and copies what reached it.
    let out = std::process::Command::new("script")
        .args(["-qec", &invoke, "/dev/null"])
        .output()
        .expect("script(1), from util-linux, runs");
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(
        !seen.contains('\u{1b}') && !seen.contains('\u{7}'),
        "{seen:?}"
    );
    assert!(seen.contains(r"\x1b]0;owned\x07\x1b[2Jvisible"), "{seen:?}");
    assert!(seen.contains(r"\x1b[31mred"), "{seen:?}");
    // The command's exit 3 is the run's, not the skill's: the skill itself answered.
    assert!(!seen.contains("warning:"), "{seen:?}");
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
