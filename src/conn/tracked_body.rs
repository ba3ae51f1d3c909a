//! A response body that keeps its request counted as open on its connection until it ends (and
//! its metrics meter running).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::StreamGuard;
use crate::exchange::ResponseBody;
use crate::metrics::RequestMeter;

pub struct TrackedBody {
    body: ResponseBody,
    _guard: StreamGuard,
    /// `--metrics-bind`: counts the body's bytes; the request ends when it is dropped.
    meter: RequestMeter,
}

impl TrackedBody {
    pub fn new(body: ResponseBody, guard: StreamGuard, meter: RequestMeter) -> Self {
        Self {
            body,
            _guard: guard,
            meter,
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
        let this = self.get_mut();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &frame {
            if let Some(data) = frame.data_ref() {
                this.meter.sent(data.len());
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
