//! Runs an HTTP/2 connection's per-stream futures inside the connection's own task.
//!
//! hyper hands every HTTP/2 stream to an executor. Spawned as separate tokio tasks, each
//! stream that gets its response wakes the connection task, which tokio's LIFO slot then runs
//! at once: one flush, so one `writev`, per response (measured: ~1 syscall per request under
//! `h2load -m10`). Polled here instead, all the streams whose responses arrived in one batch
//! from Python are advanced first and the connection flushes their frames together.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;

type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Passes for one wake-up of a connection before it yields to other connections.
const PASSES_PER_POLL: usize = 4;

/// The executor given to hyper's HTTP/2 builder: it queues stream futures for [`Joined`].
#[derive(Clone, Default)]
pub struct StreamExecutor {
    spawned: Arc<Mutex<Vec<StreamFuture>>>,
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        // Always called from inside `Joined::poll` (hyper spawns streams while the connection
        // is polled), which picks the future up before it returns.
        self.spawned.lock().push(Box::pin(future));
    }
}

/// A connection future and the streams it spawned, polled as one task: streams first, then
/// the connection, so that everything the streams produced goes out in one flush.
pub struct Joined<C> {
    connection: Pin<Box<C>>,
    executor: StreamExecutor,
    streams: FuturesUnordered<StreamFuture>,
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
        let mut spawned = self.executor.spawned.lock();
        let any = !spawned.is_empty();
        for future in spawned.drain(..) {
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
