//! `POST /v1/skills/{name}/actions/{action}:invoke`: one call, answered three ways: the
//! result as JSON (the default), progress events then the result (`Accept:
//! text/event-stream`), or 202 and a `Location` to poll (`Prefer: respond-async`).
//!
//! Every call runs as its own task, holding its gate slots. A synchronous or streaming
//! caller owns its task: when it disconnects, the task is aborted, and dropping the
//! invocation removes its container.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::Stream;
use serde_json::Value;
use skillhost_api::{
    codes, Invocation, InvocationPath, InvocationResult, InvocationState, InvokeRequest,
    SessionCall,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::service::body_deadline;
use crate::service::gate::{Overload, Pass, Ticket};
use crate::service::http::{
    error_response, result_response, result_response_as, shutting_down_response,
};
use crate::service::telemetry::OVERLOADED;
use crate::service::tokens::Caller;
use crate::service::AppState;
use crate::{InvokeOptions, ProgressCallback, Refusal};

/// The call, as the route and body named it.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) id: String,
    pub(crate) skill: String,
    pub(crate) action: String,
    /// The session it runs in, and the caller who owns that session.
    pub(crate) session: Option<(String, Arc<str>)>,
}

impl Call {
    /// A result for this call that ran nothing, with this host code.
    pub(crate) fn refused(
        &self,
        code: &'static str,
        message: impl Into<String>,
    ) -> InvocationResult {
        let mut result = InvocationResult::new(&self.id, &self.skill, &self.action);
        Refusal::new(code, message).apply_to(&mut result);
        if let Some((session, _)) = &self.session {
            result.path = InvocationPath::Session;
            result.session = Some(SessionCall::new(session, false));
        }
        result
    }
}

/// Invoke an action. Any finished run is 200, whatever its status; a refusal is
/// 400/404/413/415/422; overload is 429 with `Retry-After`; an infrastructure failure is
/// 503. The body of each is the invocation's result.
#[utoipa::path(post, path = "/v1/skills/{name}/actions/{action}:invoke", tag = "invoke",
    security(("bearer" = [])),
    params(
        ("name" = String, Path, description = "The skill"),
        ("action" = String, Path, description = "The action"),
        ("Accept" = Option<String>, Header, description = "`text/event-stream` for progress events (`progress`) and then the result (`result`)"),
        ("Prefer" = Option<String>, Header, description = "`respond-async` for 202 and a Location to poll"),
    ),
    request_body = InvokeRequest,
    responses(
        (status = 200, description = "The call ran, whatever its status: ok, skill_error, timeout, memory_limit, output_limit, protocol_error or crashed", body = InvocationResult,
            content(
                (InvocationResult = "application/json"),
                (String = "text/event-stream"),
            )),
        (status = 202, description = "Accepted (Prefer: respond-async); poll the Location", body = Invocation,
            headers(("Location" = String, description = "/v1/invocations/{id}"))),
        (status = 400, description = "Rejected: unreadable body or bad options", body = InvocationResult),
        (status = 404, description = "Rejected: unknown skill or action", body = InvocationResult),
        (status = 408, description = "Rejected: the body did not arrive within the service's body-timeout; the connection is closed", body = InvocationResult),
        (status = 413, description = "Rejected: the body or the arguments are too large", body = InvocationResult),
        (status = 415, description = "Rejected: the body is not application/json", body = InvocationResult),
        (status = 422, description = "Rejected: the arguments do not match the input schema", body = InvocationResult),
        (status = 429, description = "Overloaded: retry after the Retry-After seconds", body = InvocationResult,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Infrastructure error, or the service is shutting down (host_shutting_down: the call did not run; retry after the Retry-After seconds, on a new connection)", body = InvocationResult,
            headers(("Retry-After" = u64, description = "With host_shutting_down: seconds to wait, past the moment this process stops listening"))),
    ))]
