//! Streaming responses do not outlive the token that opened them: a response without a
//! `Content-Length` (server-sent events, long polls, chunked feeds) is cut when the token
//! expires or is revoked, like a WebSocket tunnel is. Fixed-length responses are left
//! alone, so ordinary requests pay nothing for this.
//!
//! Cutting is an error on the body stream, not a clean end: the client sees a truncated
//! response (HTTP/1.1 chunked: no final chunk; HTTP/2: a reset stream), never a response
//! that merely looks complete.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::http::body::{Body, BoxError};
use crate::revocation::RevokedFuture;

/// When a token expires (its `exp`, Unix seconds), turned into a point on the runtime's
/// clock only when something is to be cut at it: a tunnel or a streaming answer. Most
/// answers are neither, and reading both clocks for every request would cost more than the
/// rest of the token check (BENCHMARKS.md, "Fourteenth round").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiry(pub u64);

impl Expiry {
    /// The instant the token expires, on the runtime's clock (now, if it has).
    pub fn deadline(self) -> Instant {
        let left = self.0.saturating_sub(crate::clock::now_unix());
        Instant::now() + std::time::Duration::from_secs(left)
    }
}

/// The error a cut stream ends with.
#[derive(Debug, thiserror::Error)]
#[error("the token that opened this response expired or was revoked")]
pub struct TokenEnded;

pin_project_lite::pin_project! {
    /// A body that ends with [`TokenEnded`] once `deadline` passes or `revoked` resolves.
    pub struct UntilTokenEnds {
        #[pin]
        inner: Body,
        #[pin]
        deadline: Option<Sleep>,
        revoked: Option<RevokedFuture>,
    }
}

impl HttpBody for UntilTokenEnds {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let expired = this
            .deadline
            .as_pin_mut()
            .is_some_and(|d| d.poll(cx).is_ready());
        let revoked = this
            .revoked
            .as_mut()
            .is_some_and(|r| r.as_mut().poll(cx).is_ready());
        if expired || revoked {
            tracing::info!(expired, revoked, "streaming response cut: its token ended");
            return Poll::Ready(Some(Err(Box::new(TokenEnded))));
        }
        this.inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a response streams (no known length) and so needs guarding. The length is the
/// body's own size hint, which hyper takes from the answer's framing (`Content-Length`,
/// not chunked): no lookup in the head on every proxied request, and a chunked answer
/// that also names a length is read as the stream it is.
pub fn is_streaming(resp: &Response<Body>) -> bool {
    let body = resp.body();
    body.size_hint().exact().is_none()
        && !body.is_end_stream()
        && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS
}

/// Guards a streaming response with the token's expiry and revocation.
pub fn guard(
    resp: Response<Body>,
    expiry: Option<Expiry>,
    revoked: Option<RevokedFuture>,
) -> Response<Body> {
    if expiry.is_none() && revoked.is_none() {
        return resp;
    }
    resp.map(|inner| {
        crate::http::body::boxed(UntilTokenEnds {
            inner,
            deadline: expiry.map(|e| tokio::time::sleep_until(e.deadline())),
            revoked,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::body;

    fn answer(status: u16, b: Body) -> Response<Body> {
        let mut resp = Response::new(b);
        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
        resp
    }

    /// Only an answer of unknown length that has not ended is guarded: one with a length
    /// (`Content-Length`, which hyper turns into the body's exact size) is not cut when
    /// the token expires, nor an empty one, nor a protocol switch (the tunnel has its own).
    #[test]
    fn only_answers_of_unknown_length_stream() {
        let stream = || {
            body::boxed(http_body_util::StreamBody::new(
                futures_util::stream::pending::<Result<Frame<Bytes>, BoxError>>(),
            ))
        };
        assert!(is_streaming(&answer(200, stream())));
        assert!(!is_streaming(&answer(200, body::full("a known length"))));
        assert!(!is_streaming(&answer(200, body::empty())));
        assert!(!is_streaming(&answer(101, stream())));
    }
}
