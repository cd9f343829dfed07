//! A service whose listeners are bound but whose host is not there yet (its locked
//! images being pulled, its catalog read). Callers are answered rather than refused: 503
//! `host_starting` with a `Retry-After`, `/readyz` false naming what it waits for, and
//! `/healthz` alive. Every answer closes its connection, so no caller keeps one to this
//! stand-in once the real service takes the listeners over.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use skillhost_api::Readiness;

use super::http::error_response;
use super::listen::Bound;
use super::routes::{self, probes};
use crate::sync::lock;

/// The code of the 503 a starting service answers.
pub(crate) const HOST_STARTING: &str = "host_starting";

/// How long a starting service asks callers to wait before trying again, in seconds.
const RETRY_AFTER: u64 = 1;

/// What a starting service waits for, as `/readyz` tells it; cloned freely.
#[derive(Debug, Clone)]
pub struct Starting(Arc<Mutex<String>>);

impl Starting {
    /// A service that waits for `what`.
    pub fn new(what: impl Into<String>) -> Starting {
        Starting(Arc::new(Mutex::new(what.into())))
    }

    /// It now waits for `what`.
    pub fn set(&self, what: impl Into<String>) {
        *lock(&self.0) = what.into();
    }

    /// The problem `/readyz` names.
    fn problem(&self) -> String {
        format!("starting: {}", lock(&self.0))
    }
}

/// The stand-in served on `bound` while the host starts: the probes open to every caller,
/// everything else behind the listener's caller check (a starting service tells nobody
/// without a token more than a running one would).
pub(crate) fn app(starting: Starting, bound: &Bound) -> Router {
    let api = routes::guarded(Router::new().fallback(not_yet), bound);
    Router::new()
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(readyz))
        .merge(api)
        .layer(axum::middleware::from_fn(close_connection))
        .with_state(starting)
}

async fn readyz(State(starting): State<Starting>) -> Response {
    let readiness = Readiness::new(vec![starting.problem()]);
    (StatusCode::SERVICE_UNAVAILABLE, Json(readiness)).into_response()
}

async fn not_yet(State(starting): State<Starting>) -> Response {
    let mut response = error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        HOST_STARTING,
        format!(
            "the service is {}; nothing ran, try again",
            starting.problem()
        ),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER));
    response
}

async fn close_connection(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// How long the stand-in's last connections may take to send their answer once the
/// starting work is done.
pub(crate) const HANDOVER: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn answer(app: Router, path: &str) -> (StatusCode, Response) {
        let request = axum::http::Request::builder()
            .method(if path.ends_with(":invoke") {
                "POST"
            } else {
                "GET"
            })
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        (response.status(), response)
    }

    async fn body(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn unix_app(starting: &Starting) -> (Router, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let bound = super::super::listen::bind_unix(&dir.path().join("s.sock")).unwrap();
        (app(starting.clone(), &bound), dir)
    }

    #[tokio::test]
    async fn calls_are_told_to_come_back_and_readyz_names_what_it_waits_for() {
        let starting = Starting::new("pulling the locked images");
        let (app, _dir) = unix_app(&starting);
        let (status, response) = answer(app.clone(), "/v1/skills/echo/actions/say:invoke").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(response.headers()[header::CONNECTION], "close");
        let error = body(response).await;
        assert_eq!(error["error"]["code"], HOST_STARTING);
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("pulling the locked images"),
            "{error}"
        );

        starting.set("reading the skills");
        let (status, response) = answer(app.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::CONNECTION], "close");
        let readiness = body(response).await;
        assert_eq!(readiness["ready"], false);
        assert_eq!(readiness["problems"][0], "starting: reading the skills");

        let (status, _) = answer(app, "/healthz").await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_tcp_caller_without_a_token_is_refused_before_it_learns_anything() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens.toml");
        std::fs::write(
            &file,
            format!(
                "[[token]]\nname = \"ci\"\nsha256 = \"{}\"\n",
                "ab".repeat(32)
            ),
        )
        .unwrap();
        let tokens = Arc::new(super::super::tokens::Tokens::load(&file).unwrap());
        let bound = super::super::listen::bind_tcp("127.0.0.1:0".parse().unwrap(), tokens)
            .await
            .unwrap();
        let app = app(Starting::new("pulling"), &bound);
        let (status, _) = answer(app.clone(), "/v1/skills").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = answer(app, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
