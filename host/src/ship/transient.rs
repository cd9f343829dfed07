//! Reading a registry failure from the engine's words: worth another attempt, and whether
//! the registry was reached at all. The engine relays the registry's errors as text only.

/// What a failure's text says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FailureKind {
    /// Another attempt may succeed: the network or the registry faltered.
    pub(super) transient: bool,
    /// The registry was not reached at all.
    pub(super) unreachable: bool,
}

/// Not reached: nothing listens, the name does not resolve, the connection timed out.
const UNREACHABLE: &[&str] = &[
    "connection refused",
    "no such host",
    "i/o timeout",
    "no route to host",
    "network is unreachable",
    "server misbehaving",
];
/// Reached, but faltering: worth another attempt.
const FALTERING: &[&str] = &[
    "connection reset",
    "broken pipe",
    "unexpected eof",
    ": eof",
    "tls handshake timeout",
    "503 service unavailable",
    "502 bad gateway",
    "504 gateway timeout",
    "429 too many requests",
    "toomanyrequests",
];

pub(super) fn classify(words: &str) -> FailureKind {
    let lower = words.to_lowercase();
    let any = |list: &[&str]| list.iter().any(|needle| lower.contains(needle));
    let unreachable = any(UNREACHABLE);
    FailureKind {
        // A refused connection may be a registry that is restarting.
        transient: unreachable || any(FALTERING),
        unreachable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_connection_is_unreachable_and_worth_retrying() {
        let kind = classify(
            r#"Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused"#,
        );
        assert_eq!(
            kind,
            FailureKind {
                transient: true,
                unreachable: true
            }
        );
    }

    #[test]
    fn a_registry_that_falters_is_retried_but_was_reached() {
        let kind = classify("received unexpected HTTP status: 503 Service Unavailable");
        assert_eq!(
            kind,
            FailureKind {
                transient: true,
                unreachable: false
            }
        );
    }

    #[test]
    fn a_registry_that_refuses_is_final() {
        let kind = classify(
            "manifest for 127.0.0.1:5000/skill-echo@sha256:00 not found: manifest unknown",
        );
        assert_eq!(
            kind,
            FailureKind {
                transient: false,
                unreachable: false
            }
        );
    }
}
