//! One accepted connection, from the first byte to close: the TLS handshake (ALPN picks the
//! protocol) or, in cleartext, HTTP/2 prior-knowledge detection; then hyper's HTTP/1.1 or
//! HTTP/2 connection, driven through the server's shutdown phases.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Notify;
use tokio::time::{timeout, Instant};

use crate::bridge::LogLevel;
use crate::exchange::{ConnInfo, ResponseBody};
use crate::listener::Accepted;
use crate::rewind::Rewind;
use crate::server::{phase_action, Phase, PhaseAction, Shared};
use crate::tls::TlsInfo;
use crate::{http1, http2};

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113 §3.4).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub async fn serve_connection(
    shared: &Arc<Shared>,
    accepted: Accepted,
    unix_path: Option<Arc<str>>,
) {
    let (socket, conn) = match accepted {
        Accepted::Tcp(stream, peer, local) => {
            let trusted_proxy = shared
                .proxies
                .as_ref()
                .is_some_and(|proxies| proxies.trusts(&peer.ip().to_string()));
            let conn = ConnInfo {
                client: Some(peer),
                server: local,
                unix_path: None,
                tls: None,
                trusted_proxy,
                py_addresses: Default::default(),
            };
            (Socket::Tcp(stream), conn)
        }
        Accepted::Unix(stream) => {
            let trusted_proxy = match (&shared.proxies, &unix_path) {
                (Some(proxies), Some(path)) => proxies.trusts(path),
                _ => false,
            };
            let conn = ConnInfo {
                client: None,
                server: None,
                unix_path,
                tls: None,
                trusted_proxy,
                py_addresses: Default::default(),
            };
            (Socket::Unix(stream), conn)
        }
    };
    let activity = ConnActivity::new(socket.as_raw_fd());
    let transport = Transport {
        socket,
        activity: activity.clone(),
    };
    match &shared.tls {
        None => serve_cleartext(shared, transport, conn, activity).await,
        Some(_) => serve_tls(shared, transport, conn, activity).await,
    }
}

async fn serve_cleartext(
    shared: &Arc<Shared>,
    transport: Transport,
    conn: ConnInfo,
    activity: Arc<ConnActivity>,
) {
    if shared.http2.is_none() {
        // HTTP/1.1 only: nothing to detect; hyper's header timeout bounds a silent client.
        let io = Rewind::new(bytes::Bytes::new(), transport);
        return http1::serve(shared, io, Arc::new(conn), activity).await;
    }
    // A connection that never sends a byte is closed like an idle keep-alive connection.
    let detection = timeout(shared.keep_alive_timeout, detect_http2(transport));
    match unless_abandoned(shared, &activity, detection).await {
        Some(Ok(Ok((true, io)))) if shared.http2.is_some() => {
            http2::serve(shared, io, Arc::new(conn), activity).await
        }
        Some(Ok(Ok((_, io)))) => http1::serve(shared, io, Arc::new(conn), activity).await,
        Some(Ok(Err(err))) => log_closed(shared, &err),
        Some(Err(_)) | None => {}
    }
}

async fn serve_tls(
    shared: &Arc<Shared>,
    transport: Transport,
    mut conn: ConnInfo,
    activity: Arc<ConnActivity>,
) {
    let Some(tls) = &shared.tls else { return };
    // A silent or trickling client would otherwise hold a socket and a task for free.
    let handshake = timeout(shared.tls_handshake_timeout, tls.acceptor.accept(transport));
    let stream = match unless_abandoned(shared, &activity, handshake).await {
        None => return,
        Some(Ok(Ok(stream))) => stream,
        Some(Ok(Err(err))) => {
            shared
                .bridge
                .log(LogLevel::Debug, format!("TLS handshake failed: {err}"));
            return;
        }
        Some(Err(_)) => {
            shared
                .bridge
                .log(LogLevel::Debug, "TLS handshake timed out".to_owned());
            return;
        }
    };
    let (_, session) = stream.get_ref();
    let h2 = session.alpn_protocol() == Some(b"h2".as_slice());
    conn.tls = Some(Arc::new(TlsInfo::from_session(
        session,
        tls.server_cert_pem.clone(),
    )));
    let conn = Arc::new(conn);
    // The handshake's bytes are not a request: the connection now waits for its first one.
    activity.mark_idle();
    if h2 && shared.http2.is_some() {
        http2::serve(shared, stream, conn, activity).await
    } else {
        http1::serve(shared, stream, conn, activity).await
    }
}

