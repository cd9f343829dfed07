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
    assert_eq!(looped.status, Status::SkillError, "{looped:?}");
    let error = looped.error.as_ref().unwrap();
    assert_eq!(error.code, "code_timeout", "{looped:?}");
    assert_eq!(error.details.as_ref().unwrap()["timed_out"], true);
    assert!(!looped.session.as_ref().unwrap().state_reset);
    // An exception is the code's failure, not the session's: the state stays too.
    let raised = python(&session, "x += 1\nraise ValueError('no')").await;
    assert_eq!(
        raised.error.as_ref().unwrap().code,
        "code_exit",
        "{raised:?}"
    );
    assert!(raised
        .error
        .as_ref()
        .unwrap()
        .message
        .ends_with("ValueError: no"));
    assert_eq!(ok(&python(&session, "print(x)").await)["stdout"], "3\n");

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

/// Removes every container and volume of the sessions it names, even when the test
/// failed: a service killed on purpose leaves its sessions for the next one to adopt.
#[derive(Default)]
struct SessionCleanup(std::sync::Mutex<Vec<String>>);

impl SessionCleanup {
    fn add(&self, id: &str) {
        self.0.lock().unwrap().push(id.to_string());
    }
}

impl Drop for SessionCleanup {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut *self.0.lock().unwrap());
        skillhost::testing::on_engine_thread(move |docker| async move {
            for id in ids {
                let label = format!("io.skillhost.session={id}");
                for failure in common::remove_containers(&docker, "label", &label).await {
                    eprintln!("cleanup: cannot remove {failure}");
                }
                let volume = format!("skillhost-session-{id}");
                let _ = docker
                    .remove_volume(
                        &volume,
                        None::<bollard::query_parameters::RemoveVolumeOptions>,
                    )
                    .await;
            }
        });
    }
}

#[tokio::test]
async fn fifty_sessions_at_once_each_keep_their_own_files_and_leave_nothing() {
    let _image = cleanup_if_built_now("shell");
    let host = bundled().await;
    let opened = futures_util::future::join_all(
        (0..50).map(|_| host.open_session(SessionRequest::new("shell"))),
    )
    .await;
    let sessions: Vec<Session<'_>> = opened.into_iter().map(Result::unwrap).collect();
    let writes = sessions
        .iter()
        .enumerate()
        .map(|(i, s)| async move { s.write_file("n.txt", format!("{i}").as_bytes()).await });
    for written in futures_util::future::join_all(writes).await {
        written.unwrap();
    }
    for (i, session) in sessions.iter().enumerate() {
        let back = session
            .read_file("n.txt")
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(back, format!("{i}").into_bytes(), "session {i}");
    }
    assert_eq!(host.open_sessions(), 50);
    let ids: Vec<String> = sessions.iter().map(|s| s.id().to_string()).collect();
    host.shutdown().await;
    for id in ids {
        assert_eq!(remains(&id).await, (0, 0), "session {id}");
    }
}

mod over_http {
    use super::*;

    use common::service::{Daemon, Reply};
    use hyper::body::Bytes;
    use hyper::{Method, StatusCode};

