//! Listening: a unix socket only its owner can open, and a TCP address whose callers must
//! present a token. Each connection is served by hyper with a bound on how long its
//! headers may take (which also closes idle keep-alive connections), and is watched so a
//! drain lets it finish its request.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;

use super::connections::{Admitted, Connections, Peer};
use super::tokens::Tokens;
use super::ServeError;

/// A bound listener.
#[derive(Debug)]
pub(crate) enum Bound {
    /// The unix socket, removed when this is dropped.
    Unix(UnixListener, SocketFile),
    /// A TCP address, with the tokens its callers must present.
    Tcp(TcpListener, SocketAddr, Arc<Tokens>),
}

/// The socket's path, removed when the listener closes.
#[derive(Debug)]
pub(crate) struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Bound {
    /// `unix:PATH` or `http://ADDR`.
    pub(crate) fn endpoint(&self) -> String {
        match self {
            Bound::Unix(_, file) => format!("unix:{}", file.0.display()),
            Bound::Tcp(_, address, _) => format!("http://{address}"),
        }
    }

    /// The tokens callers must present, for TCP.
    pub(crate) fn tokens(&self) -> Option<Arc<Tokens>> {
        match self {
            Bound::Unix(..) => None,
            Bound::Tcp(_, _, tokens) => Some(tokens.clone()),
        }
    }
}

/// Bind the unix socket with mode 0600, in a directory only this user can enter when the
/// service makes it. A live socket at the path is refused; a stale one is replaced.
pub(crate) fn bind_unix(path: &Path) -> Result<Bound, ServeError> {
    let failed = |message: String| ServeError::Listen {
        address: path.display().to_string(),
        message,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| failed(format!("cannot create its directory: {e}")))?;
        }
        let owner = std::fs::metadata(dir)
            .map_err(|e| failed(format!("cannot read its directory: {e}")))?
            .uid();
        let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
        if me.is_some_and(|me| me != owner && owner != 0) {
            return Err(failed(format!(
                "its directory {} belongs to another user (uid {owner})",
                dir.display()
            )));
        }
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(failed(
                "another service is listening there; stop it or choose another --socket".into(),
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| failed(format!("cannot replace the stale socket: {e}")))?;
    }
    // bind() makes the socket with the umask's mode. It is made in a directory of its own
    // that only this user can enter, narrowed to 0600 there, and only then renamed to
    // its path: no other user can connect to it while its mode is wider.
    let parent = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let private = tempfile::Builder::new()
        .prefix(".skillhost-bind-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(parent)
        .map_err(|e| failed(format!("cannot make a private directory beside it: {e}")))?;
    let made = private.path().join("socket");
    let listener = UnixListener::bind(&made).map_err(|e| failed(e.to_string()))?;
    std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| failed(format!("cannot make the socket private: {e}")))?;
    std::fs::rename(&made, path)
        .map_err(|e| failed(format!("cannot move the socket into place: {e}")))?;
    Ok(Bound::Unix(listener, SocketFile(path.to_path_buf())))
}

/// Bind a TCP address; its callers must present one of `tokens`.
pub(crate) async fn bind_tcp(
    address: SocketAddr,
    tokens: Arc<Tokens>,
) -> Result<Bound, ServeError> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| ServeError::Listen {
            address: address.to_string(),
            message: e.to_string(),
        })?;
    let local = listener.local_addr().unwrap_or(address);
    Ok(Bound::Tcp(listener, local, tokens))
}

/// An accept loop on each listener, and the watcher of the connections they serve.
#[derive(Debug)]
pub(crate) struct Accepting {
    loops: Vec<(String, tokio::task::JoinHandle<Bound>)>,
    graceful: Arc<GracefulShutdown>,
    closing: CancellationToken,
}

impl Accepting {
    /// Accept on every listener of `bound`, serving each with the app `app_for` makes
    /// for it.
    pub(crate) fn start(
        bound: Vec<Bound>,
        header_timeout: Duration,
        connections: Connections,
        app_for: impl Fn(&Bound) -> Router,
    ) -> Accepting {
        let graceful = Arc::new(GracefulShutdown::new());
        let closing = CancellationToken::new();
        let loops = bound
            .into_iter()
            .map(|bound| {
                let endpoint = bound.endpoint();
                let app = app_for(&bound);
                let task = tokio::spawn(accept(
                    bound,
                    app,
                    header_timeout,
                    connections.clone(),
                    graceful.clone(),
                    closing.clone(),
                ));
                (endpoint, task)
            })
            .collect();
        Accepting {
            loops,
            graceful,
            closing,
        }
    }

