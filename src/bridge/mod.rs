//! The hand-off from the tokio side to the asyncio side, generic over what it hands off.
//!
//! Rust threads never take the GIL. They push [`Event`]s into one queue and signal an eventfd
//! that the asyncio loop watches with `loop.add_reader`; the loop then drains every queued event
//! in one callback.
//!
//! The signal is deferred: the I/O thread signals when it is about to park (it has nothing left
//! to do but wait, usually for Python), or at once when the batch is large or has waited too
//! long. Both threads usually share one core, so waking Python in the middle of an I/O pass
//! would only make the two threads take turns per request; deferring makes one wake-up carry
//! the whole pass's requests.

mod eventfd;
mod wake;

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::errors::CoreError;
use eventfd::EventFd;
pub use wake::{split_wake_id, SendRoom, WaitKind, Waiting, WakeSink};

/// Something the Python side has to act on. `J` is what starts an app (the bridge does not
/// know what a request is).
pub enum Event<J> {
    /// Start an app.
    Start(J),
    /// The Python future registered under this id can make progress.
    Wake(u64),
    /// A log record produced on the tokio side.
    Log(LogLevel, String),
}

#[derive(Clone, Copy, Debug)]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
}

impl LogLevel {
    pub fn as_python_level(self) -> i32 {
        match self {
            LogLevel::Debug => 10,
            LogLevel::Info => 20,
            LogLevel::Warning => 30,
            LogLevel::Error => 40,
        }
    }
}

