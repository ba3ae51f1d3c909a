//! The tokio side: accept loops, one task per connection, and the shutdown phases.
//!
//! The runtime has one worker thread ("ferrocorn-io"). It never touches Python: requests leave through the [`Bridge`], responses come back through each
//! [`Exchange`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::bridge::{Bridge, LogLevel};
use crate::http2::Http2Settings;
use crate::listener::Listener;
use crate::proxy::TrustedProxies;
use crate::tls::TlsSetup;
use crate::websocket::WsSettings;
use crate::{conn, http1};

/// Where the server is in its life. Connections watch this to close gracefully or at once.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    Running,
    /// Stop accepting; finish in-flight requests; close idle keep-alive connections.
    Draining,
    /// Drop every connection now.
    ForceClose,
    /// Leave the runtime.
    Stopped,
}

/// HTTP settings fixed at startup.
#[derive(Clone, Debug)]
pub struct Settings {
    pub keep_alive_timeout: Duration,
    pub max_header_size: Option<usize>,
    pub date_header: bool,
    /// `--limit-concurrency`: connections or in-flight requests allowed before answering 503.
    pub limit_concurrency: Option<usize>,
    /// `--proxy-headers` with `--forwarded-allow-ips`; `None` when proxy headers are off.
    pub proxies: Option<TrustedProxies>,
    /// WebSocket settings; `None` with `--ws none` (upgrades are served as plain HTTP).
    pub websocket: Option<Arc<WsSettings>>,
    /// `None` serves HTTP/1.1 only.
    pub http2: Option<Http2Settings>,
    /// A TLS client must finish its handshake within this time.
    pub tls_handshake_timeout: Duration,
}

/// The most [`Shared::drain_grace`] gives a connection to start its request.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// State shared by every task of the runtime. Holds no Python object.
pub struct Shared {
    pub bridge: Arc<Bridge>,
    pub http1: hyper::server::conn::http1::Builder,
    /// `None` serves HTTP/1.1 only. Each HTTP/2 connection builds its own hyper builder (its
    /// executor is per connection, see `stream_tasks`).
    pub http2: Option<Http2Settings>,
    pub date_header: bool,
    pub tls: Option<Arc<TlsSetup>>,
    /// Idle limit for keep-alive connections, HTTP/2 connections and protocol detection.
    pub keep_alive_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    next_request_id: AtomicU64,
    connections: AtomicUsize,
    /// Requests handed to Python whose exchange is still alive (app running or response in flight).
    pub in_flight: Arc<AtomicUsize>,
    limit_concurrency: Option<usize>,
    pub proxies: Option<TrustedProxies>,
    pub websocket: Option<Arc<WsSettings>>,
    phase: watch::Sender<Phase>,
    /// When the phase became [`Phase::Draining`].
    drain_began: OnceLock<Instant>,
}

impl Shared {
    pub fn new(bridge: Arc<Bridge>, settings: Settings, tls: Option<Arc<TlsSetup>>) -> Self {
        let http1 = http1::builder(&settings);
        let http2 = settings.http2.clone();
        let (phase, _) = watch::channel(Phase::Running);
        Self {
            bridge,
            http1,
            http2,
            date_header: settings.date_header,
            tls,
            keep_alive_timeout: settings.keep_alive_timeout,
            tls_handshake_timeout: settings.tls_handshake_timeout,
            next_request_id: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
            in_flight: Arc::new(AtomicUsize::new(0)),
            limit_concurrency: settings.limit_concurrency,
            proxies: settings.proxies.clone(),
            websocket: settings.websocket.clone(),
            phase,
            drain_began: OnceLock::new(),
        }
    }

    pub fn next_request_id(&self) -> u64 {
        self.next_request_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Whether a new request would exceed `--limit-concurrency` (this connection included).
    pub fn over_concurrency_limit(&self) -> bool {
        self.limit_concurrency.is_some_and(|limit| {
            self.connection_count() > limit || self.in_flight.load(Ordering::Acquire) >= limit
        })
    }

    pub fn set_phase(&self, phase: Phase) {
        if phase == Phase::Draining {
            let _ = self.drain_began.set(Instant::now());
        }
        self.phase.send_replace(phase);
    }

    pub fn drain_began(&self) -> Option<Instant> {
        self.drain_began.get().copied()
    }

    pub fn phase(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// How long, once the server drains, a connection that has not started its request yet is
    /// given to start it: the client may have sent it already.
    pub fn drain_grace(&self) -> Duration {
        self.keep_alive_timeout.min(DRAIN_GRACE)
    }

    /// Count a connection that outlives its HTTP task (an upgraded WebSocket) until dropped.
    pub fn track_connection(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard(self.clone())
    }
}

/// A listener plus what the scope reports as `server` for a Unix socket.
pub struct Endpoint {
    pub listener: Listener,
    pub unix_path: Option<Arc<str>>,
}

/// Runs until the phase becomes [`Phase::Stopped`].
pub async fn serve(shared: Arc<Shared>, endpoints: Vec<Endpoint>) {
    for endpoint in endpoints {
        tokio::spawn(accept_loop(shared.clone(), endpoint));
    }
    let mut phase = shared.phase();
    while *phase.borrow_and_update() != Phase::Stopped {
        if phase.changed().await.is_err() {
            break;
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, endpoint: Endpoint) {
    let mut phase = shared.phase();
    loop {
        // The phase first: once draining, not one more connection is taken from the socket
        // (other workers sharing it take the rest).
        let accepted = tokio::select! {
            biased;
            _ = phase.wait_for(|p| *p != Phase::Running) => return,
            accepted = endpoint.listener.accept() => accepted,
        };
        match accepted {
            Ok(accepted) => {
                shared.connections.fetch_add(1, Ordering::AcqRel);
                let guard = ConnectionGuard(shared.clone());
                let unix_path = endpoint.unix_path.clone();
                tokio::spawn(async move {
                    conn::serve_connection(&guard.0, accepted, unix_path).await;
                    drop(guard);
                });
            }
            Err(err) => {
                // EMFILE and friends: back off briefly instead of spinning.
                shared.bridge.log(
                    LogLevel::Error,
                    format!("Error accepting connection: {err}"),
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Keeps the live-connection count exact, whichever way a connection task ends.
pub struct ConnectionGuard(Arc<Shared>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How the connection loop reacts to a phase change.
pub enum PhaseAction {
    Continue,
    Graceful,
    Close,
}

pub fn phase_action(phase: Phase) -> PhaseAction {
    match phase {
        Phase::Running => PhaseAction::Continue,
        Phase::Draining => PhaseAction::Graceful,
        Phase::ForceClose | Phase::Stopped => PhaseAction::Close,
    }
}
