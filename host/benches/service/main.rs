//! The service benchmark, every figure from one run on one machine:
//! `cargo bench -p skillhost --bench service` (add `-- --quick` for fewer rounds).
//!
//! It starts real `skillhost serve` processes (the release binary) and measures, through
//! HTTP on the unix socket and on TCP, against a hardened `docker run --rm -i` of the
//! same image in the same run:
//!
//! - one echo call per path: cold, prewarmed (started up to the init), warm;
//! - a whole `skillhost invoke --server` process against a prewarmed skill;
//! - a warm echo as an MCP `tools/call`: through `/mcp`, through `skillhost mcp` on
//!   stdio bridged to the service, and through `skillhost mcp` with a host of its own,
//!   beside the same call through `/v1`;
//! - throughput at concurrency 1, 16 and 64 (warm);
//! - four times the admission limit: how many 429s, the p99 of the admitted, none lost;
//! - the daemon's resident memory with 1,000 open connections;
//! - sustained load, fresh against recycled: 200 python `print(1+1)` and 200 echo calls
//!   at concurrency 8, each path in its own service (prewarmed with recycling off; the
//!   skills' own `run.recycle`), with the engine's CPU seconds per call (dockerd and
//!   containerd, from /proc). `-- --sustained` runs this part alone.
//!
//! Prints Markdown tables; leaves no container behind.

// A scenario or a benchmark reads best top to bottom, as one function; the 100-line
// bound is for the library (Cargo.toml, [workspace.lints.clippy]).
#![allow(clippy::too_many_lines)]

#[path = "../common/baseline.rs"]
mod baseline;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use baseline::{docker_run, ms, percentile};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

const ECHO_BODY: &str = r#"{"args":{"text":"hi"}}"#;

/// A `skillhost serve` process.
struct Daemon {
    child: Child,
    socket: PathBuf,
    tcp: Option<String>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(roots: &[&Path], flags: &[&str], token_file: Option<&Path>) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s.sock");
        let mut command = Command::new(env!("CARGO_BIN_EXE_skillhost"));
        for root in roots {
            command.arg("--skills-dir").arg(root);
        }
        command
            .args(["--format", "json", "serve", "--socket"])
            .arg(&socket)
            .args(flags);
        if let Some(tokens) = token_file {
            command
                .args(["--listen", "127.0.0.1:0", "--tokens"])
                .arg(tokens);
        }
        let mut child = command
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut text = String::new();
        let started: serde_json::Value = loop {
            let mut line = String::new();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "serve exited");
            text.push_str(&line);
            if let Ok(v) = serde_json::from_str(&text) {
                break v;
            }
        };
        let tcp = started["listening"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|e| e.as_str()?.strip_prefix("http://").map(str::to_string));
        Daemon {
            child,
            socket,
            tcp,
            _dir: dir,
        }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap_or(0)
    }

    fn stop(self) {
        drop(self);
    }
}

/// Stopped (SIGTERM, so it removes its containers) even when a run panics.
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// A keep-alive HTTP/1 connection.
struct Connection {
    sender: SendRequest<Full<Bytes>>,
    token: Option<String>,
}

impl Connection {
    async fn unix(daemon: &Daemon) -> Connection {
        let stream = tokio::net::UnixStream::connect(&daemon.socket)
            .await
            .unwrap();
        Connection::over(TokioIo::new(stream), None).await
    }

    async fn tcp(daemon: &Daemon, token: &str) -> Connection {
        let stream = tokio::net::TcpStream::connect(daemon.tcp.as_deref().unwrap())
            .await
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Connection::over(TokioIo::new(stream), Some(token.to_string())).await
    }

