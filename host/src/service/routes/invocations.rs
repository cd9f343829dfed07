//! `GET` and `DELETE /v1/invocations/{id}`: asynchronous invocations.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use skillhost_api::{Invocation, ServiceError};

use crate::service::http::error_response;
use crate::service::AppState;

/// Where an asynchronous invocation stands, with its result once finished.
#[utoipa::path(get, path = "/v1/invocations/{id}", tag = "invocations", security(("bearer" = [])),
    params(("id" = String, Path, description = "The id from the 202's Location")),
    responses(
        (status = 200, description = "Running, finished or cancelled", body = Invocation),
        (status = 404, description = "Unknown, or forgotten (results are kept for a bounded time and count)", body = ServiceError)))]
pub(crate) async fn show(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match state.invocations.get(&id) {
        Some(invocation) => Json(invocation).into_response(),
        None => missing(&id),
    }
}

/// Cancel a running invocation (its container is removed), or forget a finished one.
#[utoipa::path(delete, path = "/v1/invocations/{id}", tag = "invocations", security(("bearer" = [])),
    params(("id" = String, Path, description = "The id from the 202's Location")),
    responses(
        (status = 200, description = "Its state after the delete: cancelled, or finished and now forgotten", body = Invocation),
        (status = 404, description = "Unknown, or already forgotten", body = ServiceError)))]
pub(crate) async fn delete(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match state.invocations.delete(&id) {
        Some(invocation) => Json(invocation).into_response(),
        None => missing(&id),
    }
}

fn missing(id: &str) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "no_such_invocation",
        format!("no invocation {id:?}: unknown, or its result expired"),
    )
}
