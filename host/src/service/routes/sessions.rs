//! `/v1/sessions`: make, list, keep alive and end sessions; invoke in one; and move its
//! workspace's files. A session belongs to the caller (token) that made it: to every
//! other, it is 404, as one that never existed.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::TryStreamExt;
use skillhost_api::{codes, FileList, InvokeRequest, SessionInfo, SessionList, SessionRequest};
use tokio_util::io::StreamReader;

use super::invoke::{self, Call};
use crate::service::http::{error_response, refusal_response, result_response};
use crate::service::tokens::Caller;
use crate::service::AppState;
use crate::session::FileError;

/// The header that carries a downloaded file's permission bits, in octal.
pub(crate) const FILE_MODE: &str = "x-file-mode";

/// Make a session of a skill whose manifest declares `run.session`.
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions",
    security(("bearer" = [])),
    request_body = SessionRequest,
    responses(
        (status = 201, description = "Made; its workspace is empty", body = SessionInfo,
            headers(("Location" = String, description = "/v1/sessions/{id}"))),
        (status = 400, description = "invalid_session (no run.session, a timeout above the ceiling, a variable not in run.env) or an unreadable body", body = skillhost_api::ServiceError),
        (status = 404, description = "unknown_skill", body = skillhost_api::ServiceError),
        (status = 429, description = "too_many_sessions: the host's or this token's limit", body = skillhost_api::ServiceError,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The engine failed, or the service is shutting down", body = skillhost_api::ServiceError),
    ))]
pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<SessionRequest>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                codes::INVALID_REQUEST,
                format!(
                    "the body is not a valid session request ({{\"skill\": ..., \"idle_timeout_ms\"?, \"max_lifetime_ms\"?, \"env\"?}}): {}",
                    rejection.body_text()
                ),
            )
        }
    };
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::HOST_SHUTTING_DOWN,
            "the service is shutting down and makes no sessions",
        );
    }
    match state
        .host
        .open_session_as(Some(&caller.name), request)
        .await
    {
        Ok(info) => {
            let location = format!("/v1/sessions/{}", info.id);
            (
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                Json(info),
            )
                .into_response()
        }
        Err(refusal) => refusal_response(&refusal, state.gate.retry_after()),
    }
}

/// The caller's open sessions, oldest first.
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions",
    security(("bearer" = [])),
    responses((status = 200, description = "The caller's sessions", body = SessionList)))]
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Json<SessionList> {
    Json(SessionList::new(state.host.sessions(Some(&caller.name))))
}

/// One of the caller's sessions.
#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The session")),
    responses(
        (status = 200, description = "The session", body = SessionInfo),
        (status = 404, description = "unknown_session", body = skillhost_api::ServiceError),
    ))]
pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    match state
        .host
        .session_as(Some(&caller.name), &id)
        .and_then(|s| s.info())
    {
        Ok(info) => Json(info).into_response(),
        Err(refusal) => refusal_response(&refusal, 0),
    }
}

/// Reset the session's idle clock.
#[utoipa::path(post, path = "/v1/sessions/{id}/keepalive", tag = "sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The session")),
    responses(
        (status = 200, description = "Its new deadlines", body = SessionInfo),
        (status = 404, description = "unknown_session", body = skillhost_api::ServiceError),
    ))]
pub(crate) async fn keep_alive(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    match state
        .host
        .session_as(Some(&caller.name), &id)
        .and_then(|s| s.keep_alive())
    {
        Ok(info) => Json(info).into_response(),
        Err(refusal) => refusal_response(&refusal, 0),
    }
}

/// End the session: its containers and its workspace are removed.
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The session")),
    responses(
        (status = 204, description = "Ended"),
        (status = 404, description = "unknown_session", body = skillhost_api::ServiceError),
    ))]
pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let ended = match state.host.session_as(Some(&caller.name), &id) {
        Ok(session) => session.close().await,
        Err(refusal) => Err(refusal),
    };
    match ended {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(refusal) => refusal_response(&refusal, 0),
    }
}

/// Invoke an action in the session: the body and answers of a plain invoke (sync, SSE
/// with `Accept: text/event-stream`, or 202 with `Prefer: respond-async`); the result
/// names the session.
#[utoipa::path(post, path = "/v1/sessions/{id}/actions/{action}:invoke", tag = "sessions",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The session"),
        ("action" = String, Path, description = "The action"),
    ),
    request_body = InvokeRequest,
    responses(
        (status = 200, description = "The call ran, whatever its status", body = skillhost_api::InvocationResult),
        (status = 202, description = "Accepted (Prefer: respond-async); poll the Location", body = skillhost_api::Invocation),
        (status = 400, description = "Rejected: an unreadable body, or env in a session call (invalid_session)", body = skillhost_api::InvocationResult),
        (status = 404, description = "unknown_session, or an unknown action", body = skillhost_api::InvocationResult),
        (status = 409, description = "session_state_reset: the process session's process was lost before this call (nothing ran); call again", body = skillhost_api::InvocationResult),
        (status = 422, description = "The arguments do not match the input schema", body = skillhost_api::InvocationResult),
        (status = 429, description = "Overloaded", body = skillhost_api::InvocationResult),
        (status = 503, description = "Infrastructure error", body = skillhost_api::InvocationResult),
    ))]