    async fn over<T>(io: T, token: Option<String>) -> Connection
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        Connection { sender, token }
    }

    /// POST an echo invoke; the status, the result's path and how long it took.
    async fn invoke(&mut self, skill: &str) -> (StatusCode, String, Duration) {
        self.call(skill, "say", ECHO_BODY).await
    }

    /// POST an invoke of `action` with `body`; the status, the result's path and how
    /// long it took. A 200 must be an `ok` result.
    async fn call(
        &mut self,
        skill: &str,
        action: &str,
        body: &str,
    ) -> (StatusCode, String, Duration) {
        let mut request = Request::post(format!("/v1/skills/{skill}/actions/{action}:invoke"))
            .header("host", "bench")
            .header("content-type", "application/json");
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let started = Instant::now();
        self.sender.ready().await.unwrap();
        let response = self.sender.send_request(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let elapsed = started.elapsed();
        let result: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if status == StatusCode::OK {
            assert_eq!(result["status"], "ok", "{result}");
        }
        (
            status,
            result["path"].as_str().unwrap_or_default().to_string(),
            elapsed,
        )
    }

    /// POST one MCP message to `/mcp`; the `Mcp-Session-Id` it answers with, and the body.
    async fn post_mcp(&mut self, body: &str, session: Option<&str>) -> (Option<String>, String) {
        let mut request = Request::post("/mcp")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(session) = session {
            request = request
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-11-25");
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        self.sender.ready().await.unwrap();
        let response = self.sender.send_request(request).await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (session, String::from_utf8_lossy(&body).into_owned())
    }

    async fn get(&mut self, path: &str) -> String {
        let request = Request::get(path)
            .header("host", "bench")
            .body(Full::new(Bytes::new()))
            .unwrap();
        self.sender.ready().await.unwrap();
        let response = self.sender.send_request(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    }
}

const MCP_INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}"#;
const MCP_INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

fn mcp_echo_call(id: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo-serve__say","arguments":{{"text":"hi"}}}}}}"#
    )
}

/// The JSON-RPC response in an MCP answer (a JSON body, or the `data:` of an SSE event),
/// checked to be a tool result that is not an error.
fn mcp_result(body: &str) -> serde_json::Value {
    let json = body
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .find(|data| data.contains("\"result\""))
        .unwrap_or(body);
    let message: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(message["result"]["isError"], false, "{message}");
    message
}

/// An MCP session with the daemon's `/mcp`, on one keep-alive connection.
struct McpHttp {
    connection: Connection,
    session: String,
}

impl McpHttp {
    async fn open(daemon: &Daemon) -> McpHttp {
        let mut connection = Connection::unix(daemon).await;
        let (session, _) = connection.post_mcp(MCP_INITIALIZE, None).await;
        let session = session.expect("an Mcp-Session-Id");
        connection.post_mcp(MCP_INITIALIZED, Some(&session)).await;
        McpHttp {
            connection,
            session,
        }
    }

    async fn call(&mut self, id: u64) -> Duration {
        let started = Instant::now();
        let (_, body) = self
            .connection
            .post_mcp(&mcp_echo_call(id), Some(&self.session))
            .await;
        let elapsed = started.elapsed();
        mcp_result(&body);
        elapsed
    }
}

