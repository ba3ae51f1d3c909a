//! permessage-deflate (RFC 7692): negotiating the client's offer, and compressing and
//! decompressing whole messages.
//!
//! Decompression always uses a 32 KiB window, which reads anything the client may send. The
//! server compresses with the window the client allows; zlib cannot compress raw deflate with
//! a 256-byte window, so when the client asks for `server_max_window_bits=8` the server accepts
//! but sends its messages uncompressed, which the extension permits per message.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use http::HeaderValue;

/// The trailer every sync-flushed message ends with; removed on the wire (RFC 7692 §7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// Parameters agreed with the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    /// The window the server may compress with (8–15).
    pub server_max_window_bits: u8,
    /// Whether the client asked for `server_max_window_bits` (it then appears in the answer).
    server_bits_requested: bool,
}

impl DeflateParams {
    /// The `Sec-WebSocket-Extensions` value of the handshake response.
    pub fn response_header(&self) -> HeaderValue {
        let mut value = String::from("permessage-deflate");
        if self.server_no_context_takeover {
            value.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            value.push_str("; client_no_context_takeover");
        }
        if self.server_bits_requested {
            value.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("permessage-deflate"))
    }
}

/// Accept the first valid permessage-deflate offer among the `Sec-WebSocket-Extensions`
/// values; `None` declines compression (no offer, or only malformed ones).
pub fn negotiate<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> Option<DeflateParams> {
    for value in values {
        let Ok(text) = value.to_str() else { continue };
        for offer in text.split(',') {
            let mut parts = offer.split(';').map(str::trim);
            if parts.next() != Some("permessage-deflate") {
                continue;
            }
            if let Some(params) = parse_offer(parts) {
                return Some(params);
            }
        }
    }
    None
}

fn parse_offer<'a>(params: impl Iterator<Item = &'a str>) -> Option<DeflateParams> {
    let mut result = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        server_bits_requested: false,
    };
    let mut client_bits_seen = false;
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (param, None),
        };
        match (name, value) {
            ("server_no_context_takeover", None) if !result.server_no_context_takeover => {
                result.server_no_context_takeover = true
            }
            ("client_no_context_takeover", None) if !result.client_no_context_takeover => {
                result.client_no_context_takeover = true
            }
            ("server_max_window_bits", Some(bits)) if !result.server_bits_requested => {
                result.server_max_window_bits = window_bits(bits)?;
                result.server_bits_requested = true;
            }
            ("client_max_window_bits", bits) if !client_bits_seen => {
                if let Some(bits) = bits {
                    window_bits(bits)?;
                }
                client_bits_seen = true;
            }
            _ => return None, // unknown or repeated parameter: this offer is invalid
        }
    }
    Some(result)
}

fn window_bits(text: &str) -> Option<u8> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || text.starts_with('0') {
        return None;
    }
    text.parse::<u8>()
        .ok()
        .filter(|bits| (8..=15).contains(bits))
}

/// Why a compressed message could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InflateError {
    #[error("invalid compressed data")]
    Corrupt,
    #[error("decompressed message larger than the maximum size")]
    TooBig,
}

impl InflateError {
    pub fn close_code(&self) -> u16 {
        match self {
            InflateError::Corrupt => 1007,
            InflateError::TooBig => 1009,
        }
    }
}

/// One connection's compressor and decompressor.
pub struct Deflate {
    /// `None` when the client's window is too small for zlib: messages go out uncompressed.
    compress: Option<Compress>,
    decompress: Decompress,
    reset_compressor: bool,
}

impl Deflate {
    pub fn new(params: &DeflateParams) -> Self {
        let compress = (params.server_max_window_bits >= 9).then(|| {
            Compress::new_with_window_bits(
                Compression::new(1),
                false,
                params.server_max_window_bits,
            )
        });
        Self {
            compress,
            decompress: Decompress::new_with_window_bits(false, 15),
            reset_compressor: params.server_no_context_takeover,
        }
    }

