//! Cleaning up what crashed hosts left behind: their containers, and old image tags.

use std::collections::{BTreeMap, HashMap};

use bollard::query_parameters::{
    ListContainersOptions, ListImagesOptions, ListNetworksOptions, RemoveImageOptions,
};
use bollard::Docker;
use serde::Serialize;

use super::removal;
use crate::engine::{api_err, EngineError};
use crate::lifecycle::instance::{self, Instance, Liveness};
use crate::lifecycle::labels;

/// Remove every managed container whose host instance is dead. Containers of live
/// instances, and of other machines sharing the engine, are left alone.
pub async fn reap_dead_instances(docker: &Docker) -> Result<Vec<String>, EngineError> {
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
    let mut judge = Judge::new(docker);
    let mut removed = Vec::new();
    for container in containers {
        let instance = container
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::INSTANCE));
        let dead = judge.dead(instance.map(String::as_str)).await;
        let Some(id) = container.id.filter(|_| dead) else {
            continue;
        };
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

/// Decides whether the host process that labelled a resource is gone, asking the engine
/// once per container when that process ran in another container.
struct Judge<'d> {
    docker: &'d Docker,
    own: Option<String>,
    containers: HashMap<String, bool>,
}

impl<'d> Judge<'d> {
    fn new(docker: &'d Docker) -> Self {
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

/// What `skillhost gc` removed.
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    /// Containers of host processes that are gone.
    pub containers_removed: Vec<String>,
    /// `skill-<name>` tags older than the newest of their skill.
    pub images_removed: Vec<String>,
    /// Tags kept because a container still uses them, or removal failed.
    pub images_kept: Vec<String>,
}

/// Remove leftover containers and every `skill-<name>` tag but the newest per skill.
pub async fn gc(docker: &Docker) -> Result<GcReport, EngineError> {
    let mut report = GcReport {
        containers_removed: reap_dead_instances(docker).await?,
        ..Default::default()
    };
    let images = docker
        .list_images(Some(ListImagesOptions::default()))
        .await
        .map_err(api_err("listing images"))?;
    // repository -> [(created, tag)]
    let mut by_repo: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for image in images {
        for tag in image.repo_tags {
            if let Some((repo, _)) = tag.rsplit_once(':') {
                if repo.starts_with("skill-") {
                    by_repo
                        .entry(repo.to_string())
                        .or_default()
                        .push((image.created, tag.clone()));
                }
            }
        }
    }
    for tags in by_repo.values_mut() {
        tags.sort();
        tags.pop(); // the newest stays
        for (_, tag) in tags.iter() {
            let options = RemoveImageOptions {
                force: false,
                noprune: false,
                ..Default::default()
            };
            match docker.remove_image(tag, Some(options), None).await {
                Ok(_) => report.images_removed.push(tag.clone()),
                Err(e) => {
                    tracing::info!(image = %tag, "kept: {e}");
                    report.images_kept.push(tag.clone());
                }
            }
        }
    }
    Ok(report)
}
