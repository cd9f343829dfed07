//! Network holders: for each egress network, a container made ahead of time that does
//! nothing but hold a network namespace with an endpoint on that network. A cold call of
//! an allowlisted skill joins one (`network_mode: container:<holder>`) instead of waiting
//! while the engine gives its own container an endpoint (an address, a veth on the
//! network's bridge, the rules of the embedded resolver): that wait is most of what an
//! allowlist adds to a cold call.
//!
//! Each holder serves one call and is removed after it, so no call inherits another's
//! namespace. A holder runs as nobody with no capabilities on a read-only root, and its
//! resolver settings are the ones a skill's own endpoint would have had: the skill's
//! container inherits them. Holders are labelled like every other container of the host
//! and known to the [`Reaper`] from before they exist, so a stopping or dying host leaves
//! none behind.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use skillhost_api::codes;
use tokio::sync::Notify;

use super::{Gateway, DNS_OPTIONS};
use crate::engine::spec::{Confinement, ContainerSpec, Limits, LogKeeping, NetworkMode, Resolver};
use crate::engine::Containers;
use crate::lifecycle::instance::Instance;
use crate::lifecycle::labels;
use crate::lifecycle::reaper::Reaper;
use crate::lifecycle::stock::Stock;
use crate::sync::lock;
use crate::vocab::Refusal;

/// Holders kept ready or being made per egress network. Two, so calls that come faster
/// than one holder is made still find one.
const READY_PER_NETWORK: usize = 2;

/// What a holder runs: a process that sleeps until it is removed.
const HOLD: [&str; 2] = ["sleep", "infinity"];

/// A running holder, taken by one call. Dropping it gives it to the reaper.
#[derive(Debug)]
pub(crate) struct Holder {
    /// The container's name, which the skill's `network_mode` names.
    pub(crate) name: String,
    /// Its address on the egress network: the client address the proxy logs.
    pub(crate) address: Option<IpAddr>,
    reaper: Reaper,
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.reaper.remove_later(&self.name);
    }
}

/// The holders of every egress network of this host.
#[derive(Debug, Clone)]
pub(crate) struct Holders {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    engine: Containers,
    reaper: Reaper,
    instance: Instance,
    /// What holders run: the egress proxy's image, present wherever a proxy is.
    image: String,
    state: Mutex<Stock<Ready>>,
    /// Told each time a holder being made is made or has failed.
    made: Notify,
}

/// A holder made ahead of time, not yet a [`Holder`], so the pool's own drop does not
/// remove it twice.
#[derive(Debug)]
struct Ready {
    name: String,
    address: Option<IpAddr>,
}

impl Holders {
    pub(crate) fn new(
        engine: Containers,
        reaper: Reaper,
        instance: Instance,
        image: String,
    ) -> Self {
        Holders {
            inner: Arc::new(Inner {
                engine,
                reaper,
                instance,
                image,
                state: Mutex::default(),
                made: Notify::new(),
            }),
        }
    }

    /// A running holder on `gateway`'s network: one made ahead of time, or, when none is
    /// ready, one made now. Either way the pool is refilled in the background.
    pub(crate) async fn take(&self, gateway: &Gateway) -> Result<Holder, Refusal> {
        let ready = lock(&self.inner.state).take(&gateway.network);
        let ready = match ready {
            Some(ready) => ready,
            None => self.inner.make(gateway).await?,
        };
        // After this call's own, if it needed one: the refills would only slow it.
        self.refill(gateway);
        Ok(Holder {
            name: ready.name,
            address: ready.address,
            reaper: self.inner.reaper.clone(),
        })
    }

    /// Make holders for `gateway` in the background until [`READY_PER_NETWORK`] are ready
    /// or being made.
    fn refill(&self, gateway: &Gateway) {
        let wanted =
            lock(&self.inner.state).reserve(&gateway.network, READY_PER_NETWORK, usize::MAX);
        for _ in 0..wanted {
            let (inner, gateway) = (self.inner.clone(), gateway.clone());
            tokio::spawn(async move {
                let made = inner.make(&gateway).await;
                let made = made
                    .map_err(|refusal| {
                        tracing::warn!(network = %gateway.network, "making a network holder failed: {}", refusal.message);
                    })
                    .ok();
                // Closed meanwhile: it is removed rather than kept.
                let unwanted = lock(&inner.state).made(&gateway.network, made);
                if let Some(unwanted) = unwanted {
                    inner.reaper.remove_later(&unwanted.name);
                }
                inner.made.notify_waiters();
            });
        }
    }

