//! TLS termination with rustls, configured by uvicorn's `--ssl-*` options.
//!
//! [`TlsSetup::new`] reads and checks everything at startup, so a bad certificate, a key that
//! does not match, a wrong password or an unknown cipher is one clear error before any socket
//! is served. Per connection, [`TlsInfo`] is what the ASGI `tls` scope extension reports.

mod ciphers;
mod info;
mod keys;
mod pem;

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use thiserror::Error;
use tokio_rustls::TlsAcceptor;

pub use info::TlsInfo;
#[cfg(feature = "fuzzing")]
pub(crate) use {ciphers::select as select_ciphers, keys::private_key, pem::parse as parse_pem};

/// Python's `ssl` constants, as uvicorn's `--ssl-version` and `--ssl-cert-reqs` take them.
const PROTOCOL_TLS: i32 = 2;
const PROTOCOL_TLSV1: i32 = 3;
const PROTOCOL_TLSV1_1: i32 = 4;
const PROTOCOL_TLSV1_2: i32 = 5;
const PROTOCOL_TLS_CLIENT: i32 = 16;
const PROTOCOL_TLS_SERVER: i32 = 17;
const CERT_NONE: i32 = 0;
const CERT_OPTIONAL: i32 = 1;
const CERT_REQUIRED: i32 = 2;

/// The `--ssl-*` options, as the Python side passes them.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    pub certfile: String,
    pub keyfile: Option<String>,
    pub password: Option<String>,
    pub ca_certs: Option<String>,
    pub cert_reqs: i32,
    pub ciphers: String,
    pub version: i32,
    /// Offer `h2` in ALPN (HTTP/2 enabled).
    pub http2: bool,
}

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0} is not a PEM file: {1}")]
    Pem(String, String),
    #[error("no certificate found in {0}")]
    NoCertificate(String),
    #[error("no private key found in {0}")]
    NoKey(String),
    #[error("the private key in {0} is encrypted: pass --ssl-keyfile-password")]
    PasswordNeeded(String),
    #[error("cannot decrypt the private key in {0}: wrong --ssl-keyfile-password")]
    WrongPassword(String),
    #[error("invalid private key in {0}: {1}")]
    BadKey(String, String),
    #[error("the private key does not match the certificate in {0}")]
    KeyMismatch(String),
    #[error("invalid certificate or key: {0}")]
    Rustls(rustls::Error),
    #[error("no usable CA certificate in {0}")]
    NoCaCertificate(String),
    #[error("invalid CA certificates in {0}: {1}")]
    BadCaCertificates(String, String),
    #[error("--ssl-cert-reqs {0} needs --ssl-ca-certs to verify client certificates")]
    CertReqsWithoutCa(i32),
    #[error("invalid --ssl-cert-reqs {0}: use 0 (none), 1 (optional) or 2 (required)")]
    CertReqs(i32),
    #[error(
        "unsupported --ssl-version {0}: TLS 1.2 (5) and TLS 1.2+1.3 (2, 16, 17) are supported"
    )]
    Version(i32),
    #[error("unknown cipher '{0}' in --ssl-ciphers")]
    UnknownCipher(String),
    #[error("--ssl-ciphers '{0}' selects no cipher suite that rustls supports")]
    NoCipher(String),
}

/// Everything TLS needs at run time, built once at startup.
pub struct TlsSetup {
    pub acceptor: TlsAcceptor,
    /// The server certificate as PEM: the `tls` extension's `server_cert`.
    pub server_cert_pem: Arc<str>,
    /// Things the operator should hear about (cipher names rustls lacks).
    pub warnings: Vec<String>,
}

