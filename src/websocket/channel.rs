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
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::oneshot;

use crate::bridge::{Bridge, Event};
use crate::exchange::{wake_id, ResponseBody, WaitKind, HIGH_WATER, LOW_WATER};

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

/// The client is gone (or the close handshake is over): nothing more can be sent.
#[derive(Debug)]
pub struct Gone;

pub struct ChannelState {
    /// Hands the handshake answer (101/200, 403, a denial response) to hyper's service.
    responder: Option<oneshot::Sender<http::Response<ResponseBody>>>,
    pub inbound: VecDeque<Inbound>,
    /// Once set, no more messages arrive: the `websocket.disconnect` code and reason.
    pub ended: Option<(u16, String)>,
    pub recv_waiting: bool,
    /// The session, waiting for the app to make room in `inbound`.
    reader_waker: Option<Waker>,
    out: VecDeque<Outbound>,
    out_buffered: usize,
    /// The session, waiting for something to send.
    writer_waker: Option<Waker>,
    pub send_waiting: bool,
    /// The connection is over for sending: `send()` raises.
    pub gone: bool,
}

pub struct Channel {
    pub id: u64,
    state: Mutex<ChannelState>,
    bridge: Arc<Bridge>,
    max_queue: usize,
}

impl Channel {
    pub fn new(
        id: u64,
        bridge: Arc<Bridge>,
        max_queue: usize,
        responder: oneshot::Sender<http::Response<ResponseBody>>,
    ) -> Self {
        Self {
            id,
            state: Mutex::new(ChannelState {
                responder: Some(responder),
                inbound: VecDeque::new(),
                ended: None,
                recv_waiting: false,
                reader_waker: None,
                out: VecDeque::new(),
                out_buffered: 0,
                writer_waker: None,
                send_waiting: false,
                gone: false,
            }),
            bridge,
            max_queue: max_queue.max(1),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, ChannelState> {
        self.state.lock()
    }

    fn wake_python(&self, state: &mut ChannelState, kind: WaitKind) {
        let waiting = match kind {
            WaitKind::Receive => &mut state.recv_waiting,
            WaitKind::Send => &mut state.send_waiting,
        };
        if std::mem::take(waiting) {
            self.bridge.push(Event::Wake(wake_id(self.id, kind)));
        }
    }

    // --- Python side ------------------------------------------------------------------------

    /// Hand the handshake answer to hyper. `Err` when the client is already gone.
    pub fn respond(&self, response: http::Response<ResponseBody>) -> Result<(), Gone> {
        let responder = self.state.lock().responder.take();
        match responder {
            Some(tx) => tx.send(response).map_err(|_| Gone),
            None => Err(Gone),
        }
    }

    /// Take the next message; lets the session read again when the queue has room.
    pub fn pop_inbound(&self, state: &mut ChannelState) -> Option<Inbound> {
        let message = state.inbound.pop_front()?;
        if state.inbound.len() < self.max_queue {
            if let Some(waker) = state.reader_waker.take() {
                waker.wake();
            }
        }
        Some(message)
    }

    /// Queue a message for the client. `Ok(true)`: the caller must wait for the socket.
    pub fn push_out(&self, message: Outbound) -> Result<bool, Gone> {
        let mut state = self.state.lock();
        if state.gone {
            return Err(Gone);
        }
        let closing = matches!(message, Outbound::Close(..));
        state.out_buffered += message.size();
        state.out.push_back(message);
        let must_wait = !closing && state.out_buffered >= HIGH_WATER;
        if must_wait {
            state.send_waiting = true;
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

    pub fn out_has_room(&self, state: &ChannelState) -> bool {
        state.out_buffered < HIGH_WATER
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
