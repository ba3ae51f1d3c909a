//! PEM files as OpenSSL writes them: several blocks, each with a label, optional RFC 1421
//! headers (`Proc-Type`, `DEK-Info` on legacy encrypted keys) and a base64 body.

use base64ct::{Base64, Encoding};

/// One `-----BEGIN label-----` ... `-----END label-----` block.
pub struct PemBlock {
    pub label: String,
    /// `Name: value` lines between the BEGIN line and the body.
    pub headers: Vec<(String, String)>,
    pub der: Vec<u8>,
}

impl PemBlock {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Every block in `text`, in order. Text outside blocks is ignored (OpenSSL writes "Bag
/// Attributes" there); a block with a broken body is an error.
pub fn parse(text: &str) -> Result<Vec<PemBlock>, String> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(label) = line
            .trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut headers = Vec::new();
        let mut body = String::new();
        let mut closed = false;
        for line in lines.by_ref() {
            let line = line.trim();
            if line == end {
                closed = true;
                break;
            }
            if body.is_empty() {
                if let Some((key, value)) = line.split_once(':') {
                    headers.push((key.trim().to_owned(), value.trim().to_owned()));
                    continue;
                }
            }
            body.push_str(line);
        }
        if !closed {
            return Err(format!("unterminated PEM block '{label}'"));
        }
        let der = Base64::decode_vec(&body)
            .map_err(|_| format!("invalid base64 in PEM block '{label}'"))?;
        blocks.push(PemBlock {
            label: label.to_owned(),
            headers,
            der,
        });
    }
    Ok(blocks)
}

/// DER bytes as a PEM block (64-column base64), as the ASGI `tls` extension reports certificates.
pub fn encode(label: &str, der: &[u8]) -> String {
    let body = Base64::encode_string(der);
    let mut out = String::with_capacity(body.len() + body.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in body.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::{encode, parse};

    #[test]
    fn round_trip_and_headers() -> Result<(), Box<dyn std::error::Error>> {
        let der: Vec<u8> = (0u8..=200).collect();
        let pem = encode("CERTIFICATE", &der);
        let blocks = parse(&format!("junk\n{pem}more junk\n{pem}"))?;
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "CERTIFICATE");
        assert_eq!(blocks[1].der, der);

        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00FF\n\nAAEC\n-----END RSA PRIVATE KEY-----\n";
        let blocks = parse(legacy)?;
        assert_eq!(blocks[0].header("dek-info"), Some("AES-256-CBC,00FF"));
        assert_eq!(blocks[0].der, vec![0, 1, 2]);
        Ok(())
    }

    #[test]
    fn broken_blocks_are_errors() {
        assert!(parse("-----BEGIN CERTIFICATE-----\nAAEC\n").is_err());
        assert!(parse("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n").is_err());
    }
}
