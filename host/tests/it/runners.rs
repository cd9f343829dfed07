//! The bundled python and shell skills against the real engine: they answer as soon as the
//! user's main process ends (what it left running is killed), stop the code when a capture
//! bound is full, finish before the host's deadline with what was printed, collect only
//! regular files, take binary files in, and report code that did not finish normally as
//! a failure, through the library, the JSON and the human CLI. Each test removes the
//! bundled image it built.

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
    run_expecting(host, skill, args, seconds, None).await
}

/// Run `args` with a deadline of `seconds`: the output when `failure` is `None`, else
/// the failure's details, its code having to be `failure`.
async fn run_expecting(
    host: &Host,
    skill: &str,
    args: Value,
    seconds: u64,
    failure: Option<&str>,
) -> Value {
    let options = InvokeOptions::default().timeout(Duration::from_secs(seconds));
    let result = host.invoke_with(skill, "run", args, options).await;
    match failure {
        None => {
            assert_eq!(result.status, Status::Ok, "{result:?}");
            result.output.unwrap()
        }
        Some(code) => {
            assert_eq!(result.status, Status::SkillError, "{result:?}");
            let error = result.error.unwrap();
            assert_eq!(error.code, code, "{}", error.message);
            error.details.expect("the output, as the failure's details")
        }
    }
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
        let failure = if case.timed_out {
            Some("code_timeout")
        } else if case.truncated {
            Some("code_output_limit")
        } else {
            None
        };
        let out = run_expecting(&host, skill, case.args, seconds, failure).await;
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
    // The command's exit 3 is said once, as the command's (the skill itself answered).
    assert!(seen.contains("(code_exit)"), "{seen:?}");
    assert!(!seen.contains("warning:"), "{seen:?}");
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// One way code can fail to finish normally, and what the caller must see.
struct Failure {
    args: Value,
    timeout: Option<&'static str>,
    code: &'static str,
    message: &'static str,
    stdout: &'static str,
}

/// Each failure through the human CLI (the code's output, one line naming what
/// happened, exit 1) and the JSON (status `skill_error`, the code, the output as details).
fn fails_visibly(skill: &str, failures: &[Failure]) {
    let root = workspace_root().join("skills");
    for failure in failures {
        let args = failure.args.to_string();
        let mut human = common::skillhost();
        human.arg("--skills-dir").arg(&root);
        human.args(["invoke", skill, "run", "--args", &args]);
        let mut json = common::skillhost();
        json.arg("--skills-dir").arg(&root);
        json.args(["--format", "json", "invoke", skill, "run", "--args", &args]);
        if let Some(timeout) = failure.timeout {
            human.args(["--timeout", timeout]);
            json.args(["--timeout", timeout]);
        }
        let seen = human.output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&seen.stdout),
            String::from_utf8_lossy(&seen.stderr),
        );
        assert_eq!(seen.status.code(), Some(1), "{skill} {args}: {stderr}");
        assert!(
            stdout.starts_with(failure.stdout),
            "{skill} {args}: {stdout:?}"
        );
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: skill_error: ")
                && last.contains(failure.message)
                && last.ends_with(&format!("({})", failure.code)),
            "{skill} {args}: {stderr}"
        );

        let answered = json.output().unwrap();
        assert_eq!(answered.status.code(), Some(1));
        let result: Value = serde_json::from_slice(&answered.stdout).unwrap();
        assert_eq!(result["status"], "skill_error", "{result}");
        assert_eq!(result["error"]["code"], failure.code, "{result}");
        let details = &result["error"]["details"];
        assert!(
            details["stdout"]
                .as_str()
                .unwrap()
                .starts_with(failure.stdout),
            "{result}"
        );
        for field in ["stderr", "exit_code", "timed_out", "truncated", "files"] {
            assert!(details.get(field).is_some(), "{field}: {result}");
        }
    }
}

/// A binary file in, the same bytes out (as the `files` of the result, base64).
async fn binary_files_round_trip(host: &Host, skill: &str, copy: Value) {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let data: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let base64 = base64::engine::general_purpose::STANDARD;
    let mut args = copy.clone();
    args["files"] = json!({"in.bin": {"base64": base64.encode(&data)}});
    let out = run(host, skill, args, 20).await;
    let file = &out["files"]["out.bin"];
    assert_eq!(file["encoding"], "base64", "{skill}: {out}");
    assert_eq!(file["truncated"], false);
    let back = base64.decode(file["content"].as_str().unwrap()).unwrap();
    assert_eq!(Sha256::digest(&back), Sha256::digest(&data), "{skill}");
    // Content that is not base64 is the caller's mistake, named.
    let mut args = copy;
    args["files"] = json!({"in.bin": {"base64": "not base64!"}});
    let bad = host.invoke(skill, "run", args).await;
    assert_eq!(bad.status, Status::SkillError, "{skill}: {bad:?}");
    let error = bad.error.unwrap();
    assert_eq!(error.code, "invalid_args");
    assert!(
        error.message.contains("\"in.bin\"") || error.message.contains("'in.bin'"),
        "{}",
        error.message
    );
    assert!(error.message.contains("base64"), "{}", error.message);
}

