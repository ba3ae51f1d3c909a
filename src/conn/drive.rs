//! Drives a hyper connection to its end through the server's shutdown phases: a graceful
//! shutdown when the server drains (or an HTTP/2 connection has been idle too long), an
//! immediate close when it force-closes.
//!
//! HTTP/1.1: hyper's graceful shutdown closes a connection at once when it is between requests
//! (or has not read its first one), even when the next request has been sent. So when the server
//! drains, a connection with no request open is closed at once only if it is a kept-alive one
//! on which nothing has arrived since its last response (the client races the close: the
//! classic keep-alive race, as with every server); one that never had a request, or on which
//! bytes have arrived (read, or waiting in the socket), is given [`Shared::drain_grace`] to
//! start its request, renewed while bytes keep coming.
//!
//! The slow-client timeouts (HTTP/1.1 keep-alive idle and request head, and the response write
//! timeout of every protocol) are [`ClientClock`]'s: the connection is dropped when one expires,
//! after a `408 Request Timeout` when it is an HTTP/1.1 head that took too long.
//!
//! HTTP/2 defers its GOAWAY by [`GOAWAY_DEFERRAL_LIMIT`] when streams were open as the drain
//! began: Python's h2 library (httpx, httpcore) fails every in-flight request when it receives a
//! GOAWAY, though RFC 9113 lets them finish, and it fails one whose last frames arrive together
//! with the GOAWAY and hyper's PING too, so the GOAWAY does not follow the last stream's end at
//! once. In the meantime new streams are served as usual.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use super::client_clock::{ClientClock, Expiry};
use super::control_wake::ControlWake;
use super::last_words::request_timeout_response;
use super::ConnActivity;
use crate::bridge::LogLevel;
use crate::phase::PhaseAction;
use crate::shared::Shared;

/// When the server drains, an HTTP/2 connection with open streams waits this long before it
/// sends GOAWAY.
const GOAWAY_DEFERRAL_LIMIT: Duration = Duration::from_secs(2);
/// After its GOAWAY, an HTTP/2 connection with no open stream waits this long for the client
/// to acknowledge hyper's PING, then it is closed: a client that never answers would otherwise
/// hold the connection (and a draining server) forever.
const GOAWAY_CLOSE_LIMIT: Duration = Duration::from_secs(2);
/// How often a GOAWAY'd HTTP/2 connection with open streams checks whether they have ended.
const CLOSE_RECHECK: Duration = Duration::from_millis(250);
/// The timer's deadline while nothing is timed.
const FAR_AWAY: Duration = Duration::from_secs(3600);
/// The longest a connection whose head timed out spends on its farewell (HTTP/1.1: saying its
/// 408 and waiting for the client to close; HTTP/2: its GOAWAY) before it is dropped.
const FAREWELL_LIMIT: Duration = Duration::from_secs(1);

/// The protocol hyper speaks on a connection given to [`drive`].
#[derive(Clone, Copy)]
pub enum Protocol {
    Http1,
    /// With the idle limit (hyper has none for HTTP/2).
    Http2 {
        idle_limit: Duration,
    },
}

/// Where a connection is in its shutdown.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    Serving,
    /// Draining, but the HTTP/2 GOAWAY waits (see [`GOAWAY_DEFERRAL_LIMIT`]).
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

/// What the connection must do after a transition.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Next {
    Wait,
    /// Begin hyper's graceful shutdown (GOAWAY on HTTP/2).
    GracefulShutdown,
    Close,
}

/// The shutdown state machine of one connection: its stage and the one timer it needs.
struct Shutdown<'a> {
    shared: &'a Shared,
    activity: &'a ConnActivity,
    protocol: Protocol,
    stage: Stage,
    deadline: Instant,
}

impl<'a> Shutdown<'a> {
    fn new(shared: &'a Shared, activity: &'a ConnActivity, protocol: Protocol) -> Self {
        let first_check = match protocol {
            Protocol::Http2 { idle_limit } => idle_limit,
            Protocol::Http1 => FAR_AWAY,
        };
        Self {
            shared,
            activity,
            protocol,
            stage: Stage::Serving,
            deadline: Instant::now() + first_check,
        }
    }

