//! `skillhost invoke --server`: the same call sent to a running `skillhost serve`, over its
//! unix socket or TCP (with `SKILLHOST_TOKEN`). Progress arrives as server-sent events and
//! is printed as a local call prints it; the result is the service's own.

use std::path::PathBuf;
use std::str::FromStr;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use skillhost::api::{InvocationResult, InvokeRequest, Readiness, ServiceError};

/// Where a service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Server {
    /// `unix:PATH`.
    Unix(PathBuf),
    /// `http://HOST:PORT`.
    Tcp(String),
}

impl FromStr for Server {
    type Err = String;

    fn from_str(text: &str) -> Result<Server, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs the socket's path, e.g. unix:/run/skillhost.sock".into());
            }
            return Ok(Server::Unix(PathBuf::from(path)));
        }
        if let Some(authority) = text.strip_prefix("http://") {
            let authority = authority.trim_end_matches('/');
            if authority.is_empty() || authority.contains('/') {
                return Err(format!(
                    "{text:?}: give the service's address alone, e.g. http://127.0.0.1:8080"
                ));
            }
            return Ok(Server::Tcp(authority.to_string()));
        }
        Err(format!(
            "{text:?} is not a server address: use unix:PATH or http://HOST:PORT"
        ))
    }
}

impl Server {
    /// The local service's default unix socket.
    pub(crate) fn local() -> Server {
        Server::Unix(skillhost::service::default_socket())
    }
}

impl std::fmt::Display for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Server::Unix(path) => write!(f, "unix:{}", path.display()),
            Server::Tcp(authority) => write!(f, "http://{authority}"),
        }
    }
}

/// Why a remote call has no result.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RemoteError {
    /// The service could not be reached or the connection broke.
    #[error("cannot reach the service at {server}: {message}")]
    Unreachable { server: String, message: String },
    /// The service answered with an error of its own (not a result).
    #[error("the service at {server} answered {status}: {message} ({code})")]
    Service {
        server: String,
        status: StatusCode,
        code: String,
        message: String,
    },
    /// The service's answer could not be read.
    #[error(
        "the service at {server} answered {status} with a body that is not a result: {message}"
    )]
    Garbled {
        server: String,
        status: StatusCode,
        message: String,
    },
}

impl RemoteError {
    /// A refused token is the caller's to fix; anything else is the infrastructure's.
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            RemoteError::Service { status, .. } if status.is_client_error() => {
                skillhost::api::exit_code::USAGE
            }
            _ => skillhost::api::exit_code::INFRASTRUCTURE,
        }
    }
}

/// What a remote call is sent to: a skill, or a session (which knows its skill).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    /// `skill`'s action.
    Skill(&'a str),
    /// The action in session `id`.
    Session(&'a str),
}

/// Send the call and wait for its result, handing each progress frame to `on_progress`.
pub(crate) async fn invoke(
    server: &Server,
    target: Target<'_>,
    action: &str,
    request: &InvokeRequest,
    token: Option<&str>,
    on_progress: impl Fn(&skill_sdk::Progress),
) -> Result<InvocationResult, RemoteError> {
    let unreachable = |message: String| RemoteError::Unreachable {
        server: server.to_string(),
        message,
    };
    let body = serde_json::to_vec(request).map_err(|e| unreachable(e.to_string()))?;
    let path = match target {
        Target::Skill(skill) => format!(
            "/v1/skills/{}/actions/{}:invoke",
            encode(skill),
            encode(action)
        ),
        Target::Session(id) => format!(
            "/v1/sessions/{}/actions/{}:invoke",
            encode(id),
            encode(action)
        ),
    };
    let mut builder = Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "text/event-stream");
    builder = match server {
        Server::Unix(_) => builder.header(header::HOST, "skillhost"),
        Server::Tcp(authority) => builder.header(header::HOST, authority.as_str()),
    };
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = builder
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| unreachable(e.to_string()))?;
    let response = connect_and_send(server, request).await?;
    let status = response.status();
    let is_events = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if is_events {
        let mut events = response.into_body().into_data_stream().eventsource();
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| unreachable(format!("the event stream broke: {e}")))?;
            match event.event.as_str() {
                "progress" => {
                    if let Ok(progress) = serde_json::from_str(&event.data) {
                        on_progress(&progress);
                    }
                }
                "result" => {
                    return serde_json::from_str(&event.data).map_err(|e| RemoteError::Garbled {
                        server: server.to_string(),
                        status,
                        message: e.to_string(),
                    })
                }
                _ => {}
            }
        }
        return Err(unreachable(
            "the event stream ended before the result".into(),
        ));
    }
    let body = read_body(server, response).await?;
    match serde_json::from_slice::<InvocationResult>(&body) {
        Ok(result) => Ok(result),
        Err(_) => Err(refusal(server, status, &body)),
    }
}

/// One request with `body` (of `content_type` when given), the response unread.
pub(crate) async fn request(
    server: &Server,
    method: Method,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Bytes,
) -> Result<hyper::Response<hyper::body::Incoming>, RemoteError> {
    let host = match server {
        Server::Unix(_) => "skillhost",
        Server::Tcp(authority) => authority.as_str(),
    };
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, host);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(content_type) = content_type {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    let request = builder
        .body(Full::new(body))
        .map_err(|e| RemoteError::Unreachable {
            server: server.to_string(),
            message: e.to_string(),
        })?;
    connect_and_send(server, request).await
}