#[tokio::test]
async fn python_code_that_does_not_finish_normally_fails_visibly() {
    let _cleanup: BundledImage = cleanup_if_built_now("python");
    let host = bundled().await;
    binary_files_round_trip(
        &host,
        "python",
        json!({"code": "open('out.bin', 'wb').write(open('in.bin', 'rb').read())"}),
    )
    .await;
    host.shutdown().await;
    fails_visibly(
        "python",
        &[
            Failure {
                args: json!({"code": "print('partial')\nraise SystemExit(3)"}),
                timeout: None,
                code: "code_exit",
                message: "the code exited with status 3",
                stdout: "partial\n",
            },
            Failure {
                args: json!({"code": "print('before')\nundefined_name"}),
                timeout: None,
                code: "code_exit",
                message: "NameError: name 'undefined_name' is not defined",
                stdout: "before\n",
            },
            Failure {
                args: json!({"code": "import time\nprint('waiting', flush=True)\ntime.sleep(60)"}),
                timeout: Some("2s"),
                code: "code_timeout",
                message: "the code ran past its time",
                stdout: "waiting\n",
            },
            Failure {
                args: json!({"code": "print('allocating', flush=True)\nb = bytearray(600 << 20)"}),
                timeout: None,
                code: "code_memory",
                message: "killed for memory",
                stdout: "allocating\n",
            },
            Failure {
                args: json!({"code": "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)"}),
                timeout: None,
                code: "code_killed",
                message: "killed by SIGSEGV",
                stdout: "",
            },
            Failure {
                args: json!({"code": "while True: print('y')"}),
                timeout: None,
                code: "code_output_limit",
                message: "printed more than 1 MiB",
                stdout: "y\ny\n",
            },
        ],
    );
}

#[tokio::test]
async fn shell_commands_that_do_not_finish_normally_fail_visibly() {
    let _cleanup: BundledImage = cleanup_if_built_now("shell");
    let host = bundled().await;
    binary_files_round_trip(&host, "shell", json!({"command": "cp in.bin out.bin"})).await;
    host.shutdown().await;
    fails_visibly(
        "shell",
        &[
            Failure {
                args: json!({"command": "echo partial; ls /nowhere"}),
                timeout: None,
                code: "code_exit",
                message: "the command exited with status 2: ls: cannot access '/nowhere'",
                stdout: "partial\n",
            },
            Failure {
                args: json!({"command": "echo waiting; sleep 60"}),
                timeout: Some("2s"),
                code: "code_timeout",
                message: "the command ran past its time",
                stdout: "waiting\n",
            },
            Failure {
                args: json!({"command": "echo allocating; tail /dev/zero"}),
                timeout: None,
                code: "code_memory",
                message: "killed for memory",
                stdout: "allocating\n",
            },
            Failure {
                args: json!({"command": "kill -SEGV $$"}),
                timeout: None,
                code: "code_killed",
                message: "killed by SIGSEGV",
                stdout: "",
            },
        ],
    );
}

