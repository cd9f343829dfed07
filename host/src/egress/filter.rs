//! What the egress proxy is told: a skill's allowlist as tinyproxy's URL filter, one
//! POSIX extended regular expression per line, and the key that lets skills with the
//! same allowlist share one network and one proxy. Pure.
//!
//! tinyproxy matches (case-insensitively, with `FilterURLs On` and `FilterDefaultDeny
//! Yes`) the request target: `host:port` for a CONNECT, `http://host[:port]/path` for a
//! plain HTTP request. Each expression is anchored at both ends of the host and port, so
//! `allowed.test` does not admit `allowed.test.evil`, `evilallowed.test`, or a URL with
//! user information (`http://allowed.test@evil.test/`), which tinyproxy would strip.

use sha2::{Digest, Sha256};

use crate::manifest::egress::{Destination, HostPattern};

/// The port a plain HTTP URL without one goes to.
const HTTP_PORT: u16 = 80;

/// The filter lines admitting exactly `destinations`, sorted and without repeats.
pub(crate) fn filter_lines(destinations: &[Destination]) -> Vec<String> {
    let mut lines: Vec<String> = destinations.iter().flat_map(lines_for).collect();
    lines.sort();
    lines.dedup();
    lines
}

/// A CONNECT to the destination, and a plain HTTP request for it.
fn lines_for(destination: &Destination) -> [String; 2] {
    let host = match &destination.host {
        HostPattern::Exact(name) => escape(name),
        HostPattern::Subdomains(name) => format!("([a-z0-9-]+\\.)+{}", escape(name)),
    };
    let port = destination.port;
    let http_port = if port == HTTP_PORT {
        format!("(:{port})?")
    } else {
        format!(":{port}")
    };
    [
        format!("^{host}:{port}$"),
        format!("^http://{host}{http_port}(/|$)"),
    ]
}

/// A host name as a literal: names hold only letters, digits, `-` and `.`.
fn escape(name: &str) -> String {
    name.replace('.', "\\.")
}

/// The allowlist's identity: the same destinations, in any order, give the same key.
pub(crate) fn allowlist_key(destinations: &[Destination]) -> String {
    let mut names: Vec<String> = destinations.iter().map(ToString::to_string).collect();
    names.sort();
    names.dedup();
    let digest = Sha256::digest(names.join("\n").as_bytes());
    hex::encode(digest)[..12].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destinations(texts: &[&str]) -> Vec<Destination> {
        texts
            .iter()
            .map(|t| Destination::parse(t).unwrap())
            .collect()
    }

    /// Whether tinyproxy, given these lines, would let `target` through. POSIX ERE and
    /// Rust's regex agree on everything the lines use (anchors, groups, alternation,
    /// `+`, `?`, one bracket class, escaped dots).
    fn admitted(lines: &[String], target: &str) -> bool {
        lines.iter().any(|line| {
            regex::Regex::new(&format!("(?i){line}"))
                .unwrap()
                .is_match(target)
        })
    }

    #[test]
    fn each_destination_admits_its_connect_and_its_plain_http_and_nothing_near_them() {
        let lines = filter_lines(&destinations(&[
            "allowed.test:443",
            "plain.test:80",
            "*.wild.test:8080",
        ]));
        for target in [
            "allowed.test:443",
            "ALLOWED.test:443",
            "http://allowed.test:443/x",
            "plain.test:80",
            "http://plain.test/",
            "http://plain.test",
            "http://plain.test:80/path?q=1",
            "api.wild.test:8080",
            "a.b.wild.test:8080",
            "http://api.wild.test:8080/",
        ] {
            assert!(admitted(&lines, target), "{target} should pass");
        }
        for target in [
            "allowed.test:80",
            "allowed.test:4430",
            "allowed.test:443/x",
            "allowed.test.evil:443",
            "evilallowed.test:443",
            "x.allowed.test:443",
            "http://allowed.test@evil.test:443/",
            "http://allowed.test:443@evil.test/",
            "http://evil.test/?allowed.test:443",
            "http://plain.test:8080/",
            "plain.test:8080",
            "wild.test:8080",
            "http://wild.test:8080/",
            "api.wild.test.evil:8080",
            "apiwild.test:8080",
            "api.wild.test:8081",
            "169.254.169.254:80",
            "http://169.254.169.254/latest/meta-data/",
        ] {
            assert!(!admitted(&lines, target), "{target} should be refused");
        }
    }

    #[test]
    fn the_key_ignores_order_and_repeats_and_tells_allowlists_apart() {
        let a = allowlist_key(&destinations(&["a.test:443", "b.test:443"]));
        let b = allowlist_key(&destinations(&["b.test:443", "a.test:443", "a.test:443"]));
        let c = allowlist_key(&destinations(&["a.test:443"]));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 12);
    }
}
