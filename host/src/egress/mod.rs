//! Egress by allowlist (`run.network: {egress: [...]}`): for each distinct allowlist, an
//! internal network with no route out and no address of the host on it, and an egress
//! proxy (tinyproxy, the image `skillhost/egress-proxy`) on that network and on the
//! outbound one. A skill's container joins only the internal network; the proxy is its
//! only way out, and it admits exactly the allowlist ([`filter`]).
//!
//! Skills with the same allowlist share the network and the proxy. Both carry the
//! managed and instance labels, are removed at shutdown (or, when this process dies, by
//! the next host's leftover sweep), and are made on the first call that needs them.

mod denials;
mod filter;
mod holders;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, NetworkConnectRequest,
    NetworkCreateRequest,
};
use bollard::query_parameters::{CreateContainerOptions, InspectNetworkOptions, LogsOptions};
use bollard::Docker;
use futures_util::StreamExt;
use skillhost_api::codes;
use skillhost_api::Denial;
use tokio::sync::OnceCell;

use crate::invoke::Refusal;
use crate::lifecycle::instance::Instance;
use crate::lifecycle::labels;
use crate::lifecycle::removal;
use crate::manifest::egress::Destination;
use crate::sync::lock;

pub(crate) use filter::allowlist_key;
pub(crate) use holders::{Holder, Holders};

/// The proxy's image, built from `images/egress-proxy` by `skillhost images build`.
pub(crate) const PROXY_IMAGE: &str = "skillhost/egress-proxy:latest";
/// The port the proxy listens on.
pub(crate) const PROXY_PORT: u16 = 8888;
/// How a container on an egress network resolves names: Docker's embedded server (which
/// knows the containers of its network) and, for any other name, the proxy's address
/// (given as the container's DNS server), where nothing answers on port 53. The upstream
/// is never one of the host's, so no lookup leaves the machine, whatever the engine
/// forwards; and a lookup fails in a second instead of the default twenty.
pub(crate) const DNS_OPTIONS: [&str; 2] = ["timeout:1", "attempts:1"];
/// Keeps Docker from giving the host an address on the internal network, through which
/// a skill could reach every service the host listens with.
const NO_HOST_ADDRESS: &str = "com.docker.network.bridge.inhibit_ipv4";
/// How long a new proxy has to say it accepts connections.
const PROXY_READY: Duration = Duration::from_secs(10);
/// What tinyproxy logs once it listens.
const READY_LINE: &str = "Accepting connections";

/// One allowlist's network and proxy, ready for containers to join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// The internal network a skill's container joins.
    pub(crate) network: String,
    /// The proxy's address on that network. The proxy container has the network's name.
    pub(crate) proxy_ip: String,
}

impl Gateway {
    /// `http://<proxy>:8888`, for `HTTP_PROXY` and `HTTPS_PROXY`.
    pub(crate) fn proxy_url(&self) -> String {
        format!("http://{}:{PROXY_PORT}", self.proxy_ip)
    }

    /// The address of the running container `id` on this network: the client address
    /// the proxy logs. The network's inspect, unlike the container's, takes no lock
    /// of the container, so it cannot wait on a call's own exit.
    pub(crate) async fn address_of(&self, docker: &Docker, id: &str) -> Option<IpAddr> {
        let options = InspectNetworkOptions {
            verbose: false,
            scope: None,
        };
        let network = match docker.inspect_network(&self.network, Some(options)).await {
            Ok(network) => network,
            Err(e) => {
                tracing::warn!(network = %self.network, "cannot learn a container's egress address: {e}");
                return None;
            }
        };
        let endpoint = network.containers?.remove(id)?;
        let cidr = endpoint.ipv4_address?;
        cidr.split('/').next()?.parse().ok()
    }

    /// What the proxy refused `client` from `since` to `until`, by destination. A proxy
    /// log that cannot be read costs the call only this report.
    pub(crate) async fn denials(
        &self,
        docker: &Docker,
        client: IpAddr,
        since: SystemTime,
        until: SystemTime,
    ) -> Vec<Denial> {
        let seconds = |at: SystemTime| {
            at.duration_since(UNIX_EPOCH)
                .map_or(0, |d| i32::try_from(d.as_secs()).unwrap_or(i32::MAX))
        };
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            timestamps: true,
            // Whole seconds: the lines are filtered to the instant below.
            since: seconds(since),
            until: seconds(until).saturating_add(1),
            ..Default::default()
        };
        let mut log = String::new();
        let mut lines = docker.logs(&self.network, Some(options));
        while let Some(chunk) = lines.next().await {
            match chunk {
                Ok(chunk) => log.push_str(&String::from_utf8_lossy(&chunk.into_bytes())),
                Err(e) => {
                    tracing::warn!(proxy = %self.network, "cannot read the egress proxy's log: {e}");
                    return Vec::new();
                }
            }
        }
        denials::denials_of(&denials::refusals(&log), client, since, until)
    }
}