pub(crate) async fn invoke(
    State(state): State<Arc<AppState>>,
    Path((skill, target)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Json<InvokeRequest>, JsonRejection>,
) -> Response {
    let Some(action) = target.strip_suffix(":invoke") else {
        return error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no route POST /v1/skills/{skill}/actions/{target}: invoke an action at /v1/skills/{{name}}/actions/{{action}}:invoke"
            ),
        );
    };
    let call = Call {
        id: uuid::Uuid::new_v4().to_string(),
        skill,
        action: action.to_string(),
        session: None,
    };
    handle(&state, call, &caller, &headers, body).await
}

/// Serve `call` (a plain one, or one in a session): refused while draining or for an
/// unreadable body, then admitted through the gate and answered as the headers ask.
pub(crate) async fn handle(
    state: &Arc<AppState>,
    call: Call,
    caller: &Caller,
    headers: &HeaderMap,
    body: Result<Json<InvokeRequest>, JsonRejection>,
) -> Response {
    let retry_after = state.gate.retry_after();
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        let result = call.refused(
            codes::HOST_SHUTTING_DOWN,
            "the service is shutting down and takes no new calls; this one did not run",
        );
        counted(state, &result);
        return shutting_down_response(result, state.drain_notice);
    }
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => {
            if let Some(deadline) = body_deadline::deadline_in(&rejection) {
                let result = call.refused(codes::INVALID_REQUEST, deadline.to_string());
                counted(state, &result);
                let mut response =
                    result_response_as(StatusCode::REQUEST_TIMEOUT, result, retry_after);
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return response;
            }
            // 415 for the content type, 413 for the size, 400 for everything else the
            // reader refused (axum says 422 for JSON of the wrong shape; to the caller
            // that is an unreadable request, not arguments that fail their schema).
            let status = match rejection.status() {
                status @ (StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::PAYLOAD_TOO_LARGE) => {
                    status
                }
                _ => StatusCode::BAD_REQUEST,
            };
            let result = if status == StatusCode::PAYLOAD_TOO_LARGE {
                call.refused(
                    codes::INPUT_TOO_LARGE,
                    format!(
                        "the body is larger than this service accepts ({} bytes, its max-body)",
                        state.max_body
                    ),
                )
            } else {
                call.refused(codes::INVALID_REQUEST, body_problem(&rejection))
            };
            counted(state, &result);
            return result_response_as(status, result, retry_after);
        }
    };
    let options = InvokeOptions {
        timeout: request.timeout_ms.map(Duration::from_millis),
        env: request.env,
        id: Some(call.id.clone()),
        caller: Some(caller.name.to_string()),
        ..InvokeOptions::default()
    };
    let ticket = match state.gate.enter(&call.skill, caller.quota.as_ref()) {
        Ok(ticket) => ticket,
        Err(overload) => return overloaded(state, &call, overload),
    };
    if prefers(
        headers,
        header::HeaderName::from_static("prefer"),
        "respond-async",
    ) {
        return start_async(state, ticket, call, request.args, options);
    }
    let pass = match ticket.wait().await {
        Ok(pass) => pass,
        Err(overload) => return overloaded(state, &call, overload),
    };
    if prefers(headers, header::ACCEPT, "text/event-stream") {
        return stream(state, pass, call, request.args, options);
    }
    let task = OwnedCall(spawn_call(state, pass, call.clone(), request.args, options));
    let result = task.finish(&call).await;
    result_response(result, retry_after)
}

/// Run `call` as a synchronous invoke runs (refused while draining, admitted through the
/// gate with the caller's quota, run as a task owned by this future), for a front end
/// whose answer is not an HTTP response: MCP's `tools/call`. Dropping the future removes
/// the call's container.
pub(crate) async fn run_admitted(
    state: &Arc<AppState>,
    call: Call,
    caller: &Caller,
    args: Value,
    mut options: InvokeOptions,
) -> InvocationResult {
    options.caller = Some(caller.name.to_string());
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        let result = call.refused(
            codes::HOST_SHUTTING_DOWN,
            "the service is shutting down and takes no new calls; this one did not run",
        );
        counted(state, &result);
        return result;
    }
    let admitted = match state.gate.enter(&call.skill, caller.quota.as_ref()) {
        Ok(ticket) => ticket.wait().await,
        Err(overload) => Err(overload),
    };
    match admitted {
        Ok(pass) => {
            OwnedCall(spawn_call(state, pass, call.clone(), args, options))
                .finish(&call)
                .await
        }
        Err(overload) => {
            metrics::counter!(OVERLOADED, "reason" => overload.as_str()).increment(1);
            overload_result(state, &call, overload)
        }
    }
}