/// `skillhost mcp` as an MCP client starts it: JSON-RPC lines on its stdin and stdout.
struct McpStdio {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl McpStdio {
    fn start(args: &[&str]) -> McpStdio {
        let mut child = Command::new(env!("CARGO_BIN_EXE_skillhost"))
            .args(args)
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut mcp = McpStdio {
            child,
            stdin,
            stdout,
        };
        mcp.send(MCP_INITIALIZE);
        mcp.answer();
        mcp.send(MCP_INITIALIZED);
        mcp
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The next response (notifications skipped).
    fn answer(&mut self) -> serde_json::Value {
        loop {
            let mut line = String::new();
            assert!(
                self.stdout.read_line(&mut line).unwrap() > 0,
                "skillhost mcp exited"
            );
            let message: serde_json::Value = serde_json::from_str(&line).unwrap();
            if message.get("id").is_some() {
                return message;
            }
        }
    }

    fn call(&mut self, id: u64) -> Duration {
        let started = Instant::now();
        self.send(&mcp_echo_call(id));
        let message = self.answer();
        let elapsed = started.elapsed();
        assert_eq!(message["result"]["isError"], false, "{message}");
        elapsed
    }

    /// Close stdin, as a client does, and wait for it to remove what it made.
    fn stop(self) {
        let McpStdio {
            mut child, stdin, ..
        } = self;
        drop(stdin);
        let _ = child.wait();
    }
}

/// Wait until the daemon's prewarm pool of `skill` holds `count` containers.
async fn pool_full(connection: &mut Connection, skill: &str, count: usize) {
    gauge_reaches(connection, "skillhost_prewarm_ready", skill, count).await;
}

/// Wait until the daemon's gauge `metric` of `skill` reads `count`.
async fn gauge_reaches(connection: &mut Connection, metric: &str, skill: &str, count: usize) {
    let line = format!("{metric}{{skill=\"{skill}\"}} {count}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !connection.get("/metrics").await.contains(&line) {
        assert!(Instant::now() < deadline, "the prewarm pool did not fill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn row(name: &str, samples: &[Duration], docker: Duration) {
    let median = percentile(samples, 50);
    println!(
        "| {name} | {:.2} | {:.2} | {:.3}x |",
        ms(median),
        ms(percentile(samples, 95)),
        ms(median) / ms(docker)
    );
}

/// Calls per second with `concurrency` keep-alive connections sharing `total` calls.
async fn throughput(daemon: &Daemon, skill: &'static str, concurrency: usize, total: u64) -> f64 {
    let (_, elapsed) = load(daemon, (skill, "say", ECHO_BODY), concurrency, total).await;
    total as f64 / elapsed.as_secs_f64()
}

/// `total` calls shared by `concurrency` callers, each on a keep-alive connection of its
/// own: each call's path and time, and the time from the first call to the last answer.
async fn load(
    daemon: &Daemon,
    (skill, action, body): (&'static str, &'static str, &'static str),
    concurrency: usize,
    total: u64,
) -> (Vec<(String, Duration)>, Duration) {
    let next = Arc::new(AtomicU64::new(0));
    let mut connections = Vec::new();
    for _ in 0..concurrency {
        connections.push(Connection::unix(daemon).await);
    }
    let started = Instant::now();
    let callers: Vec<_> = connections
        .into_iter()
        .map(|mut connection| {
            let next = next.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while next.fetch_add(1, Ordering::SeqCst) < total {
                    let (status, path, took) = connection.call(skill, action, body).await;
                    assert_eq!(status, StatusCode::OK);
                    seen.push((path, took));
                }
                seen
            })
        })
        .collect();
    let mut seen = Vec::new();
    for caller in callers {
        seen.extend(caller.await.unwrap());
    }
    (seen, started.elapsed())
}

/// CPU seconds the engine's daemons (dockerd and containerd) have used so far, from
/// /proc; the shims of containers already gone are not counted.
fn engine_cpu_seconds() -> f64 {
    // USER_HZ is 100 on every Linux architecture the host builds for.
    const TICKS_PER_SECOND: f64 = 100.0;
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let dir = entry.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !matches!(comm.trim(), "dockerd" | "containerd") {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // The fields after the command's closing parenthesis; utime and stime are the
        // 14th and 15th of the line, the 12th and 13th after it.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        ticks += fields
            .get(11)
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0);
        ticks += fields
            .get(12)
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0);
    }
    ticks as f64 / TICKS_PER_SECOND
}

/// 200 calls of `skill` at `concurrency`, each caller on its own connection: calls per
/// second, the median and p95, the engine's CPU milliseconds per call, and the paths.
async fn sustained(
    daemon: &Daemon,
    (skill, action, body): (&'static str, &'static str, &'static str),
    concurrency: usize,
) -> String {
    const TOTAL: u64 = 200;
    let cpu_before = engine_cpu_seconds();
    let (seen, elapsed) = load(daemon, (skill, action, body), concurrency, TOTAL).await;
    let elapsed = elapsed.as_secs_f64();
    let cpu = engine_cpu_seconds() - cpu_before;
    let samples: Vec<Duration> = seen.iter().map(|(_, took)| *took).collect();
    let mut paths = std::collections::BTreeMap::<String, usize>::new();
    for (path, _) in &seen {
        *paths.entry(path.clone()).or_default() += 1;
    }
    let paths: Vec<String> = paths.iter().map(|(p, n)| format!("{n} {p}")).collect();
    format!(
        "{:.1} | {:.1} | {:.1} | {:.1} | {}",
        TOTAL as f64 / elapsed,
        ms(percentile(&samples, 50)),
        ms(percentile(&samples, 95)),
        cpu * 1000.0 / TOTAL as f64,
        paths.join(", ")
    )
}

const PYTHON_BODY: &str = r#"{"args":{"code":"print(1+1)"}}"#;

/// Fresh against recycled under sustained load, each in a service of its own.
async fn sustained_load(skills: &Path) {
    println!("\n## Sustained load: 200 calls at concurrency 8 (and 1), fresh against recycled\n");
    println!(
        "| skill | path | concurrency | calls/s | median ms | p95 ms | engine CPU ms per call | paths |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---|");
    for (name, flags, gauge) in [
        (
            "fresh (prewarmed 8, recycling off)",
            &["--recycle", "off", "--prewarm", "python=8,echo=8"][..],
            "skillhost_prewarm_ready",
        ),
        (
            "recycled (8 started ahead)",
            &["--prewarm", "python=8,echo=8"][..],
            "skillhost_recycled_idle",
        ),
    ] {
        let daemon = Daemon::start(&[skills], flags, None);
        for (skill, action, body) in [("python", "run", PYTHON_BODY), ("echo", "say", ECHO_BODY)] {
            // A connection of its own: the service closes one left idle through a run.
            let mut connection = Connection::unix(&daemon).await;
            // The first call waits for the image; then both pools hold 8 before the clock.
            connection.call(skill, action, body).await;
            gauge_reaches(&mut connection, gauge, skill, 8).await;
            for concurrency in [8, 1] {
                let figures = sustained(&daemon, (skill, action, body), concurrency).await;
                println!("| {skill} | {name} | {concurrency} | {figures} |");
                // The pool refilled, as before the first run (on a new connection: the
                // service closes one left idle through a run).
                connection = Connection::unix(&daemon).await;
                gauge_reaches(&mut connection, gauge, skill, 8).await;
            }
        }
        daemon.stop();
    }
}

#[tokio::main]
async fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    if std::env::args().any(|a| a == "--sustained") {
        sustained_load(&root.join("skills")).await;
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let (latency_rounds, fast_rounds, per_level) = if quick {
        (8, 300, 500)
    } else {
        (30, 3000, 4000)
    };
    let skills = root.join("skills");
    let bench_skills = root.join("host/benches/skills");
    let dir = tempfile::tempdir().unwrap();
    let (token, entry) = skillhost::service::new_token("bench", None);
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, entry).unwrap();

    // Recycling off: these rows are about one container per call.
    let cold = Daemon::start(&[&skills], &["--recycle", "off"], Some(&tokens));
    let fast = Daemon::start(
        &[&skills, &bench_skills],
        &[
            "--recycle",
            "off",
            "--prewarm",
            "echo=4",
            "--max-in-flight",
            "64",
            "--queue",
            "256",
            // The memory figure holds 1,000 connections from this one peer.
            "--max-connections-per-peer",
            "2048",
        ],
        Some(&tokens),
    );
    let mut cold_unix = Connection::unix(&cold).await;
    let mut cold_tcp = Connection::tcp(&cold, &token).await;
    let mut fast_unix = Connection::unix(&fast).await;
    let mut fast_tcp = Connection::tcp(&fast, &token).await;
    // First calls build images and start workers.
    cold_unix.invoke("echo").await;
    for _ in 0..4 {
        fast_unix.invoke("echo-serve").await;
    }
    pool_full(&mut fast_unix, "echo", 4).await;
    let image = {
        let list: serde_json::Value =
            serde_json::from_str(&cold_unix.get("/v1/skills/echo").await).unwrap();
        list["image"].as_str().unwrap().to_string()
    };
    let seccomp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(seccomp.path(), skillhost::testing::PROFILE_JSON.as_bytes()).unwrap();
    let request =
        skill_sdk::Request::new("bench", "say", serde_json::json!({"text": "hi"})).to_line();

    let mut docker = Vec::new();
    let (mut cold_u, mut cold_t, mut pre_u, mut pre_t, mut cli) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let server = format!("unix:{}", fast.socket.display());
    for _ in 0..latency_rounds {
        docker.push(docker_run(&image, seccomp.path(), request.as_bytes()));
        for (connection, samples) in [(&mut cold_unix, &mut cold_u), (&mut cold_tcp, &mut cold_t)] {
            let (_, path, took) = connection.invoke("echo").await;
            assert_eq!(path, "cold");
            samples.push(took);
            // Let the engine finish removing the container before the next measurement.
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        for (connection, samples) in [(&mut fast_unix, &mut pre_u), (&mut fast_tcp, &mut pre_t)] {
            let (_, path, took) = connection.invoke("echo").await;
            assert_eq!(path, "prewarmed");
            samples.push(took);
        }
        pool_full(&mut fast_unix, "echo", 4).await;
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_skillhost"))
            .args([
                "invoke",
                "echo",
                "say",
                "--args",
                r#"{"text":"hi"}"#,
                "--server",
                &server,
            ])
            .output()
            .unwrap();
        cli.push(started.elapsed());
        assert!(out.status.success());
        pool_full(&mut fast_unix, "echo", 4).await;
    }
    let (mut warm_u, mut warm_t) = (Vec::new(), Vec::new());
    for _ in 0..fast_rounds {
        warm_u.push(fast_unix.invoke("echo-serve").await.2);
        warm_t.push(fast_tcp.invoke("echo-serve").await.2);
    }
    let docker_median = percentile(&docker, 50);

    // The same warm call as an MCP tools/call, interleaved with /v1's so both meet the
    // same machine.
    let mut mcp_http = McpHttp::open(&fast).await;
    let mut bridged = McpStdio::start(&["mcp", "--server", &server]);
    let echo_serve_root = bench_skills.to_string_lossy().into_owned();
    let mut own = McpStdio::start(&["--skills-dir", &echo_serve_root, "mcp"]);
    // First calls start the workers of the stdio process's own host.
    for id in 1..=4 {
        own.call(id);
    }
    let mcp_rounds = fast_rounds / 3;
    let (mut v1_mcp, mut over_http, mut over_bridge, mut over_own) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for id in 10..10 + mcp_rounds as u64 {
        v1_mcp.push(fast_unix.invoke("echo-serve").await.2);
        over_http.push(mcp_http.call(id).await);
        over_bridge.push(bridged.call(id));
        over_own.push(own.call(id));
    }
    bridged.stop();
    own.stop();

    println!("\n## One echo call through the service\n");
    println!("Rounds: {latency_rounds} (cold, prewarmed, CLI), {fast_rounds} (warm).\n");
    println!("| path | median ms | p95 ms | median / docker run |");
    println!("|---|---:|---:|---:|");
    row(
        "docker run --rm -i (hardened), whole process",
        &docker,
        docker_median,
    );
    row("cold, HTTP on the unix socket", &cold_u, docker_median);
    row("cold, HTTP on TCP with a token", &cold_t, docker_median);
    row("prewarmed (started), unix socket", &pre_u, docker_median);
    row("prewarmed (started), TCP", &pre_t, docker_median);
    row("warm, unix socket", &warm_u, docker_median);
    row("warm, TCP", &warm_t, docker_median);
    row(
        "`skillhost invoke --server`, whole process, prewarmed",
        &cli,
        docker_median,
    );

    println!("\n## A warm echo as an MCP tools/call\n");
    println!(
        "Rounds: {mcp_rounds}, each path in turn. Added: the median over `/v1`'s in the same rounds.\n"
    );
    println!("| path | median ms | p95 ms | added to /v1 ms |");
    println!("|---|---:|---:|---:|");
    let v1_median = ms(percentile(&v1_mcp, 50));
    for (name, samples) in [
        ("`/v1` invoke, unix socket", &v1_mcp),
        (
            "`/mcp` tools/call, unix socket, one MCP session",
            &over_http,
        ),
        (
            "`skillhost mcp --server` (stdio bridged to `/mcp`)",
            &over_bridge,
        ),
        ("`skillhost mcp` with a host of its own (stdio)", &over_own),
    ] {
        let median = ms(percentile(samples, 50));
        println!(
            "| {name} | {median:.2} | {:.2} | {:+.2} |",
            ms(percentile(samples, 95)),
            median - v1_median
        );
    }

    println!("\n## Throughput, warm (echo-serve, 4 workers), unix socket\n");
    println!("| concurrency | calls/s |");
    println!("|---:|---:|");
    for concurrency in [1, 16, 64] {
        let rate = throughput(&fast, "echo-serve", concurrency, per_level).await;
        println!("| {concurrency} | {rate:.0} |");
    }

    // Four times the admission limit: 16 running and 16 queued, 128 callers.
    let limited = Daemon::start(
        &[&skills],
        &[
            "--recycle",
            "off",
            "--max-in-flight",
            "16",
            "--queue",
            "16",
            "--queue-wait",
            "1s",
        ],
        None,
    );
    let calls_each = if quick { 5 } else { 10 };
    let callers: Vec<_> = (0..128)
        .map(|_| {
            let socket = limited.socket.clone();
            tokio::spawn(async move {
                let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
                let mut connection = Connection::over(TokioIo::new(stream), None).await;
                let mut seen = Vec::new();
                for _ in 0..calls_each {
                    seen.push(connection.invoke("echo").await);
                }
                seen
            })
        })
        .collect();
    let mut answers = Vec::new();
    for caller in callers {
        answers.extend(caller.await.unwrap());
    }
    let admitted: Vec<Duration> = answers
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::OK)
        .map(|(_, _, d)| *d)
        .collect();
    let refused: Vec<Duration> = answers
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .map(|(_, _, d)| *d)
        .collect();
    println!(
        "\n## Four times the admission limit (16 in flight + 16 queued, 128 callers, cold echo)\n"
    );
    println!("| sent | 200 | 429 | other | p99 of the admitted ms | p99 of a 429 ms |");
    println!("|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {} | {} | {:.1} | {:.1} |",
        128 * calls_each,
        admitted.len(),
        refused.len(),
        answers.len() - admitted.len() - refused.len(),
        ms(percentile(&admitted, 99)),
        ms(percentile(&refused, 99)),
    );
    limited.stop();

    let before = fast.rss_kib();
    let mut held = Vec::new();
    for _ in 0..1000 {
        let mut connection = Connection::unix(&fast).await;
        connection.get("/healthz").await;
        held.push(connection);
    }
    let with_connections = fast.rss_kib();
    drop(held);
    println!("\n## The daemon's memory\n");
    println!("| state | resident set MiB |");
    println!("|---|---:|");
    println!(
        "| idle after the runs above | {:.1} |",
        before as f64 / 1024.0
    );
    println!(
        "| with 1,000 open connections | {:.1} |",
        with_connections as f64 / 1024.0
    );

    cold.stop();
    fast.stop();

    sustained_load(&skills).await;
}
