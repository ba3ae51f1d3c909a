//! RFC 6455 §5 framing: parsing the client's frames and encoding the server's.
//!
//! Client frames are parsed in place from the connection's read buffer: [`parse_header`] looks
//! at the first bytes only, so a frame whose length is too large is refused before its payload
//! is buffered. Server frames are never masked.

use bytes::{BufMut, BytesMut};

/// Frame opcodes (RFC 6455 §5.2). Reserved opcodes are a protocol error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Result<Self, FrameError> {
        Ok(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(FrameError::ReservedOpcode(other)),
        })
    }

    fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A violation of the framing rules by the client. Each maps to the close code the server sends.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("reserved bits set")]
    ReservedBits,
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    #[error("client frame is not masked")]
    Unmasked,
    #[error("control frame fragmented or longer than 125 bytes")]
    BadControlFrame,
    #[error("invalid payload length")]
    BadLength,
    #[error("message larger than the maximum size")]
    TooBig,
}

impl FrameError {
    /// The close code for this error (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::TooBig => 1009,
            _ => 1002,
        }
    }
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// RSV1: the message is compressed (permessage-deflate), on its first frame only.
    pub rsv1: bool,
    pub opcode: OpCode,
    pub mask: [u8; 4],
    /// Bytes of header before the payload.
    pub header_len: usize,
    pub payload_len: usize,
}

/// Parse the header at the start of `buf`. `Ok(None)` means more bytes are needed.
/// `allow_rsv1` is true when permessage-deflate was negotiated; `max_payload` bounds the
/// payload of a single frame.
pub fn parse_header(
    buf: &[u8],
    allow_rsv1: bool,
    max_payload: usize,
) -> Result<Option<FrameHeader>, FrameError> {
    let [first, second, ..] = *buf else {
        return Ok(None);
    };
    let fin = first & 0x80 != 0;
    let rsv1 = first & 0x40 != 0;
    if first & 0x30 != 0 || (rsv1 && !allow_rsv1) {
        return Err(FrameError::ReservedBits);
    }
    let opcode = OpCode::from_bits(first & 0x0F)?;
    if second & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let short_len = second & 0x7F;
    if opcode.is_control() && (!fin || short_len > 125) {
        return Err(FrameError::BadControlFrame);
    }
    if opcode.is_control() && rsv1 {
        return Err(FrameError::ReservedBits);
    }
    let (payload_len, len_bytes) = match short_len {
        126 => match buf.get(2..4) {
            Some(bytes) => (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 2),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(bytes) => {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(bytes);
                let len = u64::from_be_bytes(raw);
                if len >> 63 != 0 {
                    return Err(FrameError::BadLength);
                }
                (len, 8)
            }
            None => return Ok(None),
        },
        len => (u64::from(len), 0),
    };
    let payload_len = usize::try_from(payload_len).map_err(|_| FrameError::TooBig)?;
    if payload_len > max_payload {
        return Err(FrameError::TooBig);
    }
    let mask_at = 2 + len_bytes;
    let Some(mask_bytes) = buf.get(mask_at..mask_at + 4) else {
        return Ok(None);
    };
    let mut mask = [0u8; 4];
    mask.copy_from_slice(mask_bytes);
    Ok(Some(FrameHeader {
        fin,
        rsv1,
        opcode,
        mask,
        header_len: mask_at + 4,
        payload_len,
    }))
}

/// XOR `payload` with the masking key, eight bytes at a time.
pub fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let value = u64::from_ne_bytes(word) ^ wide;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so the key phase is 0 again.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// Append the header of an unmasked server frame.
pub fn encode_header(out: &mut BytesMut, fin: bool, rsv1: bool, opcode: OpCode, len: usize) {
    let mut first = opcode.bits();
    if fin {
        first |= 0x80;
    }
    if rsv1 {
        first |= 0x40;
    }
    out.put_u8(first);
    if len < 126 {
        out.put_u8(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.put_u8(126);
        out.put_u16(len);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
}

/// Append a whole unmasked frame.
pub fn encode_frame(out: &mut BytesMut, opcode: OpCode, rsv1: bool, payload: &[u8]) {
    out.reserve(payload.len() + 10);
    encode_header(out, true, rsv1, opcode, payload.len());
    out.extend_from_slice(payload);
}

/// The payload of a close frame: the code, then the reason, truncated to fit 125 bytes on a
/// character boundary.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    payload
}

/// A close frame received from the client that breaks RFC 6455 §5.5.1 / §7.4.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CloseFrameError {
    #[error("close frame with a one-byte payload")]
    Truncated,
    #[error("invalid close code {0}")]
    InvalidCode(u16),
    #[error("close reason is not valid UTF-8")]
    InvalidReason,
}

impl CloseFrameError {
    pub fn close_code(&self) -> u16 {
        match self {
            CloseFrameError::InvalidReason => 1007,
            _ => 1002,
        }
    }
}

