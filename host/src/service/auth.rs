//! Who a request comes from. On TCP, a bearer token from the tokens file, or 401; on the
//! unix socket, whoever could open it (its mode is 0600).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::http::error_response;
use super::tokens::{Caller, Tokens};

/// Let a request through only with a valid `Authorization: Bearer` token, and tell the
/// handlers whose it is.
pub(crate) async fn require_token(
    State(tokens): State<Arc<Tokens>>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let caller = match presented {
        None => {
            return unauthorized(
                "missing_token",
                "this listener needs a bearer token: send Authorization: Bearer <token>",
            )
        }
        Some(token) => tokens.verify(token),
    };
    match caller {
        Some(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        None => unauthorized(
            "invalid_token",
            "the bearer token is not in the tokens file",
        ),
    }
}

/// Requests on the unix socket come from its owner.
pub(crate) async fn local_caller(mut request: Request, next: Next) -> Response {
    request.extensions_mut().insert(Caller::local());
    next.run(request).await
}

fn unauthorized(code: &str, message: &str) -> Response {
    let mut response = error_response(StatusCode::UNAUTHORIZED, code, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"skillhost\""),
    );
    response
}
