//! `/mcp`: the MCP server over Streamable HTTP (see docs/mcp.md), behind the listener's
//! caller check like `/v1`. Its calls go through the same gate and token quotas as
//! `/v1`'s, and the skillhost sessions an MCP session opens belong to its caller.
//!
//! The transport's security advice is kept: the `Host` header must name this service
//! (DNS rebinding), a browser's `Origin` must be one the operator allowed
//! (`mcp-allowed-origins`; none by default), and an MCP session answers only the caller
//! who made it: another token's requests with its `Mcp-Session-Id` are 404, as an
//! unknown session's are.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use rmcp::model::{Extensions, Tool};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::ErrorData;
use skillhost_api::InvocationResult;

use super::invoke::{run_admitted, Call};
use crate::host::Host;
use crate::mcp::server::{self, Front, McpServer, ToolCall};
use crate::service::tokens::Caller;
use crate::service::AppState;
use crate::sync::lock;

/// An MCP session no request touched for this long ends, and its skillhost sessions
/// with it (each of which also ends at its own idle timeout).
const MCP_SESSION_IDLE: Duration = Duration::from_secs(30 * 60);

const SESSION_HEADER: &str = "mcp-session-id";

/// Where the listener takes connections, for the `Host` check.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Listener {
    Unix,
    Tcp(SocketAddr),
}

/// The `/mcp` route for one listener.
pub(crate) fn router<S: Clone + Send + Sync + 'static>(
    state: Arc<AppState>,
    listener: Listener,
) -> Router<S> {
    let tools: Arc<[Tool]> = server::tools(&state.host).into();
    let mut manager = LocalSessionManager::default();
    manager.session_config.keep_alive = Some(MCP_SESSION_IDLE);
    let manager = Arc::new(manager);
    let front = Arc::new(ServiceFront {
        state: state.clone(),
    });
    let config = transport_config(listener, &state.mcp_origins, state.mcp_streams.clone())
        .with_max_request_body_bytes(state.max_body);
    let service = StreamableHttpService::new(
        move || Ok(McpServer::new(front.clone(), tools.clone(), false)),
        manager.clone(),
        config,
    );
    let owners = Arc::new(Owners {
        manager,
        by_session: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(owners, owned_sessions))
}

/// The transport's checks for `listener`: `Host` must be a loopback name, or the address
/// the TCP listener is bound to (no check when it is bound to every interface, where
/// tokens guard it and the names are the operator's); `Origin`, when sent, must be one of
/// `origins`.
fn transport_config(
    listener: Listener,
    origins: &[String],
    streams: tokio_util::sync::CancellationToken,
) -> StreamableHttpServerConfig {
    let config = StreamableHttpServerConfig::default()
        .with_cancellation_token(streams)
        .with_allowed_origins(origins.iter().cloned())
        .enforce_origin_validation();
    match listener {
        Listener::Unix => config,
        Listener::Tcp(address) if address.ip().is_unspecified() => config.disable_allowed_hosts(),
        Listener::Tcp(address) => {
            let ip = match address {
                SocketAddr::V4(v4) => v4.ip().to_string(),
                SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
            };
            config.with_allowed_hosts([
                "localhost".to_string(),
                "127.0.0.1".to_string(),
                "::1".to_string(),
                "[::1]".to_string(),
                ip.clone(),
                format!("{ip}:{}", address.port()),
            ])
        }
    }
}

/// Which caller made each MCP session.
#[derive(Debug)]
struct Owners {
    manager: Arc<LocalSessionManager>,
    by_session: Mutex<HashMap<String, Arc<str>>>,
}

/// Let a request with an `Mcp-Session-Id` through only from the session's own caller;
/// record the caller of a session the response makes.
async fn owned_sessions(
    State(owners): State<Arc<Owners>>,
    Extension(caller): Extension<Caller>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(id) = request.headers().get(SESSION_HEADER) {
        let id = id.to_str().unwrap_or_default();
        let theirs = lock(&owners.by_session)
            .get(id)
            .is_some_and(|owner| *owner != caller.name);
        if theirs {
            return (StatusCode::NOT_FOUND, "Not Found: Session not found").into_response();
        }
        return next.run(request).await;
    }
    let response = next.run(request).await;
    if let Some(id) = response.headers().get(SESSION_HEADER).and_then(header_text) {
        // Forget the sessions the manager ended (idle, deleted) before recording one.
        let live: HashSet<String> = owners
            .manager
            .sessions
            .read()
            .await
            .keys()
            .map(|id| id.to_string())
            .collect();
        let mut by_session = lock(&owners.by_session);
        by_session.retain(|id, _| live.contains(id));
        by_session.insert(id, caller.name.clone());
    }
    response
}

fn header_text(value: &HeaderValue) -> Option<String> {
    value.to_str().ok().map(str::to_string)
}

/// The service as an MCP front end: calls of the request's caller, through the gate.
#[derive(Debug)]
struct ServiceFront {
    state: Arc<AppState>,
}

impl ServiceFront {
    /// The caller the listener's check put on the HTTP request.
    fn caller(extensions: &Extensions) -> Option<&Caller> {
        extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Caller>())
    }
}

impl Front for ServiceFront {
    fn host(&self) -> &Arc<Host> {
        &self.state.host
    }

    fn owner(&self, extensions: &Extensions) -> Result<Option<String>, ErrorData> {
        match Self::caller(extensions) {
            Some(caller) => Ok(Some(caller.name.to_string())),
            None => Err(ErrorData::internal_error(
                "the request carries no caller: the listener's caller check did not run",
                None,
            )),
        }
    }

    async fn run(
        &self,
        extensions: &Extensions,
        owner: Option<String>,
        call: ToolCall,
    ) -> InvocationResult {
        let caller = Self::caller(extensions)
            .cloned()
            .unwrap_or_else(Caller::local);
        let id = call
            .options
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let session = call
            .session
            .map(|session| (session, Arc::from(owner.unwrap_or_default())));
        let routed = Call {
            id,
            skill: call.skill,
            action: call.action,
            session,
        };
        run_admitted(&self.state, routed, &caller, call.args, call.options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_check_names_loopback_and_the_bound_address_unless_bound_to_all() {
        let token = tokio_util::sync::CancellationToken::new();
        let unix = transport_config(Listener::Unix, &[], token.clone());
        assert!(unix.allowed_hosts.contains(&"localhost".to_string()));
        assert!(unix.allowed_origins.is_empty());

        let bound = transport_config(
            Listener::Tcp("10.0.0.5:8080".parse().unwrap()),
            &["https://app.example.com:443".to_string()],
            token.clone(),
        );
        for host in ["127.0.0.1", "10.0.0.5", "10.0.0.5:8080"] {
            assert!(bound.allowed_hosts.contains(&host.to_string()), "{host}");
        }
        assert_eq!(bound.allowed_origins, ["https://app.example.com:443"]);

        let all = transport_config(Listener::Tcp("0.0.0.0:8080".parse().unwrap()), &[], token);
        assert!(all.allowed_hosts.is_empty(), "no Host check");
    }
}