/// python-data: pandas and matplotlib in one call give a PNG in `images`; a prewarmed
/// (prestarted) container has the stack imported before the request arrives; nothing
/// warns on stderr.
#[tokio::test]
async fn python_data_plots_with_pandas_and_its_prestarted_runner_has_the_stack_imported() {
    use base64::Engine as _;
    let _cleanup: BundledImage = cleanup_if_built_now("python-data");
    let config = HostConfig::new(vec![workspace_root().join("skills")]).prewarm(
        std::collections::BTreeMap::from([("python-data".to_string(), 1)]),
    );
    let host = Host::new(config).await.unwrap();
    host.prewarm("python-data").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while host.prewarmed_ready("python-data") < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "no prewarmed python-data"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Time for the prestarted runner to import the stack while it waits.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let code = "import sys\nprint(all(m in sys.modules for m in ('pandas', 'matplotlib.pyplot', 'sklearn')))";
    let result = host
        .invoke("python-data", "run", json!({ "code": code }))
        .await;
    assert_eq!(
        result.path,
        skillhost::InvocationPath::Prewarmed,
        "{result:?}"
    );
    assert_eq!(
        result.output.as_ref().unwrap()["stdout"],
        "True\n",
        "{result:?}"
    );

    let plot = "import pandas as pd\nimport matplotlib.pyplot as plt\n\
                df = pd.DataFrame({'x': range(10), 'y': [v * v for v in range(10)]})\n\
                plt.figure(figsize=(4, 3), dpi=100)\ndf.plot(x='x', y='y', ax=plt.gca())\nplt.show()\nprint(len(df))";
    let out = run(&host, "python-data", json!({ "code": plot }), 60).await;
    assert_eq!(out["stdout"], "10\n");
    assert_eq!(out["stderr"], "", "no library warns: {out}");
    let images = out["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{out}");
    let image = &images[0];
    assert_eq!(image["format"], "png");
    assert_eq!(
        (image["width"].as_u64(), image["height"].as_u64()),
        (Some(400), Some(300))
    );
    let png = base64::engine::general_purpose::STANDARD
        .decode(image["base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(image["bytes"].as_u64(), Some(png.len() as u64));
    // IHDR holds the size the figure was drawn at.
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 400);
    assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 300);
    host.shutdown().await;
}

/// The node skill keeps the python skill's guarantees: a background process, a flood, a
/// FIFO in its work directory and an endless loop each end promptly with what was
/// printed; binary files round-trip; and its failures are visible.
#[tokio::test]
async fn node_answers_promptly_whatever_the_code_does_and_fails_visibly() {
    let _cleanup: BundledImage = cleanup_if_built_now("node");
    check(
        "node",
        vec![
            Case {
                name: "a background process in the group",
                args: json!({"code": "require('child_process').spawn('sleep', ['1000'], {stdio: 'ignore'}).unref(); console.log('bye')"}),
                stdout_starts: "bye\n",
                timed_out: false,
                truncated: false,
            },
            Case {
                name: "a background process in a session of its own, holding the pipes",
                args: json!({"code": "require('child_process').spawn('sleep', ['1000'], {detached: true, stdio: 'inherit'}).unref(); console.log('bye')"}),
                stdout_starts: "bye\n",
                timed_out: false,
                truncated: false,
            },
            Case {
                name: "a flood",
                args: json!({"code": "while (true) console.log('y')"}),
                stdout_starts: "y\ny\n",
                timed_out: false,
                truncated: true,
            },
            Case {
                name: "an endless loop",
                args: json!({"code": "console.log('start'); for (;;) {}"}),
                stdout_starts: "start\n",
                timed_out: true,
                truncated: false,
            },
        ],
    )
    .await;
    collects_regular_files_only(
        "node",
        json!({"code": "const cp = require('child_process'), fs = require('fs');\ncp.execSync('mkfifo f1');\nfs.symlinkSync('/dev/zero', 'z');\nfs.writeFileSync('real.txt', 'kept');\nconsole.log('made')"}),
    )
    .await;
    let host = bundled().await;
    binary_files_round_trip(
        &host,
        "node",
        json!({"code": "const fs = require('fs'); fs.writeFileSync('out.bin', fs.readFileSync('in.bin'))"}),
    )
    .await;
    host.shutdown().await;
    fails_visibly(
        "node",
        &[
            Failure {
                args: json!({"code": "console.log('partial'); process.exit(3)"}),
                timeout: None,
                code: "code_exit",
                message: "the code exited with status 3",
                stdout: "partial\n",
            },
            Failure {
                args: json!({"code": "console.log('before'); undefinedName"}),
                timeout: None,
                code: "code_exit",
                message: "ReferenceError: undefinedName is not defined",
                stdout: "before\n",
            },
            Failure {
                args: json!({"code": "console.log('waiting'); setTimeout(() => {}, 60000)"}),
                timeout: Some("2s"),
                code: "code_timeout",
                message: "the code ran past its time",
                stdout: "waiting\n",
            },
            Failure {
                args: json!({"code": "console.log('allocating'); const kept = []; for (;;) kept.push(Buffer.alloc(1 << 20, 1))"}),
                timeout: None,
                code: "code_memory",
                message: "killed for memory",
                stdout: "allocating\n",
            },
            Failure {
                args: json!({"code": "process.kill(process.pid, 'SIGSEGV')"}),
                timeout: None,
                code: "code_killed",
                message: "killed by SIGSEGV",
                stdout: "",
            },
        ],
    );
}
