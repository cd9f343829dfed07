//! `/healthz`, `/readyz`, `/metrics` and `/openapi.json`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use skillhost_api::{Readiness, ServiceError};

use crate::service::http::error_response;
use crate::service::{openapi, telemetry, AppState};

/// Alive: the process answers. Says nothing of the engine.
#[utoipa::path(get, path = "/healthz", tag = "probes",
    responses((status = 200, description = "The service process is alive")))]
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"alive": true}))
}

/// Ready for calls: the engine answers, the images a non-building host needs are present,
/// and the service is not draining.
#[utoipa::path(get, path = "/readyz", tag = "probes", responses(
    (status = 200, description = "Ready", body = Readiness),
    (status = 503, description = "Not ready, with the reasons", body = Readiness)))]
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let readiness = Readiness::new(state.problems().await);
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}

/// Prometheus metrics, in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "probes", security(("bearer" = [])), responses(
    (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
    (status = 503, description = "Another metrics recorder was installed first", body = ServiceError)))]
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    match telemetry::render(&state) {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics_unavailable",
            "this process installed another metrics recorder before the service started",
        ),
    }
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "probes", security(("bearer" = [])),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub(crate) async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::document(),
    )
        .into_response()
}