    /// Stop accepting. The listeners come back (a loop that failed is named), with the
    /// watcher that tells the connections already accepted to finish and close.
    pub(crate) async fn stop(self) -> (Result<Vec<Bound>, ServeError>, Option<GracefulShutdown>) {
        self.closing.cancel();
        let mut bound = Ok(Vec::with_capacity(self.loops.len()));
        for (endpoint, task) in self.loops {
            match (task.await, &mut bound) {
                (Ok(listener), Ok(listeners)) => listeners.push(listener),
                (Err(e), Ok(_)) => {
                    bound = Err(ServeError::Listen {
                        address: endpoint,
                        message: format!("its accept loop failed: {e}"),
                    })
                }
                (_, Err(_)) => {}
            }
        }
        // The loops have ended, so this is the last reference.
        (bound, Arc::try_unwrap(self.graceful).ok())
    }
}

/// Accept connections until `stop`, serving each with `app`; the listener is given back
/// (a starting service hands it on to the running one).
async fn accept(
    bound: Bound,
    app: Router,
    header_timeout: Duration,
    connections: Connections,
    graceful: Arc<GracefulShutdown>,
    stop: CancellationToken,
) -> Bound {
    let mut refusals = Refusals::default();
    loop {
        let (io, peer) = tokio::select! {
            _ = stop.cancelled() => return bound,
            accepted = accept_one(&bound) => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, usually: wait rather than spin.
                    tracing::warn!(endpoint = %bound.endpoint(), "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Over a bound, the connection is closed unserved (dropped here).
        let admitted = match connections.admit(peer) {
            Ok(admitted) => admitted,
            Err(refused) => {
                refusals.note(&bound, peer, refused);
                continue;
            }
        };
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(true);
        let service = TowerToHyperService::new(app.clone());
        match io {
            Stream::Unix(io) => serve(graceful.watch(http.serve_connection(io, service)), admitted),
            Stream::Tcp(io) => serve(graceful.watch(http.serve_connection(io, service)), admitted),
        }
    }
}

/// Serve one connection; its place among the bounded connections is freed when it ends.
fn serve(
    connection: impl std::future::Future<Output = hyper::Result<()>> + Send + 'static,
    admitted: Admitted,
) {
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("connection ended: {e}");
        }
        drop(admitted);
    });
}

/// Connections closed over a bound, logged once per second at most: a flood of them
/// must not become a flood of log lines.
#[derive(Debug, Default)]
struct Refusals {
    since_last_log: u64,
    last_log: Option<std::time::Instant>,
}

impl Refusals {
    fn note(&mut self, bound: &Bound, peer: Peer, refused: super::connections::Refused) {
        self.since_last_log += 1;
        let due = self
            .last_log
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
        if due {
            tracing::warn!(endpoint = %bound.endpoint(), ?peer, closed = self.since_last_log, "closed connections unserved: {refused}");
            self.since_last_log = 0;
            self.last_log = Some(std::time::Instant::now());
        }
    }
}

enum Stream {
    Unix(TokioIo<tokio::net::UnixStream>),
    Tcp(TokioIo<tokio::net::TcpStream>),
}

async fn accept_one(bound: &Bound) -> std::io::Result<(Stream, Peer)> {
    match bound {
        Bound::Unix(listener, _) => {
            let (stream, _) = listener.accept().await?;
            Ok((Stream::Unix(TokioIo::new(stream)), Peer::Local))
        }
        Bound::Tcp(listener, _, _) => {
            let (stream, address) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            Ok((Stream::Tcp(TokioIo::new(stream)), Peer::Ip(address.ip())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_socket_is_private_even_under_a_permissive_umask_and_leaves_nothing_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let path = dir.path().join("s.sock");
        let bound = bind_unix(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let beside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(beside, vec![std::ffi::OsString::from("s.sock")]);
        assert!(tokio::net::UnixStream::connect(&path).await.is_ok());
        drop(bound);
        assert!(!path.exists(), "removed with the listener");
    }
}
