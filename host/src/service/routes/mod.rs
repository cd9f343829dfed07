//! The API's routes, one module per resource, and the layers around them.

pub(crate) mod invocations;
pub(crate) mod invoke;
pub(crate) mod probes;
pub(crate) mod skills;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

use super::auth;
use super::http::error_response;
use super::listen::Bound;
use super::AppState;

/// The application served on `bound`: `/healthz` and `/readyz` open to every caller (for
/// orchestrators' probes), everything else behind the listener's caller check.
pub(crate) fn app(state: Arc<AppState>, bound: &Bound, max_body: usize) -> Router {
    let api = Router::new()
        .route("/v1/skills", get(skills::list))
        .route("/v1/skills/{name}", get(skills::show))
        .route("/v1/skills/{name}/actions/{action}", post(invoke::invoke))
        .route(
            "/v1/invocations/{id}",
            get(invocations::show).delete(invocations::delete),
        )
        .route("/metrics", get(probes::metrics))
        .route("/openapi.json", get(probes::openapi));
    Router::new()
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .merge(guarded(api, bound))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        // A 503 is an answer the service chose (a cancelled or failed call): worth a
        // warning, not an error.
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(Level::WARN)))
        .with_state(state)
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
