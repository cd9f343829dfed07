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

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig};
use bollard::query_parameters::CreateContainerOptions;
use bollard::Docker;
use skillhost_api::codes;
use tokio::sync::Notify;

use super::{Gateway, DNS_OPTIONS};
use crate::invoke::Refusal;
use crate::lifecycle::instance::Instance;
use crate::lifecycle::labels;
use crate::lifecycle::reaper::Reaper;
use crate::lifecycle::stock::Stock;
use crate::run::container::start_container;
use crate::sync::lock;

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
    docker: Docker,
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
    pub(crate) fn new(docker: Docker, reaper: Reaper, instance: Instance, image: String) -> Self {
        Holders {
            inner: Arc::new(Inner {
                docker,
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
        let body = holder_body(
            &self.image,
            gateway,
            labels::for_holder(&gateway.network, &self.instance),
        );
        let options = CreateContainerOptions {
            name: Some(name.to_string()),
            ..Default::default()
        };
        let failed = |doing: &str, e: &dyn std::fmt::Display| {
            Refusal::new(
                codes::ENGINE_ERROR,
                format!(
                    "{doing} a holder on the egress network {}: {e}",
                    gateway.network
                ),
            )
        };
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| failed("creating", &e))?;
        start_container(&self.docker, name)
            .await
            .map_err(|e| failed("starting", &e))?;
        // Learnt once here, off every call's path; the network knows it by its ID.
        Ok(gateway.address_of(&self.docker, &created.id).await)
    }
}

/// The configuration of a holder on `gateway`'s network: as confined as a container
/// that only sleeps can be.
fn holder_body(
    image: &str,
    gateway: &Gateway,
    labels: HashMap<String, String>,
) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.to_string()),
        entrypoint: Some(HOLD.map(String::from).to_vec()),
        cmd: Some(Vec::new()),
        user: Some("65534:65534".into()),
        labels: Some(labels),
        host_config: Some(HostConfig {
            network_mode: Some(gateway.network.clone()),
            dns: Some(vec![gateway.proxy_ip.clone()]),
            dns_options: Some(DNS_OPTIONS.map(String::from).to_vec()),
            readonly_rootfs: Some(true),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            memory: Some(16 * 1024 * 1024),
            pids_limit: Some(4),
            ipc_mode: Some("private".into()),
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".into()),
                config: None,
            }),
            ..Default::default()
        }),
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
        let body = holder_body("skillhost/egress-proxy:latest", &gateway, labels.clone());
        assert_eq!(
            body.entrypoint,
            Some(vec!["sleep".into(), "infinity".into()])
        );
        assert_eq!(body.cmd, Some(Vec::new()));
        assert_eq!(body.user.as_deref(), Some("65534:65534"));
        assert_eq!(body.labels, Some(labels));
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("skillhost-egress-k-s"));
        assert_eq!(host.dns, Some(vec!["172.30.0.2".to_string()]));
        assert_eq!(
            host.dns_options,
            Some(vec!["timeout:1".to_string(), "attempts:1".to_string()])
        );
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(host.pids_limit, Some(4));
        assert_eq!(host.privileged, None);
    }
}
