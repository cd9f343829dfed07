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
        .and_then(bearer_token);
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

/// The token of an `Authorization` value of the Bearer scheme, whose name is
/// case-insensitive (RFC 9110, 11.1): `Bearer`, `bearer` and `BEARER` alike.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_is_case_insensitive_and_the_token_trimmed() {
        for value in ["Bearer abc", "bearer abc", "BEARER  abc ", " Bearer abc"] {
            assert_eq!(bearer_token(value), Some("abc"), "{value:?}");
        }
        for value in ["Basic abc", "Bearer", "Bearer   ", "Bearerabc", ""] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }
}
