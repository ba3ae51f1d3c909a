//! The PROXY protocol step of a TCP connection (`--proxy-protocol`), before TLS or HTTP. A trusted
//! peer's header is read exactly (peeked, then only its own bytes consumed: the client's bytes
//! behind it stay in the socket for TLS or HTTP); an untrusted peer's first bytes are peeked to
//! refuse a header it has no right to send.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::errors::{ProxyHeaderError, ProxyReadError};
use crate::net::{proxy_protocol, ProxiedAddresses, ProxyVersions};

/// How much is peeked at a time: a v1 header, or a v2 header with a few TLVs, in one go.
const PEEK_SIZE: usize = 256;
/// How often an untrusted peer whose first bytes are still ambiguous is looked at again.
const AMBIGUOUS_RETRY: Duration = Duration::from_millis(20);

/// The header a trusted peer must send first. Unbounded in time: the caller's timeout bounds it.
pub async fn read_header(
    stream: &mut TcpStream,
    versions: ProxyVersions,
) -> Result<ProxiedAddresses, ProxyReadError> {
    let mut header: Vec<u8> = Vec::with_capacity(PEEK_SIZE);
    let mut peeked = [0u8; PEEK_SIZE];
    loop {
        let n = stream.peek(&mut peeked).await?;
        let fresh = peeked.get(..n).unwrap_or_default();
        match (fresh.is_empty(), header.is_empty()) {
            (true, true) => return Err(ProxyReadError::Silent),
            (true, false) => return Err(ProxyReadError::Closed),
            _ => {}
        }
        let consumed = header.len();
        header.extend_from_slice(fresh);
        match proxy_protocol::parse(&header, versions)? {
            proxy_protocol::Parsed::Complete { len, addresses } => {
                discard(stream, &mut peeked, len.saturating_sub(consumed)).await?;
                return Ok(addresses);
            }
            // Every byte peeked belongs to the header: consume them, so the next peek waits
            // for new ones.
            proxy_protocol::Parsed::Incomplete { total: None } => {
                discard(stream, &mut peeked, n).await?;
            }
            // A v2 header whose length is known: read the rest of it directly.
            proxy_protocol::Parsed::Incomplete { total: Some(total) } => {
                discard(stream, &mut peeked, n).await?;
                let start = header.len();
                header.resize(total.max(start), 0);
                if let Some(rest) = header.get_mut(start..) {
                    read_all(stream, rest).await?;
                }
                return match proxy_protocol::parse(&header, versions)? {
                    proxy_protocol::Parsed::Complete { addresses, .. } => Ok(addresses),
                    proxy_protocol::Parsed::Incomplete { .. } => {
                        Err(ProxyHeaderError::Malformed("v2 length inconsistent").into())
                    }
                };
            }
        }
    }
}

/// Refuses a PROXY header from a peer that is not trusted; anything else (a direct client's
/// request or TLS handshake) is left unread. Unbounded in time: the caller's timeout bounds it.
pub async fn refuse_header(stream: &TcpStream) -> Result<(), ProxyReadError> {
    let mut peeked = [0u8; proxy_protocol::V2_SIGNATURE.len()];
    loop {
        let n = stream.peek(&mut peeked).await?;
        if n == 0 {
            return Ok(()); // closed: the protocol that follows sees the end
        }
        match proxy_protocol::starts_header(peeked.get(..n).unwrap_or_default()) {
            Some(true) => return Err(ProxyReadError::Untrusted),
            Some(false) => return Ok(()),
            // A prefix of a header trickling in ("PRO"): a peek returns at once while the same
            // bytes wait, so look again a little later.
            None => tokio::time::sleep(AMBIGUOUS_RETRY).await,
        }
    }
}

/// Reads and drops `n` bytes already peeked (at most the scratch buffer's size).
async fn discard(
    stream: &mut TcpStream,
    scratch: &mut [u8],
    n: usize,
) -> Result<(), ProxyReadError> {
    match scratch.get_mut(..n) {
        Some(bytes) => read_all(stream, bytes).await,
        None => Err(ProxyHeaderError::Malformed("header longer than peeked").into()),
    }
}

async fn read_all(stream: &mut TcpStream, into: &mut [u8]) -> Result<(), ProxyReadError> {
    match stream.read_exact(into).await {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => Err(ProxyReadError::Closed),
        Err(err) => Err(err.into()),
    }
}
