//! The one stream hyper reads and writes through, above TLS: the connection's stream (its
//! `Transport`, or TLS over it) with the hooks this connection needs, each optional and each in
//! its own file:
//!
//! * the interim writer (`net::interim_writer`): 103 Early Hints in hyper's output, on HTTP/2
//!   always, on HTTP/1.1 with `--early-hints-http1`;
//! * the last words (`conn::last_words`), HTTP/1.1: the 408 of a head that took too long, and
//!   above TLS the count of reads that hand hyper bytes;
//! * the header-block watch (`conn::header_blocks`), HTTP/2: the head clock's view of the
//!   client's frames, read once (`net::h2_frames`) for it and the interim writer.
//!
//! A read or write meets one branch per hook slot, not a layer per hook: with no interim writer
//! (HTTP/1.1's default) a write is the inner stream's write behind one test.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::header_blocks::HeaderBlockWatch;
use super::last_words::LastWords;
use super::ConnActivity;
use crate::net::h2_frames::FrameReader;
use crate::net::interim::{Framing, Interim};
use crate::net::interim_writer::InterimWriter;

/// HTTP/2: the client's frames, read once for the head clock and the interim writer.
struct ClientFrames {
    reader: FrameReader,
    watch: HeaderBlockWatch,
}

pub struct ConnStream<S> {
    inner: S,
    interim: Option<InterimWriter>,
    last_words: Option<LastWords>,
    client_frames: Option<ClientFrames>,
}

impl<S> ConnStream<S> {
    /// HTTP/1.1: the 408 hook (`above_tls`: it counts the reads too), and the interim writer
    /// when 103s are offered.
    pub fn http1(
        inner: S,
        activity: Arc<ConnActivity>,
        above_tls: bool,
        interim: Option<Arc<Interim>>,
    ) -> Self {
        Self {
            inner,
            interim: interim.map(InterimWriter::new),
            last_words: Some(LastWords::new(activity, above_tls)),
            client_frames: None,
        }
    }

