//! How results and service errors become HTTP responses. The mapping from a result to an
//! HTTP status is pure and is the contract `docs/service.md` documents.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use skillhost_api::{codes, InvocationResult, ServiceError, Status};

/// The HTTP status of a result: every finished run is 200, whatever its status; a
/// refusal is 4xx by what was wrong; overload 429; any other infrastructure failure 503.
pub(crate) fn status_of(result: &InvocationResult) -> StatusCode {
    let code = result.error.as_ref().map(|e| e.code.as_str());
    status_for(result.status, code)
}

/// The HTTP status of an outcome with `status` and `code`.
fn status_for(status: Status, code: Option<&str>) -> StatusCode {
    match (status, code) {
        (
            Status::Rejected,
            Some(codes::UNKNOWN_SKILL | codes::UNKNOWN_ACTION | codes::UNKNOWN_SESSION),
        ) => StatusCode::NOT_FOUND,
        (Status::Rejected, Some(codes::SESSION_STATE_RESET)) => StatusCode::CONFLICT,
        (Status::Rejected, Some(codes::TOO_MANY_SESSIONS))
        | (Status::InfrastructureError, Some(codes::OVERLOADED)) => StatusCode::TOO_MANY_REQUESTS,
        (Status::Rejected, Some(codes::INPUT_TOO_LARGE)) => StatusCode::PAYLOAD_TOO_LARGE,
        (Status::Rejected, Some(codes::INVALID_ARGS | codes::INVALID_SCHEMA)) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        (Status::Rejected, _) => StatusCode::BAD_REQUEST,
        (Status::InfrastructureError, _) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    }
}

/// A refusal of something other than a call (making or finding a session) as a service
/// error, with the status its code has in a result; a build that failed is 500, as the
/// service could not make what was asked.
pub(crate) fn refusal_response(refusal: &crate::Refusal, retry_after: u64) -> Response {
    let status = match status_for(refusal.status, Some(refusal.code)) {
        StatusCode::OK => StatusCode::INTERNAL_SERVER_ERROR,
        other => other,
    };
    let mut response = error_response(status, refusal.code, refusal.message.clone());
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
    }
    response
}

/// A result as its response. An overloaded call says when to retry.
pub(crate) fn result_response(result: InvocationResult, retry_after: u64) -> Response {
    result_response_as(status_of(&result), result, retry_after)
}

/// A result with an HTTP status chosen by the caller (a body the service could not read
/// keeps the status the reader gave it, e.g. 415).
pub(crate) fn result_response_as(
    status: StatusCode,
    result: InvocationResult,
    retry_after: u64,
) -> Response {
    let mut response = (status, Json(result)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    }
    response
}

/// A call refused because the service is draining: 503 with a Retry-After past the
/// drain notice (by then this process no longer listens, and a caller reaches another
/// task, or is refused before anything is sent), and the connection closed after it.
pub(crate) fn shutting_down_response(result: InvocationResult, notice: Duration) -> Response {
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(result)).into_response();
    let wait = notice.as_secs() + u64::from(notice.subsec_nanos() > 0) + 1;
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(wait));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A service error (not an invocation's result) as its response.
pub(crate) fn error_response(
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
) -> Response {
    (status, Json(ServiceError::new(code, message))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Refusal;

    fn refused(code: &'static str) -> InvocationResult {
        let mut result = InvocationResult::new("i", "s", "a");
        Refusal::new(code, "m").apply_to(&mut result);
        result
    }

    #[test]
    fn refusals_map_to_the_4xx_that_names_what_was_wrong() {
        assert_eq!(
            status_of(&refused(codes::UNKNOWN_SKILL)),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status_of(&refused(codes::UNKNOWN_ACTION)),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status_of(&refused(codes::INPUT_TOO_LARGE)),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            status_of(&refused(codes::INVALID_ARGS)),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            status_of(&refused(codes::INVALID_OPTIONS)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_of(&refused(codes::INVALID_REQUEST)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_of(&refused(codes::UNKNOWN_SESSION)),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status_of(&refused(codes::SESSION_STATE_RESET)),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status_of(&refused(codes::TOO_MANY_SESSIONS)),
            StatusCode::TOO_MANY_REQUESTS
        );
        let limited = refusal_response(&Refusal::new(codes::TOO_MANY_SESSIONS, "m"), 0);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "1");
        let built = refusal_response(&Refusal::new(codes::BUILD_FAILED, "m"), 0);
        assert_eq!(built.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn every_finished_run_is_200_and_infrastructure_is_503_or_429() {
        for code in [
            codes::TIMEOUT,
            codes::MEMORY_LIMIT,
            codes::CRASHED,
            codes::BUILD_FAILED,
        ] {
            assert_eq!(status_of(&refused(code)), StatusCode::OK, "{code}");
        }
        let mut ok = InvocationResult::new("i", "s", "a");
        ok.status = Status::Ok;
        assert_eq!(status_of(&ok), StatusCode::OK);
        assert_eq!(
            status_of(&refused(codes::ENGINE_ERROR)),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status_of(&refused(codes::OVERLOADED)),
            StatusCode::TOO_MANY_REQUESTS
        );
        let response = result_response(refused(codes::OVERLOADED), 3);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }

    #[test]
    fn every_host_code_maps_to_an_http_status_by_its_status() {
        for (code, status) in codes::ALL {
            let http = status_of(&refused(code));
            match status {
                Status::Rejected => assert!(http.is_client_error(), "{code}"),
                Status::InfrastructureError => assert!(
                    http == StatusCode::SERVICE_UNAVAILABLE
                        || http == StatusCode::TOO_MANY_REQUESTS,
                    "{code}"
                ),
                _ => assert_eq!(http, StatusCode::OK, "{code}"),
            }
        }
    }

    #[test]
    fn a_draining_refusal_says_when_to_retry_and_closes_the_connection() {
        let response = shutting_down_response(
            refused(codes::HOST_SHUTTING_DOWN),
            Duration::from_millis(1500),
        );
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers()[header::RETRY_AFTER],
            "3",
            "past the notice"
        );
        assert_eq!(response.headers()[header::CONNECTION], "close");
        let response = shutting_down_response(refused(codes::HOST_SHUTTING_DOWN), Duration::ZERO);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}
