//! A response body that keeps its request counted as open on its connection until it ends (and
//! its metrics meter running); on HTTP/2 it also reports its progress ([`StreamProgress`]) and
//! hands hyper its data in pieces of at most [`PIECE`] bytes, so that progress is seen at that
//! granularity (h2 takes a whole chunk into its buffer however large it is, and hyper asks for the
//! next only once it has gone).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::{StreamGuard, StreamProgress};
use crate::exchange::ResponseBody;
use crate::metrics::RequestMeter;

/// The largest piece of body an HTTP/2 stream hands hyper at a time.
const PIECE: usize = 64 * 1024;

pub struct TrackedBody {
    body: ResponseBody,
    _guard: StreamGuard,
    /// `--metrics-bind`: counts the body's bytes; the request ends when it is dropped.
    meter: RequestMeter,
    /// HTTP/2 only.
    progress: Option<Arc<StreamProgress>>,
    /// The rest of a data frame larger than [`PIECE`].
    rest: Option<Bytes>,
}

impl TrackedBody {
    pub fn new(body: ResponseBody, guard: StreamGuard, meter: RequestMeter) -> Self {
        Self {
            body,
            _guard: guard,
            meter,
            progress: None,
            rest: None,
        }
    }

    /// An HTTP/2 response body, reporting its progress.
    pub fn watched(
        body: ResponseBody,
        guard: StreamGuard,
        meter: RequestMeter,
        progress: Arc<StreamProgress>,
    ) -> Self {
        Self {
            progress: Some(progress),
            ..Self::new(body, guard, meter)
        }
    }
}

/// The next piece of `data`, the rest kept in `rest` for the next call.
fn piece(rest: &mut Option<Bytes>, mut data: Bytes) -> Bytes {
    if data.len() > PIECE {
        *rest = Some(data.split_off(PIECE));
    }
    data
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = <ResponseBody as Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = match &this.progress {
            None => Pin::new(&mut this.body).poll_frame(cx),
            Some(progress) => {
                progress.pulled();
                let polled = match this.rest.take() {
                    Some(rest) => Poll::Ready(Some(Ok(Frame::data(piece(&mut this.rest, rest))))),
                    None => match Pin::new(&mut this.body).poll_frame(cx) {
                        Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                            Ok(data) => {
                                Poll::Ready(Some(Ok(Frame::data(piece(&mut this.rest, data)))))
                            }
                            Err(frame) => Poll::Ready(Some(Ok(frame))),
                        },
                        other => other,
                    },
                };
                if let Poll::Ready(Some(Ok(frame))) = &polled {
                    if frame.data_ref().is_some_and(|data| !data.is_empty()) {
                        progress.handed();
                    }
                }
                polled
            }
        };
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.meter.sent(data.len());
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.as_ref().map_or(0, |rest| rest.len() as u64);
        let body = self.body.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(body.lower() + rest);
        if let Some(upper) = body.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}