/// Every gateway this host made, one per allowlist.
#[derive(Debug)]
pub(crate) struct Gateways {
    docker: Docker,
    instance: Instance,
    /// The network the proxies reach the outside through.
    outbound: String,
    /// What the proxies run: [`PROXY_IMAGE`], or on a locked host the locked image ID.
    image: String,
    /// Random, for names no other host process on the engine uses.
    suffix: String,
    made: Mutex<HashMap<String, Arc<OnceCell<Arc<Gateway>>>>>,
}

impl Gateways {
    pub(crate) fn new(docker: Docker, instance: Instance, outbound: String, image: String) -> Self {
        Gateways {
            docker,
            instance,
            outbound,
            image,
            suffix: labels::random_suffix(),
            made: Mutex::new(HashMap::new()),
        }
    }

    /// The gateway of `destinations`, made on first use; concurrent calls wait for one.
    pub(crate) async fn ensure(
        &self,
        destinations: &[Destination],
    ) -> Result<Arc<Gateway>, Refusal> {
        let key = allowlist_key(destinations);
        let cell = lock(&self.made).entry(key.clone()).or_default().clone();
        cell.get_or_try_init(|| async { self.make(&key, destinations).await.map(Arc::new) })
            .await
            .cloned()
    }

    fn labels(&self, key: &str) -> HashMap<String, String> {
        labels::for_gateway(key, &self.instance)
    }

    async fn make(&self, key: &str, destinations: &[Destination]) -> Result<Gateway, Refusal> {
        let name = labels::gateway_name(key, &self.suffix);
        let subnet = self.make_network(&name, key).await?;
        match self.start_proxy(&name, key, destinations, &subnet).await {
            Ok(proxy_ip) => Ok(Gateway {
                network: name,
                proxy_ip,
            }),
            Err(refusal) => {
                remove_gateway(&self.docker, &name).await;
                Err(refusal)
            }
        }
    }

