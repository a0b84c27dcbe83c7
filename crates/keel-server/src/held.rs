//! Response bodies that hold values (admission permits, a target's in-flight
//! slot, a load-balancer guard) until the body has been sent: a permit is
//! never released before the response ends. The length stays known, so
//! whole answers keep their `Content-Length`.

use std::any::Any;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body_util::Full;

/// Values dropped when the response body is done (or dropped).
pub(crate) type Held = Vec<Box<dyn Any + Send>>;

struct Holding {
    inner: Full<Bytes>,
    _held: Held,
}

impl http_body::Body for Holding {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A whole body that keeps `held` alive until it is sent.
pub(crate) fn body(bytes: Vec<u8>, held: Held) -> Body {
    Body::new(Holding {
        inner: Full::new(Bytes::from(bytes)),
        _held: held,
    })
}
