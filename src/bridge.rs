//! The hand-off from the tokio side to the asyncio side.
//!
//! Rust threads never take the GIL. They push [`Event`]s into one queue and write to an eventfd
//! that the asyncio loop watches with `loop.add_reader`; the loop then drains every queued event
//! in one callback.
//!
//! The write is deferred: the I/O thread signals when it is about to park (it has nothing left
//! to do but wait, usually for Python), or at once when the batch is large or has waited too
//! long. Both threads usually share one core, so waking Python in the middle of an I/O pass
//! would only make the two threads take turns per request; deferring makes one wake-up carry
//! the whole pass's requests.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::errors::CoreError;
use crate::exchange::RequestHead;

/// Something the Python side has to act on.
pub enum Event {
    /// A parsed request whose ASGI app must be started.
    Request(Box<RequestHead>),
    /// A WebSocket handshake whose ASGI app must be started.
    WebSocket(Box<crate::websocket::upgrade::WsHead>),
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

struct Queue {
    events: Vec<Event>,
    /// When the first event not yet signalled was queued.
    oldest_unsignalled: Option<Instant>,
}

pub struct Bridge {
    queue: Mutex<Queue>,
    /// True while a wake-up is pending (the eventfd was written and not yet drained).
    armed: AtomicBool,
    eventfd: OwnedFd,
}

impl Bridge {
    pub fn new() -> Result<Self, CoreError> {
        // SAFETY: eventfd has no memory-safety preconditions; we check the result.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(CoreError::Io(std::io::Error::last_os_error()));
        }
        Ok(Self {
            queue: Mutex::new(Queue {
                events: Vec::with_capacity(256),
                oldest_unsignalled: None,
            }),
            armed: AtomicBool::new(false),
            // SAFETY: fd is a fresh descriptor that nothing else owns.
            eventfd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn fileno(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    /// Queue an event from the I/O thread; the loop is woken by [`Bridge::flush`] before the
    /// thread parks, or now if the batch is already large or old.
    pub fn push(&self, event: Event) {
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
    pub fn push_now(&self, event: Event) {
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
            self.signal();
        }
    }

    pub fn log(&self, level: LogLevel, message: String) {
        self.push_now(Event::Log(level, message));
    }

    fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a valid u64 to our own eventfd. EAGAIN (counter
        // saturated) means the loop is already due to wake, so the result can be ignored.
        unsafe {
            libc::write(
                self.eventfd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
    }

    /// Take every queued event. `spare` is an empty vector that becomes the new queue, so the
    /// steady state allocates nothing.
    pub fn take(&self, spare: Vec<Event>) -> Vec<Event> {
        // Order matters. The eventfd is drained *before* disarming: disarming first would let a
        // producer signal in between, the read would swallow that signal, and `armed` would
        // stay true with nothing pending, so no later push would ever wake the loop again.
        // After disarming, every event pushed is either in the queue taken below or signalled.
        let mut counter: u64 = 0;
        // SAFETY: reading 8 bytes into a valid u64 from our own non-blocking eventfd.
        unsafe {
            libc::read(
                self.eventfd.as_raw_fd(),
                (&mut counter as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
        self.armed.store(false, Ordering::Release);
        let mut queue = self.queue.lock();
        queue.oldest_unsignalled = None;
        std::mem::replace(&mut queue.events, spare)
    }
}

#[cfg(test)]
mod tests {
    use super::{mark_io_thread, Bridge, Event};

    fn pending_wakeups(bridge: &Bridge) -> u64 {
        let mut counter: u64 = 0;
        // SAFETY: reading 8 bytes into a valid u64 from the bridge's non-blocking eventfd.
        let read = unsafe {
            libc::read(
                bridge.fileno(),
                (&mut counter as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        if read == 8 {
            counter
        } else {
            0
        }
    }

    #[test]
    fn pushes_from_other_threads_signal_at_once() {
        let bridge = Bridge::new().expect("eventfd"); // ok: test-only
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
        let bridge = Arc::new(Bridge::new().expect("eventfd")); // ok: test-only
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
        let bridge = std::sync::Arc::new(Bridge::new().expect("eventfd")); // ok: test-only
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