    /// An internal network with no address of the host on it; its subnet.
    async fn make_network(&self, name: &str, key: &str) -> Result<String, Refusal> {
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            internal: Some(true),
            options: Some(HashMap::from([(
                NO_HOST_ADDRESS.to_string(),
                "true".to_string(),
            )])),
            labels: Some(self.labels(key)),
            ..Default::default()
        };
        self.docker
            .create_network(request)
            .await
            .map_err(engine(&format!("creating the egress network {name}")))?;
        let inspected = self
            .docker
            .inspect_network(name, None)
            .await
            .map_err(engine(&format!("inspecting the egress network {name}")))?;
        inspected
            .ipam
            .and_then(|ipam| ipam.config)
            .and_then(|configs| configs.into_iter().find_map(|c| c.subnet))
            .ok_or_else(|| {
                Refusal::new(
                    codes::ENGINE_ERROR,
                    format!("the engine gave the egress network {name} no subnet"),
                )
            })
    }

    /// Start the proxy on the internal network and the outbound one; its internal address.
    async fn start_proxy(
        &self,
        name: &str,
        key: &str,
        destinations: &[Destination],
        subnet: &str,
    ) -> Result<String, Refusal> {
        let filter = filter::filter_lines(destinations).join("\n");
        let body = ContainerCreateBody {
            image: Some(self.image.clone()),
            env: Some(vec![
                format!("SKILLHOST_EGRESS_FILTER={filter}"),
                format!("SKILLHOST_EGRESS_ALLOW={subnet}"),
            ]),
            labels: Some(self.labels(key)),
            host_config: Some(proxy_host_config(name)),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(name.to_string()),
            ..Default::default()
        };
        self.docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| match e {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                } => Refusal::new(
                    codes::BASE_IMAGE_MISSING,
                    format!(
                        "the egress proxy's image {} is not present: build it with \
                         `skillhost images build` (a locked host: pull or import its lock's images)",
                        self.image
                    ),
                ),
                other => engine(&format!("creating the egress proxy {name}"))(other),
            })?;
        let connect = NetworkConnectRequest {
            container: name.to_string(),
            endpoint_config: None,
        };
        self.docker
            .connect_network(&self.outbound, connect)
            .await
            .map_err(engine(&format!(
                "connecting the egress proxy to the outbound network {}",
                self.outbound
            )))?;
        self.docker
            .start_container(
                name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(engine(&format!("starting the egress proxy {name}")))?;
        self.await_ready(name).await?;
        let inspected = self
            .docker
            .inspect_container(name, None)
            .await
            .map_err(engine(&format!("inspecting the egress proxy {name}")))?;
        inspected
            .network_settings
            .and_then(|s| s.networks)
            .and_then(|mut networks| networks.remove(name))
            .and_then(|endpoint| endpoint.ip_address)
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| {
                Refusal::new(
                    codes::ENGINE_ERROR,
                    format!("the egress proxy {name} has no address on its network"),
                )
            })
    }

    /// Wait until the proxy logs that it accepts connections.
    async fn await_ready(&self, name: &str) -> Result<(), Refusal> {
        let options = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let mut logs = self.docker.logs(name, Some(options));
        let mut seen = String::new();
        let ready = tokio::time::timeout(PROXY_READY, async {
            while let Some(Ok(chunk)) = logs.next().await {
                seen.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
                if seen.contains(READY_LINE) {
                    return true;
                }
            }
            false
        })
        .await;
        match ready {
            Ok(true) => Ok(()),
            _ => Err(Refusal::new(
                codes::ENGINE_ERROR,
                format!(
                    "the egress proxy {name} did not start within {}s; it said: {}",
                    PROXY_READY.as_secs(),
                    seen.trim()
                ),
            )),
        }
    }

    /// The names of every gateway made, forgotten here: the caller removes them.
    fn take_made(&self) -> Vec<String> {
        lock(&self.made)
            .drain()
            .filter_map(|(_, cell)| cell.get().map(|g| g.network.clone()))
            .collect()
    }

    /// Remove every proxy and network this host made. The containers on those networks
    /// must be gone first.
    pub(crate) async fn shutdown(&self) {
        for name in self.take_made() {
            remove_gateway(&self.docker, &name).await;
        }
    }
}

impl Drop for Gateways {
    /// A host dropped without [`Gateways::shutdown`] (a panic, a test's early end) still
    /// takes its proxies and networks with it.
    fn drop(&mut self) {
        let names = self.take_made();
        if names.is_empty() {
            return;
        }
        let done = removal::run_blocking(move |docker| async move {
            for name in names {
                remove_gateway(&docker, &name).await;
            }
        });
        if done.is_none() {
            tracing::error!("could not remove this host's egress proxies; `skillhost gc` will");
        }
    }
}

/// Remove the proxy named `name`, then its network of the same name; what is already gone
/// is not an error.
pub(crate) async fn remove_gateway(docker: &Docker, name: &str) {
    if let Err(e) = removal::remove(docker, name).await {
        tracing::warn!(proxy = name, "cannot remove an egress proxy: {e}");
    }
    remove_network(docker, name).await;
}

/// Remove a network; one already gone is not an error.
pub(crate) async fn remove_network(docker: &Docker, name: &str) {
    match docker.remove_network(name).await {
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        Err(e) => tracing::warn!(network = name, "cannot remove an egress network: {e}"),
    }
}

/// The proxy's own confinement: it parses what skills send, so it gets no more than it
/// needs to relay it.
fn proxy_host_config(network: &str) -> HostConfig {
    HostConfig {
        network_mode: Some(network.to_string()),
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([(
            "/tmp".to_string(),
            "rw,noexec,nosuid,size=1m".to_string(),
        )])),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        memory: Some(128 * 1024 * 1024),
        // A thread per connection.
        pids_limit: Some(512),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([
                ("max-size".to_string(), "4m".to_string()),
                ("max-file".to_string(), "1".to_string()),
            ])),
        }),
        ..Default::default()
    }
}

fn engine(doing: &str) -> impl Fn(bollard::errors::Error) -> Refusal + '_ {
    move |e| Refusal::new(codes::ENGINE_ERROR, format!("{doing}: {e}"))
}