/// Count a call the service refused before it reached the host (which counts every call
/// it runs), as the host counts its own refusals: `skillhost_invocations_total` with
/// status `rejected` (or `infrastructure_error` while draining) and
/// `skillhost_rejected_total` by code.
fn counted(state: &AppState, result: &InvocationResult) {
    crate::invoke::telemetry::record(state.host.catalog(), result, Duration::ZERO);
}

/// What was wrong with a body the JSON reader refused, for the caller.
fn body_problem(rejection: &JsonRejection) -> String {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "the body must be JSON sent with Content-Type: application/json".into()
        }
        other => format!(
            "the body is not a valid invoke request ({{\"args\": ..., \"timeout_ms\": ..., \"env\": {{...}}}}): {}",
            other.body_text()
        ),
    }
}

/// Whether a header asks for `value` (`Prefer: respond-async`, `Accept: text/event-stream`).
fn prefers(headers: &HeaderMap, name: header::HeaderName, value: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').any(|part| {
                part.split(';')
                    .next()
                    .is_some_and(|p| p.trim().eq_ignore_ascii_case(value))
            })
        })
    })
}

/// 429 with the reason, counted.
fn overloaded(state: &AppState, call: &Call, overload: Overload) -> Response {
    metrics::counter!(OVERLOADED, "reason" => overload.as_str()).increment(1);
    let retry_after = state.gate.retry_after();
    result_response(overload_result(state, call, overload), retry_after)
}

fn overload_result(state: &AppState, call: &Call, overload: Overload) -> InvocationResult {
    let message = match overload {
        Overload::QueueFull => format!(
            "the service is at its limit ({} calls running, {} waiting, the queue is full); retry after {}s",
            state.gate.in_flight(),
            state.gate.queued(),
            state.gate.retry_after()
        ),
        Overload::WaitedTooLong => format!(
            "no slot became free while the call waited in the queue; retry after {}s",
            state.gate.retry_after()
        ),
        Overload::TokenQuota => "this token runs as many calls as its max-in-flight allows; retry when one ends".to_string(),
    };
    call.refused(codes::OVERLOADED, message)
}

/// Run the call as its own task, holding `pass` until it ends. The service's cancel
/// (grace over, or a second signal) ends it with `cancelled`.
fn spawn_call(
    state: &Arc<AppState>,
    pass: Pass,
    call: Call,
    args: Value,
    options: InvokeOptions,
) -> JoinHandle<InvocationResult> {
    let state = state.clone();
    state
        .tasks
        .clone()
        .spawn(run_call(state, pass, call, args, options))
}

async fn run_call(
    state: Arc<AppState>,
    pass: Pass,
    call: Call,
    args: Value,
    options: InvokeOptions,
) -> InvocationResult {
    let _pass = pass;
    let host = &state.host;
    let run = async {
        match &call.session {
            None => {
                host.invoke_with(&call.skill, &call.action, args, options)
                    .await
            }
            Some((id, owner)) => match host.session_as(Some(owner), id) {
                Ok(session) => session.invoke_with(&call.action, args, options).await,
                Err(refusal) => call.refused(refusal.code, refusal.message),
            },
        }
    };
    tokio::select! {
        result = run => result,
        _ = state.cancel.cancelled() => call.refused(
            codes::CANCELLED,
            "the service stopped before the call finished; its container was removed",
        ),
    }
}

