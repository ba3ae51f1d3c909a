//! The body of a response as hyper sees it: whole, or fed chunk by chunk by the app's `send()`
//! through the exchange; and the plain-text answers the server gives itself.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::{Exchange, FileBody};
use crate::access::{AccessLog, Finished};
use crate::errors::BodyAborted;

pub enum ResponseBody {
    Full(Option<Bytes>),
    /// Streamed from the exchange's response queue.
    Stream(StreamBody),
    /// Read from a file (`http.response.pathsend`).
    File(FileBody),
    /// Any of the others, counted for its access record, written when it ends.
    Logged(Box<LoggedBody>),
}

impl ResponseBody {
    pub fn stream(exchange: Arc<Exchange>) -> Self {
        ResponseBody::Stream(StreamBody(exchange))
    }

    /// `body`, whose end (or abandonment) writes `record` to `log`.
    pub fn logged(body: ResponseBody, log: Arc<AccessLog>, record: Finished) -> Self {
        ResponseBody::Logged(Box::new(LoggedBody { body, log, record }))
    }
}

/// A body that counts what it hands over and writes its access record when dropped: after
/// its last frame, or when the client left.
pub struct LoggedBody {
    body: ResponseBody,
    log: Arc<AccessLog>,
    record: Finished,
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        self.record.end();
        self.log.finished(&self.record);
    }
}

/// A plain-text answer from the server itself (errors it produces); the connection closes after.
pub fn plain_response(
    status: http::StatusCode,
    text: &'static str,
) -> http::Response<ResponseBody> {
    let mut response = http::Response::new(ResponseBody::Full(Some(Bytes::from_static(
        text.as_bytes(),
    ))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    response
}

/// A response body fed chunk by chunk by the app's `send()`.
pub struct StreamBody(Arc<Exchange>);

impl Drop for StreamBody {
    fn drop(&mut self) {
        self.0.out_dropped();
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyAborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyAborted>>> {
        match self.get_mut() {
            ResponseBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Stream(stream) => stream.0.poll_out(cx),
            ResponseBody::File(file) => file.poll_frame(cx),
            ResponseBody::Logged(logged) => {
                let polled = Pin::new(&mut logged.body).poll_frame(cx);
                if let Poll::Ready(Some(Ok(frame))) = &polled {
                    if let Some(data) = frame.data_ref() {
                        logged.record.bytes += data.len() as u64;
                    }
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::File(file) => file.remaining() == 0,
            ResponseBody::Logged(logged) => logged.body.is_end_stream(),
            other => matches!(other, ResponseBody::Full(None)),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            ResponseBody::Full(None) => SizeHint::with_exact(0),
            ResponseBody::Stream(_) => SizeHint::default(),
            ResponseBody::File(file) => SizeHint::with_exact(file.remaining()),
            ResponseBody::Logged(logged) => logged.body.size_hint(),
        }
    }
}