thread_local! {
    /// True on the I/O thread, whose park hook flushes the queue; pushes from any other thread
    /// must wake the loop themselves.
    static ON_IO_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the calling thread as the I/O thread (see [`Bridge::push`]).
pub fn mark_io_thread() {
    ON_IO_THREAD.with(|flag| flag.set(true));
}

/// Signal at once when this many events are waiting...
const MAX_BATCH: usize = 64;
/// ...or when the oldest unsignalled event is this old.
const MAX_DELAY: Duration = Duration::from_micros(500);

struct Queue<J> {
    events: Vec<Event<J>>,
    /// When the first event not yet signalled was queued.
    oldest_unsignalled: Option<Instant>,
}

pub struct Bridge<J> {
    queue: Mutex<Queue<J>>,
    /// True while a wake-up is pending (the eventfd was written and not yet drained).
    armed: AtomicBool,
    eventfd: EventFd,
}

impl<J> Bridge<J> {
    pub fn new() -> Result<Self, CoreError> {
        Ok(Self {
            queue: Mutex::new(Queue {
                events: Vec::with_capacity(256),
                oldest_unsignalled: None,
            }),
            armed: AtomicBool::new(false),
            eventfd: EventFd::new()?,
        })
    }

    pub fn fileno(&self) -> RawFd {
        self.eventfd.fileno()
    }

    /// Queue an event from the I/O thread; the loop is woken by [`Bridge::flush`] before the
    /// thread parks, or now if the batch is already large or old.
    pub fn push(&self, event: Event<J>) {
        if !ON_IO_THREAD.with(|flag| flag.get()) {
            self.push_now(event);
            return;
        }
        let mut queue = self.queue.lock();
        queue.events.push(event);
        let len = queue.events.len();
        // The clock is read once per batch and checked every 16 events, not on every push.
        let now_due = match queue.oldest_unsignalled {
            None => {
                queue.oldest_unsignalled = Some(Instant::now());
                len >= MAX_BATCH
            }
            Some(since) => len >= MAX_BATCH || (len % 16 == 0 && since.elapsed() >= MAX_DELAY),
        };
        if now_due {
            queue.oldest_unsignalled = None;
            drop(queue);
            self.wake();
        }
    }

    /// Queue an event and wake the loop now (for pushes from threads that do not park through
    /// the runtime, and for rare events).
    pub fn push_now(&self, event: Event<J>) {
        self.queue.lock().events.push(event);
        self.wake();
    }

    /// Wake the loop if events are waiting. Called by the I/O thread before it parks.
    pub fn flush(&self) {
        let mut queue = self.queue.lock();
        if queue.events.is_empty() {
            return;
        }
        queue.oldest_unsignalled = None;
        drop(queue);
        self.wake();
    }

    fn wake(&self) {
        if !self.armed.swap(true, Ordering::AcqRel) {
            self.eventfd.signal();
        }
    }

    pub fn log(&self, level: LogLevel, message: String) {
        self.push_now(Event::Log(level, message));
    }

    /// Take every queued event. `spare` is an empty vector that becomes the new queue, so the
    /// steady state allocates nothing.
    pub fn take(&self, spare: Vec<Event<J>>) -> Vec<Event<J>> {
        // Order matters. The eventfd is drained *before* disarming: disarming first would let a
        // producer signal in between, the read would swallow that signal, and `armed` would
        // stay true with nothing pending, so no later push would ever wake the loop again.
        // After disarming, every event pushed is either in the queue taken below or signalled.
        self.eventfd.drain();
        self.armed.store(false, Ordering::Release);
        let mut queue = self.queue.lock();
        queue.oldest_unsignalled = None;
        std::mem::replace(&mut queue.events, spare)
    }
}

impl<J: Send> WakeSink for Bridge<J> {
    fn wake(&self, id: u64) {
        self.push(Event::Wake(id));
    }
}

#[cfg(test)]
mod tests {
    use super::{mark_io_thread, Bridge, Event};

    type TestBridge = Bridge<()>;

    fn pending_wakeups(bridge: &TestBridge) -> u64 {
        bridge.eventfd.drain()
    }

    #[test]
    fn pushes_from_other_threads_signal_at_once() {
        let bridge = TestBridge::new().expect("eventfd"); // ok: test-only
        bridge.push(Event::Wake(1));
        bridge.push(Event::Wake(2));
        assert_eq!(pending_wakeups(&bridge), 1, "one wake-up for both events");
        let events = bridge.take(Vec::new());
        assert_eq!(events.len(), 2);
        bridge.push(Event::Wake(3));
        assert_eq!(pending_wakeups(&bridge), 1, "re-armed after take()");
    }

    /// Producer and consumer race for a while; every event must arrive through a wake-up.
    #[test]
    fn no_wakeup_is_lost_under_contention() {
        use std::sync::Arc;
        let bridge = Arc::new(TestBridge::new().expect("eventfd")); // ok: test-only
        let total: u64 = 200_000;
        let producer_side = bridge.clone();
        let producer = std::thread::spawn(move || {
            mark_io_thread();
            for i in 0..total {
                producer_side.push(Event::Wake(i));
                if i % 7 == 0 {
                    producer_side.flush();
                }
            }
            producer_side.flush();
        });
        let mut received: u64 = 0;
        let mut spare = Vec::new();
        while received < total {
            let mut poll = libc::pollfd {
                fd: bridge.fileno(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut poll, 1, 2000) };
            assert!(
                ready > 0,
                "lost wake-up: {received} of {total} events arrived"
            );
            let mut events = bridge.take(spare);
            received += events.len() as u64;
            events.clear();
            spare = events;
        }
        producer.join().expect("producer"); // ok: test-only
    }

    #[test]
    fn io_thread_pushes_wait_for_flush() {
        let bridge = std::sync::Arc::new(TestBridge::new().expect("eventfd")); // ok: test-only
        let io_side = bridge.clone();
        std::thread::spawn(move || {
            mark_io_thread();
            io_side.push(Event::Wake(1));
        })
        .join()
        .expect("thread"); // ok: test-only
        assert_eq!(
            pending_wakeups(&bridge),
            0,
            "not signalled before the park hook"
        );
        bridge.flush();
        assert_eq!(pending_wakeups(&bridge), 1);
        assert_eq!(bridge.take(Vec::new()).len(), 1);
    }
}
