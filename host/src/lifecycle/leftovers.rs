//! Cleaning up what crashed hosts left behind: their containers and networks.

use std::collections::HashMap;

use bollard::query_parameters::{ListContainersOptions, ListNetworksOptions};
use bollard::Docker;

use super::removal;
use crate::engine::{api_err, EngineError};
use crate::lifecycle::instance::{self, Instance, Liveness};
use crate::lifecycle::labels;

/// Remove every managed container whose host instance is dead. Containers of live
/// instances, and of other machines sharing the engine, are left alone.
pub async fn reap_dead_instances(docker: &Docker) -> Result<Vec<String>, EngineError> {
    let mut judge = Judge::new(docker);
    let mut removed = Vec::new();
    for id in dead_instances_containers(docker, &mut judge).await? {
        match removal::remove(docker, &id).await {
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
    reap_dead_networks(docker, &mut judge).await?;
    Ok(removed)
}

/// The managed containers whose host instance is dead, removing nothing.
pub(crate) async fn dead_instances_containers(
    docker: &Docker,
    judge: &mut Judge<'_>,
) -> Result<Vec<String>, EngineError> {
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([(
            "label".to_string(),
            vec![format!("{}=true", labels::MANAGED)],
        )])),
        ..Default::default()
    };
    let containers = docker
        .list_containers(Some(options))
        .await
        .map_err(api_err("listing skillhost containers"))?;
    let mut dead = Vec::new();
    for container in containers {
        let instance = container
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::INSTANCE));
        if judge.dead(instance.map(String::as_str)).await {
            dead.extend(container.id);
        }
    }
    Ok(dead)
}

/// Decides whether the host process that labelled a resource is gone, asking the engine
/// once per container when that process ran in another container.
pub(crate) struct Judge<'d> {
    docker: &'d Docker,
    own: Option<String>,
    containers: HashMap<String, bool>,
}

impl<'d> Judge<'d> {
    pub(crate) fn new(docker: &'d Docker) -> Self {
        Judge {
            docker,
            own: instance::own_container(),
            containers: HashMap::new(),
        }
    }

    async fn dead(&mut self, instance: Option<&str>) -> bool {
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
                let running = instance::container_running(self.docker, &container)
                    .await
                    .unwrap_or(true);
                self.containers.insert(container, running);
                !running
            }
        }
    }
}

/// Remove every managed network whose host instance is dead.
async fn reap_dead_networks(docker: &Docker, judge: &mut Judge<'_>) -> Result<(), EngineError> {
    let options = ListNetworksOptions {
        filters: Some(HashMap::from([(
            "label".to_string(),
            vec![format!("{}=true", labels::MANAGED)],
        )])),
    };
    let networks = docker
        .list_networks(Some(options))
        .await
        .map_err(api_err("listing skillhost networks"))?;
    for network in networks {
        let instance = network
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::INSTANCE));
        let dead = judge.dead(instance.map(String::as_str)).await;
        if let (true, Some(name)) = (dead, network.name) {
            crate::egress::remove_network(docker, &name).await;
        }
    }
    Ok(())
}
