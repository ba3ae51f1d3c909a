//! One accepted connection before HTTP: the PROXY protocol header (`--proxy-protocol`), then the
//! TLS handshake (ALPN picks the protocol) or, in cleartext, HTTP/2 prior-knowledge detection;
//! then the chosen protocol serves it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

use crate::bridge::LogLevel;
use crate::conn::ConnActivity;
use crate::errors::ProxyReadError;
use crate::http::{serve_http1, serve_http2};
use crate::net::sendfile::SendfileQueue;
use crate::net::{Accepted, ConnInfo, ProxiedAddresses, ReadCount, Socket, Transport, WriteStall};
use crate::phase::{Phase, PhaseAction};
use crate::server::proxy_header;
use crate::settings::ProxyProtocolSettings;
use crate::shared::Shared;
use crate::tls::TlsInfo;

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113 §3.4).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub async fn serve_connection(
    shared: &Arc<Shared>,
    accepted: Accepted,
    unix_path: Option<Arc<str>>,
) {
    // What the transport will count and note, shared with the connection's activity from the
    // start: the PROXY protocol step already needs the activity.
    let reads = Arc::new(ReadCount::default());
    let write_stall = Arc::new(WriteStall::default());
    let fd = match &accepted {
        Accepted::Tcp(stream, ..) => stream.as_raw_fd(),
        Accepted::Unix(stream) => stream.as_raw_fd(),
    };
    let activity = ConnActivity::new(fd, reads.clone(), write_stall.clone());
    let (socket, mut conn) = match accepted {
        Accepted::Tcp(mut stream, peer, local) => {
            // With --proxy-protocol, the addresses a trusted proxy's header carries.
            let (client, server) = match &shared.settings.proxy_protocol {
                None => (peer, local),
                Some(proxy) => {
                    match proxy_step(shared, &activity, &mut stream, proxy, peer).await {
                        Some(ProxiedAddresses::Tcp {
                            source,
                            destination,
                        }) => (source, Some(destination)),
                        Some(ProxiedAddresses::Keep) => (peer, local),
                        None => return,
                    }
                }
            };
            // X-Forwarded-* trust is the scope's client's: the proxy's header named it.
            let trusted_proxy = shared
                .settings
                .proxies
                .as_ref()
                .is_some_and(|proxies| proxies.trusts(&client.ip().to_string()));
            (
                Socket::Tcp(stream),
                ConnInfo::tcp(client, server, trusted_proxy),
            )
        }
        Accepted::Unix(stream) => {
            let trusted_proxy = match (&shared.settings.proxies, &unix_path) {
                (Some(proxies), Some(path)) => proxies.trusts(path),
                _ => false,
            };
            (
                Socket::Unix(stream),
                ConnInfo::unix(unix_path, trusted_proxy),
            )
        }
    };
    let mut transport = Transport::new(socket, reads, write_stall);
    if shared.settings.tls.is_none() {
        // Cleartext: file bodies may leave their bytes to sendfile(2) (net::sendfile).
        let queue = Arc::new(SendfileQueue::default());
        transport = transport.with_sendfile(queue.clone());
        conn.sendfile = Some(queue);
    }
    match &shared.settings.tls {
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
    if shared.settings.http2.is_none() {
        // HTTP/1.1 only: nothing to detect; hyper's header timeout bounds a silent client.
        return serve_http1(shared, transport, Arc::new(conn), activity).await;
    }
    // A connection that never sends a byte is closed like an idle keep-alive connection.
    let detection = timeout(shared.settings.keep_alive_timeout, detect_http2(transport));
    match unless_abandoned(shared, &activity, detection).await {
        Some(Ok(Ok((true, io)))) if shared.settings.http2.is_some() => {
            serve_http2(shared, io, Arc::new(conn), activity).await
        }
        Some(Ok(Ok((_, io)))) => serve_http1(shared, io, Arc::new(conn), activity).await,
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
    let Some(tls) = &shared.settings.tls else {
        return;
    };
    // A silent or trickling client would otherwise hold a socket and a task for free.
    let handshake = timeout(
        shared.settings.tls_handshake_timeout,
        tls.acceptor.accept(transport),
    );
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
    if h2 && shared.settings.http2.is_some() {
        serve_http2(shared, stream, conn, activity).await
    } else {
        serve_http1(shared, stream, conn, activity).await
    }
}

/// The PROXY protocol step (see [`proxy_header`]): the addresses to use, or `None` when the
/// connection is dropped (with a log line, unless it went silent or the server is closing).
async fn proxy_step(
    shared: &Shared,
    activity: &ConnActivity,
    stream: &mut TcpStream,
    proxy: &ProxyProtocolSettings,
    peer: SocketAddr,
) -> Option<ProxiedAddresses> {
    let trusted = proxy.trusted.trusts(&peer.ip().to_string());
    // Bounded like protocol detection: a silent or trickling peer is closed like an idle one.
    let step = async {
        if trusted {
            proxy_header::read_header(stream, proxy.versions).await
        } else {
            proxy_header::refuse_header(stream)
                .await
                .map(|()| ProxiedAddresses::Keep)
        }
    };
    let outcome = unless_abandoned(
        shared,
        activity,
        timeout(shared.settings.keep_alive_timeout, step),
    )
    .await?;
    let problem = match outcome {
        Ok(Ok(addresses)) => return Some(addresses),
        Ok(Err(ProxyReadError::Silent)) => return None,
        Ok(Err(err)) => err.to_string(),
        Err(_) if trusted => "timed out waiting for the PROXY protocol header".to_owned(),
        Err(_) => return None, // an untrusted peer that never spoke: an idle connection
    };
    shared.bridge.log(
        LogLevel::Warning,
        format!("Connection from {peer} dropped: {problem}."),
    );
    None
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
    let closing = phase.wait_for(|p| p.action() == PhaseAction::Close);
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
/// read is put back, for the protocol chosen to read again.
async fn detect_http2(mut transport: Transport) -> io::Result<(bool, Transport)> {
    let mut buffer = BytesMut::with_capacity(4096);
    loop {
        if transport.read_buf(&mut buffer).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let seen = buffer.len().min(HTTP2_PREFACE.len());
        let http2 = if buffer[..seen] != HTTP2_PREFACE[..seen] {
            false
        } else if seen == HTTP2_PREFACE.len() {
            true
        } else {
            continue;
        };
        transport.put_back(buffer.freeze());
        return Ok((http2, transport));
    }
}

fn log_closed(shared: &Shared, err: &io::Error) {
    shared
        .bridge
        .log(LogLevel::Debug, format!("Connection closed: {err}"));
}