    /// Wait until no holder is being made.
    pub(crate) async fn settled(&self) {
        loop {
            let made = self.inner.made.notified();
            if !lock(&self.inner.state).making() {
                return;
            }
            made.await;
        }
    }

    /// Stop refilling and give every ready holder to the reaper.
    pub(crate) fn close(&self) {
        let ready = lock(&self.inner.state).close();
        for ready in ready {
            self.inner.reaper.remove_later(&ready.name);
        }
    }
}

impl Inner {
    /// Create and start a holder on `gateway`'s network, and learn its address.
    async fn make(&self, gateway: &Gateway) -> Result<Ready, Refusal> {
        let name = labels::holder_name(&gateway.network);
        // Known to the reaper before it exists, so a host stopping meanwhile removes it.
        self.reaper.track(&name);
        let made = self.create_and_start(&name, gateway).await;
        if made.is_err() {
            self.reaper.remove_later(&name);
        }
        made.map(|address| Ready { name, address })
    }

    async fn create_and_start(
        &self,
        name: &str,
        gateway: &Gateway,
    ) -> Result<Option<IpAddr>, Refusal> {
        let spec = holder_spec(
            &self.image,
            gateway,
            labels::for_holder(&gateway.network, &self.instance),
        );
        let failed = |doing: &str, e: &dyn std::fmt::Display| {
            Refusal::new(
                codes::ENGINE_ERROR,
                format!(
                    "{doing} a holder on the egress network {}: {e}",
                    gateway.network
                ),
            )
        };
        let id = self
            .engine
            .create(name, &spec)
            .await
            .map_err(|e| failed("creating", &e))?;
        self.engine
            .start(name)
            .await
            .map_err(|e| failed("starting", &e))?;
        // Learnt once here, off every call's path.
        Ok(gateway.address_of(self.engine.as_ref(), &id).await)
    }
}

/// The configuration of a holder on `gateway`'s network: as confined as a container
/// that only sleeps can be.
fn holder_spec(image: &str, gateway: &Gateway, labels: HashMap<String, String>) -> ContainerSpec {
    ContainerSpec {
        image: image.to_string(),
        entrypoint: Some(HOLD.map(String::from).to_vec()),
        cmd: Some(Vec::new()),
        user: Some("65534:65534".into()),
        labels,
        network: NetworkMode::Network(gateway.network.clone()),
        dns: Some(Resolver {
            servers: vec![gateway.proxy_ip.clone()],
            options: DNS_OPTIONS.map(String::from).to_vec(),
        }),
        confinement: Confinement {
            drop_all_capabilities: true,
            security_opt: vec!["no-new-privileges:true".into()],
            read_only_root: true,
            private_ipc: true,
        },
        limits: Limits {
            memory: Some(16 * 1024 * 1024),
            pids: Some(4),
            ..Default::default()
        },
        log: LogKeeping::Nothing,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_sleeps_confined_on_the_egress_network_with_the_proxy_as_resolver() {
        let gateway = Gateway {
            network: "skillhost-egress-k-s".into(),
            proxy_ip: "172.30.0.2".into(),
        };
        let labels = HashMap::from([("io.skillhost.managed".to_string(), "true".to_string())]);
        let spec = holder_spec("skillhost/egress-proxy:latest", &gateway, labels.clone());
        assert_eq!(
            spec.entrypoint,
            Some(vec!["sleep".into(), "infinity".into()])
        );
        assert_eq!(spec.cmd, Some(Vec::new()));
        assert_eq!(spec.user.as_deref(), Some("65534:65534"));
        assert_eq!(spec.labels, labels);
        assert_eq!(
            spec.network,
            NetworkMode::Network("skillhost-egress-k-s".into())
        );
        assert_eq!(
            spec.dns,
            Some(Resolver {
                servers: vec!["172.30.0.2".to_string()],
                options: vec!["timeout:1".to_string(), "attempts:1".to_string()],
            })
        );
        assert!(spec.confinement.read_only_root && spec.confinement.drop_all_capabilities);
        assert_eq!(spec.limits.pids, Some(4));
        assert!(!spec.interactive, "nothing is attached to a holder");
    }
}
