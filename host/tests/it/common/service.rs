//! A real `skillhost serve` process for the service tests, and a plain HTTP/1 client for
//! its unix socket and TCP address.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use skillhost::testing::on_engine_thread;

use super::remove_containers;

/// A running `skillhost serve`. Dropped, it is killed and every container of its host
/// instance removed, so a failed test leaves nothing behind.
pub struct Daemon {
    child: Option<Child>,
    stdout: Option<BufReader<ChildStdout>>,
    pub socket: PathBuf,
    pub tcp: Option<String>,
    pub instance: String,
    _dir: tempfile::TempDir,
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    /// The body's bytes, as sent.
    #[allow(dead_code)] // The soak binary's (tests/soak.rs), which shares these helpers.
    pub bytes: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn result(&self) -> skillhost::InvocationResult {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not a result ({e}): {}", self.body))
    }
}

impl Daemon {
    /// Start a service over the skills in `root`, with extra `serve` flags, and wait
    /// until it listens.
    pub fn start(root: &Path, flags: &[&str]) -> Daemon {
        Daemon::start_with_env(root, flags, &[])
    }

    /// [`Daemon::start`] with extra environment variables.
    pub fn start_with_env(root: &Path, flags: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut daemon = Daemon::spawn(root, flags, env);
        daemon.await_listening();
        daemon
    }

    /// Start a service and return at once: its socket may not be bound yet, and it may
    /// still be starting ([`Daemon::await_socket`], [`Daemon::await_listening`]).
    pub fn spawn(root: &Path, flags: &[&str], env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("skillhost.sock");
        Daemon::spawn_at(dir, socket, root, flags, env)
    }

    /// A service in `earlier`'s place: on its socket, as a service restarted after
    /// `earlier` died is (its sessions are recorded under the socket), and wait until it
    /// listens.
    #[allow(dead_code)] // The soak binary's (tests/soak.rs), which shares these helpers.
    pub fn restart_of(earlier: &Daemon, root: &Path, flags: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let mut daemon = Daemon::spawn_at(dir, earlier.socket.clone(), root, flags, &[]);
        daemon.await_listening();
        daemon
    }