    struct Caller<'d> {
        daemon: &'d Daemon,
        bearer: String,
    }

    impl Caller<'_> {
        async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
            let body = body.map(|b| b.to_string()).unwrap_or_default();
            self.daemon
                .call_tcp(
                    method,
                    path,
                    &[
                        ("authorization", &self.bearer),
                        ("content-type", "application/json"),
                    ],
                    Some(&body),
                )
                .await
        }

        async fn open(&self, body: Value, cleanup: &SessionCleanup) -> String {
            let made = self.call(Method::POST, "/v1/sessions", Some(body)).await;
            assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
            let id = made.json()["id"].as_str().unwrap().to_string();
            cleanup.add(&id);
            assert_eq!(made.headers["location"], format!("/v1/sessions/{id}"));
            id
        }

        /// The ids of the caller's sessions, sorted.
        async fn listed(&self) -> Vec<String> {
            let listed = self.call(Method::GET, "/v1/sessions", None).await.json();
            let mut ids: Vec<String> = listed["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_string())
                .collect();
            ids.sort();
            ids
        }

        async fn invoke(&self, id: &str, args: Value) -> Reply {
            let path = format!("/v1/sessions/{id}/actions/run:invoke");
            self.call(Method::POST, &path, Some(json!({ "args": args })))
                .await
        }

        async fn put(&self, id: &str, path: &str, bytes: Vec<u8>) -> Reply {
            self.daemon
                .call_bytes_tcp(
                    Method::PUT,
                    &format!("/v1/sessions/{id}/files/{path}"),
                    &[("authorization", &self.bearer)],
                    Bytes::from(bytes),
                )
                .await
        }
    }

    /// A service of the bundled skills on TCP, with a spare python session.
    fn daemon_flags(tokens: &std::path::Path) -> Vec<&str> {
        vec![
            "--listen",
            "127.0.0.1:0",
            "--tokens",
            tokens.to_str().unwrap(),
            "--prewarm",
            "python=1",
        ]
    }

    fn daemon(tokens: &std::path::Path) -> Daemon {
        Daemon::start(&workspace_root().join("skills"), &daemon_flags(tokens))
    }

    /// Wait until the service holds a spare python session.
    async fn spare_ready(caller: &Caller<'_>) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let metrics = caller.call(Method::GET, "/metrics", None).await.body;
            if metrics.contains("skillhost_session_spares_ready{skill=\"python\"} 1") {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no spare session:\n{metrics}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Another token's calls on `py` and `sh` find nothing.
    async fn sees_none_of_it(bob: &Caller<'_>, py: &str, sh: &str) {
        for (method, path) in [
            (Method::GET, format!("/v1/sessions/{py}")),
            (Method::DELETE, format!("/v1/sessions/{py}")),
            (Method::GET, format!("/v1/sessions/{py}/files")),
            (Method::GET, format!("/v1/sessions/{sh}/files/a.txt")),
            (Method::POST, format!("/v1/sessions/{py}/keepalive")),
        ] {
            let reply = bob.call(method.clone(), &path, None).await;
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {path}");
            assert_eq!(reply.json()["error"]["code"], "unknown_session");
        }
        let foreign = bob.invoke(py, json!({"code": "print(x)"})).await;
        assert_eq!(foreign.status, StatusCode::NOT_FOUND);
        assert_eq!(
            bob.put(sh, "a.txt", b"x".to_vec()).await.status,
            StatusCode::NOT_FOUND
        );
        assert!(bob.listed().await.is_empty());
    }

    // One scenario, read top to bottom: two tokens, a kill, another service, a restart.
    #[allow(clippy::too_many_lines)]
    #[tokio::test(flavor = "multi_thread")]
    async fn a_session_is_its_tokens_alone_and_outlives_a_killed_service() {
        let _python = cleanup_if_built_now("python");
        let _shell = cleanup_if_built_now("shell");
        let cleanup = SessionCleanup::default();
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens.toml");
        let (alice_token, alice_entry) = skillhost::service::new_token("alice", None);
        let (bob_token, bob_entry) = skillhost::service::new_token("bob", None);
        std::fs::write(&tokens, [alice_entry, bob_entry].join("\n")).unwrap();
        let first = daemon(&tokens);
        let alice = Caller {
            daemon: &first,
            bearer: format!("Bearer {alice_token}"),
        };
        let bob = Caller {
            daemon: &first,
            bearer: format!("Bearer {bob_token}"),
        };

        // The python session takes the spare: the service keeps its record apart.
        spare_ready(&alice).await;
        let py = alice.open(json!({"skill": "python"}), &cleanup).await;
        let sh = alice.open(json!({"skill": "shell"}), &cleanup).await;
        let short = alice
            .open(json!({"skill": "shell", "max_lifetime_ms": 4000}), &cleanup)
            .await;
        let set = alice.invoke(&py, json!({"code": "x = 41"})).await;
        assert_eq!(set.status, StatusCode::OK, "{}", set.body);
        assert_eq!(set.result().session.unwrap().id, py);

        sees_none_of_it(&bob, &py, &sh).await;

        // A binary file in and out, byte for byte.
        let data: Vec<u8> = (0..1u32 << 20)
            .map(|i| (i.wrapping_mul(40_503) >> 7) as u8)
            .collect();
        let put = alice.put(&sh, "data/blob.bin", data.clone()).await;
        assert_eq!(put.status, StatusCode::NO_CONTENT, "{}", put.body);
        let got = alice
            .call(
                Method::GET,
                &format!("/v1/sessions/{sh}/files/data/blob.bin"),
                None,
            )
            .await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.headers["x-file-mode"], "0644");
        assert_eq!(Sha256::digest(&got.bytes), Sha256::digest(&data));
        let escape = alice
            .call(
                Method::GET,
                &format!("/v1/sessions/{sh}/files/..%2Fetc%2Fpasswd"),
                None,
            )
            .await;
        assert_eq!(escape.status, StatusCode::BAD_REQUEST, "{}", escape.body);
        assert_eq!(
            alice.put(&py, "kept.txt", b"kept".to_vec()).await.status,
            StatusCode::NO_CONTENT
        );

        // The service is killed; its sessions wait for the next one.
        first.signal("KILL");
        let mut first = first;
        first.wait(Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(4500)).await;
        // Another service on the same engine takes none of them: only the next one on
        // this service's socket does.
        let other = daemon(&tokens);
        let other_alice = Caller {
            daemon: &other,
            bearer: format!("Bearer {alice_token}"),
        };
        assert_eq!(other_alice.listed().await, Vec::<String>::new());
        let mut other = other;
        other.signal("TERM");
        other.wait(Duration::from_secs(60));
        let second = Daemon::restart_of(
            &first,
            &workspace_root().join("skills"),
            &daemon_flags(&tokens),
        );
        let alice = Caller {
            daemon: &second,
            bearer: format!("Bearer {alice_token}"),
        };
        let mut expected = vec![py.clone(), sh.clone()];
        expected.sort();
        assert_eq!(alice.listed().await, expected, "the expired one was reaped");
        assert_eq!(remains(&short).await, (0, 0));
        let got = alice
            .call(
                Method::GET,
                &format!("/v1/sessions/{sh}/files/data/blob.bin"),
                None,
            )
            .await;
        assert_eq!(
            Sha256::digest(&got.bytes),
            Sha256::digest(&data),
            "files survive"
        );
        // The process session's first call says its process was restarted, and runs
        // nothing; then the session goes on, with its files.
        let reset = alice.invoke(&py, json!({"code": "print(x)"})).await;
        assert_eq!(reset.status, StatusCode::CONFLICT, "{}", reset.body);
        assert_eq!(reset.result().error.unwrap().code, "session_state_reset");
        let after = alice
            .invoke(
                &py,
                json!({"code": "print(open('kept.txt').read(), 'x' in globals())"}),
            )
            .await;
        assert_eq!(after.result().output.unwrap()["stdout"], "kept False\n");

        for id in [&py, &sh] {
            let ended = alice
                .call(Method::DELETE, &format!("/v1/sessions/{id}"), None)
                .await;
            assert_eq!(ended.status, StatusCode::NO_CONTENT);
            assert_eq!(remains(id).await, (0, 0));
        }
    }
}