/// A request with an optional JSON body whose answer, when it succeeds, is JSON `T`
/// (`None` for an empty answer, e.g. 204); the service's error otherwise.
pub(crate) async fn json<T: serde::de::DeserializeOwned>(
    server: &Server,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Result<Option<T>, RemoteError> {
    let (content_type, bytes) = match body {
        Some(value) => (Some("application/json"), Bytes::from(value.to_string())),
        None => (None, Bytes::new()),
    };
    let response = request(server, method, path, token, content_type, bytes).await?;
    let status = response.status();
    let body = read_body(server, response).await?;
    if !status.is_success() {
        return Err(refusal(server, status, &body));
    }
    if body.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|_| garbled(server, status, &body))
}

/// A path of segments, each percent-encoded, after `prefix`.
pub(crate) fn path_of(prefix: &str, segments: &[&str]) -> String {
    let mut path = prefix.to_string();
    for segment in segments {
        path.push('/');
        path.push_str(&encode(segment));
    }
    path
}

/// The service's own error in a failed response.
pub(crate) async fn failure(
    server: &Server,
    response: hyper::Response<hyper::body::Incoming>,
) -> RemoteError {
    let status = response.status();
    match read_body(server, response).await {
        Ok(body) => refusal(server, status, &body),
        Err(e) => e,
    }
}

/// Whether the service is ready (`/readyz`), and what keeps it from being so.
pub(crate) async fn ready(server: &Server) -> Result<Readiness, RemoteError> {
    let (status, body) = get(server, "/readyz", None).await?;
    serde_json::from_slice(&body).map_err(|_| garbled(server, status, &body))
}

/// The service's `/metrics` text (on TCP it needs a token).
pub(crate) async fn metrics(server: &Server, token: Option<&str>) -> Result<String, RemoteError> {
    let (status, body) = get(server, "/metrics", token).await?;
    if status == StatusCode::OK {
        return Ok(String::from_utf8_lossy(&body).into_owned());
    }
    Err(refusal(server, status, &body))
}

/// The service's own error in `body`, or the body quoted when it is not one.
fn refusal(server: &Server, status: StatusCode, body: &[u8]) -> RemoteError {
    match serde_json::from_slice::<ServiceError>(body) {
        Ok(error) => RemoteError::Service {
            server: server.to_string(),
            status,
            code: error.error.code,
            message: error.error.message,
        },
        Err(_) => garbled(server, status, body),
    }
}

/// `GET path`, with the token when given: the status and the whole body.
async fn get(
    server: &Server,
    path: &str,
    token: Option<&str>,
) -> Result<(StatusCode, Bytes), RemoteError> {
    let host = match server {
        Server::Unix(_) => "skillhost",
        Server::Tcp(authority) => authority.as_str(),
    };
    let mut builder = Request::get(path).header(header::HOST, host);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = builder
        .body(Full::new(Bytes::new()))
        .map_err(|e| RemoteError::Unreachable {
            server: server.to_string(),
            message: e.to_string(),
        })?;
    let response = connect_and_send(server, request).await?;
    let status = response.status();
    Ok((status, read_body(server, response).await?))
}

/// A whole response body.
async fn read_body(
    server: &Server,
    response: hyper::Response<hyper::body::Incoming>,
) -> Result<Bytes, RemoteError> {
    Ok(response
        .into_body()
        .collect()
        .await
        .map_err(|e| RemoteError::Unreachable {
            server: server.to_string(),
            message: e.to_string(),
        })?
        .to_bytes())
}

/// An answer that is not what the route promises, quoted in part.
fn garbled(server: &Server, status: StatusCode, body: &[u8]) -> RemoteError {
    RemoteError::Garbled {
        server: server.to_string(),
        status,
        message: String::from_utf8_lossy(body).chars().take(200).collect(),
    }
}

/// One request on a new connection to `server`.
async fn connect_and_send(
    server: &Server,
    request: Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, RemoteError> {
    let unreachable = |message: String| RemoteError::Unreachable {
        server: server.to_string(),
        message,
    };
    match server {
        Server::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            send(TokioIo::new(stream), request).await
        }
        Server::Tcp(authority) => {
            let stream = tokio::net::TcpStream::connect(authority.as_str())
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            send(TokioIo::new(stream), request).await
        }
    }
    .map_err(|e| unreachable(e.to_string()))
}

async fn send<T>(
    io: T,
    request: Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, hyper::Error>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender.send_request(request).await
}

/// A path segment, percent-encoded where it is not a plain name character.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_are_unix_paths_or_http_authorities() {
        assert_eq!(
            "unix:/run/s.sock".parse::<Server>().unwrap(),
            Server::Unix("/run/s.sock".into())
        );
        assert_eq!(
            "http://127.0.0.1:8080/".parse::<Server>().unwrap(),
            Server::Tcp("127.0.0.1:8080".into())
        );
        assert!("https://x"
            .parse::<Server>()
            .unwrap_err()
            .contains("unix:PATH"));
        assert!("http://h/v1".parse::<Server>().is_err());
        assert!("unix:".parse::<Server>().is_err());
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(encode("echo"), "echo");
        assert_eq!(encode("../x/y"), "..%2Fx%2Fy");
    }
}