/// Runs `step` (a handshake, protocol detection) until the connection is abandoned. Once the
/// server drains, a connection that has not sent its request yet still gets [`Shared::drain_grace`]
/// to send it (its client may have sent it already: it is in flight), and more for as long as bytes
/// keep arriving (the step's own timeout bounds a trickling client); a silent one is dropped. A
/// forced close drops it at once.
async fn unless_abandoned<F: Future>(
    shared: &Shared,
    activity: &ConnActivity,
    step: F,
) -> Option<F::Output> {
    tokio::pin!(step);
    let mut phase = shared.phase();
    tokio::select! {
        output = &mut step => return Some(output),
        _ = phase.wait_for(|p| *p != Phase::Running) => {}
    }
    let grace = shared.drain_grace();
    let mut seen = activity.reads();
    let timer = tokio::time::sleep(grace);
    tokio::pin!(timer);
    let closing = phase.wait_for(|p| matches!(phase_action(*p), PhaseAction::Close));
    tokio::pin!(closing);
    loop {
        tokio::select! {
            output = &mut step => return Some(output),
            _ = &mut closing => return None,
            () = &mut timer => {
                let reads = activity.reads();
                if reads == seen && !activity.input_pending() {
                    return None;
                }
                seen = reads;
                timer.as_mut().reset(Instant::now() + grace);
            }
        }
    }
}

/// Reads until the bytes either start the HTTP/2 preface (true) or cannot (false); everything
/// read is replayed to the protocol chosen.
async fn detect_http2<S: AsyncRead + Unpin>(mut stream: S) -> io::Result<(bool, Rewind<S>)> {
    let mut buffer = BytesMut::with_capacity(4096);
    loop {
        if stream.read_buf(&mut buffer).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let seen = buffer.len().min(HTTP2_PREFACE.len());
        if buffer[..seen] != HTTP2_PREFACE[..seen] {
            return Ok((false, Rewind::new(buffer.freeze(), stream)));
        }
        if seen == HTTP2_PREFACE.len() {
            return Ok((true, Rewind::new(buffer.freeze(), stream)));
        }
    }
}

fn log_closed(shared: &Shared, err: &io::Error) {
    shared
        .bridge
        .log(LogLevel::Debug, format!("Connection closed: {err}"));
}

/// What the shutdown and idle logic need to know about one connection: its open requests (for
/// an idle timeout on protocols, HTTP/2, where hyper has none; and to tell an HTTP/1.1 connection
/// between requests from a busy one), and whether bytes arrived since it last became idle (so
/// that a drain never closes a connection whose next request is already arriving).
pub struct ConnActivity {
    active: AtomicUsize,
    /// Requests begun on the connection, ever.
    requests: AtomicU64,
    /// Reads from the socket that returned data (counted by [`Transport`]).
    reads: AtomicU64,
    /// `reads` when the connection last became idle (no open request).
    reads_at_idle: AtomicU64,
    origin: Instant,
    /// When `active` last fell to zero, in microseconds since `origin`.
    idle_since_us: AtomicU64,
    /// Notified each time `active` falls to zero.
    became_idle: Notify,
    /// The socket, to peek for bytes not read yet. Valid for as long as the connection (which
    /// owns the socket) is being served: only the connection's own task peeks.
    fd: RawFd,
}

impl ConnActivity {
    pub fn new(fd: RawFd) -> Arc<Self> {
        Arc::new(Self {
            active: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            reads_at_idle: AtomicU64::new(0),
            origin: Instant::now(),
            idle_since_us: AtomicU64::new(0),
            became_idle: Notify::new(),
            fd,
        })
    }