    /// Compress one message; `None` means "send it uncompressed". Even tiny messages are
    /// compressed: some clients (the kosoku Autobahn runner among them) mishandle an
    /// uncompressed text message once compression is negotiated.
    pub fn compress(&mut self, input: &[u8]) -> Option<Vec<u8>> {
        let compress = self.compress.as_mut()?;
        let start_in = compress.total_in();
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(1024));
            }
            let consumed = (compress.total_in() - start_in) as usize;
            let rest = input.get(consumed..).unwrap_or_default();
            if compress
                .compress_vec(rest, &mut out, FlushCompress::Sync)
                .is_err()
            {
                compress.reset();
                return None;
            }
            let consumed = (compress.total_in() - start_in) as usize;
            // The sync flush is complete once all input is in and output room is left over.
            if consumed >= input.len() && out.len() < out.capacity() {
                break;
            }
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if out.is_empty() {
            // Nothing was flushed (an empty message): send an empty stored block's header so
            // the receiver's `payload + TAIL` is a valid block (RFC 7692 §7.2.3.6).
            out.push(0x00);
        }
        if self.reset_compressor {
            compress.reset();
        }
        Some(out)
    }

    /// Decompress one message, failing as soon as it grows past `max_size`.
    pub fn decompress(&mut self, input: &[u8], max_size: usize) -> Result<Vec<u8>, InflateError> {
        if input.is_empty() {
            // Not valid deflate output, but unambiguous: an empty message.
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity((input.len() * 3).clamp(64, max_size.max(64)));
        for chunk in [input, &TAIL[..]] {
            let start_in = self.decompress.total_in();
            loop {
                if out.capacity() - out.len() < 256 {
                    out.reserve(out.capacity().max(4096));
                }
                let consumed = (self.decompress.total_in() - start_in) as usize;
                let rest = chunk.get(consumed..).unwrap_or_default();
                let before = (self.decompress.total_in(), out.len());
                let status = self
                    .decompress
                    .decompress_vec(rest, &mut out, FlushDecompress::Sync)
                    .map_err(|_| InflateError::Corrupt)?;
                if out.len() > max_size {
                    return Err(InflateError::TooBig);
                }
                let consumed = (self.decompress.total_in() - start_in) as usize;
                let progressed = before != (self.decompress.total_in(), out.len());
                if matches!(status, Status::StreamEnd) {
                    // A final block: the client ended its stream; start a new one next time.
                    self.decompress.reset(false);
                    break;
                }
                if consumed >= chunk.len() && (out.len() < out.capacity() || !progressed) {
                    break;
                }
                if !progressed {
                    return Err(InflateError::Corrupt);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(text: &str) -> Option<DeflateParams> {
        let value = HeaderValue::from_str(text).expect("ascii"); // ok: test-only
        negotiate(std::iter::once(&value))
    }

    #[test]
    fn negotiates_offers() {
        let plain = offer("permessage-deflate; client_max_window_bits").expect("accepted"); // ok: test-only
        assert_eq!(plain.response_header(), "permessage-deflate");
        let strict = offer("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10")
            .expect("accepted"); // ok: test-only
        assert_eq!(
            strict.response_header(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"
        );
        // An invalid first offer falls back to the next one.
        let second = offer("permessage-deflate; server_max_window_bits=7, permessage-deflate")
            .expect("accepted"); // ok: test-only
        assert_eq!(second.server_max_window_bits, 15);
        assert!(offer("permessage-deflate; foo=1").is_none());
        assert!(offer("permessage-deflate; server_max_window_bits").is_none());
        assert!(offer(
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover"
        )
        .is_none());
        assert!(offer("x-webkit-deflate-frame").is_none());
    }

    #[test]
    fn round_trips_with_and_without_context() {
        for (takeover, bits) in [(false, 15), (true, 15), (false, 9), (true, 9)] {
            let params = DeflateParams {
                server_no_context_takeover: takeover,
                client_no_context_takeover: false,
                server_max_window_bits: bits,
                server_bits_requested: true,
            };
            let mut sender = Deflate::new(&params);
            let mut receiver = Deflate::new(&params);
            for round in 0..5 {
                let message: Vec<u8> = format!("hello hello hello world {round} ")
                    .repeat(200)
                    .into_bytes();
                let wire = sender.compress(&message).expect("compressible"); // ok: test-only
                assert!(wire.len() < message.len());
                assert_eq!(receiver.decompress(&wire, 1 << 20), Ok(message));
            }
        }
    }

    #[test]
    fn window_of_8_sends_uncompressed() {
        let params = offer("permessage-deflate; server_max_window_bits=8").expect("accepted"); // ok: test-only
        assert_eq!(
            params.response_header(),
            "permessage-deflate; server_max_window_bits=8"
        );
        assert!(Deflate::new(&params).compress(&[b'a'; 1000]).is_none());
    }

    #[test]
    fn decompression_is_bounded() {
        let params = offer("permessage-deflate").expect("accepted"); // ok: test-only
        let wire = Deflate::new(&params)
            .compress(&vec![0u8; 1 << 20])
            .expect("compressible"); // ok: test-only
        let mut receiver = Deflate::new(&params);
        assert_eq!(receiver.decompress(&wire, 1000), Err(InflateError::TooBig));
        let mut receiver = Deflate::new(&params);
        assert_eq!(
            receiver.decompress(&[0xFF, 0xFF, 0xFF], 1000),
            Err(InflateError::Corrupt)
        );
    }
}

#[cfg(test)]
mod sequence_tests {
    use super::*;

    #[test]
    fn context_sequence_round_trips() {
        let value = HeaderValue::from_static("permessage-deflate; client_max_window_bits");
        let params = negotiate(std::iter::once(&value)).expect("accepted"); // ok: test-only
        let mut sender = Deflate::new(&params);
        let mut receiver = Deflate::new(&params);
        let messages: Vec<Vec<u8>> = vec![
            b"hello".to_vec(),
            "κόσμε ".repeat(1000).into_bytes(),
            Vec::new(),
            [0u8, 0xFF].repeat(40000),
            Vec::new(),
        ];
        for (i, message) in messages.iter().enumerate() {
            let wire = sender.compress(message).expect("compressed"); // ok: test-only
            let got = receiver.decompress(&wire, 1 << 24);
            assert!(
                got.as_ref().is_ok_and(|m| m == message),
                "message {i}: {:?}",
                got.map(|m| m.len())
            );
        }
    }
}