    /// Whether the timer matters: HTTP/2 always (idle limit, GOAWAY deadlines), HTTP/1.1 only
    /// while quiescing.
    fn timer_armed(&self) -> bool {
        matches!(self.protocol, Protocol::Http2 { .. }) || self.quiescing_since().is_some()
    }

    /// The request count when quiescing began, while quiescing.
    fn quiescing_since(&self) -> Option<u64> {
        match self.stage {
            Stage::Quiescing { requests, .. } => Some(requests),
            _ => None,
        }
    }

    /// The server's phase, while still serving.
    fn on_phase(&mut self, action: PhaseAction) -> Next {
        match (action, self.protocol) {
            (PhaseAction::Continue, _) => Next::Wait,
            (PhaseAction::Close, _) => Next::Close,
            (PhaseAction::Graceful, Protocol::Http2 { .. })
                if self.activity.open_at(self.shared.drain_began()) =>
            {
                self.stage = Stage::AwaitingIdle;
                self.deadline = Instant::now() + GOAWAY_DEFERRAL_LIMIT;
                Next::Wait
            }
            (PhaseAction::Graceful, Protocol::Http2 { .. }) => self.begin_graceful(),
            (PhaseAction::Graceful, Protocol::Http1) => {
                let may_wait = self.activity.requests() == 0 || self.activity.request_arriving();
                self.drain_http1(may_wait)
            }
        }
    }

    /// A phase change after the shutdown began: only a forced close matters.
    fn on_later_phase(&mut self, action: PhaseAction) -> Next {
        match action {
            PhaseAction::Close => Next::Close,
            PhaseAction::Continue | PhaseAction::Graceful => Next::Wait,
        }
    }

    /// Starts hyper's graceful shutdown and arms the deadline that closes the connection if
    /// the client never finishes it (HTTP/2 only: HTTP/1.1 closes as soon as it is idle).
    fn begin_graceful(&mut self) -> Next {
        self.stage = Stage::Graceful;
        self.deadline = Instant::now() + GOAWAY_CLOSE_LIMIT;
        Next::GracefulShutdown
    }

    /// HTTP/1.1 while draining: graceful shutdown now if a request is open (hyper then closes
    /// after its response) or if nothing can be arriving; otherwise wait (see `Quiescing`).
    fn drain_http1(&mut self, may_wait: bool) -> Next {
        if self.activity.active() == 0 && may_wait {
            self.stage = Stage::Quiescing {
                requests: self.activity.requests(),
                reads: self.activity.reads(),
            };
            self.deadline = Instant::now() + self.shared.drain_grace();
            Next::Wait
        } else {
            self.begin_graceful()
        }
    }

    /// A request began while quiescing. Open: served with `Connection: close`. Already answered
    /// (the server's own 400 or 503): the connection is kept-alive again, and decided as such.
    fn on_request_began(&mut self) -> Next {
        let arriving = self.activity.request_arriving();
        self.drain_http1(arriving)
    }

