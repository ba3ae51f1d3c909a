//! Runs an HTTP/2 connection's per-stream futures inside the connection's own task.
//!
//! hyper hands every HTTP/2 stream to an executor. Spawned as separate tokio tasks, each
//! stream that gets its response wakes the connection task, which tokio's LIFO slot then runs
//! at once: one flush, so one `writev`, per response (measured: ~1 syscall per request under
//! `h2load -m10`). Polled here instead, all the streams whose responses arrived in one batch
//! from Python are advanced first and the connection flushes their frames together.
//!
//! Each stream is also watched here: a response that hyper cannot send because the client never
//! opens its flow-control window (`conn::StreamProgress`) for `--timeout-response-write` is
//! dropped, which resets the stream (RST_STREAM CANCEL) and tells the app its client is gone
//! (its `send()` raises `ClientDisconnected`); the connection's other streams go on.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use tokio::time::{Instant, Sleep};

use crate::conn::StreamProgress;

type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Passes for one wake-up of a connection before it yields to other connections.
const PASSES_PER_POLL: usize = 4;

/// The executor given to hyper's HTTP/2 builder: it queues stream futures for [`Joined`].
/// hyper keeps a clone in every stream: one `Arc` to count.
#[derive(Clone)]
pub struct StreamExecutor {
    queue: Arc<Mutex<Queue>>,
    /// `--timeout-response-write`.
    stall_limit: Duration,
}

#[derive(Default)]
struct Queue {
    spawned: Vec<Watched>,
    /// The progress of the stream hyper spawns next (see [`StreamExecutor::watch_next`]).
    next: Option<Arc<StreamProgress>>,
}

impl StreamExecutor {
    pub fn new(stall_limit: Duration) -> Self {
        Self {
            queue: Arc::default(),
            stall_limit,
        }
    }

    /// The stream hyper spawns next reports its progress here. hyper calls the service for a new
    /// stream and spawns the stream's future right after, in the same poll of the connection:
    /// the service calls this, and the spawn picks it up.
    pub fn watch_next(&self, progress: Arc<StreamProgress>) {
        self.queue.lock().next = Some(progress);
    }
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        let stream: StreamFuture = Box::pin(future);
        let mut queue = self.queue.lock();
        let watch = queue.next.take().map(|progress| Watch {
            progress,
            limit: self.stall_limit,
            timer: None,
        });
        // Always called from inside `Joined::poll` (hyper spawns streams while the connection
        // is polled), which picks the future up before it returns.
        queue.spawned.push(Watched { stream, watch });
    }
}

/// A stream's future, and its watchdog.
struct Watched {
    stream: StreamFuture,
    watch: Option<Watch>,
}

struct Watch {
    progress: Arc<StreamProgress>,
    limit: Duration,
    /// Armed while the response is stalled.
    timer: Option<Pin<Box<Sleep>>>,
}

impl Future for Watched {
    type Output = ();

    /// Ready when the stream is done, or when its response has been stalled too long: then the
    /// stream's future is dropped, which resets the stream.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.stream.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        let Some(watch) = &mut this.watch else {
            return Poll::Pending;
        };
        let Some(since) = watch.progress.stalled_since() else {
            return Poll::Pending;
        };
        let deadline = since + watch.limit;
        if deadline <= Instant::now() {
            return Poll::Ready(());
        }
        let timer = watch
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx)
    }
}

/// A connection future and the streams it spawned, polled as one task: streams first, then
/// the connection, so that everything the streams produced goes out in one flush.
pub struct Joined<C> {
    connection: Pin<Box<C>>,
    executor: StreamExecutor,
    streams: FuturesUnordered<Watched>,
}

impl<C> Joined<C> {
    pub fn new(connection: C, executor: StreamExecutor) -> Self {
        Self {
            connection: Box::pin(connection),
            executor,
            streams: FuturesUnordered::new(),
        }
    }

    pub fn connection(self: Pin<&mut Self>) -> Pin<&mut C> {
        self.get_mut().connection.as_mut()
    }

    fn adopt_spawned(&mut self) -> bool {
        let mut queue = self.executor.queue.lock();
        let any = !queue.spawned.is_empty();
        for future in queue.spawned.drain(..) {
            self.streams.push(future);
        }
        any
    }

    fn poll_streams(&mut self, cx: &mut Context<'_>) {
        while let Poll::Ready(Some(())) = self.streams.poll_next_unpin(cx) {}
    }
}

impl<C: Future> Future for Joined<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.get_mut();
        for _ in 0..PASSES_PER_POLL {
            this.adopt_spawned();
            this.poll_streams(cx);
            if let Poll::Ready(output) = this.connection.as_mut().poll(cx) {
                return Poll::Ready(output);
            }
            // Streams the connection just accepted get their first poll (their request goes
            // to Python) before this task yields.
            if !this.adopt_spawned() {
                return Poll::Pending;
            }
            this.poll_streams(cx);
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
