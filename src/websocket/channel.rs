//! The state one WebSocket shares between the tokio side (the session reading and writing the
//! socket) and the Python side (the app's `receive()`/`send()`).
//!
//! Both directions are bounded: incoming messages stop being read from the socket once
//! `--ws-max-queue` wait for the app, and the app's `send()` suspends while more than
//! [`HIGH_WATER`] bytes wait for the socket.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::bridge::{SendRoom, WaitKind, Waiting, WakeSink};
use crate::errors::Disconnected;
use crate::exchange::{Responder, ResponseBody};
use crate::flow::{HIGH_WATER, LOW_WATER};

/// A whole message from the client. Text has been checked to be UTF-8.
pub enum Inbound {
    Text(Bytes),
    Binary(Bytes),
}

/// What the app asked the server to send.
pub enum Outbound {
    Text(Bytes),
    Binary(Bytes),
    Close(u16, String),
}

impl Outbound {
    fn size(&self) -> usize {
        match self {
            Outbound::Text(data) | Outbound::Binary(data) => data.len(),
            Outbound::Close(_, reason) => reason.len() + 2,
        }
    }
}

/// What `receive()` can give the app next.
pub enum ChannelEvent {
    Message(Inbound),
    /// No more messages: the `websocket.disconnect` code and reason.
    Ended(u16, String),
    /// Nothing yet: the app is parked until a wake-up.
    Pending,
}

struct ChannelState {
    /// Hands the handshake answer (101/200, 403, a denial response) to hyper's service.
    responder: Option<Responder>,
    inbound: VecDeque<Inbound>,
    /// Once set, no more messages arrive: the `websocket.disconnect` code and reason.
    ended: Option<(u16, String)>,
    waiting: Waiting,
    /// The session, waiting for the app to make room in `inbound`.
    reader_waker: Option<Waker>,
    out: VecDeque<Outbound>,
    out_buffered: usize,
    /// The session, waiting for something to send.
    writer_waker: Option<Waker>,
    /// The connection is over for sending: `send()` raises.
    gone: bool,
}

pub struct Channel {
    id: u64,
    state: Mutex<ChannelState>,
    wakes: Arc<dyn WakeSink>,
    max_queue: usize,
}

impl Channel {
    pub fn new(id: u64, wakes: Arc<dyn WakeSink>, max_queue: usize, responder: Responder) -> Self {
        Self {
            id,
            state: Mutex::new(ChannelState {
                responder: Some(responder),
                inbound: VecDeque::new(),
                ended: None,
                waiting: Waiting::default(),
                reader_waker: None,
                out: VecDeque::new(),
                out_buffered: 0,
                writer_waker: None,
                gone: false,
            }),
            wakes,
            max_queue: max_queue.max(1),
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    fn wake_python(&self, state: &mut ChannelState, kind: WaitKind) {
        state.waiting.wake(kind, self.id, &*self.wakes);
    }

    // --- Python side ------------------------------------------------------------------------

    /// Hand the handshake answer to hyper. `Err` when the client is already gone.
    pub fn respond(&self, response: http::Response<ResponseBody>) -> Result<(), Disconnected> {
        let responder = self.state.lock().responder.take();
        match responder {
            Some(tx) => tx.send(response).map_err(|_| Disconnected::Client),
            None => Err(Disconnected::Client),
        }
    }

    /// The next message (letting the session read again when the queue has room), or how the
    /// connection ended; parks the app when there is neither.
    pub fn receive(&self) -> ChannelEvent {
        let mut state = self.state.lock();
        if let Some(message) = state.inbound.pop_front() {
            if state.inbound.len() < self.max_queue {
                if let Some(waker) = state.reader_waker.take() {
                    waker.wake();
                }
            }
            return ChannelEvent::Message(message);
        }
        if let Some((code, reason)) = &state.ended {
            return ChannelEvent::Ended(*code, reason.clone());
        }
        state.waiting.park(WaitKind::Receive);
        ChannelEvent::Pending
    }

    /// Queue a message for the client. `Ok(true)`: the caller must wait for the socket.
    pub fn push_out(&self, message: Outbound) -> Result<bool, Disconnected> {
        let mut state = self.state.lock();
        if state.gone {
            return Err(Disconnected::Client);
        }
        let closing = matches!(message, Outbound::Close(..));
        state.out_buffered += message.size();
        state.out.push_back(message);
        let must_wait = !closing && state.out_buffered >= HIGH_WATER;
        if must_wait {
            state.waiting.park(WaitKind::Send);
        }
        if closing {
            // Messages arriving after the app's close are not delivered (as uvicorn does).
            state.inbound.clear();
            state.gone = true;
        }
        let waker = state.writer_waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(must_wait)
    }

    /// Whether a `send()` told to wait may go on; parks it again if not.
    pub fn send_room(&self) -> SendRoom {
        let state = &mut *self.state.lock();
        state.waiting.send_room(state.gone, state.out_buffered)
    }

    /// Whether the client went away (rather than closing, or the app closing).
    pub fn client_gone(&self) -> bool {
        let state = self.state.lock();
        state.gone && state.ended.as_ref().is_some_and(|(code, _)| *code == 1006)
    }

    /// The app has closed (sent `websocket.close`, a denial, or ended): receive() now reports
    /// this code unless the connection had already ended.
    pub fn app_ended(&self, code: u16, reason: &str) {
        let mut state = self.state.lock();
        if state.ended.is_none() {
            state.ended = Some((code, reason.to_owned()));
        }
        state.gone = true;
        state.inbound.clear();
        self.wake_python(&mut state, WaitKind::Receive);
        let waker = state.writer_waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    // --- tokio side -------------------------------------------------------------------------

    /// Deliver a message. Returns false when the queue is full: the session must stop reading
    /// until [`Channel::wait_for_room`] lets it go on.
    pub fn push_inbound(&self, message: Inbound) -> bool {
        let mut state = self.state.lock();
        if state.ended.is_some() {
            return true; // the app is past its close: the message is dropped
        }
        state.inbound.push_back(message);
        let room = state.inbound.len() < self.max_queue;
        self.wake_python(&mut state, WaitKind::Receive);
        room
    }

    /// Whether the session may read more; if not, `waker` is woken once it may.
    pub fn wait_for_room(&self, waker: &Waker) -> bool {
        let mut state = self.state.lock();
        if state.inbound.len() < self.max_queue || state.ended.is_some() {
            return true;
        }
        state.reader_waker = Some(waker.clone());
        false
    }

    /// Move queued messages into `take` while it returns true. Registers `waker` when the queue
    /// is empty. Returns whether the app has ended (nothing more will be queued).
    pub fn drain_out(&self, waker: &Waker, mut take: impl FnMut(Outbound) -> bool) -> bool {
        let mut state = self.state.lock();
        while let Some(message) = state.out.pop_front() {
            state.out_buffered -= message.size();
            if !take(message) {
                break;
            }
        }
        if state.out_buffered < LOW_WATER {
            self.wake_python(&mut state, WaitKind::Send);
        }
        if state.out.is_empty() {
            state.writer_waker = Some(waker.clone());
        }
        state.gone && state.out.is_empty()
    }

    /// The connection is over: every Python waiter learns it. The first reason given wins.
    pub fn end(&self, code: u16, reason: &str) {
        let mut state = self.state.lock();
        if state.ended.is_none() {
            state.ended = Some((code, reason.to_owned()));
        }
        state.gone = true;
        state.responder = None;
        self.wake_python(&mut state, WaitKind::Receive);
        self.wake_python(&mut state, WaitKind::Send);
    }
}