    fn on_timer(&mut self) -> Next {
        let now = Instant::now();
        let http2_idle_limit = match self.protocol {
            Protocol::Http2 { idle_limit } => Some(idle_limit),
            Protocol::Http1 => None,
        };
        match (self.stage, http2_idle_limit) {
            (Stage::Quiescing { requests, reads }, _) => {
                // Bytes still coming: wait on (the client clock's head limit bounds a slow head).
                // Silence for a whole grace period: close.
                let now_reads = self.activity.reads();
                if now_reads != reads || self.activity.input_pending() {
                    self.stage = Stage::Quiescing {
                        requests,
                        reads: now_reads,
                    };
                    self.deadline = now + self.shared.drain_grace();
                    Next::Wait
                } else {
                    self.begin_graceful()
                }
            }
            (_, None) => Next::Wait,
            (Stage::AwaitingIdle, Some(_)) => self.begin_graceful(),
            // GOAWAY sent and the client has not closed: GOAWAY_CLOSE_LIMIT after the last
            // stream ended (time to flush it and answer the PING), it is closed.
            (Stage::Graceful, Some(_)) => match self.activity.idle_deadline(GOAWAY_CLOSE_LIMIT) {
                Some(deadline) if deadline <= now => Next::Close,
                Some(deadline) => {
                    self.deadline = deadline;
                    Next::Wait
                }
                None => {
                    self.deadline = now + CLOSE_RECHECK;
                    Next::Wait
                }
            },
            (Stage::Serving, Some(limit)) => match self.activity.idle_deadline(limit) {
                Some(deadline) if deadline <= now => self.begin_graceful(),
                Some(deadline) => {
                    self.deadline = deadline;
                    Next::Wait
                }
                None => {
                    self.deadline = now + limit;
                    Next::Wait
                }
            },
        }
    }
}

