//! A response body that keeps its request counted as open on its connection until it ends.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::StreamGuard;
use crate::exchange::ResponseBody;

pub struct TrackedBody {
    body: ResponseBody,
    _guard: StreamGuard,
}

impl TrackedBody {
    pub fn new(body: ResponseBody, guard: StreamGuard) -> Self {
        Self {
            body,
            _guard: guard,
        }
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = <ResponseBody as Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