impl TlsSetup {
    pub fn new(settings: &TlsSettings) -> Result<Self, TlsError> {
        let cert_text = read(&settings.certfile)?;
        let cert_blocks =
            pem::parse(&cert_text).map_err(|e| TlsError::Pem(settings.certfile.clone(), e))?;
        let chain: Vec<CertificateDer<'static>> = cert_blocks
            .iter()
            .filter(|block| block.label == "CERTIFICATE")
            .map(|block| CertificateDer::from(block.der.clone()))
            .collect();
        let Some(leaf) = chain.first() else {
            return Err(TlsError::NoCertificate(settings.certfile.clone()));
        };
        let server_cert_pem: Arc<str> = pem::encode("CERTIFICATE", leaf).into();

        // As Python's load_cert_chain: the key is in --ssl-keyfile, or else in the certfile.
        let key_path = settings.keyfile.as_deref().unwrap_or(&settings.certfile);
        let key_blocks = if settings.keyfile.is_some() {
            let text = read(key_path)?;
            pem::parse(&text).map_err(|e| TlsError::Pem(key_path.to_owned(), e))?
        } else {
            cert_blocks
        };
        let key = keys::private_key(&key_blocks, settings.password.as_deref(), key_path)?
            .ok_or_else(|| TlsError::NoKey(key_path.to_owned()))?;

        let versions: &[&rustls::SupportedProtocolVersion] = match settings.version {
            PROTOCOL_TLS | PROTOCOL_TLS_CLIENT | PROTOCOL_TLS_SERVER => {
                &[&rustls::version::TLS13, &rustls::version::TLS12]
            }
            PROTOCOL_TLSV1_2 => &[&rustls::version::TLS12],
            PROTOCOL_TLSV1 | PROTOCOL_TLSV1_1 => return Err(TlsError::Version(settings.version)),
            other => return Err(TlsError::Version(other)),
        };
        let selection = ciphers::select(&settings.ciphers)?;
        let mut warnings: Vec<String> = selection
            .skipped
            .iter()
            .map(|name| format!("--ssl-ciphers: '{name}' is not offered by rustls and was skipped"))
            .collect();
        let has_tls12_suite = selection
            .suites
            .iter()
            .any(|suite| matches!(suite, rustls::SupportedCipherSuite::Tls12(_)));
        if settings.version == PROTOCOL_TLSV1_2 && !has_tls12_suite {
            return Err(TlsError::NoCipher(settings.ciphers.clone()));
        }
        if !has_tls12_suite {
            warnings.push(
                "--ssl-ciphers selects no TLS 1.2 suite: only TLS 1.3 clients can connect"
                    .to_owned(),
            );
        }
        let provider = Arc::new(rustls::crypto::CryptoProvider {
            cipher_suites: selection.suites,
            ..rustls::crypto::ring::default_provider()
        });

        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(TlsError::Rustls)?;
        let builder = match (settings.cert_reqs, &settings.ca_certs) {
            (CERT_NONE, _) => builder.with_no_client_auth(),
            (CERT_OPTIONAL | CERT_REQUIRED, None) => {
                return Err(TlsError::CertReqsWithoutCa(settings.cert_reqs))
            }
            (CERT_OPTIONAL | CERT_REQUIRED, Some(path)) => {
                let roots = Arc::new(ca_roots(path)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
                let verifier = if settings.cert_reqs == CERT_OPTIONAL {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier
                    .build()
                    .map_err(|err| TlsError::BadCaCertificates(path.clone(), err.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            (other, _) => return Err(TlsError::CertReqs(other)),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|err| match err {
                rustls::Error::InconsistentKeys(_) => {
                    TlsError::KeyMismatch(settings.certfile.clone())
                }
                other => TlsError::Rustls(other),
            })?;
        config.alpn_protocols = if settings.http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        // Session resumption by ticket, so reconnecting clients skip the full handshake.
        if let Ok(ticketer) = rustls::crypto::ring::Ticketer::new() {
            config.ticketer = ticketer;
        }
        // 0-RTT stays off (replayable requests): max_early_data_size keeps its default of 0.
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            server_cert_pem,
            warnings,
        })
    }
}

fn read(path: &str) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|err| TlsError::Read(path.to_owned(), err))
}

fn ca_roots(path: &str) -> Result<RootCertStore, TlsError> {
    let text = read(path)?;
    let blocks = pem::parse(&text).map_err(|e| TlsError::Pem(path.to_owned(), e))?;
    let mut roots = RootCertStore::empty();
    for block in blocks.iter().filter(|block| block.label == "CERTIFICATE") {
        roots
            .add(CertificateDer::from(block.der.clone()))
            .map_err(|err| TlsError::BadCaCertificates(path.to_owned(), err.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCaCertificate(path.to_owned()));
    }
    Ok(roots)
}
