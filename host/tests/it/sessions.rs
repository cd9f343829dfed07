//! Sessions against the real engine, through the library: the python skill keeps its
//! variables (a process session), the shell skill keeps its files (a files session), a
//! binary file round-trips, what a hostile skill leaves in its workspace is never read
//! through, the workspace is capped by the kernel, idle sessions go, a timeout costs a
//! process session its state and says so, and nothing is left once they end.

use crate::common;

use std::time::Duration;

use common::{cleanup_if_built_now, workspace_root};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use skillhost::api::{codes, FileKind, InvocationPath, SessionRequest};
use skillhost::{Host, HostConfig, InvocationResult, InvokeOptions, Session, Status};

async fn bundled() -> Host {
    Host::new(HostConfig::new(vec![workspace_root().join("skills")]))
        .await
        .unwrap()
}

/// The output of an `ok` call.
fn ok(result: &InvocationResult) -> &Value {
    assert_eq!(result.status, Status::Ok, "{result:?}");
    result.output.as_ref().unwrap()
}

async fn shell(session: &Session<'_>, command: &str) -> Value {
    let result = session.invoke("run", json!({ "command": command })).await;
    assert_eq!(result.path, InvocationPath::Session);
    ok(&result).clone()
}

async fn python(session: &Session<'_>, code: &str) -> InvocationResult {
    session.invoke("run", json!({ "code": code })).await
}

/// Containers and volumes of session `id` on the engine.
async fn remains(id: &str) -> (usize, usize) {
    let label = format!("io.skillhost.session={id}");
    let containers = common::probe::containers_with_labels(std::slice::from_ref(&label)).await;
    let engine = skillhost::engine::Engine::connect().await.unwrap();
    let options = bollard::query_parameters::ListVolumesOptions {
        filters: Some(std::collections::HashMap::from([(
            "label".to_string(),
            vec![label],
        )])),
    };
    let volumes = skillhost::testing::docker(&engine)
        .list_volumes(Some(options))
        .await
        .unwrap()
        .volumes
        .unwrap_or_default()
        .len();
    (containers, volumes)
}

#[tokio::test]
async fn a_python_session_keeps_its_variables_and_a_stuck_call_costs_them_visibly() {
    let _image = cleanup_if_built_now("python");
    let host = bundled().await;
    let session = host
        .open_session(SessionRequest::new("python"))
        .await
        .unwrap();
    let id = session.id().to_string();
    assert_eq!(ok(&python(&session, "x = 1").await)["exit_code"], 0);
    ok(&python(&session, "x += 1\nopen('kept.txt', 'w').write('k')").await);
    let third = python(&session, "print(x)").await;
    assert_eq!(ok(&third)["stdout"], "2\n");
    assert_eq!(third.path, InvocationPath::Session);
    let named = third.session.as_ref().unwrap();
    assert_eq!((named.id.as_str(), named.state_reset), (id.as_str(), false));

    // Python code past its time is stopped by the runner itself: the state stays.
    let options = InvokeOptions::default().timeout(Duration::from_secs(3));
    let looped = session
        .invoke_with("run", json!({"code": "while True: pass"}), options.clone())
        .await;
    assert_eq!(ok(&looped)["timed_out"], true);
    assert_eq!(ok(&python(&session, "print(x)").await)["stdout"], "2\n");

    // Code the runner cannot interrupt is killed at the deadline, and its state with it.
    let stuck = "import signal, time\nsignal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])\ntime.sleep(60)";
    let killed = session
        .invoke_with("run", json!({ "code": stuck }), options)
        .await;
    assert_eq!(killed.status, Status::Timeout, "{killed:?}");
    assert!(killed.session.as_ref().unwrap().state_reset, "{killed:?}");
    let after = python(
        &session,
        "print('x' in globals())\nprint(open('kept.txt').read())",
    )
    .await;
    assert_eq!(
        ok(&after)["stdout"],
        "False\nk\n",
        "variables gone, files kept"
    );
    assert!(!after.session.unwrap().state_reset);

    session.close().await.unwrap();
    host.settled().await;
    assert_eq!(remains(&id).await, (0, 0));
    let gone = host.session(&id).unwrap_err();
    assert_eq!(gone.code, codes::UNKNOWN_SESSION);
    host.shutdown().await;
}

