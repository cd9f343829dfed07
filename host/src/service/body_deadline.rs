//! A deadline for a request's whole body, counted from its headers on.
//!
//! hyper bounds only the headers; a caller that sends `Content-Length: 1000000` and then a
//! byte every few seconds would otherwise hold its connection (and a descriptor) for as
//! long as it likes. The body is wrapped so that reading it fails once the deadline
//! passes; the handler answers 408 and hyper closes the connection, whose body was never
//! read to its end.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

/// The error a body's reader meets once its deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} (the service's body-timeout)", humantime::format_duration(*.0))]
pub(crate) struct BodyDeadline(pub(crate) Duration);

/// Wraps every request's body in a [`DeadlineBody`] of `limit`.
pub(crate) async fn limit_body_time(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = Body::new(DeadlineBody {
        inner: body,
        deadline: Box::pin(tokio::time::sleep(limit)),
        limit,
    });
    next.run(Request::from_parts(parts, body)).await
}

/// A body that fails with [`BodyDeadline`] when it is not all there by its deadline.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyDeadline(self.limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The deadline error somewhere in `error`'s chain of causes, if that is what it is.
pub(crate) fn deadline_in<'e>(
    error: &'e (dyn std::error::Error + 'static),
) -> Option<&'e BodyDeadline> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(deadline) = error.downcast_ref::<BodyDeadline>() {
            return Some(deadline);
        }
        cause = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    #[tokio::test]
    async fn a_body_that_trickles_past_its_deadline_fails_with_it() {
        let trickle = futures_util::stream::iter(0..100).then(|_| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, std::io::Error>(Bytes::from_static(b"x"))
        });
        let body = Body::new(DeadlineBody {
            inner: Body::from_stream(trickle),
            deadline: Box::pin(tokio::time::sleep(Duration::from_millis(200))),
            limit: Duration::from_millis(200),
        });
        let error = axum::body::to_bytes(body, 1000).await.unwrap_err();
        let deadline = deadline_in(&error).expect("the deadline is the cause");
        assert_eq!(deadline.0, Duration::from_millis(200));
        assert!(deadline.to_string().contains("200ms"), "{deadline}");
    }

    #[tokio::test]
    async fn a_body_in_time_is_read_whole() {
        let body = Body::new(DeadlineBody {
            inner: Body::from("{\"args\":{}}"),
            deadline: Box::pin(tokio::time::sleep(Duration::from_secs(1))),
            limit: Duration::from_secs(1),
        });
        let bytes = axum::body::to_bytes(body, 1000).await.unwrap();
        assert_eq!(&bytes[..], b"{\"args\":{}}");
    }
}
