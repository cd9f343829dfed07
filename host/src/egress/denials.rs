//! Which requests the egress proxy refused, and whose: read from tinyproxy's log, so a
//! call's result can say what its skill was denied. Pure.
//!
//! tinyproxy (`LogLevel Info`) writes, for each connection, a line with the client's
//! address keyed by the connection's file descriptor, then the request keyed the same
//! way, then, for a request its filter refuses, a line with the refused target and no
//! key. A refusal belongs to the latest request for the same target that nothing has
//! answered yet: tinyproxy logs it from the request's own thread, right after the
//! request. The host's engine puts a timestamp before each line.
//!
//! ```text
//! 2026-12-04T21:15:48.175071591Z CONNECT   Dec 04 21:15:48.174 [1]: Connect (file descriptor 5): 172.18.0.3
//! 2026-12-04T21:15:48.175092228Z CONNECT   Dec 04 21:15:48.174 [1]: Request (file descriptor 5): CONNECT denied.test:443 HTTP/1.1
//! 2026-12-04T21:15:48.175093863Z NOTICE    Dec 04 21:15:48.174 [1]: Proxying refused on filtered url "denied.test:443"
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::SystemTime;

use skillhost_api::Denial;

/// The port a plain HTTP URL without one goes to.
const HTTP_PORT: u16 = 80;
/// The longest target a denial names; a longer one is cut (a skill chooses its URLs).
const MAX_TARGET: usize = 256;

/// One refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    /// When the engine read the refusal's log line.
    pub(crate) at: SystemTime,
    /// The address of the container that asked.
    pub(crate) client: IpAddr,
    /// What it asked for, `host:port`.
    pub(crate) destination: String,
}

/// Every refusal in `log` whose client is known, in the log's order.
pub(crate) fn refusals(log: &str) -> Vec<Refused> {
    let mut clients: HashMap<u32, IpAddr> = HashMap::new();
    // The requests not refused yet, oldest first: (file descriptor, target).
    let mut requests: Vec<(u32, String)> = Vec::new();
    let mut refused = Vec::new();
    for line in log.lines() {
        let Some((at, message)) = split(line) else {
            continue;
        };
        if let Some((fd, address)) = keyed(message, "Connect (file descriptor ") {
            // A new connection on a descriptor ends whatever the last one asked.
            requests.retain(|(open, _)| *open != fd);
            if let Ok(address) = address.trim().parse() {
                clients.insert(fd, address);
            }
        } else if let Some((fd, request)) = keyed(message, "Request (file descriptor ") {
            if let Some(target) = request.split_whitespace().nth(1) {
                requests.push((fd, target.to_string()));
            }
        } else if let Some(target) = refused_target(message) {
            let Some(index) = requests.iter().rposition(|(_, asked)| asked == target) else {
                continue;
            };
            let (fd, _) = requests.remove(index);
            if let Some(client) = clients.get(&fd) {
                refused.push(Refused {
                    at,
                    client: *client,
                    destination: destination(target),
                });
            }
        }
    }
    refused
}

/// The refusals of `client` from `since` to `until`, counted by destination.
pub(crate) fn denials_of(
    refused: &[Refused],
    client: IpAddr,
    since: SystemTime,
    until: SystemTime,
) -> Vec<Denial> {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for refusal in refused
        .iter()
        .filter(|r| r.client == client && r.at >= since && r.at <= until)
    {
        *counts.entry(&refusal.destination).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(destination, count)| Denial::new(destination.to_string(), count))
        .collect()
}

/// The engine's timestamp and tinyproxy's message, after its level, date and process.
fn split(line: &str) -> Option<(SystemTime, &str)> {
    let (stamp, rest) = line.split_once(' ')?;
    let at = humantime::parse_rfc3339(stamp).ok()?;
    let (_, message) = rest.split_once("]: ")?;
    Some((at, message))
}

/// `prefix N): rest` as `(N, rest)`.
fn keyed<'m>(message: &'m str, prefix: &str) -> Option<(u32, &'m str)> {
    let (fd, rest) = message.strip_prefix(prefix)?.split_once("): ")?;
    Some((fd.parse().ok()?, rest))
}

fn refused_target(message: &str) -> Option<&str> {
    message
        .strip_prefix("Proxying refused on filtered url \"")?
        .strip_suffix('"')
}

