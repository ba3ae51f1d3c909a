//! The last words of an HTTP/1.1 connection the server closes while a request head is arriving
//! (`--timeout-request-head`): `408 Request Timeout` with `Connection: close` (RFC 9110 §15.5.9).
//!
//! hyper owns the socket and has no way to answer a head it has not finished, so the stream hyper
//! reads from (`ConnStream`, whose HTTP/1.1 hook this is) says it: once the connection's driver
//! has set the words ([`ConnActivity`]), the next read hyper makes writes them (through TLS,
//! when there is TLS), shuts the sending side (close_notify and FIN), reads and drops what the
//! client still sends until it closes (so that closing never resets a connection whose client
//! has not read the 408 yet), then gives hyper an end of stream. The driver sets the words only
//! while no response is open or unflushed, so they cannot be interleaved with one, and bounds
//! the whole farewell in time.
//!
//! Above TLS it also counts the reads that hand hyper bytes as reads of the connection: TLS may
//! have read a request's first bytes from the socket together with the end of the handshake, and
//! the head clock must start with them.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::ConnActivity;

/// `408 Request Timeout`, closing; with a `Date` unless `--no-date-header`.
pub fn request_timeout_response(date_header: bool) -> Bytes {
    const BODY: &str = "Request Timeout";
    let mut head = format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n\
         connection: close\r\ncontent-length: {}\r\n",
        BODY.len()
    );
    if date_header {
        head.push_str("date: ");
        head.push_str(&httpdate::fmt_http_date(SystemTime::now()));
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.push_str(BODY);
    Bytes::from(head)
}

/// Where a farewell is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    /// This many bytes of the words are written.
    Writing(usize),
    Flushing,
    ShuttingDown,
    /// Reading (and dropping) until the client closes.
    Lingering,
    Done,
}

/// The HTTP/1.1 hook of the stream under hyper (`ConnStream`).
pub struct LastWords {
    activity: Arc<ConnActivity>,
    stage: Stage,
    /// Count the reads that hand hyper bytes: above TLS, which may hand out bytes it read from
    /// the socket earlier (in cleartext the transport counts the same reads).
    count_reads: bool,
}

impl LastWords {
    pub fn new(activity: Arc<ConnActivity>, count_reads: bool) -> Self {
        Self {
            activity,
            stage: Stage::Writing(0),
            count_reads,
        }
    }

    /// The driver has set the words: hyper's reads say them instead (see [`Self::poll_farewell`]).
    pub fn due(&self) -> bool {
        self.activity.last_words().is_some()
    }

    /// A read handed hyper bytes.
    pub fn after_read(&self) {
        if self.count_reads {
            // The head clock starts with the bytes hyper gets, wherever they were.
            self.activity.note_read();
        }
    }

    /// The farewell is over: the stream is shut already.
    pub fn ended(&self) -> bool {
        self.stage == Stage::Done
    }

    /// Says the words on `inner`, then ends the stream for hyper.
    pub fn poll_farewell<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        inner: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        let Some(words) = self.activity.last_words() else {
            return Poll::Ready(Ok(()));
        };
        loop {
            self.stage = match self.stage {
                Stage::Writing(said) if said < words.len() => {
                    let n = ready!(Pin::new(&mut *inner).poll_write(cx, &words[said..]))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    Stage::Writing(said + n)
                }
                Stage::Writing(_) => Stage::Flushing,
                Stage::Flushing => {
                    ready!(Pin::new(&mut *inner).poll_flush(cx))?;
                    Stage::ShuttingDown
                }
                Stage::ShuttingDown => {
                    ready!(Pin::new(&mut *inner).poll_shutdown(cx))?;
                    Stage::Lingering
                }
                Stage::Lingering => {
                    let mut scratch = [0u8; 1024];
                    let mut dropped = ReadBuf::new(&mut scratch);
                    ready!(Pin::new(&mut *inner).poll_read(cx, &mut dropped))?;
                    if dropped.filled().is_empty() {
                        Stage::Done
                    } else {
                        Stage::Lingering
                    }
                }
                // End of stream: hyper drops its partial head and ends the connection.
                Stage::Done => return Poll::Ready(Ok(())),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::request_timeout_response;

    #[test]
    fn the_408_is_complete_and_closing() {
        let words = request_timeout_response(false);
        let text = std::str::from_utf8(&words).expect("ascii"); // ok: test-only
        assert!(text.starts_with("HTTP/1.1 408 Request Timeout\r\n"));
        assert!(text.contains("\r\nconnection: close\r\n"));
        assert!(text.ends_with("\r\ncontent-length: 15\r\n\r\nRequest Timeout"));
        let dated = request_timeout_response(true);
        assert!(std::str::from_utf8(&dated)
            .expect("ascii") // ok: test-only
            .contains(" GMT\r\n"));
    }
}
