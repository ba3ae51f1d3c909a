//! `--ssl-ciphers`: an OpenSSL cipher string mapped onto the suites rustls offers.
//!
//! rustls has nine suites, all AEAD with forward secrecy. A string selects among them by
//! OpenSSL name (`ECDHE-RSA-AES128-GCM-SHA256`, `TLS_AES_256_GCM_SHA384`) or by the keywords
//! OpenSSL users write (`HIGH`, `ECDHE`, `AESGCM`, `!aNULL`, `@STRENGTH`, ...). Exclusions of
//! things rustls never offers (`!RC4`, `!MD5`, `!3DES`) are accepted and change nothing. As in
//! OpenSSL, the string governs TLS 1.2; TLS 1.3 suites stay on unless the string names some.

use rustls::crypto::ring::cipher_suite as suite;
use rustls::SupportedCipherSuite;

use super::TlsError;

struct Named {
    openssl: &'static str,
    suite: SupportedCipherSuite,
    tags: &'static [&'static str],
}

fn catalogue() -> [Named; 9] {
    [
        Named {
            openssl: "ECDHE-ECDSA-AES256-GCM-SHA384",
            suite: suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            tags: &["ECDSA", "AES256", "AESGCM", "AES", "SHA384"],
        },
        Named {
            openssl: "ECDHE-ECDSA-AES128-GCM-SHA256",
            suite: suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            tags: &["ECDSA", "AES128", "AESGCM", "AES", "SHA256"],
        },
        Named {
            openssl: "ECDHE-ECDSA-CHACHA20-POLY1305",
            suite: suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            tags: &["ECDSA", "CHACHA20", "SHA256"],
        },
        Named {
            openssl: "ECDHE-RSA-AES256-GCM-SHA384",
            suite: suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            tags: &["RSA", "AES256", "AESGCM", "AES", "SHA384"],
        },
        Named {
            openssl: "ECDHE-RSA-AES128-GCM-SHA256",
            suite: suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            tags: &["RSA", "AES128", "AESGCM", "AES", "SHA256"],
        },
        Named {
            openssl: "ECDHE-RSA-CHACHA20-POLY1305",
            suite: suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            tags: &["RSA", "CHACHA20", "SHA256"],
        },
        Named {
            openssl: "TLS_AES_256_GCM_SHA384",
            suite: suite::TLS13_AES_256_GCM_SHA384,
            tags: &["TLS13", "AES256", "AESGCM", "AES", "SHA384"],
        },
        Named {
            openssl: "TLS_AES_128_GCM_SHA256",
            suite: suite::TLS13_AES_128_GCM_SHA256,
            tags: &["TLS13", "AES128", "AESGCM", "AES", "SHA256"],
        },
        Named {
            openssl: "TLS_CHACHA20_POLY1305_SHA256",
            suite: suite::TLS13_CHACHA20_POLY1305_SHA256,
            tags: &["TLS13", "CHACHA20", "SHA256"],
        },
    ]
}

/// Keywords that select every TLS 1.2 suite rustls has (all are ECDHE, AEAD, "HIGH").
const EVERYTHING: &[&str] = &[
    "ALL",
    "DEFAULT",
    "HIGH",
    "TLSv1",
    "TLSv1.0",
    "TLSv1.2",
    "SSLv3",
    "ECDHE",
    "EECDH",
    "kECDHE",
    "kEECDH",
    "AECDH",
    "ECDH",
    "aECDH",
    "FIPS",
    "SECURE128",
    "SECURE192",
    "SUITEB128",
    "COMPLEMENTOFDEFAULT",
];

/// Keywords naming things rustls never offers: selecting them adds nothing, excluding them is a no-op.
const NEVER_OFFERED: &[&str] = &[
    "aNULL",
    "eNULL",
    "NULL",
    "COMPLEMENTOFALL",
    "EXPORT",
    "EXP",
    "LOW",
    "MEDIUM",
    "MD5",
    "RC4",
    "DES",
    "3DES",
    "IDEA",
    "SEED",
    "CAMELLIA",
    "ARIA",
    "PSK",
    "SRP",
    "DSS",
    "aDSS",
    "DH",
    "EDH",
    "DHE",
    "kDHE",
    "kEDH",
    "kRSA",
    "RSAPSK",
    "ADH",
    "AECDH-NULL",
    "SHA1",
    "SHA",
    "CBC",
    "AESCCM",
    "AESCCM8",
    "kPSK",
    "aPSK",
    "GOST",
    "aGOST",
    "kGOST",
];

