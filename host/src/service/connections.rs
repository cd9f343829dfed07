//! How many connections the service holds open: a bound in all, below the process's
//! file descriptor limit, and a bound per peer (one TCP address; the unix socket's
//! callers count as one), so that one caller holding connections open cannot take the
//! descriptors health checks and other callers need. A connection over a bound is
//! accepted and closed at once, which keeps the kernel's backlog moving.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::sync::lock;

/// Who a connection comes from, as far as the bounds are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Peer {
    /// A TCP caller, by address (its port changes with every connection).
    Ip(IpAddr),
    /// A caller on the unix socket: its owner, whose processes are one peer.
    Local,
}

/// The bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectionLimits {
    /// Connections open at once, over every listener.
    pub(crate) total: usize,
    /// Connections open at once from one peer.
    pub(crate) per_peer: usize,
}

/// Why a connection was closed unserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    /// The service holds `total` connections already.
    #[error("the service holds its limit of {0} connections")]
    Total(usize),
    /// The peer holds `per_peer` connections already.
    #[error("this peer holds its limit of {0} connections")]
    Peer(usize),
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_peer: HashMap<Peer, usize>,
}

/// The connections open now, shared by every accept loop.
#[derive(Debug, Clone)]
pub(crate) struct Connections {
    limits: ConnectionLimits,
    counts: Arc<Mutex<Counts>>,
}

/// One admitted connection; dropping it (the connection ended) frees its place.
#[derive(Debug)]
pub(crate) struct Admitted {
    peer: Peer,
    counts: Arc<Mutex<Counts>>,
}

impl Connections {
    pub(crate) fn new(limits: ConnectionLimits) -> Self {
        Connections {
            limits,
            counts: Arc::default(),
        }
    }

    /// A place for a new connection from `peer`, or why there is none.
    pub(crate) fn admit(&self, peer: Peer) -> Result<Admitted, Refused> {
        let mut counts = lock(&self.counts);
        if counts.total >= self.limits.total {
            return Err(Refused::Total(self.limits.total));
        }
        let of_peer = counts.by_peer.entry(peer).or_default();
        if *of_peer >= self.limits.per_peer {
            return Err(Refused::Peer(self.limits.per_peer));
        }
        *of_peer += 1;
        counts.total += 1;
        Ok(Admitted {
            peer,
            counts: self.counts.clone(),
        })
    }

    /// Connections open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        lock(&self.counts).total
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        counts.total = counts.total.saturating_sub(1);
        if let Some(of_peer) = counts.by_peer.get_mut(&self.peer) {
            *of_peer -= 1;
            if *of_peer == 0 {
                counts.by_peer.remove(&self.peer);
            }
        }
    }
}

/// Descriptors kept for everything but callers' connections: the engine's, the
/// containers' pipes and attach streams, log files, the listeners themselves.
const RESERVED_DESCRIPTORS: u64 = 256;

/// The largest total bound that fits under a descriptor limit of `nofile`: three quarters
/// of what is left after the reserve (each call has an engine connection and streams of
/// its own besides its caller's connection).
pub(crate) fn total_for(nofile: u64) -> usize {
    let usable = nofile.saturating_sub(RESERVED_DESCRIPTORS) / 4 * 3;
    usize::try_from(usable).unwrap_or(usize::MAX).max(1)
}

/// Raise this process's soft descriptor limit to its hard limit (as servers do at
/// start), and return the soft limit in force.
pub(crate) fn raise_nofile() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!("cannot raise the open file limit to its hard limit: {e}");
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Peer {
        Peer::Ip(IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn one_peer_cannot_take_every_place_and_places_come_back() {
        let connections = Connections::new(ConnectionLimits {
            total: 5,
            per_peer: 2,
        });
        let first = connections.admit(ip(1)).unwrap();
        let _second = connections.admit(ip(1)).unwrap();
        assert_eq!(connections.admit(ip(1)).unwrap_err(), Refused::Peer(2));
        let _other = connections.admit(ip(2)).unwrap();
        let _local = connections.admit(Peer::Local).unwrap();
        drop(first);
        let _again = connections.admit(ip(1)).unwrap();
        let _third = connections.admit(ip(3)).unwrap();
        assert_eq!(connections.open(), 5);
        assert_eq!(connections.admit(ip(4)).unwrap_err(), Refused::Total(5));
    }

    #[test]
    fn the_total_fits_under_the_descriptor_limit() {
        assert_eq!(total_for(1024), 576);
        assert!(total_for(1024) as u64 + RESERVED_DESCRIPTORS < 1024);
        assert_eq!(total_for(100), 1, "never zero");
        assert_eq!(total_for(1_048_576), 786_240);
    }
}
