//! The tokio side's top: the runtime and its I/O thread, the accept loops (one task per
//! connection), and what happens to an accepted connection before HTTP.
//!
//! The runtime has one worker thread ("ferrocorn-io"). It never touches Python: requests leave
//! through the bridge, responses come back through each exchange.

mod connection;
mod proxy_header;
mod runtime;

use std::sync::Arc;
use std::time::Duration;

use crate::bridge::LogLevel;
use crate::net::Listener;
use crate::phase::Phase;
use crate::shared::Shared;

pub use runtime::build_runtime;
use runtime::IdleMemory;

/// A listener plus what the scope reports as `server` for a Unix socket.
pub struct Endpoint {
    pub listener: Listener,
    pub unix_path: Option<Arc<str>>,
}

/// Runs until the phase becomes [`Phase::Stopped`]; meanwhile hands free memory back once the
/// server goes quiet ([`IdleMemory`]).
pub async fn serve(shared: Arc<Shared>, endpoints: Vec<Endpoint>) {
    for endpoint in endpoints {
        tokio::spawn(accept_loop(shared.clone(), endpoint));
    }
    let mut phase = shared.phase();
    let mut memory = IdleMemory::new(shared.activity());
    while *phase.borrow_and_update() != Phase::Stopped {
        tokio::select! {
            changed = phase.changed() => if changed.is_err() {
                break;
            },
            () = tokio::time::sleep(IdleMemory::PERIOD) => memory.check(shared.activity()),
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
                shared.settings.metrics.connection_accepted();
                let guard = shared.track_connection();
                let unix_path = endpoint.unix_path.clone();
                tokio::spawn(async move {
                    connection::serve_connection(guard.shared(), accepted, unix_path).await;
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
