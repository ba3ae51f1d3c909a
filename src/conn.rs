//! One accepted connection, from the first byte to close: the TLS handshake (ALPN picks the
//! protocol) or, in cleartext, HTTP/2 prior-knowledge detection; then hyper's HTTP/1.1 or
//! HTTP/2 connection, driven through the server's shutdown phases.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Notify;
use tokio::time::{timeout, Instant};

use crate::bridge::LogLevel;
use crate::exchange::ConnInfo;
use crate::listener::Accepted;
use crate::rewind::Rewind;
use crate::server::{phase_action, PhaseAction, Shared};
use crate::tls::TlsInfo;
use crate::{http1, http2};

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113 §3.4).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub async fn serve_connection(
    shared: &Arc<Shared>,
    accepted: Accepted,
    unix_path: Option<Arc<str>>,
) {
    let (transport, conn) = match accepted {
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
            (Transport::Tcp(stream), conn)
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
            (Transport::Unix(stream), conn)
        }
    };
    match &shared.tls {
        None => serve_cleartext(shared, transport, conn).await,
        Some(_) => serve_tls(shared, transport, conn).await,
    }
}

async fn serve_cleartext(shared: &Arc<Shared>, transport: Transport, conn: ConnInfo) {
    if shared.http2.is_none() {
        // HTTP/1.1 only: nothing to detect; hyper's header timeout bounds a silent client.
        let io = Rewind::new(bytes::Bytes::new(), transport);
        return http1::serve(shared, io, Arc::new(conn)).await;
    }
    // A connection that never sends a byte is closed like an idle keep-alive connection.
    let detection = timeout(shared.keep_alive_timeout, detect_http2(transport));
    match unless_shutting_down(shared, detection).await {
        Some(Ok(Ok((true, io)))) if shared.http2.is_some() => {
            http2::serve(shared, io, Arc::new(conn)).await
        }
        Some(Ok(Ok((_, io)))) => http1::serve(shared, io, Arc::new(conn)).await,
        Some(Ok(Err(err))) => log_closed(shared, &err),
        Some(Err(_)) | None => {}
    }
}

async fn serve_tls(shared: &Arc<Shared>, transport: Transport, mut conn: ConnInfo) {
    let Some(tls) = &shared.tls else { return };
    // A silent or trickling client would otherwise hold a socket and a task for free.
    let handshake = timeout(shared.tls_handshake_timeout, tls.acceptor.accept(transport));
    let stream = match unless_shutting_down(shared, handshake).await {
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
    if h2 && shared.http2.is_some() {
        http2::serve(shared, stream, conn).await
    } else {
        http1::serve(shared, stream, conn).await
    }
}

/// Runs `step` (a handshake, protocol detection) unless the server starts shutting down first:
/// a connection that has not sent a request yet has nothing to finish.
async fn unless_shutting_down<F: Future>(shared: &Shared, step: F) -> Option<F::Output> {
    let mut phase = shared.phase();
    tokio::select! {
        output = step => Some(output),
        _ = phase.wait_for(|p| !matches!(phase_action(*p), PhaseAction::Continue)) => None,
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

/// Counts a connection's open requests, for an idle timeout on protocols (HTTP/2) where hyper
/// has none.
pub struct StreamActivity {
    active: AtomicUsize,
    origin: Instant,
    /// When `active` last fell to zero, in milliseconds since `origin`.
    idle_since_ms: AtomicU64,
    /// Notified each time `active` falls to zero.
    became_idle: Notify,
}

impl StreamActivity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            active: AtomicUsize::new(0),
            origin: Instant::now(),
            idle_since_ms: AtomicU64::new(0),
            became_idle: Notify::new(),
        })
    }

    pub fn begin(self: &Arc<Self>) -> StreamGuard {
        self.active.fetch_add(1, Ordering::AcqRel);
        StreamGuard(self.clone())
    }

    fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// When the connection becomes idle for `limit`; `None` while a request is open.
    fn idle_deadline(&self, limit: Duration) -> Option<Instant> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(self.origin + since + limit)
    }
}

