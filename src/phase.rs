//! Where the server is in its life: every connection and WebSocket watches the phase to close
//! gracefully or at once.

/// The server's life, in order. Connections watch it through a `tokio::sync::watch` channel.
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

/// How a connection reacts to a phase.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PhaseAction {
    Continue,
    Graceful,
    Close,
}

impl Phase {
    pub fn action(self) -> PhaseAction {
        match self {
            Phase::Running => PhaseAction::Continue,
            Phase::Draining => PhaseAction::Graceful,
            Phase::ForceClose | Phase::Stopped => PhaseAction::Close,
        }
    }
}
