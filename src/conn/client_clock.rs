//! The slow-client timeouts of one connection that hyper cannot apply itself:
//!
//! * HTTP/1.1 keep-alive idle (`--timeout-keep-alive`) and request head
//!   (`--timeout-request-head`). hyper's `header_read_timeout` starts when the connection becomes
//!   idle, so it cannot tell a silent keep-alive connection from a slow head: here the idle clock
//!   runs until the first byte of the next head arrives, then the head clock runs from that byte
//!   until hyper hands the request to the service.
//! * HTTP/2 request head (`--timeout-request-head`): a request header block that has begun and
//!   not ended (`HeaderBlockWatch`) for that long.
//! * Response write (`--timeout-response-write`), every protocol: a socket that has refused
//!   every write for that long belongs to a client that stopped reading; the connection is
//!   dropped, so the app's `send()` raises `ClientDisconnected` instead of waiting for ever.
//!
//! The connection's task looks at the clock after each poll of the hyper connection (cheap:
//! atomics only), so a change of deadline is seen as soon as hyper has read or written.

use std::time::Duration;

use tokio::time::Instant;

use super::ConnActivity;

pub struct ClientClock {
    /// The HTTP/1.1 limits, `(keep-alive idle, request head)`; `None` on HTTP/2 (which has its
    /// own idle limit, and `http2_head`).
    http1: Option<(Duration, Duration)>,
    /// HTTP/2: the request head limit, on a header block that stays open (`HeaderBlockWatch`).
    http2_head: Option<Duration>,
    write_limit: Duration,
    /// The request count and the instant at which the next head's first bytes were seen.
    head_began: Option<(u64, Instant)>,
    /// The deadline the connection's timer is set to.
    armed: Option<Instant>,
}

/// What a deadline that has passed means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// A keep-alive connection idle for too long.
    Idle,
    /// A request head not complete in time.
    Head,
    /// A client that stopped reading.
    Write,
}

impl ClientClock {
    pub fn new(
        http1: Option<(Duration, Duration)>,
        http2_head: Option<Duration>,
        write_limit: Duration,
        activity: &ConnActivity,
    ) -> Self {
        let mut clock = Self {
            http1,
            http2_head,
            write_limit,
            head_began: None,
            armed: None,
        };
        clock.armed = clock.deadline(activity, true).map(|(at, _)| at);
        clock
    }

    /// The deadline to sleep until (`None`: nothing is timed now).
    pub fn armed(&self) -> Option<Instant> {
        self.armed
    }

    /// After a poll of the connection: notes a head that began and re-arms. `true` if the
    /// caller's timer must be reset.
    ///
    /// The timer is lazy: it is reset only when the deadline comes *earlier* than the one armed
    /// (or one appears where none was). A deadline that moves later (each response pushes the
    /// keep-alive deadline on) or goes away (a request is open) leaves the timer where it is;
    /// when it fires, [`ClientClock::expired`] finds nothing due and re-arms it exactly. So a
    /// request costs no timer registration, where it cost two (measured: docs/performance.md),
    /// and no deadline is ever missed: the armed one is never later than the true one.
    pub fn observe(&mut self, activity: &ConnActivity, http1_timed: bool) -> bool {
        self.note_head(activity);
        let next = self.deadline(activity, http1_timed).map(|(at, _)| at);
        let earlier = match (self.armed, next) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(armed), Some(at)) => at < armed,
        };
        if earlier {
            self.armed = next;
        }
        earlier
    }

    /// Re-arm at the exact deadline (after the timer fired).
    fn rearm(&mut self, activity: &ConnActivity, http1_timed: bool) {
        self.note_head(activity);
        self.armed = self.deadline(activity, http1_timed).map(|(at, _)| at);
    }

    /// Notes the instant the next head's first bytes were seen.
    fn note_head(&mut self, activity: &ConnActivity) {
        if self.http1.is_some() && activity.active() == 0 {
            let requests = activity.requests();
            let stale = self
                .head_began
                .is_some_and(|(began_at, _)| began_at != requests);
            if stale || (self.head_began.is_none() && activity.read_since_idle()) {
                self.head_began = activity
                    .read_since_idle()
                    .then(|| (requests, Instant::now()));
            }
        }
    }

    /// At the armed deadline: what expired, if anything (it re-arms otherwise).
    pub fn expired(&mut self, activity: &ConnActivity, http1_timed: bool) -> Option<Expiry> {
        let now = Instant::now();
        let due = self
            .deadline(activity, http1_timed)
            .filter(|(at, _)| *at <= now)
            .map(|(_, what)| what);
        let expiry = match due {
            // The head's first bytes may be in the socket, not read yet: the head clock starts.
            Some(Expiry::Idle) if activity.input_pending() => {
                self.head_began = Some((activity.requests(), now));
                None
            }
            other => other,
        };
        if expiry.is_none() {
            self.rearm(activity, http1_timed);
        }
        expiry
    }

    /// The earliest deadline and what it bounds. The HTTP/1.1 clocks run only while
    /// `http1_timed` (the connection serves, or waits for a request during the drain; once
    /// hyper's graceful shutdown has begun it reads no further head) and no request is open.
    fn deadline(&self, activity: &ConnActivity, http1_timed: bool) -> Option<(Instant, Expiry)> {
        let write = activity
            .write_stalled_since()
            .map(|since| (since + self.write_limit, Expiry::Write));
        let http1 = match self.http1 {
            Some((idle, head)) if http1_timed => {
                match (self.head_began, activity.idle_deadline(idle)) {
                    (_, None) => None,
                    (Some((requests, began)), Some(_)) if requests == activity.requests() => {
                        Some((began + head, Expiry::Head))
                    }
                    (_, Some(at)) => Some((at, Expiry::Idle)),
                }
            }
            _ => None,
        };
        let http2_head = self.http2_head.and_then(|limit| {
            activity
                .header_block_open_since()
                .map(|since| (since + limit, Expiry::Head))
        });
        [write, http1, http2_head]
            .into_iter()
            .flatten()
            .min_by_key(|(at, _)| *at)
    }
}
