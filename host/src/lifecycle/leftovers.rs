//! Cleaning up what crashed hosts left behind: their containers and networks.

use std::collections::HashMap;

use crate::engine::containers::{ContainerEngine, Resource};
use crate::engine::{api_err, EngineError};
use crate::lifecycle::instance::{self, Instance, Liveness};
use crate::lifecycle::labels;

/// Remove every managed container whose host instance is dead. Containers of live
/// instances, and of other machines sharing the engine, are left alone, and so are the
/// keepers of sessions, which a host that serves sessions adopts (`session::adopt`).
pub(crate) async fn reap_dead_instances(
    engine: &dyn ContainerEngine,
) -> Result<Vec<String>, EngineError> {
    let mut judge = Judge::new(engine);
    let mut removed = Vec::new();
    for id in dead_instances_containers(engine, &mut judge).await? {
        match engine.remove(&id).await {
            Ok(()) => removed.push(id),
            Err(e) => tracing::warn!(container = %id, "cannot remove a leftover container: {e}"),
        }
    }
    if !removed.is_empty() {
        tracing::info!(
            count = removed.len(),
            "removed containers left by host processes that are gone"
        );
    }
    // Their egress networks, now that no container of theirs is on them.
    reap_dead_networks(engine, &mut judge).await?;
    Ok(removed)
}

/// The managed containers whose host instance is dead, removing nothing.
pub(crate) async fn dead_instances_containers(
    engine: &dyn ContainerEngine,
    judge: &mut Judge<'_>,
) -> Result<Vec<String>, EngineError> {
    let containers = engine
        .list(Resource::Container, labels::MANAGED, "true")
        .await
        .map_err(api_err("listing skillhost containers"))?;
    let mut dead = Vec::new();
    for container in containers {
        // A session's keeper holds its files for the host that adopts it.
        let role = container.labels.get(labels::INVOCATION);
        if role.is_some_and(|role| labels::Role::keeps_a_session(role)) {
            continue;
        }
        let instance = container.labels.get(labels::INSTANCE);
        if judge.dead(instance.map(String::as_str)).await {
            dead.push(container.id);
        }
    }
    Ok(dead)
}

/// Decides whether the host process that labelled a resource is gone, asking the engine
/// once per container when that process ran in another container.
pub(crate) struct Judge<'d> {
    engine: &'d dyn ContainerEngine,
    own: Option<String>,
    containers: HashMap<String, bool>,
}

impl<'d> Judge<'d> {
    pub(crate) fn new(engine: &'d dyn ContainerEngine) -> Self {
        Judge {
            engine,
            own: instance::own_container(),
            containers: HashMap::new(),
        }
    }

    /// Whether the host process `instance` is gone.
    pub(crate) async fn dead(&mut self, instance: Option<&str>) -> bool {
        // Unlabelled by an instance: nobody will ever claim it.
        let Some(instance) = instance else {
            return true;
        };
        match Instance::liveness(instance, self.own.as_deref()) {
            Liveness::Dead => true,
            Liveness::Alive | Liveness::Unknown => false,
            Liveness::InContainer(container) => {
                if let Some(running) = self.containers.get(&container) {
                    return !running;
                }
                // An engine that cannot tell keeps the resource: a leftover is better
                // than a live host's container removed.
                let running = instance::container_running(self.engine, &container)
                    .await
                    .unwrap_or(true);
                self.containers.insert(container, running);
                !running
            }
        }
    }
}

/// Remove every managed network whose host instance is dead.
async fn reap_dead_networks(
    engine: &dyn ContainerEngine,
    judge: &mut Judge<'_>,
) -> Result<(), EngineError> {
    let networks = engine
        .list(Resource::Network, labels::MANAGED, "true")
        .await
        .map_err(api_err("listing skillhost networks"))?;
    for network in networks {
        let instance = network.labels.get(labels::INSTANCE);
        if judge.dead(instance.map(String::as_str)).await {
            if let Err(e) = engine.remove_network(&network.name).await {
                tracing::warn!(network = %network.name, "cannot remove a leftover network: {e}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::double::{FakeEngine, Script};

    fn labelled(instance: Option<&str>) -> HashMap<String, String> {
        let mut labels = HashMap::from([(labels::MANAGED.to_string(), "true".to_string())]);
        if let Some(instance) = instance {
            labels.insert(labels::INSTANCE.to_string(), instance.to_string());
        }
        labels
    }

    #[tokio::test]
    async fn a_dead_hosts_containers_and_networks_go_and_a_live_ones_stay() {
        let fake = FakeEngine::new(|_, _| Script::default());
        let me = Instance::current().id;
        let hostname = me.split(':').next().unwrap().to_string();
        let dead = format!("{hostname}:999999999:1");
        fake.add_stopped("mine", labelled(Some(&me)));
        fake.add_stopped("dead-hosts", labelled(Some(&dead)));
        fake.add_stopped("unclaimed", labelled(None));
        fake.add_stopped("other-machine", labelled(Some("elsewhere:1:1")));
        fake.add_stopped("not-ours", HashMap::new());
        fake.create_internal_network("dead-net", labelled(Some(&dead)))
            .await
            .unwrap();
        fake.create_internal_network("live-net", labelled(Some(&me)))
            .await
            .unwrap();
        let removed = reap_dead_instances(fake.as_ref()).await.unwrap();
        assert_eq!(removed, ["id-dead-hosts", "id-unclaimed"]);
        assert_eq!(fake.containers(), ["mine", "not-ours", "other-machine"]);
        let calls = fake.calls();
        assert!(calls.contains(&"remove_network dead-net".to_string()));
        assert!(!calls.contains(&"remove_network live-net".to_string()));
    }

    #[tokio::test]
    async fn a_host_in_another_container_is_judged_by_whether_that_container_runs() {
        let fake = FakeEngine::new(|_, _| Script {
            hang: true,
            ..Default::default()
        });
        fake.add_stopped("stopped-host", HashMap::new());
        let spec = crate::engine::spec::ContainerSpec::default();
        let live = fake.create("live-host", &spec).await.unwrap();
        fake.start(&live).await.unwrap();
        fake.add_stopped("of-a-live-host", labelled(Some("h:1:1@id-live-host")));
        let gone = "h:1:1@id-stopped-host";
        let unknown = "h:1:1@id-never-was";
        fake.add_stopped("of-a-stopped-host", labelled(Some(gone)));
        fake.add_stopped("of-an-unknown-host", labelled(Some(unknown)));
        let mut judge = Judge::new(fake.as_ref());
        let dead = dead_instances_containers(fake.as_ref(), &mut judge)
            .await
            .unwrap();
        assert_eq!(dead, ["id-of-a-stopped-host", "id-of-an-unknown-host"]);
    }
}