    pub fn begin(self: &Arc<Self>) -> StreamGuard {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::AcqRel);
        StreamGuard(self.clone())
    }

    fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The connection is idle from now on (the idle clock restarts; bytes read so far are not
    /// the start of a request).
    pub fn mark_idle(&self) {
        self.record_idle();
    }

    fn record_idle(&self) {
        self.reads_at_idle.store(self.reads(), Ordering::Relaxed);
        let elapsed = self.origin.elapsed().as_micros();
        self.idle_since_us.store(
            u64::try_from(elapsed).unwrap_or(u64::MAX),
            Ordering::Release,
        );
    }

    /// Whether bytes arrived since the connection last became idle: read already (hyper may hold
    /// part of a request head) or waiting in the socket.
    fn request_arriving(&self) -> bool {
        self.reads() != self.reads_at_idle.load(Ordering::Relaxed) || self.input_pending()
    }

    /// Whether the socket holds bytes not read yet (`MSG_PEEK`, never blocks).
    fn input_pending(&self) -> bool {
        let mut byte = [0u8; 1];
        // SAFETY: recv writes at most one byte into `byte`, which outlives the call; the fd is
        // the connection's socket (see `fd`), and a bad fd only makes recv fail.
        let peeked = unsafe {
            libc::recv(
                self.fd,
                byte.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        peeked > 0
    }

    /// When the connection becomes idle for `limit`; `None` while a request is open.
    fn idle_deadline(&self, limit: Duration) -> Option<Instant> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.idle_since() + limit)
    }

    fn idle_since(&self) -> Instant {
        self.origin + Duration::from_micros(self.idle_since_us.load(Ordering::Acquire))
    }

    /// Whether a request was open when the server began draining (`drain_began`): the task
    /// that reacts to the drain (a WebSocket session sending 1012) may have ended it before this
    /// connection's task sees the drain.
    fn open_at(&self, drain_began: Option<Instant>) -> bool {
        self.active() > 0 || drain_began.is_some_and(|began| self.idle_since() >= began)
    }
}

/// Held for as long as a request is open (until its response body ends or is dropped).
pub struct StreamGuard(Arc<ConnActivity>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.record_idle();
        }
    }
}

/// A [`StreamGuard`] carried in a request's extensions (which must be `Clone`), for a stream
/// that outlives its response: an RFC 8441 WebSocket. The stream counts as open until the last
/// clone is dropped.
#[derive(Clone)]
pub struct StreamHold {
    _guard: Arc<StreamGuard>,
}

impl StreamHold {
    pub fn new(guard: StreamGuard) -> Self {
        Self {
            _guard: Arc::new(guard),
        }
    }
}

/// A response body that keeps its request counted as open until it ends.
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

/// When the server drains, an HTTP/2 connection with open streams waits this long at most for
/// them to end before it sends GOAWAY (see [`drive`]).
const GOAWAY_DEFERRAL_LIMIT: Duration = Duration::from_secs(2);

/// After its GOAWAY, an HTTP/2 connection with no open stream waits this long for the client
/// to acknowledge hyper's PING, then it is closed: a client that never answers would otherwise
/// hold the connection (and a draining server) forever.
const GOAWAY_CLOSE_LIMIT: Duration = Duration::from_secs(2);
/// How often a GOAWAY'd HTTP/2 connection with open streams checks whether they have ended.
const CLOSE_RECHECK: Duration = Duration::from_millis(250);

/// Where a connection is in its shutdown.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shutdown {
    No,
    /// Draining, but the HTTP/2 GOAWAY waits for the open streams to end.
    AwaitingIdle,
    /// Draining, and an HTTP/1.1 connection is between requests while its next request may be
    /// arriving: hyper's graceful shutdown would close it at once, so it waits for the request
    /// to begin (then it is served with `Connection: close`) or for [`Shared::drain_grace`] of
    /// silence. `requests` and `reads` are the counts when the wait (re)started.
    Quiescing {
        requests: u64,
        reads: u64,
    },
    /// hyper's graceful shutdown has begun: no new requests, in-flight ones finish.
    Graceful,
}

