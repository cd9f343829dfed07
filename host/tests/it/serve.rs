//! `skillhost serve` against the real engine: a real daemon process, called over its unix
//! socket and TCP, with the probe fixture skill. Every test ends with no container of the
//! daemon's host left.

use crate::common;

use std::time::Duration;

use common::probe::Probe;
use common::service::Daemon;
use hyper::{Method, StatusCode};
use serde_json::json;
use skillhost::Status;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bounds for waits on things that must happen, never speed targets.
const PATIENCE: Duration = Duration::from_secs(20);

fn code(reply: &common::service::Reply) -> String {
    reply.result().error.map(|e| e.code).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_outcome_gets_its_http_status_and_a_result_body() {
    let probe = Probe::acquire();
    let daemon = Daemon::start(&probe.root, &["--max-body", "4KiB"]);
    let name = &probe.name;

    let ok = daemon.invoke(name, "ok", json!({})).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.result().status, Status::Ok);
    assert_eq!(ok.result().output, Some(json!({"pong": true})));

    let failed = daemon.invoke(name, "fail", json!({})).await;
    assert_eq!(
        failed.status,
        StatusCode::OK,
        "a finished run is 200 whatever its status"
    );
    assert_eq!(failed.result().status, Status::SkillError);

    let slow = daemon
        .invoke(
            name,
            "sleep",
            json!({"args": {"seconds": 30}, "timeout_ms": 500}),
        )
        .await;
    assert_eq!(slow.status, StatusCode::OK);
    assert_eq!(slow.result().status, Status::Timeout);

    let unknown = daemon.invoke(name, "nope", json!({})).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(code(&unknown), "unknown_action");
    for path in ["..%2F..%2Fetc", "..", "a%2Fb"] {
        let reply = daemon.invoke(path, "ok", json!({})).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.body
        );
        assert_eq!(code(&reply), "unknown_skill", "{path}");
    }

    let bad_args = daemon
        .invoke(name, "sleep", json!({"args": {"seconds": "x"}}))
        .await;
    assert_eq!(bad_args.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(code(&bad_args), "invalid_args");

    let bad_env = daemon
        .invoke(name, "env", json!({"env": {"NOT_ALLOWED": "1"}}))
        .await;
    assert_eq!(bad_env.status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&bad_env), "invalid_options");

    let path = format!("/v1/skills/{name}/actions/ok:invoke");
    let json_type = [("content-type", "application/json")];
    let malformed = daemon
        .call(Method::POST, &path, &json_type, Some("{\"args\": "))
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&malformed), "invalid_request");
    let unknown_field = daemon
        .call(Method::POST, &path, &json_type, Some("{\"arg\": {}}"))
        .await;
    assert!(unknown_field.status.is_client_error());
    assert!(unknown_field
        .result()
        .error
        .unwrap()
        .message
        .contains("arg"));
    let not_json = daemon.call(Method::POST, &path, &[], Some("{}")).await;
    assert_eq!(not_json.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(code(&not_json), "invalid_request");
    let big = json!({"args": {"data": "x".repeat(8192)}}).to_string();
    let too_big = daemon
        .call(
            Method::POST,
            &format!("/v1/skills/{name}/actions/echo:invoke"),
            &json_type,
            Some(&big),
        )
        .await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(code(&too_big), "input_too_large");
    // Refused by the service's reader, before the host: counted all the same.
    let metrics = daemon.call(Method::GET, "/metrics", &[], None).await.body;
    for line in [
        "skillhost_rejected_total{code=\"invalid_request\"} 3",
        "skillhost_rejected_total{code=\"input_too_large\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }

    let no_route = daemon.call(Method::GET, "/v2/skills", &[], None).await;
    assert_eq!(no_route.status, StatusCode::NOT_FOUND);
    assert_eq!(no_route.json()["error"]["code"], "not_found");
    let no_suffix = daemon
        .call(
            Method::POST,
            &format!("/v1/skills/{name}/actions/ok"),
            &json_type,
            Some("{}"),
        )
        .await;
    assert_eq!(no_suffix.status, StatusCode::NOT_FOUND);
    assert!(no_suffix.body.contains(":invoke"), "{}", no_suffix.body);

    assert_eq!(daemon.settle(PATIENCE).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn skills_are_described_with_their_schemas_and_the_openapi_document_is_served() {
    let probe = Probe::acquire();
    let daemon = Daemon::start(&probe.root, &[]);
    let list = daemon.call(Method::GET, "/v1/skills", &[], None).await;
    assert_eq!(list.status, StatusCode::OK);
    let skills = list.json()["skills"].as_array().unwrap().clone();
    let probe_info = skills
        .iter()
        .find(|s| s["name"] == probe.name.as_str())
        .unwrap();
    assert_eq!(probe_info["version"], "0.1.0");
    assert_eq!(
        probe_info["actions"]["sleep"]["input"]["required"],
        json!(["seconds"])
    );
    assert!(probe_info["hash"].as_str().unwrap().len() == 64);
    let one = daemon
        .call(
            Method::GET,
            &format!("/v1/skills/{}", probe.name),
            &[],
            None,
        )
        .await;
    assert_eq!(one.json()["name"], probe.name.as_str());
    let missing = daemon.call(Method::GET, "/v1/skills/nope", &[], None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["error"]["code"], "unknown_skill");

    let served = daemon.call(Method::GET, "/openapi.json", &[], None).await;
    assert_eq!(served.body, skillhost::service::openapi_document());
    let health = daemon.call(Method::GET, "/healthz", &[], None).await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = daemon.call(Method::GET, "/readyz", &[], None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(ready.json()["ready"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_arrives_as_events_before_the_result() {
    let probe = Probe::acquire();
    let daemon = Daemon::start(&probe.root, &[]);
    let reply = daemon
        .call(
            Method::POST,
            &format!("/v1/skills/{}/actions/ok:invoke", probe.name),
            &[
                ("content-type", "application/json"),
                ("accept", "text/event-stream"),
            ],
            Some("{}"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let progress = reply
        .body
        .find("event: progress")
        .expect("a progress event");
    let result = reply.body.find("event: result").expect("a result event");
    assert!(progress < result, "{}", reply.body);
    assert!(
        reply.body.contains("\"message\":\"halfway\""),
        "{}",
        reply.body
    );
    let data = reply.body[result..]
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap();
    let result: skillhost::InvocationResult = serde_json::from_str(data).unwrap();
    assert_eq!(result.status, Status::Ok);
    assert_eq!(daemon.settle(PATIENCE).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_async_invocation_is_polled_to_its_result_and_a_deleted_one_is_cancelled() {
    let probe = Probe::acquire();
    let daemon = Daemon::start(&probe.root, &[]);
    let path = format!("/v1/skills/{}/actions/sleep:invoke", probe.name);
    let headers = [
        ("content-type", "application/json"),
        ("prefer", "respond-async"),
    ];
    let accepted = daemon
        .call(
            Method::POST,
            &path,
            &headers,
            Some(r#"{"args": {"seconds": 0.2}}"#),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    let location = accepted.headers["location"].to_str().unwrap().to_string();
    assert_eq!(
        location,
        format!(
            "/v1/invocations/{}",
            accepted.json()["id"].as_str().unwrap()
        )
    );
    let finished = poll_until_finished(&daemon, &location).await;
    assert_eq!(finished["result"]["status"], "ok");
    assert_eq!(finished["result"]["output"], json!({"slept": 0.2}));

    let accepted = daemon
        .call(
            Method::POST,
            &path,
            &headers,
            Some(r#"{"args": {"seconds": 60}}"#),
        )
        .await;
    let location = accepted.headers["location"].to_str().unwrap().to_string();
    wait_for_a_container(&daemon).await;
    let deleted = daemon.call(Method::DELETE, &location, &[], None).await;
    assert_eq!(deleted.json()["state"], "cancelled");
    assert_eq!(deleted.json()["result"]["error"]["code"], "cancelled");
    assert_eq!(
        daemon.settle(PATIENCE).await,
        0,
        "the cancelled call's container goes"
    );
    let again = daemon.call(Method::GET, &location, &[], None).await;
    assert_eq!(again.json()["state"], "cancelled");
    let forgotten = daemon.call(Method::DELETE, &location, &[], None).await;
    assert_eq!(forgotten.status, StatusCode::OK);
    let gone = daemon.call(Method::GET, &location, &[], None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.json()["error"]["code"], "no_such_invocation");
}

async fn poll_until_finished(daemon: &Daemon, location: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let reply = daemon.call(Method::GET, location, &[], None).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        if reply.json()["state"] != "running" {
            return reply.json();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running: {}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_a_container(daemon: &Daemon) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while daemon.containers().await == 0 {
        assert!(std::time::Instant::now() < deadline, "no container started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_caller_that_disconnects_cancels_its_call_and_its_container_is_removed() {
    let probe = Probe::acquire();
    let daemon = Daemon::start(&probe.root, &[]);
    for accept in ["application/json", "text/event-stream"] {
        let mut stream = tokio::net::UnixStream::connect(&daemon.socket)
            .await
            .unwrap();
        let body = r#"{"args": {"seconds": 60}}"#;
        let request = format!(
            "POST /v1/skills/{}/actions/sleep:invoke HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\naccept: {accept}\r\ncontent-length: {}\r\n\r\n{body}",
            probe.name,
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        wait_for_a_container(&daemon).await;
        drop(stream);
        assert_eq!(
            daemon.settle(PATIENCE).await,
            0,
            "{accept}: nothing keeps running for nobody"
        );
    }
}

/// A service of the probe on the unix socket and on a free TCP port of 127.0.0.1, whose
/// callers present one of the tokens-file `entries`; with `flags` besides. The directory
/// of the tokens file lives as long as the second value.
fn tcp_daemon(probe: &Probe, entries: &[String], flags: &[&str]) -> (Daemon, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, entries.join("\n")).unwrap();
    let mut all = vec![
        "--listen",
        "127.0.0.1:0",
        "--tokens",
        tokens.to_str().unwrap(),
    ];
    all.extend_from_slice(flags);
    (Daemon::start(&probe.root, &all), dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_callers_need_a_token_and_a_token_keeps_to_its_quota() {
    let probe = Probe::acquire();
    let (token, entry) = skillhost::service::new_token("tester", Some(1));
    let (daemon, _tokens) = tcp_daemon(&probe, &[entry], &[]);
    let missing = daemon.call_tcp(Method::GET, "/v1/skills", &[], None).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.json()["error"]["code"], "missing_token");
    assert!(missing.headers.contains_key("www-authenticate"));
    let wrong = daemon
        .call_tcp(
            Method::GET,
            "/metrics",
            &[("authorization", "Bearer skh_wrong")],
            None,
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.json()["error"]["code"], "invalid_token");
    let probe_open = daemon.call_tcp(Method::GET, "/readyz", &[], None).await;
    assert_eq!(probe_open.status, StatusCode::OK, "probes need no token");
    let lower = format!("bearer {token}");
    let not_utf8 = daemon
        .call_tcp(
            Method::GET,
            "/v1/skills/%ff%fe",
            &[("authorization", lower.as_str())],
            None,
        )
        .await;
    assert_eq!(
        not_utf8.status,
        StatusCode::BAD_REQUEST,
        "{}",
        not_utf8.body
    );
    assert_eq!(
        not_utf8.json()["error"]["code"],
        "invalid_request",
        "the scheme's case does not matter, and the answer is JSON"
    );

    let bearer = format!("Bearer {token}");
    let path = format!("/v1/skills/{}/actions/sleep:invoke", probe.name);
    let headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let slow = daemon.call_tcp(
        Method::POST,
        &path,
        &headers,
        Some(r#"{"args": {"seconds": 2}}"#),
    );
    let second = async {
        wait_for_a_container(&daemon).await;
        daemon
            .call_tcp(
                Method::POST,
                &path,
                &headers,
                Some(r#"{"args": {"seconds": 0}}"#),
            )
            .await
    };
    let (slow, second) = tokio::join!(slow, second);
    assert_eq!(slow.status, StatusCode::OK, "{}", slow.body);
    assert_eq!(
        second.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        second.body
    );
    assert_eq!(code(&second), "overloaded");
    assert!(second.headers.contains_key("retry-after"));
    let after = daemon
        .call_tcp(
            Method::POST,
            &path,
            &headers,
            Some(r#"{"args": {"seconds": 0}}"#),
        )
        .await;
    assert_eq!(
        after.status,
        StatusCode::OK,
        "the quota frees with the call"
    );
    assert_eq!(daemon.settle(PATIENCE).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn beyond_the_limits_calls_get_429_at_once_and_none_is_lost() {
    let probe = Probe::acquire();
    let daemon = Daemon::start(
        &probe.root,
        &[
            "--max-in-flight",
            "2",
            "--queue",
            "2",
            "--queue-wait",
            "200ms",
        ],
    );
    let calls =
        (0..12).map(|_| daemon.invoke(&probe.name, "sleep", json!({"args": {"seconds": 1}})));
    let replies = futures_util::future::join_all(calls).await;
    let ok = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    let overloaded: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(
        ok + overloaded.len(),
        12,
        "every call gets a result or a 429"
    );
    assert!(ok >= 2, "the admitted ran: {ok}");
    assert!(
        overloaded.len() >= 8,
        "beyond 2 running and 2 queued: {}",
        overloaded.len()
    );
    for reply in overloaded {
        assert_eq!(reply.headers["retry-after"], "1");
        assert_eq!(code(reply), "overloaded");
    }
    let metrics = daemon.call(Method::GET, "/metrics", &[], None).await.body;
    assert!(
        metrics.contains("skillhost_overloaded_total{reason=\"queue_full\"}"),
        "{metrics}"
    );
    let ok_line = format!(
        "skillhost_invocations_total{{skill=\"{}\",action=\"sleep\",status=\"ok\",path=\"cold\"}} {ok}",
        probe.name
    );
    assert!(metrics.contains(&ok_line), "{ok_line} in:\n{metrics}");
    assert!(metrics.contains("skillhost_in_flight 0"), "{metrics}");
    assert_eq!(daemon.settle(PATIENCE).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_calls_finish_then_removes_everything() {
    let probe = Probe::acquire();
    let mut daemon = Daemon::start(&probe.root, &["--drain-notice", "3s"]);
    let call = daemon.invoke(&probe.name, "sleep", json!({"args": {"seconds": 2}}));
    let stop = async {
        wait_for_a_container(&daemon).await;
        daemon.signal("TERM");
        // During the drain notice a new call is told to come back, and did not run.
        let ready = wait_for_readiness(&daemon, false).await;
        assert!(
            ready["problems"][0].as_str().unwrap().contains("draining"),
            "{ready}"
        );
        let late = daemon.invoke(&probe.name, "ok", json!({})).await;
        assert_eq!(
            late.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            late.body
        );
        assert_eq!(code(&late), "host_shutting_down");
        assert_eq!(late.headers["retry-after"], "4", "past the 3 s notice");
        assert_eq!(late.headers["connection"], "close");
    };
    let (reply, ()) = tokio::join!(call, stop);
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.result().status, Status::Ok);
    let status = daemon.wait(PATIENCE);
    assert!(status.success(), "{status}");
    assert!(!daemon.socket.exists(), "the socket is removed");
    assert_eq!(daemon.containers().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_still_running_when_the_grace_ends_are_cancelled_and_removed() {
    let probe = Probe::acquire();
    let mut daemon = Daemon::start(&probe.root, &["--grace", "500ms"]);
    let call = daemon.invoke(&probe.name, "sleep", json!({"args": {"seconds": 60}}));
    let stop = async {
        wait_for_a_container(&daemon).await;
        daemon.signal("TERM");
    };
    let (reply, ()) = tokio::join!(call, stop);
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert_eq!(code(&reply), "cancelled");
    assert!(daemon.wait(PATIENCE).success());
    assert_eq!(daemon.containers().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_stops_at_once_and_still_removes_everything() {
    let probe = Probe::acquire();
    let mut daemon = Daemon::start(&probe.root, &["--grace", "10m"]);
    let call = daemon.invoke(&probe.name, "sleep", json!({"args": {"seconds": 60}}));
    let stop = async {
        wait_for_a_container(&daemon).await;
        daemon.signal("TERM");
        tokio::time::sleep(Duration::from_millis(200)).await;
        daemon.signal("INT");
    };
    let (reply, ()) = tokio::join!(call, stop);
    assert_eq!(code(&reply), "cancelled", "{}", reply.body);
    assert!(daemon.wait(PATIENCE).success());
    assert_eq!(daemon.containers().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let probe = Probe::acquire();
    let daemon = Daemon::start(&probe.root, &["--header-timeout", "500ms"]);
    let mut stream = tokio::net::UnixStream::connect(&daemon.socket)
        .await
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the service closes the connection");
    let text = String::from_utf8_lossy(&answer);
    assert!(!text.contains("200 OK"), "{text}");
    let health = daemon.call(Method::GET, "/healthz", &[], None).await;
    assert_eq!(health.status, StatusCode::OK, "other callers are served");

    // A keep-alive connection left idle after its answer is closed too.
    let mut idle = tokio::net::UnixStream::connect(&daemon.socket)
        .await
        .unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(PATIENCE, idle.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the idle connection is closed");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200 OK"));
}

#[test]
fn the_cli_through_the_service_prints_the_same_result_and_exit_code() {
    let probe = Probe::acquire();
    let daemon = Daemon::start(&probe.root, &[]);
    let server = format!("unix:{}", daemon.socket.display());
    let run = |action: &str, args: &str| {
        common::skillhost()
            .args([
                "--format",
                "json",
                "invoke",
                &probe.name,
                action,
                "--args",
                args,
            ])
            .args(["--server", &server])
            .output()
            .unwrap()
    };
    let ok = run("ok", "{}");
    assert_eq!(ok.status.code(), Some(0));
    let result: skillhost::InvocationResult = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(result.status, Status::Ok);
    assert!(
        String::from_utf8_lossy(&ok.stderr).contains("halfway"),
        "progress is printed"
    );
    let failed = run("fail", "{}");
    assert_eq!(failed.status.code(), Some(1));
    let rejected = run("sleep", "{}");
    assert_eq!(rejected.status.code(), Some(2));
    let nowhere = common::skillhost()
        .args([
            "invoke",
            &probe.name,
            "ok",
            "--server",
            "unix:/nonexistent/s.sock",
        ])
        .output()
        .unwrap();
    assert_eq!(nowhere.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&nowhere.stderr)
        .contains("cannot reach the service at unix:/nonexistent/s.sock"));
}

#[tokio::test(flavor = "multi_thread")]
async fn while_the_engine_is_away_calls_are_503_and_readyz_is_false_then_it_recovers() {
    let probe = Probe::acquire();
    let engine = common::service::EngineSwitch::start();
    let docker_host = engine.docker_host();
    let daemon = Daemon::start_with_env(&probe.root, &[], &[("DOCKER_HOST", &docker_host)]);
    let ok = daemon.invoke(&probe.name, "ok", json!({})).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);

    engine.set_up(false);
    let away = daemon.invoke(&probe.name, "ok", json!({})).await;
    assert_eq!(
        away.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        away.body
    );
    assert_eq!(away.result().status, Status::InfrastructureError);
    assert_eq!(code(&away), "engine_error");
    let ready = wait_for_readiness(&daemon, false).await;
    assert!(
        ready["problems"][0].as_str().unwrap().contains("engine"),
        "{ready}"
    );

    engine.set_up(true);
    wait_for_readiness(&daemon, true).await;
    let back = daemon.invoke(&probe.name, "ok", json!({})).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    assert_eq!(daemon.settle(PATIENCE).await, 0);
}

/// Poll `/readyz` until it says `ready` (it caches its answer for a second).
async fn wait_for_readiness(daemon: &Daemon, ready: bool) -> serde_json::Value {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let reply = daemon.call(Method::GET, "/readyz", &[], None).await;
        let expected = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        if reply.status == expected {
            assert_eq!(reply.json()["ready"], ready);
            return reply.json();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "readyz stayed {}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Raise this test process's open file limit to its hard limit: it holds thousands of
/// connections.
fn raise_nofile() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    setrlimit(Resource::Nofile, limit).unwrap();
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// One raw HTTP/1.1 exchange from the loopback address `from`, read to the end.
async fn raw_from(from: [u8; 4], to: &str, request: &str) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((from, 0))).unwrap();
    let mut stream = socket.connect(to.parse().unwrap()).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn thousands_of_slow_bodies_from_one_peer_leave_health_checks_and_other_callers_served() {
    const SLOW: usize = 3000;
    const PER_PEER: usize = 400;
    assert!(
        raise_nofile() > SLOW as u64 + 256,
        "this test needs more descriptors"
    );
    let probe = Probe::acquire();
    let (slow_token, slow_entry) = skillhost::service::new_token("slow", Some(1));
    let (other_token, other_entry) = skillhost::service::new_token("other", None);
    let per_peer = PER_PEER.to_string();
    let (daemon, _tokens) = tcp_daemon(
        &probe,
        &[slow_entry, other_entry],
        &[
            "--body-timeout",
            "4s",
            "--max-connections-per-peer",
            &per_peer,
        ],
    );
    let address = daemon.tcp.clone().unwrap();
    // Complete headers promising a large body, then one byte: what the attack sends.
    let head = format!(
        "POST /v1/skills/{}/actions/ok:invoke HTTP/1.1\r\nhost: t\r\nauthorization: bearer {slow_token}\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n{{",
        probe.name
    );
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        // A connection the service closed at once may refuse the write: that is fine.
        let _ = stream.write_all(head.as_bytes()).await;
        slow.push(stream);
    }
    // Meanwhile, from another peer: the health check, and another token's call.
    let health = raw_from(
        [127, 0, 0, 2],
        &address,
        "GET /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let other = raw_from(
        [127, 0, 0, 2],
        &address,
        &format!("GET /v1/skills HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {other_token}\r\nconnection: close\r\n\r\n"),
    )
    .await;
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
    let local = daemon.call(Method::GET, "/healthz", &[], None).await;
    assert_eq!(
        local.status,
        StatusCode::OK,
        "the unix socket is served too"
    );
    // Every slow connection ends: those over the peer's bound at once, unanswered; the
    // others with 408 at the body deadline.
    let mut timed_out = 0;
    let mut closed_unanswered = 0;
    let reads = slow.into_iter().map(|mut stream| async move {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer)).await;
        (read.is_ok(), String::from_utf8_lossy(&answer).into_owned())
    });
    for (ended, answer) in futures_util::future::join_all(reads).await {
        assert!(ended, "a slow connection is still open after {PATIENCE:?}");
        if answer.is_empty() {
            closed_unanswered += 1;
        } else {
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
            assert!(answer.contains("\"code\":\"invalid_request\""), "{answer}");
            assert!(answer.contains("body-timeout"), "{answer}");
            timed_out += 1;
        }
    }
    eprintln!("{timed_out} slow bodies answered 408, {closed_unanswered} closed unserved");
    assert!(
        timed_out <= PER_PEER,
        "{timed_out} were served past the peer's bound"
    );
    assert!(timed_out > 0, "some were admitted and timed out");
    assert_eq!(timed_out + closed_unanswered, SLOW);
    assert_eq!(daemon.settle(PATIENCE).await, 0, "nothing ran");
}
