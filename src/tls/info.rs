//! What one TLS connection negotiated: the data of the ASGI `tls` scope extension.

use std::sync::Arc;

use rustls::ServerConnection;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::X509Name;

use super::pem;

#[derive(Debug)]
pub struct TlsInfo {
    pub server_cert_pem: Arc<str>,
    /// `0x0303` for TLS 1.2, `0x0304` for TLS 1.3.
    pub version: u16,
    /// The IANA number of the negotiated suite, e.g. `0x1301`.
    pub cipher_suite: u16,
    /// The client's chain as PEM, leaf first; empty without a client certificate.
    pub client_cert_chain: Vec<String>,
    /// The client certificate's subject as an RFC 4514 string.
    pub client_cert_name: Option<String>,
}

impl TlsInfo {
    pub fn from_session(session: &ServerConnection, server_cert_pem: Arc<str>) -> Self {
        let version = session.protocol_version().map_or(0, |v| v.into());
        let cipher_suite = session
            .negotiated_cipher_suite()
            .map_or(0, |s| s.suite().into());
        let peer = session.peer_certificates().unwrap_or_default();
        let client_cert_chain = peer
            .iter()
            .map(|cert| pem::encode("CERTIFICATE", cert))
            .collect();
        let client_cert_name = peer
            .first()
            .and_then(|cert| X509Certificate::from_der(cert).ok())
            .map(|(_, cert)| rfc4514(cert.subject()));
        Self {
            server_cert_pem,
            version,
            cipher_suite,
            client_cert_chain,
            client_cert_name,
        }
    }
}

/// RFC 4514: RDNs last-to-first, separated by `,`; multi-valued RDNs joined by `+`; short names
/// where they are standard, otherwise the dotted OID with the value as `#` hex DER.
fn rfc4514(name: &X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let mut out = String::new();
    for rdn in name.iter().collect::<Vec<_>>().into_iter().rev() {
        if !out.is_empty() {
            out.push(',');
        }
        for (i, attribute) in rdn.iter().enumerate() {
            if i > 0 {
                out.push('+');
            }
            let oid = attribute.attr_type();
            let short = x509_parser::objects::oid2abbrev(oid, registry).ok();
            match (short, attribute.as_str()) {
                (Some(short), Ok(value)) => {
                    out.push_str(short);
                    out.push('=');
                    escape_value(value, &mut out);
                }
                _ => {
                    out.push_str(&oid.to_id_string());
                    out.push_str("=#");
                    for byte in attribute.attr_value().as_bytes() {
                        out.push_str(&format!("{byte:02x}"));
                    }
                }
            }
        }
    }
    out
}

fn escape_value(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, ch) in value.chars().enumerate() {
        let special = matches!(ch, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && (ch == '#' || ch == ' '))
            || (i == last && ch == ' ');
        if special {
            out.push('\\');
        }
        if ch == '\0' {
            out.push_str("\\00");
        } else {
            out.push(ch);
        }
    }
}