/// Parts of OpenSSL suite names: a hyphenated name made only of these is a real OpenSSL suite
/// (`DHE-RSA-AES128-GCM-SHA256`, `AES128-SHA`) that rustls does not implement.
const OPENSSL_NAME_PARTS: &[&str] = &[
    "ECDHE",
    "DHE",
    "EDH",
    "ECDH",
    "ADH",
    "AECDH",
    "ECDSA",
    "RSA",
    "DSS",
    "PSK",
    "SRP",
    "AES",
    "AES128",
    "AES256",
    "GCM",
    "CCM",
    "CCM8",
    "SHA",
    "SHA256",
    "SHA384",
    "CHACHA20",
    "POLY1305",
    "CAMELLIA128",
    "CAMELLIA256",
    "DES",
    "CBC",
    "CBC3",
    "EDE",
    "RC4",
    "MD5",
    "NULL",
    "ARIA128",
    "ARIA256",
    "IDEA",
    "SEED",
    "3DES",
    "EXP",
];

fn is_openssl_suite_name(name: &str) -> bool {
    let parts: Vec<&str> = if let Some(rest) = name.strip_prefix("TLS_") {
        rest.split('_').collect()
    } else {
        name.split('-').collect()
    };
    parts.len() >= 2
        && parts.iter().all(|part| {
            OPENSSL_NAME_PARTS
                .iter()
                .any(|known| known.eq_ignore_ascii_case(part))
        })
}

/// What a cipher string selects.
pub struct Selection {
    /// In rustls's preference order.
    pub suites: Vec<SupportedCipherSuite>,
    /// Real OpenSSL suite names in the string that rustls does not implement (skipped).
    pub skipped: Vec<String>,
}