/// `skillhost session` and `invoke --session` against a running service.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_makes_fills_calls_in_and_ends_a_session_of_a_service() {
    let _image = cleanup_if_built_now("shell");
    let cleanup = SessionCleanup::default();
    let daemon = common::service::Daemon::start(&workspace_root().join("skills"), &[]);
    let server = format!("unix:{}", daemon.socket.display());
    let cli = |args: &[&str]| {
        let out = common::skillhost()
            .args(args)
            .args(["--server", &server])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skillhost {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let id = cli(&["session", "new", "shell", "--idle-timeout", "5m"])
        .trim()
        .to_string();
    cleanup.add(&id);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("in.txt");
    std::fs::write(&local, "from the caller\n").unwrap();
    let target = format!("{id}:in/in.txt");
    cli(&["session", "cp", local.to_str().unwrap(), &target]);
    let ran = cli(&[
        "--format",
        "json",
        "invoke",
        "-",
        "run",
        "--session",
        &id,
        "--args",
        r#"{"command": "tr a-z A-Z < in/in.txt > out.txt"}"#,
    ]);
    let result: Value = serde_json::from_str(&ran).unwrap();
    assert_eq!(result["status"], "ok", "{ran}");
    assert_eq!(result["session"]["id"], id.as_str());
    let back = dir.path().join("out.txt");
    cli(&[
        "session",
        "cp",
        &format!("{id}:out.txt"),
        back.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "FROM THE CALLER\n");
    let files: Value =
        serde_json::from_str(&cli(&["--format", "json", "session", "files", &id])).unwrap();
    let paths: Vec<&str> = files["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["in", "in/in.txt", "out.txt"]);
    assert!(cli(&["session", "list"]).contains(&id));
    cli(&["session", "end", &id]);
    assert_eq!(cli(&["session", "list"]), "");
    let gone = common::skillhost()
        .args(["session", "show", &id, "--server", &server])
        .output()
        .unwrap();
    assert_eq!(
        gone.status.code(),
        Some(2),
        "unknown_session is the caller's to fix"
    );
    assert!(String::from_utf8_lossy(&gone.stderr).contains("unknown_session"));
    drop(daemon);
}

#[tokio::test]
async fn an_upload_or_download_past_the_hosts_limit_is_refused_and_leaves_nothing() {
    let _image = cleanup_if_built_now("shell");
    let config =
        HostConfig::new(vec![workspace_root().join("skills")]).max_session_file_bytes(1000);
    let host = Host::new(config).await.unwrap();
    let session = host
        .open_session(SessionRequest::new("shell"))
        .await
        .unwrap();
    let id = session.id().to_string();
    let too_big = session
        .write_file("big.bin", &[7u8; 2000][..])
        .await
        .unwrap_err();
    assert_eq!(too_big.code, codes::files::TOO_LARGE, "{too_big}");
    assert!(
        session.list_files().await.unwrap().files.is_empty(),
        "nothing half-written"
    );
    shell(&session, "head -c 2000 /dev/zero > made.bin").await;
    let too_big = session.read_file("made.bin").await.unwrap_err();
    assert_eq!(too_big.code, codes::files::TOO_LARGE, "{too_big}");
    session
        .write_file("small.bin", &[7u8; 1000][..])
        .await
        .unwrap();
    host.shutdown().await;
    assert_eq!(remains(&id).await, (0, 0));
}