#[tokio::test]
async fn a_shell_session_keeps_files_and_hands_back_only_what_is_safe_to_read() {
    let _image = cleanup_if_built_now("shell");
    let host = bundled().await;
    let session = host
        .open_session(SessionRequest::new("shell"))
        .await
        .unwrap();
    let id = session.id().to_string();
    shell(&session, "echo one > a.txt").await;
    assert_eq!(shell(&session, "cat a.txt").await["stdout"], "one\n");

    // A 1 MiB binary file in, checked inside, and out again.
    let data: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let digest = hex::encode(Sha256::digest(&data));
    let written = session.write_file("in/data.bin", &data[..]).await.unwrap();
    assert_eq!(written, data.len() as u64);
    let inside = shell(&session, "sha256sum in/data.bin").await;
    assert!(inside["stdout"].as_str().unwrap().starts_with(&digest));
    let back = session.read_file("in/data.bin").await.unwrap();
    assert_eq!((back.size, back.mode), (data.len() as u64, 0o644));
    assert_eq!(
        hex::encode(Sha256::digest(back.bytes().await.unwrap())),
        digest
    );

    // What a hostile skill can leave behind.
    shell(
        &session,
        "ln -s /etc/passwd link; ln -s / rootlink; mkfifo fifo; echo h > hard; ln hard hard2; \
         echo s > setid; chmod 4755 setid 2>/dev/null; chmod 755 setid; mkdir d",
    )
    .await;
    let refused = [
        ("link", codes::files::NOT_A_FILE),
        ("rootlink/etc/passwd", codes::files::NOT_A_FILE),
        ("fifo", codes::files::NOT_A_FILE),
        ("hard", codes::files::NOT_A_FILE),
        ("d", codes::files::NOT_A_FILE),
        ("missing", codes::files::NOT_FOUND),
        ("../etc/passwd", codes::files::INVALID_PATH),
        ("/etc/passwd", codes::files::INVALID_PATH),
        ("a\0b", codes::files::INVALID_PATH),
    ];
    for (path, code) in refused {
        let error = session.read_file(path).await.unwrap_err();
        assert_eq!(error.code, code, "{path:?}: {error}");
    }
    let setid = session.read_file("setid").await.unwrap();
    assert_eq!(setid.mode, 0o755, "no set-id bit is handed out");
    let through = session
        .write_file("rootlink/tmp/x", &b"x"[..])
        .await
        .unwrap_err();
    assert_eq!(through.code, codes::files::NOT_A_FILE, "{through}");
    let listing = session.list_files().await.unwrap();
    let kind = |path: &str| {
        listing
            .files
            .iter()
            .find(|f| f.path == path)
            .map(|f| f.kind)
    };
    assert_eq!(kind("link"), Some(FileKind::Symlink));
    assert_eq!(kind("fifo"), Some(FileKind::Fifo));
    assert_eq!(kind("in/data.bin"), Some(FileKind::File));
    assert_eq!(kind("rootlink/etc"), None, "a link is never walked into");
    session.delete_file("a.txt").await.unwrap();
    let deleted = session.read_file("a.txt").await.unwrap_err();
    assert_eq!(deleted.code, codes::files::NOT_FOUND);

    // The kernel caps the workspace (64m for shell): the writer gets ENOSPC.
    let full = shell(
        &session,
        "dd if=/dev/zero of=big bs=1M count=100 2>&1; echo rc=$?",
    )
    .await;
    let said = full["stdout"].as_str().unwrap();
    assert!(
        said.contains("No space left on device") && said.contains("rc=1"),
        "{said}"
    );

    session.close().await.unwrap();
    host.settled().await;
    assert_eq!(remains(&id).await, (0, 0));
    host.shutdown().await;
}

#[tokio::test]
async fn an_idle_session_goes_within_its_timeout_and_two_seconds() {
    let _image = cleanup_if_built_now("shell");
    let host = bundled().await;
    let mut request = SessionRequest::new("shell");
    request.idle_timeout_ms = Some(1000);
    let session = host.open_session(request).await.unwrap();
    let id = session.id().to_string();
    assert_eq!(remains(&id).await, (1, 1), "its keeper and its volume");
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(remains(&id).await, (0, 0));
    let result = session.invoke("run", json!({"command": "true"})).await;
    assert_eq!(result.error.unwrap().code, codes::UNKNOWN_SESSION);
    host.shutdown().await;
}