/// The suites `spec` selects. An unknown name is an error; a real OpenSSL suite that rustls
/// lacks (DHE, CBC, CCM) is skipped and reported, so that a stock Mozilla string still works.
pub fn select(spec: &str) -> Result<Selection, TlsError> {
    let catalogue = catalogue();
    let mut skipped = Vec::new();
    let mut chosen = [false; 9];
    let mut removed_for_good = [false; 9];
    for token in spec
        .split([':', ',', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        if token.starts_with('@') {
            continue; // @STRENGTH, @SECLEVEL=n: ordering and levels; rustls orders by strength anyway.
        }
        let (action, name) = match token.as_bytes()[0] {
            b'!' => ('!', &token[1..]),
            b'-' => ('-', &token[1..]),
            b'+' => ('+', &token[1..]),
            _ => ('=', token),
        };
        // `ECDHE+AESGCM`: the intersection of the parts.
        let mut matches = [true; 9];
        for part in name.split('+') {
            let part_matches = match matching(&catalogue, part) {
                Some(hits) => hits,
                None if is_openssl_suite_name(part) => {
                    if !skipped.iter().any(|s| s == part) {
                        skipped.push(part.to_owned());
                    }
                    [false; 9]
                }
                None => return Err(TlsError::UnknownCipher(part.to_owned())),
            };
            for (m, p) in matches.iter_mut().zip(part_matches) {
                *m &= p;
            }
        }
        for (i, hit) in matches.into_iter().enumerate() {
            if !hit {
                continue;
            }
            match action {
                '!' => {
                    chosen[i] = false;
                    removed_for_good[i] = true;
                }
                '-' => chosen[i] = false,
                '+' => {} // moves suites to the end in OpenSSL: order only
                _ => chosen[i] |= !removed_for_good[i],
            }
        }
    }
    let names_tls13 = catalogue
        .iter()
        .zip(chosen)
        .any(|(named, on)| on && named.tags.contains(&"TLS13"));
    let suites: Vec<SupportedCipherSuite> = catalogue
        .iter()
        .zip(chosen)
        .filter(|(named, on)| *on || (!names_tls13 && named.tags.contains(&"TLS13")))
        .map(|(named, _)| named.suite)
        .collect();
    if !suites
        .iter()
        .any(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
        && !names_tls13
        && chosen.iter().all(|c| !c)
    {
        // Nothing for TLS 1.2 and no TLS 1.3 restriction either: the string selected nothing
        // rustls has (e.g. only DHE suites). Serving TLS 1.3 alone would silently ignore it.
        return Err(TlsError::NoCipher(spec.to_owned()));
    }
    Ok(Selection { suites, skipped })
}

/// Which catalogue entries a single name or keyword covers; `None` for an unknown name.
fn matching(catalogue: &[Named; 9], name: &str) -> Option<[bool; 9]> {
    let mut hits = [false; 9];
    let tls12 = |named: &Named| !named.tags.contains(&"TLS13");
    if let Some(i) = catalogue
        .iter()
        .position(|named| named.openssl.eq_ignore_ascii_case(name))
    {
        hits[i] = true;
    } else if EVERYTHING.iter().any(|k| k.eq_ignore_ascii_case(name)) {
        for (hit, named) in hits.iter_mut().zip(catalogue) {
            *hit = tls12(named);
        }
    } else if NEVER_OFFERED.iter().any(|k| k.eq_ignore_ascii_case(name)) {
        // nothing
    } else {
        let tag = match name {
            "aECDSA" | "ECDSA" => "ECDSA",
            "aRSA" | "RSA" => "RSA",
            "AES128" | "AES256" | "AESGCM" | "AES" | "CHACHA20" | "SHA256" | "SHA384" => name,
            _ => return None,
        };
        for (hit, named) in hits.iter_mut().zip(catalogue) {
            *hit = named.tags.contains(&tag);
        }
    }
    Some(hits)
}

#[cfg(test)]
mod tests {
    use super::select;
    use rustls::SupportedCipherSuite;

    fn names(suites: &[SupportedCipherSuite]) -> Vec<String> {
        suites.iter().map(|s| format!("{:?}", s.suite())).collect()
    }

    #[test]
    fn uvicorn_default_selects_everything() -> Result<(), Box<dyn std::error::Error>> {
        assert_eq!(select("TLSv1")?.suites.len(), 9);
        Ok(())
    }

    #[test]
    fn openssl_suites_rustls_lacks_are_skipped() -> Result<(), Box<dyn std::error::Error>> {
        let mozilla = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES128-GCM-SHA256:AES128-SHA";
        let selection = select(mozilla)?;
        assert_eq!(selection.suites.len(), 2 + 3);
        assert_eq!(
            selection.skipped,
            vec!["DHE-RSA-AES128-GCM-SHA256", "AES128-SHA"]
        );
        assert!(select("DHE-RSA-AES128-GCM-SHA256").is_err());
        Ok(())
    }

    #[test]
    fn single_names_and_exclusions() -> Result<(), Box<dyn std::error::Error>> {
        let suites = select("ECDHE-RSA-AES128-GCM-SHA256")?.suites;
        // One TLS 1.2 suite, plus the TLS 1.3 suites the string did not restrict.
        assert_eq!(suites.len(), 4);
        assert!(names(&suites)
            .iter()
            .any(|n| n.contains("ECDHE_RSA_WITH_AES_128_GCM")));

        let suites = select("ECDHE+AESGCM:!aNULL:!MD5:@STRENGTH")?.suites;
        assert_eq!(suites.len(), 4 + 3);

        let suites = select("HIGH:!CHACHA20")?.suites;
        assert!(!names(&suites)
            .iter()
            .any(|n| n.contains("CHACHA20") && !n.starts_with("TLS13")));

        let suites = select("TLS_AES_256_GCM_SHA384:ECDHE-ECDSA-AES256-GCM-SHA384")?.suites;
        assert_eq!(suites.len(), 2);
        Ok(())
    }

    #[test]
    fn unknown_names_are_errors() {
        assert!(select("NOT-A-CIPHER").is_err());
        assert!(select("ECDHE-RSA-AES128-SHA256x").is_err());
        assert!(select("HIGH:FOO").is_err());
    }
}