/// Held for as long as a request is open (until its response body ends or is dropped).
pub struct StreamGuard(Arc<StreamActivity>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            let elapsed = self.0.origin.elapsed().as_millis();
            self.0.idle_since_ms.store(
                u64::try_from(elapsed).unwrap_or(u64::MAX),
                Ordering::Release,
            );
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
    /// hyper's graceful shutdown has begun: no new requests, in-flight ones finish.
    Graceful,
}

/// Runs a hyper connection to its end: a graceful shutdown when the server drains (or the
/// connection has been idle for `idle`'s limit), an immediate close when it force-closes.
///
/// HTTP/2 (`idle` is set) defers its GOAWAY while streams are open, up to
/// [`GOAWAY_DEFERRAL_LIMIT`]: Python's h2 library (httpx, httpcore) fails every in-flight
/// request when it receives a GOAWAY, though RFC 9113 lets them finish. In the meantime new
/// streams are served as usual.
pub async fn drive<C>(
    shared: &Shared,
    connection: C,
    graceful_shutdown: fn(Pin<&mut C>),
    idle: Option<(&StreamActivity, Duration)>,
) where
    C: Future<Output = Result<(), hyper::Error>>,
{
    tokio::pin!(connection);
    let mut phase = shared.phase();
    let mut shutdown = Shutdown::No;
    let first_check = idle.map_or(Duration::from_secs(3600), |(_, limit)| limit);
    let timer = tokio::time::sleep(first_check);
    tokio::pin!(timer);
    // Starts hyper's graceful shutdown and arms the timer that closes the connection if the
    // client never finishes it (HTTP/2 only: HTTP/1.1 closes as soon as it is idle).
    macro_rules! begin_graceful {
        () => {{
            shutdown = Shutdown::Graceful;
            graceful_shutdown(connection.as_mut());
            timer.as_mut().reset(Instant::now() + GOAWAY_CLOSE_LIMIT);
        }};
    }
    loop {
        if shutdown == Shutdown::No {
            match phase_action(*phase.borrow_and_update()) {
                PhaseAction::Continue => {}
                PhaseAction::Graceful => match idle {
                    Some((activity, _)) if activity.active() > 0 => {
                        shutdown = Shutdown::AwaitingIdle;
                        timer.as_mut().reset(Instant::now() + GOAWAY_DEFERRAL_LIMIT);
                    }
                    _ => begin_graceful!(),
                },
                PhaseAction::Close => return,
            }
        }
        let became_idle = async {
            match idle {
                Some((activity, _)) => activity.became_idle.notified().await,
                None => std::future::pending().await,
            }
        };
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
            () = became_idle, if shutdown == Shutdown::AwaitingIdle => {
                if idle.is_some_and(|(activity, _)| activity.active() == 0) {
                    begin_graceful!();
                }
            }
            () = &mut timer, if idle.is_some() => {
                let Some((activity, limit)) = idle else { continue };
                let now = Instant::now();
                match shutdown {
                    Shutdown::AwaitingIdle => begin_graceful!(),
                    // GOAWAY sent and the client has not closed: GOAWAY_CLOSE_LIMIT after the
                    // last stream ended (time to flush it and answer the PING), it is closed.
                    Shutdown::Graceful => match activity.idle_deadline(GOAWAY_CLOSE_LIMIT) {
                        Some(deadline) if deadline <= now => return,
                        Some(deadline) => timer.as_mut().reset(deadline),
                        None => timer.as_mut().reset(now + CLOSE_RECHECK),
                    },
                    Shutdown::No => match activity.idle_deadline(limit) {
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
pub enum Transport {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Tcp(s) => s.is_write_vectored(),
            Transport::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_flush(cx),
            Transport::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