/// Parse a received close frame's payload: `(code, reason)`, code 1005 when there is none.
pub fn parse_close(payload: &[u8]) -> Result<(u16, String), CloseFrameError> {
    match payload {
        [] => Ok((1005, String::new())),
        [_] => Err(CloseFrameError::Truncated),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_received_code(code) {
                return Err(CloseFrameError::InvalidCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| CloseFrameError::InvalidReason)?;
            Ok((code, reason.to_owned()))
        }
    }
}

/// Codes a peer may put on the wire (RFC 6455 §7.4 and the IANA registry).
pub fn is_valid_received_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Codes an application may ask the server to send.
pub fn is_valid_app_code(code: i64) -> bool {
    u16::try_from(code).is_ok_and(is_valid_received_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn parses_and_unmasks_every_length_form() {
        for len in [0usize, 5, 125, 126, 1000, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let wire = masked(0x82, &payload, [1, 2, 3, 4]);
            let header = parse_header(&wire, false, usize::MAX)
                .expect("valid frame") // ok: test-only
                .expect("complete header"); // ok: test-only
            assert_eq!(header.opcode, OpCode::Binary);
            assert!(header.fin);
            assert_eq!(header.payload_len, len);
            let mut body = wire[header.header_len..].to_vec();
            unmask(&mut body, header.mask);
            assert_eq!(body, payload);
        }
    }

    #[test]
    fn incomplete_headers_ask_for_more() {
        let wire = masked(0x81, &[0u8; 300], [9, 9, 9, 9]);
        for cut in 0..8 {
            assert_eq!(parse_header(&wire[..cut], false, usize::MAX), Ok(None));
        }
    }

    #[test]
    fn rejects_protocol_violations() {
        let check = |wire: &[u8], err| assert_eq!(parse_header(wire, false, 1 << 20), Err(err));
        check(&[0xC1, 0x80, 0, 0, 0, 0], FrameError::ReservedBits); // RSV1 without deflate
        check(&[0xA1, 0x80, 0, 0, 0, 0], FrameError::ReservedBits); // RSV2
        check(&[0x83, 0x80, 0, 0, 0, 0], FrameError::ReservedOpcode(3));
        check(&[0x8B, 0x80, 0, 0, 0, 0], FrameError::ReservedOpcode(0xB));
        check(&[0x81, 0x00], FrameError::Unmasked);
        check(&[0x09, 0x80, 0, 0, 0, 0], FrameError::BadControlFrame); // fragmented ping
        check(
            &[0x89, 0xFE, 0, 200, 0, 0, 0, 0],
            FrameError::BadControlFrame,
        );
        let mut huge = vec![0x82, 0xFF];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        check(&huge, FrameError::BadLength);
        let mut big = vec![0x82, 0xFF];
        big.extend_from_slice(&(2u64 << 20).to_be_bytes());
        check(&big, FrameError::TooBig);
        // RSV1 is allowed on data frames once deflate is on, never on control frames.
        assert!(parse_header(&[0xC1, 0x80, 0, 0, 0, 0], true, 10).is_ok());
        assert_eq!(
            parse_header(&[0xC9, 0x80, 0, 0, 0, 0], true, 10),
            Err(FrameError::ReservedBits)
        );
    }

    #[test]
    fn encodes_server_frames() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let mut out = BytesMut::new();
            encode_frame(&mut out, OpCode::Text, false, &vec![b'a'; len]);
            assert_eq!(out[0], 0x81);
            let header_len = match len {
                n if n < 126 => 2,
                n if n <= 0xFFFF => 4,
                _ => 10,
            };
            assert_eq!(out.len(), header_len + len);
            assert_eq!(out[1] & 0x80, 0, "server frames are not masked");
        }
    }

    #[test]
    fn close_payloads() {
        assert_eq!(parse_close(&[]), Ok((1005, String::new())));
        assert_eq!(parse_close(&[3]), Err(CloseFrameError::Truncated));
        assert_eq!(
            parse_close(&[0x03, 0xE8, b'o', b'k']),
            Ok((1000, "ok".into()))
        );
        assert_eq!(
            parse_close(&[0x03, 0xED]),
            Err(CloseFrameError::InvalidCode(1005))
        );
        assert_eq!(
            parse_close(&[0x03, 0xE8, 0xFF]),
            Err(CloseFrameError::InvalidReason)
        );
        for code in [0u16, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999, 5000] {
            assert!(!is_valid_received_code(code), "{code}");
        }
        for code in [1000u16, 1001, 1011, 1012, 3000, 4999] {
            assert!(is_valid_received_code(code), "{code}");
        }
        let long = "é".repeat(100);
        let payload = close_payload(1000, &long);
        assert!(payload.len() <= 125);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
    }
}