pub(crate) async fn invoke(
    State(state): State<Arc<AppState>>,
    Path((id, target)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Json<InvokeRequest>, JsonRejection>,
) -> Response {
    let Some(action) = target.strip_suffix(":invoke") else {
        return error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route POST /v1/sessions/{id}/actions/{target}: invoke at /v1/sessions/{{id}}/actions/{{action}}:invoke"),
        );
    };
    let mut call = Call {
        id: uuid::Uuid::new_v4().to_string(),
        skill: String::new(),
        action: action.to_string(),
        session: Some((id.clone(), caller.name.clone())),
    };
    match state
        .host
        .session_as(Some(&caller.name), &id)
        .and_then(|s| s.info())
    {
        Ok(info) => call.skill = info.skill,
        Err(refusal) => {
            let result = call.refused(refusal.code, refusal.message);
            return result_response(result, 0);
        }
    }
    invoke::handle(&state, call, &caller, &headers, body).await
}

/// A file operation's failure as its response.
fn file_error(error: &FileError) -> Response {
    let status = codes::files::ALL
        .iter()
        .find(|(code, _)| *code == error.code)
        .and_then(|(_, status)| StatusCode::from_u16(*status).ok())
        .unwrap_or(match error.code {
            codes::UNKNOWN_SESSION => StatusCode::NOT_FOUND,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        });
    error_response(status, error.code, error.message.clone())
}

/// Write a file of the session's workspace from the request's body (any bytes), made
/// whole before it replaces what was there.
#[utoipa::path(put, path = "/v1/sessions/{id}/files/{path}", tag = "sessions",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The session"),
        ("path" = String, Path, description = "Relative to the workspace, `/`-separated"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 204, description = "Written"),
        (status = 400, description = "invalid_path", body = skillhost_api::ServiceError),
        (status = 404, description = "unknown_session", body = skillhost_api::ServiceError),
        (status = 409, description = "not_a_file: the path passes through a symbolic link or names a directory", body = skillhost_api::ServiceError),
        (status = 413, description = "file_too_large: above the service's max-file", body = skillhost_api::ServiceError),
        (status = 507, description = "workspace_full", body = skillhost_api::ServiceError),
    ))]
pub(crate) async fn put_file(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path((id, path)): Path<(String, String)>,
    body: Body,
) -> Response {
    let session = match state.host.session_as(Some(&caller.name), &id) {
        Ok(session) => session,
        Err(refusal) => return refusal_response(&refusal, 0),
    };
    let stream = body
        .into_data_stream()
        .map_err(|e| std::io::Error::other(e.to_string()));
    match session.write_file(&path, StreamReader::new(stream)).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => file_error(&error),
    }
}

/// Download a regular file of the session's workspace, streamed; its permission bits are
/// in `x-file-mode`.
#[utoipa::path(get, path = "/v1/sessions/{id}/files/{path}", tag = "sessions",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The session"),
        ("path" = String, Path, description = "Relative to the workspace, `/`-separated"),
    ),
    responses(
        (status = 200, description = "The file's bytes", content_type = "application/octet-stream", body = Vec<u8>,
            headers(("x-file-mode" = String, description = "Permission bits, octal, e.g. 0644"))),
        (status = 400, description = "invalid_path", body = skillhost_api::ServiceError),
        (status = 404, description = "unknown_session or file_not_found", body = skillhost_api::ServiceError),
        (status = 409, description = "not_a_file (a link, FIFO, device, directory or hard-linked file) or file_unreadable", body = skillhost_api::ServiceError),
        (status = 413, description = "file_too_large", body = skillhost_api::ServiceError),
    ))]
pub(crate) async fn get_file(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path((id, path)): Path<(String, String)>,
) -> Response {
    let session = match state.host.session_as(Some(&caller.name), &id) {
        Ok(session) => session,
        Err(refusal) => return refusal_response(&refusal, 0),
    };
    match session.read_file(&path).await {
        Ok(download) => {
            let mut response = Body::from_stream(download.body).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(download.size));
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            if let Ok(mode) = HeaderValue::from_str(&format!("{:04o}", download.mode)) {
                headers.insert(FILE_MODE, mode);
            }
            response
        }
        Err(error) => file_error(&error),
    }
}

/// Remove a file, a link or an empty directory of the session's workspace.
#[utoipa::path(delete, path = "/v1/sessions/{id}/files/{path}", tag = "sessions",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The session"),
        ("path" = String, Path, description = "Relative to the workspace, `/`-separated"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "unknown_session or file_not_found", body = skillhost_api::ServiceError),
        (status = 409, description = "directory_not_empty", body = skillhost_api::ServiceError),
    ))]
pub(crate) async fn delete_file(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path((id, path)): Path<(String, String)>,
) -> Response {
    let session = match state.host.session_as(Some(&caller.name), &id) {
        Ok(session) => session,
        Err(refusal) => return refusal_response(&refusal, 0),
    };
    match session.delete_file(&path).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => file_error(&error),
    }
}

/// Every entry of the session's workspace: files, directories, and what is listed but
/// never read (links, FIFOs, sockets, devices).
#[utoipa::path(get, path = "/v1/sessions/{id}/files", tag = "sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The session")),
    responses(
        (status = 200, description = "The listing", body = FileList),
        (status = 404, description = "unknown_session", body = skillhost_api::ServiceError),
    ))]
pub(crate) async fn list_files(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let session = match state.host.session_as(Some(&caller.name), &id) {
        Ok(session) => session,
        Err(refusal) => return refusal_response(&refusal, 0),
    };
    match session.list_files().await {
        Ok(listing) => Json(listing).into_response(),
        Err(error) => file_error(&error),
    }
}