/// What a refused target asked to reach: `host:port` of a CONNECT as it is, of a plain
/// HTTP URL its host and port (80 when it names none); anything else as it came.
fn destination(target: &str) -> String {
    let named = match target.strip_prefix("http://") {
        Some(url) => {
            let authority = url.split(['/', '?', '#']).next().unwrap_or_default();
            // User information never reaches the destination; the host follows it.
            let host_port = authority.rsplit('@').next().unwrap_or_default();
            if host_port.contains(':') {
                host_port.to_string()
            } else {
                format!("{host_port}:{HTTP_PORT}")
            }
        }
        None => target.to_string(),
    };
    let mut named = named.to_ascii_lowercase();
    if named.len() > MAX_TARGET {
        let mut cut = MAX_TARGET;
        while !named.is_char_boundary(cut) {
            cut -= 1;
        }
        named.truncate(cut);
    }
    named
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
2026-12-04T21:15:46.862431446Z INFO      Dec 04 21:15:46.862 [1]: Starting main loop. Accepting connections.
2026-12-04T21:15:48.175071591Z CONNECT   Dec 04 21:15:48.174 [1]: Connect (file descriptor 5): 172.18.0.3
2026-12-04T21:15:48.175092228Z CONNECT   Dec 04 21:15:48.174 [1]: Request (file descriptor 5): CONNECT denied.test:443 HTTP/1.1
2026-12-04T21:15:48.175093863Z NOTICE    Dec 04 21:15:48.174 [1]: Proxying refused on filtered url \"denied.test:443\"
2026-12-04T21:15:48.175656920Z CONNECT   Dec 04 21:15:48.175 [1]: Connect (file descriptor 5): 172.18.0.3
2026-12-04T21:15:48.175813619Z CONNECT   Dec 04 21:15:48.175 [1]: Request (file descriptor 5): GET http://Denied.Example/x?y=1 HTTP/1.1
2026-12-04T21:15:48.175817644Z NOTICE    Dec 04 21:15:48.175 [1]: Proxying refused on filtered url \"http://Denied.Example/x?y=1\"
2026-12-04T21:15:48.176226737Z CONNECT   Dec 04 21:15:48.176 [1]: Connect (file descriptor 5): 172.18.0.3
2026-12-04T21:15:48.176230669Z CONNECT   Dec 04 21:15:48.176 [1]: Request (file descriptor 5): CONNECT allowed.test:443 HTTP/1.1
2026-12-04T21:15:48.176234215Z INFO      Dec 04 21:15:48.176 [1]: No upstream proxy for allowed.test
2026-12-04T21:15:49Z CONNECT   Dec 04 21:15:49.000 [1]: Connect (file descriptor 6): 172.18.0.4
2026-12-04T21:15:49.1Z CONNECT   Dec 04 21:15:49.100 [1]: Request (file descriptor 6): CONNECT denied.test:443 HTTP/1.1
2026-12-04T21:15:49.2Z NOTICE    Dec 04 21:15:49.200 [1]: Proxying refused on filtered url \"denied.test:443\"
";

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn each_refusal_names_its_client_and_destination() {
        let refused = refusals(LOG);
        let named: Vec<(IpAddr, &str)> = refused
            .iter()
            .map(|r| (r.client, r.destination.as_str()))
            .collect();
        assert_eq!(
            named,
            [
                (ip("172.18.0.3"), "denied.test:443"),
                (ip("172.18.0.3"), "denied.example:80"),
                (ip("172.18.0.4"), "denied.test:443"),
            ],
            "the admitted CONNECT is no refusal"
        );
        assert_eq!(refused[0].at, at("2026-12-04T21:15:48.175093863Z"));
    }

    #[test]
    fn a_call_sees_only_its_own_container_within_its_time() {
        let refused = refusals(LOG);
        let (since, until) = (at("2026-12-04T21:15:48Z"), at("2026-12-04T21:15:50Z"));
        assert_eq!(
            denials_of(&refused, ip("172.18.0.3"), since, until),
            [
                Denial::new("denied.example:80".into(), 1),
                Denial::new("denied.test:443".into(), 1),
            ]
        );
        assert_eq!(
            denials_of(&refused, ip("172.18.0.4"), since, until),
            [Denial::new("denied.test:443".into(), 1)]
        );
        let later = at("2026-12-04T21:15:48.5Z");
        assert!(denials_of(&refused, ip("172.18.0.3"), later, until).is_empty());
        let earlier = at("2026-12-04T21:15:49.15Z");
        assert!(denials_of(&refused, ip("172.18.0.4"), since, earlier).is_empty());
    }

    #[test]
    fn repeated_refusals_are_counted() {
        let line = |fd: u32, client: &str, ms: u32| {
            format!(
                "2026-12-04T21:15:48.{ms:03}Z CONNECT x [1]: Connect (file descriptor {fd}): {client}\n\
                 2026-12-04T21:15:48.{ms:03}Z CONNECT x [1]: Request (file descriptor {fd}): CONNECT a.test:443 HTTP/1.1\n"
            )
        };
        // Two clients' requests for the same target, logged before either refusal: the
        // later request's refusal comes first, and each refusal is counted once.
        let mut log = line(7, "10.0.0.2", 100) + &line(8, "10.0.0.3", 101);
        for ms in [102, 103] {
            log.push_str(&format!(
                "2026-12-04T21:15:48.{ms}Z NOTICE x [1]: Proxying refused on filtered url \"a.test:443\"\n"
            ));
        }
        let refused = refusals(&log);
        let clients: Vec<IpAddr> = refused.iter().map(|r| r.client).collect();
        assert_eq!(clients, [ip("10.0.0.3"), ip("10.0.0.2")]);
        let whole = (SystemTime::UNIX_EPOCH, at("2030-01-01T00:00:00Z"));
        assert_eq!(
            denials_of(&refused, ip("10.0.0.2"), whole.0, whole.1),
            [Denial::new("a.test:443".into(), 1)]
        );
    }

    #[test]
    fn refused_urls_name_host_and_port() {
        assert_eq!(destination("denied.test:8443"), "denied.test:8443");
        assert_eq!(destination("http://a.test/p/q"), "a.test:80");
        assert_eq!(destination("http://a.test:8080"), "a.test:8080");
        assert_eq!(
            destination("http://allowed.test@evil.test/"),
            "evil.test:80"
        );
        assert_eq!(destination(&"x".repeat(1000)).len(), MAX_TARGET);
    }

    #[test]
    fn lines_that_are_not_tinyproxys_are_skipped() {
        let log = "garbage\n\nnot-a-time NOTICE x [1]: Proxying refused on filtered url \"a:1\"\n\
                   2026-12-04T21:15:48Z NOTICE x [1]: Proxying refused on filtered url \"never.asked:1\"\n";
        assert!(refusals(log).is_empty());
    }
}
