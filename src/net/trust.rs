//! Trust in proxies (`--proxy-headers` with `--forwarded-allow-ips`): which peers may set
//! `X-Forwarded-For` / `X-Forwarded-Proto`, with uvicorn's rules.

use std::net::IpAddr;

use http::HeaderName;

/// The headers a trusted proxy sets, named once (a `&str` key is parsed on every lookup).
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The parsed `--forwarded-allow-ips`: `*`, IP addresses, CIDR networks and literals (a Unix
/// socket path, for instance).
#[derive(Debug, Default, Clone)]
pub struct TrustedProxies {
    everyone: bool,
    networks: Vec<(IpAddr, u8)>,
    literals: Vec<String>,
}

impl TrustedProxies {
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Self {
        let mut trusted = TrustedProxies::default();
        for entry in entries.iter().map(|entry| entry.as_ref().trim()) {
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                trusted.everyone = true;
            } else if let Some(network) = parse_network(entry) {
                trusted.networks.push(network);
            } else {
                trusted.literals.push(entry.to_owned());
            }
        }
        trusted
    }

    /// Whether a peer (an IP, or a literal such as a socket path) is trusted.
    pub fn trusts(&self, host: &str) -> bool {
        if self.everyone {
            return true;
        }
        match host.parse::<IpAddr>() {
            Ok(ip) => self
                .networks
                .iter()
                .any(|&(net, bits)| contains(net, bits, ip)),
            Err(_) => self.literals.iter().any(|literal| literal == host),
        }
    }

    /// The client an `X-Forwarded-For` chain names: the right-most hop that is not a trusted
    /// proxy, or the left-most when every hop is trusted (or everyone is).
    pub fn client_from_forwarded_for<'a>(&self, header: &'a str) -> Option<&'a str> {
        let hops: Vec<&str> = header.split(',').map(str::trim).collect();
        if self.everyone {
            return hops.first().copied().filter(|host| !host.is_empty());
        }
        hops.iter()
            .rev()
            .find(|host| !self.trusts(host))
            .or_else(|| hops.first())
            .copied()
            .filter(|host| !host.is_empty())
    }
}

fn parse_network(entry: &str) -> Option<(IpAddr, u8)> {
    let (address, bits) = match entry.split_once('/') {
        Some((address, bits)) => (address, Some(bits.parse::<u8>().ok()?)),
        None => (entry, None),
    };
    let ip: IpAddr = address.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some((ip, bits))
}

fn contains(network: IpAddr, bits: u8, ip: IpAddr) -> bool {
    match (network, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::TrustedProxies;

    #[test]
    fn addresses_networks_literals_and_everyone() {
        let trusted =
            TrustedProxies::parse(&["127.0.0.1", "10.0.0.0/8", "fd00::/8", "/tmp/app.sock"]);
        assert!(trusted.trusts("127.0.0.1"));
        assert!(!trusted.trusts("127.0.0.2"));
        assert!(trusted.trusts("10.1.2.3"));
        assert!(trusted.trusts("fd12::1"));
        assert!(!trusted.trusts("2001:db8::1"));
        assert!(trusted.trusts("/tmp/app.sock"));
        assert!(TrustedProxies::parse(&["*"]).trusts("203.0.113.9"));
        assert!(TrustedProxies::parse(&["0.0.0.0/0"]).trusts("203.0.113.9"));
    }

    #[test]
    fn forwarded_for_picks_the_first_untrusted_hop_from_the_right() {
        let trusted = TrustedProxies::parse(&["127.0.0.1", "10.0.0.0/8"]);
        assert_eq!(
            trusted.client_from_forwarded_for("203.0.113.9, 198.51.100.7, 10.0.0.2"),
            Some("198.51.100.7")
        );
        assert_eq!(
            trusted.client_from_forwarded_for("10.0.0.5, 10.0.0.2"),
            Some("10.0.0.5")
        );
        assert_eq!(trusted.client_from_forwarded_for(""), None);
        let everyone = TrustedProxies::parse(&["*"]);
        assert_eq!(
            everyone.client_from_forwarded_for("1.2.3.4, 5.6.7.8"),
            Some("1.2.3.4")
        );
    }
}
