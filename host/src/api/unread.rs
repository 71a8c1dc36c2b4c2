//! Reads what a handler left of a request body, so the connection can carry
//! the client's next request.
//!
//! A handler may answer before reading the body: a 401 or 403 from the auth
//! extractor, a 413 once the cap is passed. The rest of that body is still
//! on the wire. If nothing reads it, hyper closes the connection while the
//! client may still be writing: the client sees a broken pipe instead of our
//! answer, or sends its next request on a connection that is going away.
//! So the unread rest is read and discarded in the background (up to
//! [`DRAIN_LIMIT`] bytes within [`DRAIN_TIMEOUT`]); a body declared larger
//! than that is not read, and its answer says `Connection: close`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::http::header::{CONNECTION, CONTENT_LENGTH};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

/// The most bytes of an unread body that are read and discarded.
const DRAIN_LIMIT: u64 = 16 * 1024 * 1024;
/// How long discarding an unread body may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A request body that records whether it was read to its end, and drains
/// its rest in the background when dropped before that.
struct Tracked {
    inner: Option<Body>,
    finished: Arc<AtomicBool>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(&mut *inner).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => inner.is_end_stream(),
            _ => false,
        };
        if ended {
            self.finished.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let Some(mut rest) = self.inner.take() else {
            return;
        };
        if self.finished.load(Ordering::Acquire) || rest.size_hint().lower() > DRAIN_LIMIT {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let drain = async {
                let mut read = 0u64;
                while let Some(Ok(frame)) = rest.frame().await {
                    read += frame.data_ref().map_or(0, |d| d.len() as u64);
                    if read > DRAIN_LIMIT {
                        break;
                    }
                }
            };
            // Giving up drops the body; hyper then closes the connection.
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
        });
    }
}

/// The middleware: wraps a non-empty request body in [`Tracked`], and says
/// `Connection: close` when the handler left a body too large to drain.
pub async fn drain_unread_body(request: Request, next: Next) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let finished = Arc::new(AtomicBool::new(false));
    let tracked = finished.clone();
    let request = request.map(|inner| {
        Body::new(Tracked {
            inner: Some(inner),
            finished: tracked,
        })
    });
    let mut response = next.run(request).await;
    if !finished.load(Ordering::Acquire) && declared.is_some_and(|n| n > DRAIN_LIMIT) {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