/// The protocol hyper speaks on a connection given to [`drive`].
#[derive(Clone, Copy)]
pub enum Protocol {
    Http1,
    /// With the idle limit (hyper has none for HTTP/2).
    Http2 {
        idle_limit: Duration,
    },
}

/// Runs a hyper connection to its end: a graceful shutdown when the server drains (or the
/// connection has been idle for the HTTP/2 idle limit), an immediate close when it force-closes.
///
/// HTTP/1.1: hyper's graceful shutdown closes a connection at once when it is between requests
/// (or has not read its first one), even when the next request has been sent. So when the server
/// drains, a connection with no request open is closed at once only if it is a kept-alive one
/// on which nothing has arrived since its last response (the client races the close: the
/// classic keep-alive race, as with every server); one that never had a request, or on which
/// bytes have arrived (read, or waiting in the socket), is given [`Shared::drain_grace`] to
/// start its request, renewed while bytes keep coming.
///
/// HTTP/2 defers its GOAWAY while streams are open, up to [`GOAWAY_DEFERRAL_LIMIT`]: Python's
/// h2 library (httpx, httpcore) fails every in-flight request when it receives a GOAWAY, though
/// RFC 9113 lets them finish. In the meantime new streams are served as usual.
pub async fn drive<C>(
    shared: &Shared,
    connection: C,
    graceful_shutdown: fn(Pin<&mut C>),
    activity: &ConnActivity,
    protocol: Protocol,
) where
    C: Future<Output = Result<(), hyper::Error>>,
{
    tokio::pin!(connection);
    let mut phase = shared.phase();
    let mut shutdown = Shutdown::No;
    let http2_idle_limit = match protocol {
        Protocol::Http1 => None,
        Protocol::Http2 { idle_limit } => Some(idle_limit),
    };
    let first_check = http2_idle_limit.unwrap_or(Duration::from_secs(3600));
    let timer = tokio::time::sleep(first_check);
    tokio::pin!(timer);
    let grace = shared.drain_grace();
    // Starts hyper's graceful shutdown and arms the timer that closes the connection if the
    // client never finishes it (HTTP/2 only: HTTP/1.1 closes as soon as it is idle).
    macro_rules! begin_graceful {
        () => {{
            shutdown = Shutdown::Graceful;
            graceful_shutdown(connection.as_mut());
            timer.as_mut().reset(Instant::now() + GOAWAY_CLOSE_LIMIT);
        }};
    }
    // HTTP/1.1 while draining: graceful shutdown now if a request is open (hyper then closes
    // after its response) or if nothing can be arriving; otherwise wait (see `Quiescing`).
    macro_rules! http1_drain {
        ($may_wait:expr) => {{
            if activity.active() == 0 && $may_wait {
                shutdown = Shutdown::Quiescing {
                    requests: activity.requests(),
                    reads: activity.reads(),
                };
                timer.as_mut().reset(Instant::now() + grace);
            } else {
                begin_graceful!();
            }
        }};
    }
    loop {
        if shutdown == Shutdown::No {
            match phase_action(*phase.borrow_and_update()) {
                PhaseAction::Continue => {}
                PhaseAction::Graceful => match protocol {
                    Protocol::Http2 { .. } if activity.open_at(shared.drain_began()) => {
                        shutdown = Shutdown::AwaitingIdle;
                        timer.as_mut().reset(Instant::now() + GOAWAY_DEFERRAL_LIMIT);
                    }
                    Protocol::Http2 { .. } => begin_graceful!(),
                    Protocol::Http1 => {
                        http1_drain!(activity.requests() == 0 || activity.request_arriving())
                    }
                },
                PhaseAction::Close => return,
            }
        }
        let became_idle = async {
            match protocol {
                Protocol::Http2 { .. } => activity.became_idle.notified().await,
                Protocol::Http1 => std::future::pending().await,
            }
        };
        // hyper calls the service (which begins the request) inside the connection's poll, in
        // this task: checked right after it, this needs no waker.
        let request_began = std::future::poll_fn(|_| match shutdown {
            Shutdown::Quiescing { requests, .. } if activity.requests() != requests => {
                Poll::Ready(())
            }
            _ => Poll::Pending,
        });
        let quiescing = matches!(shutdown, Shutdown::Quiescing { .. });
        tokio::select! {
            // The connection first: the phase rarely changes.
            biased;
            result = connection.as_mut() => {
                if let Err(err) = result {
                    report_connection_error(shared, &err);
                }
                return;
            }
            changed = phase.changed() => {
                if changed.is_err() {
                    return;
                }
                if shutdown != Shutdown::No && matches!(phase_action(*phase.borrow()), PhaseAction::Close) {
                    return;
                }
            }
            () = request_began, if quiescing => {
                // Open: served with `Connection: close`. Already answered (the server's own 400
                // or 503): the connection is kept-alive again, and decided as such.
                http1_drain!(activity.request_arriving());
            }
            () = became_idle, if shutdown == Shutdown::AwaitingIdle => {
                if activity.active() == 0 {
                    begin_graceful!();
                }
            }
            () = &mut timer, if http2_idle_limit.is_some() || quiescing => {
                let now = Instant::now();
                match (shutdown, http2_idle_limit) {
                    (Shutdown::Quiescing { requests, reads }, _) => {
                        // Bytes still coming: wait on (hyper's header timeout bounds a slow
                        // head). Silence for a whole grace period: close.
                        if activity.reads() != reads || activity.input_pending() {
                            shutdown = Shutdown::Quiescing { requests, reads: activity.reads() };
                            timer.as_mut().reset(now + grace);
                        } else {
                            begin_graceful!();
                        }
                    }
                    (_, None) => {}
                    (Shutdown::AwaitingIdle, Some(_)) => begin_graceful!(),
                    // GOAWAY sent and the client has not closed: GOAWAY_CLOSE_LIMIT after the
                    // last stream ended (time to flush it and answer the PING), it is closed.
                    (Shutdown::Graceful, Some(_)) => match activity.idle_deadline(GOAWAY_CLOSE_LIMIT) {
                        Some(deadline) if deadline <= now => return,
                        Some(deadline) => timer.as_mut().reset(deadline),
                        None => timer.as_mut().reset(now + CLOSE_RECHECK),
                    },
                    (Shutdown::No, Some(limit)) => match activity.idle_deadline(limit) {
                        Some(deadline) if deadline <= now => begin_graceful!(),
                        Some(deadline) => timer.as_mut().reset(deadline),
                        None => timer.as_mut().reset(now + limit),
                    },
                }
            }
        }
    }
}

fn report_connection_error(shared: &Shared, err: &hyper::Error) {
    if err.is_parse() || err.is_parse_too_large() || err.is_parse_status() {
        // hyper has already answered 400/431 and will close the connection.
        shared.bridge.log(
            LogLevel::Warning,
            "Invalid HTTP request received.".to_owned(),
        );
    } else {
        shared
            .bridge
            .log(LogLevel::Debug, format!("Connection closed: {err}"));
    }
}

/// A TCP or Unix stream, so that each protocol stack is compiled once, not once per socket type.
/// Counts the reads that return data, for [`ConnActivity`].
pub struct Transport {
    socket: Socket,
    activity: Arc<ConnActivity>,
}

enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Socket::Tcp(s) => s.as_raw_fd(),
            Socket::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = match &mut this.socket {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
        };
        if buf.filled().len() > before {
            this.activity.reads.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().socket {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().socket {
            Socket::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Socket::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.socket {
            Socket::Tcp(s) => s.is_write_vectored(),
            Socket::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().socket {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().socket {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
