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
use std::time::{Duration, SystemTime};

use skillhost_api::codes;
use skillhost_api::Denial;
use tokio::sync::OnceCell;

use crate::engine::containers::{CallError, Leftovers};
use crate::engine::spec::{Confinement, ContainerSpec, Limits, LogKeeping, NetworkMode};
use crate::engine::{ContainerEngine, Containers};
use crate::lifecycle::instance::Instance;
use crate::lifecycle::labels;
use crate::manifest::egress::Destination;
use crate::sync::lock;
use crate::vocab::Refusal;

pub(crate) use filter::allowlist_key;
pub(crate) use holders::{Holder, Holders};

/// The port the proxy listens on.
pub(crate) const PROXY_PORT: u16 = 8888;
/// How a container on an egress network resolves names: Docker's embedded server (which
/// knows the containers of its network) and, for any other name, the proxy's address
/// (given as the container's DNS server), where nothing answers on port 53. The upstream
/// is never one of the host's, so no lookup leaves the machine, whatever the engine
/// forwards; and a lookup fails in a second instead of the default twenty.
pub(crate) const DNS_OPTIONS: [&str; 2] = ["timeout:1", "attempts:1"];
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
    /// the proxy logs.
    pub(crate) async fn address_of(
        &self,
        engine: &dyn ContainerEngine,
        id: &str,
    ) -> Option<IpAddr> {
        match engine.address_on(&self.network, id).await {
            Ok(address) => address,
            Err(e) => {
                tracing::warn!(network = %self.network, "cannot learn a container's egress address: {e}");
                None
            }
        }
    }

    /// What the proxy refused `client` from `since` to `until`, by destination. A proxy
    /// log that cannot be read costs the call only this report.
    pub(crate) async fn denials(
        &self,
        engine: &dyn ContainerEngine,
        client: IpAddr,
        since: SystemTime,
        until: SystemTime,
    ) -> Vec<Denial> {
        // The proxy container has the network's name.
        match engine.logs(&self.network, since, until).await {
            Ok(log) => denials::denials_of(&denials::refusals(&log), client, since, until),
            Err(e) => {
                tracing::warn!(proxy = %self.network, "cannot read the egress proxy's log: {e}");
                Vec::new()
            }
        }
    }
}

/// Every gateway this host made, one per allowlist.
#[derive(Debug)]
pub(crate) struct Gateways {
    engine: Containers,
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
    pub(crate) fn new(
        engine: Containers,
        instance: Instance,
        outbound: String,
        image: String,
    ) -> Self {
        Gateways {
            engine,
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
                remove_gateway(self.engine.as_ref(), &name).await;
                Err(refusal)
            }
        }
    }

    /// An internal network with no address of the host on it; its subnet.
    async fn make_network(&self, name: &str, key: &str) -> Result<String, Refusal> {
        self.engine
            .create_internal_network(name, self.labels(key))
            .await
            .map_err(engine(&format!("creating the egress network {name}")))
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
        let mut spec = proxy_spec(&self.image, name, self.labels(key));
        spec.env = vec![
            format!("SKILLHOST_EGRESS_FILTER={filter}"),
            format!("SKILLHOST_EGRESS_ALLOW={subnet}"),
        ];
        self.engine.create(name, &spec).await.map_err(|e| {
            if e.is_not_found() {
                Refusal::new(
                    codes::BASE_IMAGE_MISSING,
                    format!(
                        "the egress proxy's image {} is not present: build it with \
                         `skillhost images build` (a locked host: pull or import its lock's images)",
                        self.image
                    ),
                )
            } else {
                engine(&format!("creating the egress proxy {name}"))(e)
            }
        })?;
        self.engine
            .connect(&self.outbound, name)
            .await
            .map_err(engine(&format!(
                "connecting the egress proxy to the outbound network {}",
                self.outbound
            )))?;
        self.engine
            .start(name)
            .await
            .map_err(engine(&format!("starting the egress proxy {name}")))?;
        self.await_ready(name).await?;
        let address = self
            .engine
            .address_on(name, name)
            .await
            .map_err(engine(&format!("inspecting the egress proxy {name}")))?;
        address.map(|ip| ip.to_string()).ok_or_else(|| {
            Refusal::new(
                codes::ENGINE_ERROR,
                format!("the egress proxy {name} has no address on its network"),
            )
        })
    }

    /// Wait until the proxy logs that it accepts connections.
    async fn await_ready(&self, name: &str) -> Result<(), Refusal> {
        let ready =
            tokio::time::timeout(PROXY_READY, self.engine.await_log(name, READY_LINE)).await;
        let seen = match ready {
            Ok(Ok((true, _))) => return Ok(()),
            Ok(Ok((false, seen))) => seen,
            Ok(Err(e)) => e.to_string(),
            Err(_) => String::from("(nothing it said is known: its log was not read in time)"),
        };
        Err(Refusal::new(
            codes::ENGINE_ERROR,
            format!(
                "the egress proxy {name} did not start within {}s; it said: {}",
                PROXY_READY.as_secs(),
                seen.trim()
            ),
        ))
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
            remove_gateway(self.engine.as_ref(), &name).await;
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
        // Each proxy has its network's name.
        if !self.engine.remove_blocking(
            Leftovers {
                containers: names.clone(),
                networks: names,
                volumes: Vec::new(),
            },
            Duration::ZERO,
        ) {
            tracing::error!("could not remove this host's egress proxies; `skillhost gc` will");
        }
    }
}