    fn spawn_at(
        dir: tempfile::TempDir,
        socket: std::path::PathBuf,
        root: &Path,
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_skillhost"))
            .arg("--skills-dir")
            .arg(root)
            .args(["--format", "json", "serve", "--socket"])
            .arg(&socket)
            .args(flags)
            .current_dir(dir.path())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the skillhost binary runs");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Daemon {
            child: Some(child),
            stdout: Some(stdout),
            socket,
            tcp: None,
            instance: String::new(),
            _dir: dir,
        }
    }

    /// Wait until the service's socket takes connections (it may still be starting).
    pub fn await_socket(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "skillhost serve did not bind {} within 60 s",
                self.socket.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until the service says it listens with its host started (its first line of
    /// JSON), and learn its endpoints and host instance.
    pub fn await_listening(&mut self) {
        let mut stdout = self.stdout.take().expect("awaited once");
        let mut text = String::new();
        let started: serde_json::Value = loop {
            let mut line = String::new();
            let read = stdout.read_line(&mut line).unwrap();
            assert!(
                read > 0,
                "skillhost serve exited before listening; see its stderr"
            );
            text.push_str(&line);
            if let Ok(value) = serde_json::from_str(&text) {
                break value;
            }
        };
        let endpoints: Vec<String> = serde_json::from_value(started["listening"].clone()).unwrap();
        self.tcp = endpoints
            .iter()
            .find_map(|e| e.strip_prefix("http://").map(str::to_string));
        self.instance = started["instance"].as_str().unwrap().to_string();
    }

    /// The service's process id.
    #[allow(dead_code)] // The soak binary's (tests/soak.rs), which shares these helpers.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// A request on the unix socket.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let body = Bytes::from(body.unwrap_or_default().to_string());
        self.call_bytes(method, path, headers, body).await
    }

    /// A request with a body of any bytes on the unix socket.
    pub async fn call_bytes(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Reply {
        let stream = tokio::net::UnixStream::connect(&self.socket).await.unwrap();
        send(TokioIo::new(stream), method, path, headers, body).await
    }

    /// A request on the TCP address.
    pub async fn call_tcp(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let address = self.tcp.as_deref().expect("the daemon listens on TCP");
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let body = Bytes::from(body.unwrap_or_default().to_string());
        send(TokioIo::new(stream), method, path, headers, body).await
    }

    /// A request with a body of any bytes on the TCP address.
    #[allow(dead_code)] // The soak binary's (tests/soak.rs), which shares these helpers.
    pub async fn call_bytes_tcp(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Reply {
        let address = self.tcp.as_deref().expect("the daemon listens on TCP");
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        send(TokioIo::new(stream), method, path, headers, body).await
    }

    /// `POST .../{skill}/actions/{action}:invoke` with a JSON body.
    pub async fn invoke(&self, skill: &str, action: &str, body: serde_json::Value) -> Reply {
        self.call(
            Method::POST,
            &format!("/v1/skills/{skill}/actions/{action}:invoke"),
            &[("content-type", "application/json")],
            Some(&body.to_string()),
        )
        .await
    }

    /// Containers of this service's host, running or not.
    pub async fn containers(&self) -> usize {
        let docker = bollard::Docker::connect_with_defaults().unwrap();
        let filter = format!("io.skillhost.instance={}", self.instance);
        let options = bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(std::collections::HashMap::from([(
                "label".to_string(),
                vec![filter],
            )])),
            ..Default::default()
        };
        docker.list_containers(Some(options)).await.unwrap().len()
    }

    /// Wait until the host has no container left, up to `limit`; how many remain.
    pub async fn settle(&self, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let left = self.containers().await;
            if left == 0 || Instant::now() > deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Send a signal (`TERM`, `INT`) to the service.
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().unwrap().id();
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Wait for the service to exit, up to `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "skillhost serve did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.instance.is_empty() {
            // It never started a host, so it has no container.
            return;
        }
        let instance = self.instance.clone();
        on_engine_thread(move |docker| async move {
            let label = format!("io.skillhost.instance={instance}");
            for failure in remove_containers(&docker, "label", &label).await {
                eprintln!("cleanup: cannot remove {failure}");
            }
            // Session workspaces it made (spares among them).
            let options = bollard::query_parameters::ListVolumesOptions {
                filters: Some(std::collections::HashMap::from([(
                    "label".to_string(),
                    vec![label],
                )])),
            };
            let volumes = docker.list_volumes(Some(options)).await.ok();
            for volume in volumes.and_then(|v| v.volumes).unwrap_or_default() {
                let _ = docker
                    .remove_volume(
                        &volume.name,
                        None::<bollard::query_parameters::RemoveVolumeOptions>,
                    )
                    .await;
            }
        });
    }
}

async fn send<T>(io: T, method: Method, path: &str, headers: &[(&str, &str)], body: Bytes) -> Reply
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "test");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body)).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
    }
}

/// A unix socket that forwards to the real engine's, and can be cut and restored: the
/// engine "going away and coming back" for one service, without disturbing the engine
/// every other test uses. While cut, new connections are closed at once and open ones
/// are dropped.
pub struct EngineSwitch {
    pub socket: PathBuf,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl EngineSwitch {
    pub fn start() -> EngineSwitch {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("engine.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let accepting = up.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !accepting.load(Ordering::SeqCst) {
                    continue;
                }
                let mut cuts = cuts.clone();
                // Only cuts from now on end this connection.
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut engine) =
                        tokio::net::UnixStream::connect("/var/run/docker.sock").await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut engine) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        EngineSwitch {
            socket,
            up,
            cut,
            task,
            _dir: dir,
        }
    }

    /// `unix://...`, for `DOCKER_HOST`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
        if !up {
            self.cut.send_modify(|n| *n += 1);
        }
    }
}

impl Drop for EngineSwitch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
