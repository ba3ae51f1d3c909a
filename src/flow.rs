//! The buffering policy every direction shares (request bodies, responses, WebSocket messages):
//! high- and low-water marks, and the size from which payloads move without a copy.

/// Bytes buffered in one direction before the producer is made to wait.
pub const HIGH_WATER: usize = 64 * 1024;
/// The producer is resumed once the buffer drains below this.
pub const LOW_WATER: usize = 16 * 1024;
/// Payloads at least this large cross between Python and the socket without a copy (the
/// `Bytes` shares the Python object, or the read buffer). Smaller ones are copied, which costs
/// less than releasing a shared owner later.
pub const ZERO_COPY_MIN: usize = 16 * 1024;