/// Remove the proxy named `name`, then its network of the same name; what is already gone
/// is not an error.
async fn remove_gateway(engine: &dyn ContainerEngine, name: &str) {
    if let Err(e) = engine.remove(name).await {
        tracing::warn!(proxy = name, "cannot remove an egress proxy: {e}");
    }
    if let Err(e) = engine.remove_network(name).await {
        tracing::warn!(network = name, "cannot remove an egress network: {e}");
    }
}

/// The proxy's own confinement: it parses what skills send, so it gets no more than it
/// needs to relay it. Its log is kept (bounded): the refusals are read from it.
fn proxy_spec(image: &str, network: &str, labels: HashMap<String, String>) -> ContainerSpec {
    ContainerSpec {
        image: image.to_string(),
        labels,
        network: NetworkMode::Network(network.to_string()),
        confinement: Confinement {
            drop_all_capabilities: true,
            security_opt: vec!["no-new-privileges".into()],
            read_only_root: true,
            private_ipc: false,
        },
        limits: Limits {
            memory: Some(128 * 1024 * 1024),
            // A thread per connection.
            pids: Some(512),
            ..Default::default()
        },
        tmpfs: HashMap::from([("/tmp".to_string(), "rw,noexec,nosuid,size=1m".to_string())]),
        engine_init: false,
        log: LogKeeping::Bounded(4 * 1024 * 1024),
        ..Default::default()
    }
}

fn engine(doing: &str) -> impl Fn(CallError) -> Refusal + '_ {
    move |e| Refusal::new(codes::ENGINE_ERROR, format!("{doing}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::double::{FakeEngine, Script};
    use crate::lifecycle::reaper::Reaper;
    use crate::vocab::PROXY_IMAGE;

    fn destinations() -> Vec<Destination> {
        vec![Destination::parse("api.example.com:443").unwrap()]
    }

    #[tokio::test]
    async fn one_gateway_per_allowlist_holders_on_it_and_nothing_left_after_shutdown() {
        let fake = FakeEngine::new(|_, _| Script {
            hang: true,
            ..Default::default()
        });
        let engine: Containers = fake.clone();
        let instance = Instance::current();
        let gateways = Gateways::new(
            engine.clone(),
            instance.clone(),
            "bridge".into(),
            PROXY_IMAGE.into(),
        );
        let allowlist = destinations();
        let (first, again) = tokio::join!(gateways.ensure(&allowlist), gateways.ensure(&allowlist));
        let gateway = first.unwrap();
        assert_eq!(
            gateway,
            again.unwrap(),
            "concurrent calls share one gateway"
        );
        let proxy = fake.spec(&gateway.network).unwrap();
        assert_eq!(proxy.image, PROXY_IMAGE);
        assert_eq!(proxy.network, NetworkMode::Network(gateway.network.clone()));
        assert_eq!(
            proxy.log,
            LogKeeping::Bounded(4 << 20),
            "its refusals are read from it"
        );
        assert!(proxy
            .env
            .iter()
            .any(|e| e.starts_with("SKILLHOST_EGRESS_FILTER=")));
        let calls = fake.calls();
        let creates = calls
            .iter()
            .filter(|c| c.starts_with("create_network"))
            .count();
        assert_eq!(creates, 1);
        assert!(calls.contains(&format!("connect bridge {}", gateway.network)));

        let reaper = Reaper::new(engine.clone());
        let holders = Holders::new(engine, reaper.clone(), instance, PROXY_IMAGE.into());
        let holder = holders.take(&gateway).await.unwrap();
        assert!(holder.address.is_some(), "learnt when it was made");
        let spec = fake.spec(&holder.name).unwrap();
        assert_eq!(spec.network, NetworkMode::Network(gateway.network.clone()));
        drop(holder);
        holders.settled().await;
        holders.close();
        reaper.settled().await;
        gateways.shutdown().await;
        assert!(fake.containers().is_empty(), "{:?}", fake.containers());
        assert!(fake
            .calls()
            .contains(&format!("remove_network {}", gateway.network)));
    }

    #[tokio::test]
    async fn an_absent_proxy_image_says_how_to_build_it_and_leaves_nothing() {
        let fake = FakeEngine::new(|_, _| Script::default());
        fake.lacks_image(PROXY_IMAGE);
        let engine: Containers = fake.clone();
        let gateways = Gateways::new(
            engine,
            Instance::current(),
            "bridge".into(),
            PROXY_IMAGE.into(),
        );
        let refusal = gateways.ensure(&destinations()).await.unwrap_err();
        assert_eq!(refusal.code, codes::BASE_IMAGE_MISSING);
        assert!(
            refusal.message.contains("skillhost images build"),
            "{}",
            refusal.message
        );
        let calls = fake.calls();
        assert!(
            calls.iter().any(|c| c.starts_with("remove_network")),
            "{calls:?}"
        );
    }
}
