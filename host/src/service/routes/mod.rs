//! The API's routes, one module per resource, and the layers around them.

pub(crate) mod invocations;
pub(crate) mod invoke;
pub(crate) mod mcp;
pub(crate) mod probes;
pub(crate) mod sessions;
pub(crate) mod skills;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use skillhost_api::codes;
use tower_http::trace::{DefaultMakeSpan, DefaultOnFailure, TraceLayer};
use tracing::Level;

use super::http::error_response;
use super::listen::Bound;
use super::AppState;
use super::{auth, body_deadline};

/// The application served on `bound`: `/healthz` and `/readyz` open to every caller (for
/// orchestrators' probes), everything else behind the listener's caller check.
pub(crate) fn app(
    state: Arc<AppState>,
    bound: &Bound,
    max_body: usize,
    body_timeout: Duration,
) -> Router {
    let api = Router::new()
        .route("/v1/skills", get(skills::list))
        .route("/v1/skills/{name}", get(skills::show))
        .route("/v1/skills/{name}/actions/{action}", post(invoke::invoke))
        .route(
            "/v1/invocations/{id}",
            get(invocations::show).delete(invocations::delete),
        )
        .route("/v1/sessions", post(sessions::create).get(sessions::list))
        .route(
            "/v1/sessions/{id}",
            get(sessions::show).delete(sessions::delete),
        )
        .route("/v1/sessions/{id}/keepalive", post(sessions::keep_alive))
        .route("/v1/sessions/{id}/actions/{action}", post(sessions::invoke))
        .route("/v1/sessions/{id}/files", get(sessions::list_files))
        .route(
            "/v1/sessions/{id}/files/{*path}",
            get(sessions::get_file)
                .put(sessions::put_file)
                .delete(sessions::delete_file),
        )
        .route("/v1/tools", get(skills::tools))
        .route("/metrics", get(probes::metrics))
        .route("/openapi.json", get(probes::openapi))
        .merge(mcp::router(state.clone(), listener_of(bound)));
    // A 503 is what `/readyz` answers while the host starts or drains: the probes stay
    // outside the trace layer, which would warn of every one.
    let probes = Router::new()
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz));
    Router::new()
        .merge(guarded(api, bound))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            body_timeout,
            body_deadline::limit_body_time,
        ))
        .layer(axum::middleware::from_fn(utf8_path))
        // A 503 is an answer the service chose (a cancelled or failed call): worth a
        // warning, not an error, naming its method and route (the span, at the warning's
        // level, is what carries them).
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::WARN))
                .on_failure(DefaultOnFailure::new().level(Level::WARN)),
        )
        .merge(probes)
        .with_state(state)
}

/// What `bound` listens on, for `/mcp`'s `Host` check.
fn listener_of(bound: &Bound) -> mcp::Listener {
    match bound {
        Bound::Unix(..) => mcp::Listener::Unix,
        Bound::Tcp(_, address, _) => mcp::Listener::Tcp(*address),
    }
}

/// `api` behind the caller check of `bound`: a bearer token on TCP, the socket's owner on
/// the unix socket.
pub(crate) fn guarded<S: Clone + Send + Sync + 'static>(
    api: Router<S>,
    bound: &Bound,
) -> Router<S> {
    match bound.tokens() {
        Some(tokens) => api.layer(axum::middleware::from_fn_with_state(
            tokens,
            auth::require_token,
        )),
        None => api.layer(axum::middleware::from_fn(auth::local_caller)),
    }
}

/// A path whose percent-escapes do not decode to UTF-8 names nothing here: answered in
/// the service's JSON error shape before a route's extractor answers it in plain text.
async fn utf8_path(request: Request, next: Next) -> Response {
    if percent_decodes_to_utf8(request.uri().path()) {
        return next.run(request).await;
    }
    error_response(
        StatusCode::BAD_REQUEST,
        codes::INVALID_REQUEST,
        format!(
            "the path {} is not UTF-8 once its percent-escapes are decoded",
            request.uri().path()
        ),
    )
}

/// Whether `path`'s percent-escapes decode to UTF-8 (a `%` not followed by two hex
/// digits stands for itself).
fn percent_decodes_to_utf8(path: &str) -> bool {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&decoded).is_ok()
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route {method} {}; GET /openapi.json lists the API",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} does not take {method}; GET /openapi.json lists the API",
            uri.path()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked_after_percent_decoding() {
        for path in [
            "/v1/skills/echo",
            "/v1/skills/%C3%A9t%C3%A9",
            "/a%2",
            "/a%zz",
            "/%",
        ] {
            assert!(percent_decodes_to_utf8(path), "{path}");
        }
        for path in ["/v1/skills/%ff%fe", "/v1/skills/%C3", "/x/%80"] {
            assert!(!percent_decodes_to_utf8(path), "{path}");
        }
    }
}
