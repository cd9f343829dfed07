//! `run.network: {egress: [...]}`: the destinations a skill may reach through the egress
//! proxy, each a host name (or every name under one, `*.example.com`) and a port.
//!
//! Names only: an IP literal or a CIDR would let a manifest name the metadata address,
//! the Docker gateway or the local network in a way a reviewer can miss, and the proxy
//! resolves names itself, so a skill never needs DNS.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use super::units::InvalidValue;

/// The longest host name DNS carries.
const MAX_NAME: usize = 253;
/// The longest label of a host name.
const MAX_LABEL: usize = 63;

/// Which host names a destination admits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HostPattern {
    /// Exactly this name, lowercase.
    Exact(String),
    /// Every name that ends in `.` and this one (`*.pypi.org` admits `files.pypi.org`
    /// and `a.b.pypi.org`, not `pypi.org` itself), lowercase.
    Subdomains(String),
}

/// One allowed destination: `api.example.com:443` or `*.example.com:443`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Destination {
    /// The names admitted.
    pub host: HostPattern,
    /// The one port admitted.
    pub port: u16,
}

impl Destination {
    /// Parse `host:port`, where host is a DNS name of at least two labels, optionally
    /// led by `*.`.
    pub fn parse(text: &str) -> Result<Destination, InvalidValue> {
        let bad = |why: &str| {
            InvalidValue(format!(
                "{text:?} is not an egress destination: {why}; write host:port, like \
                 api.example.com:443 or *.example.com:443"
            ))
        };
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| bad("it names no port"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?;
        let host = host.to_ascii_lowercase();
        let (pattern, name) = match host.strip_prefix("*.") {
            Some(rest) => (HostPattern::Subdomains(rest.to_string()), rest),
            None => (HostPattern::Exact(host.clone()), host.as_str()),
        };
        if name.contains('*') {
            return Err(bad("a wildcard may only stand alone as the first label"));
        }
        if name.parse::<std::net::Ipv4Addr>().is_ok() || name.contains(['[', ']']) {
            return Err(bad("IP addresses are not allowed, only host names"));
        }
        if name.len() > MAX_NAME {
            return Err(bad("the name is longer than 253 characters"));
        }
        let labels: Vec<&str> = name.split('.').collect();
        if labels.len() < 2 {
            return Err(bad("the name needs at least two labels (a dot)"));
        }
        let valid_label = |label: &&str| {
            !label.is_empty()
                && label.len() <= MAX_LABEL
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if !labels.iter().all(valid_label) {
            return Err(bad(
                "each label of the name is 1 to 63 letters, digits and inner dashes",
            ));
        }
        if labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit())) {
            return Err(bad("IP addresses are not allowed, only host names"));
        }
        if labels.last() == Some(&"localhost") {
            return Err(bad("localhost is the proxy itself"));
        }
        Ok(Destination {
            host: pattern,
            port,
        })
    }

    /// Whether a request for `host` (any case, no trailing dot) and `port` is admitted.
    pub fn admits(&self, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        port == self.port
            && match &self.host {
                HostPattern::Exact(name) => host == *name,
                HostPattern::Subdomains(name) => host
                    .strip_suffix(name.as_str())
                    .and_then(|head| head.strip_suffix('.'))
                    .is_some_and(|head| !head.is_empty()),
            }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Exact(name) => write!(f, "{name}:{}", self.port),
            HostPattern::Subdomains(name) => write!(f, "*.{name}:{}", self.port),
        }
    }
}

impl Serialize for Destination {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Destination {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Destination::parse(&text).map_err(de::Error::custom)
    }
}

impl schemars::JsonSchema for Destination {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Destination".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`host:port`: a DNS name of two labels or more, optionally led by `*.` for every name under it, and a port. No IP addresses.",
            "type": "string",
            "pattern": "^(\\*\\.)?[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+:[0-9]{1,5}$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Destination {
        Destination::parse(text).unwrap()
    }

    fn refusal(text: &str) -> String {
        Destination::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn names_and_wildcards_parse_lowercase_and_print_back() {
        let exact = parse("API.Example.com:443");
        assert_eq!(exact.host, HostPattern::Exact("api.example.com".into()));
        assert_eq!(exact.to_string(), "api.example.com:443");
        let wild = parse("*.pypi.org:443");
        assert_eq!(wild.host, HostPattern::Subdomains("pypi.org".into()));
        assert_eq!(wild.to_string(), "*.pypi.org:443");
    }

    #[test]
    fn a_wildcard_admits_names_under_it_and_no_look_alike() {
        let wild = parse("*.allowed.test:8080");
        assert!(wild.admits("api.allowed.test", 8080));
        assert!(wild.admits("a.b.ALLOWED.test", 8080));
        assert!(!wild.admits("allowed.test", 8080), "not the name itself");
        assert!(!wild.admits("evilallowed.test", 8080));
        assert!(!wild.admits("api.allowed.test.evil", 8080));
        assert!(!wild.admits("api.allowed.test", 443), "only its port");
        let exact = parse("allowed.test:80");
        assert!(exact.admits("Allowed.Test", 80));
        assert!(!exact.admits("allowed.test.evil", 80));
        assert!(!exact.admits("x.allowed.test", 80));
    }

    #[test]
    fn anything_but_a_name_and_a_port_is_refused_with_why() {
        for (text, why) in [
            ("api.example.com", "names no port"),
            ("api.example.com:0", "from 1 to 65535"),
            ("api.example.com:99999", "from 1 to 65535"),
            ("api.example.com:https", "from 1 to 65535"),
            ("169.254.169.254:80", "IP addresses are not allowed"),
            ("[::1]:80", "IP addresses are not allowed"),
            ("10.0.0.0/8:80", "each label"),
            ("api.*.example.com:443", "wildcard may only stand alone"),
            ("*:443", "wildcard may only stand alone"),
            ("*.com.:443", "each label"),
            ("metadata:80", "at least two labels"),
            ("db.localhost:5432", "localhost is the proxy itself"),
            ("a_b.example.com:80", "each label"),
            ("-a.example.com:80", "each label"),
        ] {
            let message = refusal(text);
            assert!(message.contains(why), "{text}: {message}");
            assert!(message.contains("like api.example.com:443"), "{message}");
        }
    }
}