/// Runs `connection` to its end. `graceful_shutdown` starts hyper's graceful shutdown on it.
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
    let mut shutdown = Shutdown::new(shared, activity, protocol);
    let head_limit = shared.settings.request_head_timeout;
    let (http1_limits, http2_head) = match protocol {
        Protocol::Http1 => (Some((shared.settings.keep_alive_timeout, head_limit)), None),
        Protocol::Http2 { .. } => (None, Some(head_limit)),
    };
    let mut clock = ClientClock::new(
        http1_limits,
        http2_head,
        shared.settings.response_write_timeout,
        activity,
    );
    // The connection's own timers live as long as it does and are reset when their deadlines
    // change; they and the phase watch are polled with `control`'s waker, only when one of
    // them has fired (see `ControlWake`), not on each wake-up hyper's reads and writes cause.
    let control = ControlWake::new();
    let control_waker = Waker::from(control.clone());
    let client_timer = tokio::time::sleep_until(clock.armed().unwrap_or_else(far_away));
    let shutdown_timer = tokio::time::sleep_until(shutdown.deadline);
    tokio::pin!(client_timer, shutdown_timer);
    loop {
        if shutdown.stage == Stage::Serving {
            let next = shutdown.on_phase(phase.borrow_and_update().action());
            match next {
                Next::Wait => {}
                Next::GracefulShutdown => graceful_shutdown(connection.as_mut()),
                Next::Close => return,
            }
        }
        let quiescing_since = shutdown.quiescing_since();
        let timer_armed = shutdown.timer_armed();
        // A reset registers the timer at once: only for one that is polled.
        if timer_armed && shutdown_timer.deadline() != shutdown.deadline {
            shutdown_timer.as_mut().reset(shutdown.deadline);
        }
        let client_deadline = clock.armed();
        if let Some(at) = client_deadline.filter(|&at| at != client_timer.deadline()) {
            client_timer.as_mut().reset(at);
        }
        // The client clocks run while serving and while quiescing: a head that began during
        // the drain must still end in time (nothing else bounds it: hyper's own head timer is
        // off, see http/h1.rs).
        let http1_timed = matches!(shutdown.stage, Stage::Serving | Stage::Quiescing { .. });
        // A reset timer, and the new watch future below, register their waker when polled.
        control.poll_all_next();
        let event = {
            let mut phase_changed = std::pin::pin!(phase.changed());
            std::future::poll_fn(|cx| {
                control.register(cx.waker());
                // The connection first: the phase rarely changes.
                match connection.as_mut().poll(cx) {
                    Poll::Ready(result) => return Poll::Ready(Event::Ended(result)),
                    Poll::Pending if clock.observe(activity, http1_timed) => {
                        return Poll::Ready(Event::ClockChanged)
                    }
                    Poll::Pending => {}
                }
                // Checked in the order of their importance: a forced close (the phase) before
                // a request that began meanwhile.
                let fired = control.take_fired();
                let mut own = Context::from_waker(&control_waker);
                if fired {
                    if client_deadline.is_some() && client_timer.as_mut().poll(&mut own).is_ready()
                    {
                        return Poll::Ready(Event::ClientTimer);
                    }
                    if let Poll::Ready(changed) = phase_changed.as_mut().poll(&mut own) {
                        return Poll::Ready(Event::PhaseChanged(changed.is_ok()));
                    }
                }
                // hyper calls the service (which begins the request) inside the connection's
                // poll, in this task: checked right after it, this needs no waker.
                if quiescing_since.is_some_and(|requests| activity.requests() != requests) {
                    return Poll::Ready(Event::RequestBegan);
                }
                if fired && timer_armed && shutdown_timer.as_mut().poll(&mut own).is_ready() {
                    return Poll::Ready(Event::ShutdownTimer);
                }
                // Whichever of them returns Ready ends this wait, and the loop's next one polls
                // them all again (`poll_all_next` above).
                Poll::Pending
            })
            .await
        };
        let next = match event {
            Event::Ended(result) => {
                if let Err(err) = result {
                    report_connection_error(shared, &err);
                }
                return;
            }
            Event::ClockChanged => Next::Wait,
            Event::ClientTimer => match clock.expired(activity, http1_timed) {
                Some(Expiry::Head) if matches!(protocol, Protocol::Http2 { .. }) => {
                    // A header block left open: GOAWAY, then the close (within a second,
                    // whatever the client does; its other streams get that second).
                    report_slow_client(shared, Expiry::Head);
                    graceful_shutdown(connection.as_mut());
                    let _ = tokio::time::timeout(FAREWELL_LIMIT, connection.as_mut()).await;
                    return;
                }
                Some(Expiry::Head) if activity.write_stalled_since().is_none() => {
                    // RFC 9110 §15.5.9: the client that began a head gets 408 before the
                    // close. No request is open (the head clock runs only then) and nothing
                    // is unflushed (the socket refuses no write), so the 408 follows the
                    // last response whole; the stream under hyper says it (LastWords) at
                    // hyper's next read, then ends.
                    report_slow_client(shared, Expiry::Head);
                    activity.say_last_words(request_timeout_response(shared.settings.date_header));
                    let _ = tokio::time::timeout(FAREWELL_LIMIT, connection.as_mut()).await;
                    return;
                }
                Some(expiry) => {
                    report_slow_client(shared, expiry);
                    Next::Close
                }
                None => Next::Wait,
            },
            Event::PhaseChanged(false) => Next::Close,
            Event::PhaseChanged(true) if shutdown.stage != Stage::Serving => {
                shutdown.on_later_phase(phase.borrow().action())
            }
            // Handled at the top of the loop.
            Event::PhaseChanged(true) => Next::Wait,
            Event::RequestBegan => shutdown.on_request_began(),
            Event::ShutdownTimer => shutdown.on_timer(),
        };
        match next {
            Next::Wait => {}
            Next::GracefulShutdown => graceful_shutdown(connection.as_mut()),
            Next::Close => return,
        }
    }
}

/// What ended one wait of [`drive`]'s loop.
enum Event {
    /// The connection ended.
    Ended(Result<(), hyper::Error>),
    /// The client clock's deadline came earlier, or one appeared: its timer is to be reset.
    ClockChanged,
    /// The client clock's timer fired.
    ClientTimer,
    /// The server's phase changed (`false`: its sender is gone).
    PhaseChanged(bool),
    /// A request began while quiescing.
    RequestBegan,
    /// The shutdown state machine's timer fired.
    ShutdownTimer,
}

fn far_away() -> Instant {
    Instant::now() + FAR_AWAY
}

fn report_slow_client(shared: &Shared, expiry: Expiry) {
    let what = match expiry {
        Expiry::Idle => "keep-alive connection idle",
        Expiry::Head => "request head not received in time",
        Expiry::Write => "client stopped reading the response",
    };
    shared
        .bridge
        .log(LogLevel::Debug, format!("Connection closed: {what}."));
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