/// A call task owned by its caller: aborted, and its container removed, when the caller
/// goes away before it ends.
struct OwnedCall(JoinHandle<InvocationResult>);

impl Drop for OwnedCall {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl OwnedCall {
    /// The task's result; a panic in it is a host error, not a lost answer.
    async fn finish(mut self, call: &Call) -> InvocationResult {
        match (&mut self.0).await {
            Ok(result) => result,
            Err(e) => call.refused(
                codes::HOST_ERROR,
                format!("the invocation task failed: {e}"),
            ),
        }
    }
}

/// Progress frames as `progress` events, then the result as a `result` event.
fn stream(
    state: &Arc<AppState>,
    pass: Pass,
    call: Call,
    args: Value,
    mut options: InvokeOptions,
) -> Response {
    let (sender, receiver) = mpsc::unbounded_channel::<Event>();
    let on_progress: ProgressCallback = Arc::new(move |progress: &skill_sdk::Progress| {
        if let Ok(event) = Event::default().event("progress").json_data(progress) {
            let _ = sender.send(event);
        }
    });
    options.on_progress = Some(on_progress);
    let task = OwnedCall(spawn_call(state, pass, call.clone(), args, options));
    Sse::new(events(receiver, task, call))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(5)))
        .into_response()
}

fn events(
    receiver: mpsc::UnboundedReceiver<Event>,
    task: OwnedCall,
    call: Call,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(
        (receiver, Some(task), call),
        |(mut receiver, task, call)| async move {
            // The sender lives in the call's options, so the channel closes when the call
            // ends; the result follows the last progress event.
            if let Some(event) = receiver.recv().await {
                return Some((Ok(event), (receiver, task, call)));
            }
            let result = task?.finish(&call).await;
            let event = Event::default()
                .event("result")
                .json_data(&result)
                .unwrap_or_else(|e| Event::default().event("result").data(e.to_string()));
            Some((Ok(event), (receiver, None, call)))
        },
    )
}

/// 202 now; the call waits for its slot and runs as a task the store can cancel.
fn start_async(
    state: &Arc<AppState>,
    ticket: Ticket,
    call: Call,
    args: Value,
    options: InvokeOptions,
) -> Response {
    if state.invocations.reserve().is_err() {
        let result = call.refused(
            codes::OVERLOADED,
            "the service remembers as many running asynchronous invocations as it may; retry when one ends",
        );
        metrics::counter!(OVERLOADED, "reason" => "async_full").increment(1);
        return result_response(result, state.gate.retry_after());
    }
    let (registered, is_registered) = tokio::sync::oneshot::channel::<()>();
    let task_state = state.clone();
    let task_call = call.clone();
    let task = state.tasks.spawn(async move {
        // The store must know the task before its result can be recorded.
        let _ = is_registered.await;
        let result = match ticket.wait().await {
            Ok(pass) => run_call(task_state.clone(), pass, task_call, args, options).await,
            Err(overload) => overload_result(&task_state, &task_call, overload),
        };
        task_state.invocations.finished(result);
    });
    state
        .invocations
        .started(&call.id, &call.skill, &call.action, task.abort_handle());
    let _ = registered.send(());
    let location = format!("/v1/invocations/{}", call.id);
    let body = Invocation::new(
        &call.id,
        &call.skill,
        &call.action,
        InvocationState::Running,
        None,
    );
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preferences_are_found_among_several_values_and_parameters() {
        let mut headers = HeaderMap::new();
        headers.insert("prefer", "wait=10, respond-async".parse().unwrap());
        headers.insert(header::ACCEPT, "text/event-stream;q=1".parse().unwrap());
        assert!(prefers(
            &headers,
            header::HeaderName::from_static("prefer"),
            "respond-async"
        ));
        assert!(prefers(&headers, header::ACCEPT, "text/event-stream"));
        headers.insert(header::ACCEPT, "application/json".parse().unwrap());
        assert!(!prefers(&headers, header::ACCEPT, "text/event-stream"));
    }
}