    /// HTTP/2 (the client preface still to be read through it): the head clock's watch and the
    /// interim writer, fed by one reader of the client's frames.
    pub fn http2(inner: S, activity: Arc<ConnActivity>, interim: Arc<Interim>) -> Self {
        debug_assert!(interim.framing() == Framing::Http2);
        Self {
            inner,
            interim: Some(InterimWriter::new(interim)),
            last_words: None,
            client_frames: Some(ClientFrames {
                reader: FrameReader::new(true),
                watch: HeaderBlockWatch::new(activity),
            }),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> ConnStream<S> {
    /// The hooks' part of a read that handed hyper `read` (not empty).
    fn after_read(&mut self, read: &[u8]) {
        if let Some(last_words) = &self.last_words {
            last_words.after_read();
        }
        if let Some(frames) = &mut self.client_frames {
            match &self.interim {
                Some(writer) => {
                    frames
                        .reader
                        .feed(read, Interim::inbound_wanted, |frame, payload| {
                            writer.on_client_frame(frame, payload)
                        })
                }
                None => frames.reader.feed(read, |_| false, |_, _| {}),
            }
            frames.watch.observe(&frames.reader);
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ConnStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(last_words) = &mut this.last_words {
            if last_words.due() {
                // Anything of a hint under way goes out whole before the words.
                if let Some(writer) = &mut this.interim {
                    ready!(writer.poll_drain(&mut this.inner, cx))?;
                }
                return last_words.poll_farewell(&mut this.inner, cx);
            }
        }
        if let Some(writer) = &mut this.interim {
            writer.note_task(cx);
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.after_read(&buf.filled()[before..]);
        }
        polled
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ConnStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match &mut this.interim {
            None => Pin::new(&mut this.inner).poll_write(cx, buf),
            Some(writer) => writer.poll_write(&mut this.inner, cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match &mut this.interim {
            None => Pin::new(&mut this.inner).poll_write_vectored(cx, bufs),
            Some(writer) => writer.poll_write_vectored(&mut this.inner, cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.interim {
            None => Pin::new(&mut this.inner).poll_flush(cx),
            Some(writer) => writer.poll_flush(&mut this.inner, cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.last_words.as_ref().is_some_and(LastWords::ended) {
            return Poll::Ready(Ok(())); // the farewell shut the stream already
        }
        if let Some(writer) = &mut this.interim {
            ready!(writer.poll_drain(&mut this.inner, cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use http::HeaderValue;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::ConnStream;
    use crate::conn::ConnActivity;
    use crate::net::h2_frames::{FLAG_END_HEADERS, FRAME_CONTINUATION, FRAME_HEADERS};
    use crate::net::interim::{early_hints_frame, Framing, Interim};
    use crate::net::{ReadCount, WriteStall};

    fn activity() -> Arc<ConnActivity> {
        ConnActivity::new(
            -1,
            Arc::new(ReadCount::default()),
            Arc::new(WriteStall::default()),
        )
    }

    fn frame(kind: u8, flags: u8, stream: u8, payload: &[u8]) -> Vec<u8> {
        let len = u8::try_from(payload.len()).unwrap_or(u8::MAX);
        let mut bytes = vec![0, 0, len, kind, flags, 0, 0, 0, stream];
        bytes.extend_from_slice(payload);
        bytes
    }

    /// One read of the client's bytes feeds both the head clock and the interim writer; a hint
    /// queued then goes out at the next flush.
    #[tokio::test]
    async fn http2_client_frames_feed_the_head_clock_and_the_interim_writer() {
        let (mut client, server) = tokio::io::duplex(4096);
        let activity = activity();
        let interim = Arc::new(Interim::new(Framing::Http2));
        let mut stream = ConnStream::http2(server, activity.clone(), interim.clone());
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(FRAME_HEADERS, 0, 1, b"abcd"));
        client.write_all(&bytes).await.expect("written"); // ok: test-only
        let mut buf = [0u8; 256];
        let n = stream.read(&mut buf).await.expect("read"); // ok: test-only
        assert_eq!(&buf[..n], &bytes[..]);
        assert!(activity.header_block_open_since().is_some());
        let target = interim.accept().expect("stream 1 offered hints"); // ok: test-only
        let block_end = frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 1, b"ef");
        client.write_all(&block_end).await.expect("written"); // ok: test-only
        let n = stream.read(&mut buf).await.expect("read"); // ok: test-only
        assert_eq!(n, block_end.len());
        assert_eq!(activity.header_block_open_since(), None);
        let links = [HeaderValue::from_static("</a.css>; rel=preload")];
        assert!(target.send(&links));
        stream.flush().await.expect("flushed"); // ok: test-only
        let expected = early_hints_frame(1, &links).expect("small"); // ok: test-only
        let mut written = vec![0u8; expected.len()];
        client.read_exact(&mut written).await.expect("read"); // ok: test-only
        assert_eq!(written, expected);
    }

    /// Once the driver set the last words, hyper's next read says them, shuts the sending side,
    /// waits for the client to close, then ends the stream.
    #[tokio::test]
    async fn http1_last_words_are_said_then_the_stream_ends() {
        let (mut client, server) = tokio::io::duplex(4096);
        let activity = activity();
        let mut stream = ConnStream::http1(server, activity.clone(), false, None);
        client.write_all(b"GET / HT").await.expect("written"); // ok: test-only
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).await.expect("read"); // ok: test-only
        assert_eq!(&buf[..n], b"GET / HT");
        activity.say_last_words(Bytes::from_static(b"HTTP/1.1 408 Request Timeout\r\n\r\n"));
        let server_side = async move {
            let n = stream.read(&mut buf).await.expect("read"); // ok: test-only
            stream.shutdown().await.expect("shut"); // ok: test-only
            n
        };
        let client_side = async move {
            let mut said = Vec::new();
            client.read_to_end(&mut said).await.expect("read"); // ok: test-only
            said // `client` is dropped here: the farewell's lingering read ends
        };
        let (n, said) = tokio::join!(server_side, client_side);
        assert_eq!(n, 0, "hyper sees the end of the stream");
        assert_eq!(said, b"HTTP/1.1 408 Request Timeout\r\n\r\n");
    }
}
