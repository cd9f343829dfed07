//! Sessions outlive the host process that made them: a service killed and started again
//! finds them by their keepers' labels and keeps serving them. Adopting a session makes a
//! keeper of this process's own for its volume first and removes the old one after, so
//! the volume stays mounted (and its files kept) throughout. A session past its lifetime,
//! or whose keeper stopped (the engine restarted: its tmpfs is gone), is removed instead,
//! and so is a workspace volume no keeper holds.
//!
//! Only hosts that serve sessions adopt ([`crate::HostConfig::adopt_sessions`]): a CLI
//! call started beside a stopped service must not take its sessions and end them at exit.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use super::record::Record;
use super::terms::Ending;
use super::{Inner, Open, OPEN};
use crate::catalog::Catalog;
use crate::engine::containers::{Labelled, Resource};
use crate::lifecycle::labels::{self, Role};
use crate::lifecycle::leftovers::Judge;
use crate::manifest::SessionMode;
use crate::sync::lock;

pub(super) async fn adopt(inner: &Inner, catalog: &Catalog) {
    let containers = match inner
        .engine
        .list(Resource::Container, labels::MANAGED, "true")
        .await
    {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!("cannot look for sessions to adopt: {e}");
            return;
        }
    };
    let mut judge = Judge::new(inner.engine.as_ref());
    let mut keepers: Vec<(Labelled, Record)> = Vec::new();
    let mut held = HashSet::new();
    for container in containers {
        let Some(record) = Record::from_labels(&container.labels) else {
            continue;
        };
        held.insert(record.id.clone());
        if judge
            .dead(container.labels.get(labels::INSTANCE).map(String::as_str))
            .await
        {
            keepers.push((container, record));
        }
    }
    for (keeper, record) in keepers {
        adopt_one(inner, catalog, &keeper, record).await;
    }
    remove_orphan_volumes(inner, &held, &mut judge).await;
}

async fn adopt_one(inner: &Inner, catalog: &Catalog, keeper: &Labelled, record: Record) {
    let id = record.id.clone();
    let expired = SystemTime::now()
        >= record.created() + std::time::Duration::from_millis(record.lifetime_ms);
    let running = inner.engine.running(&keeper.id).await.unwrap_or(false);
    let Some(skill) = catalog.get(&record.skill) else {
        tracing::warn!(session = %id, skill = %record.skill, "leaving a session of a skill this host does not have");
        return;
    };
    if expired || !running {
        let why = if expired {
            Ending::Lifetime
        } else {
            Ending::Lost
        };
        tracing::info!(session = %id, why = why.as_str(), "removing a session a host that is gone left");
        metrics::counter!(super::ENDED, "skill" => record.skill.clone(), "why" => why.as_str())
            .increment(1);
        inner.remove_container(&keeper.id).await;
        inner.remove_volume(&record.volume()).await;
        return;
    }
    let name = labels::container_name(&record.skill, Role::SessionKeeper(&id));
    if let Err(refusal) = inner.start_keeper(skill, &record, &name).await {
        tracing::warn!(session = %id, "cannot adopt a session: {refusal}");
        inner.remove_container(&name).await;
        return;
    }
    inner.remove_container(&keeper.id).await;
    // Its worker, if it had one, went with the process that talked to it.
    let unreported =
        (record.mode == SessionMode::Process).then(|| "the service restarted".to_string());
    let skill_name = record.skill.clone();
    let open = Arc::new(Open::new(record, name, unreported));
    open.ready.store(true, Ordering::SeqCst);
    lock(&inner.open).insert(id.clone(), open);
    metrics::gauge!(OPEN, "skill" => skill_name).increment(1.0);
    tracing::info!(session = %id, "adopted a session a host that is gone left");
}

/// Remove the workspace volumes of dead hosts that no keeper holds.
async fn remove_orphan_volumes(inner: &Inner, held: &HashSet<String>, judge: &mut Judge<'_>) {
    let volumes = match inner
        .engine
        .list(Resource::Volume, labels::MANAGED, "true")
        .await
    {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!("cannot look for session workspaces left behind: {e}");
            return;
        }
    };
    for volume in volumes {
        let Some(id) = volume.labels.get(labels::SESSION) else {
            continue;
        };
        let dead = judge
            .dead(volume.labels.get(labels::INSTANCE).map(String::as_str))
            .await;
        let open = lock(&inner.open).contains_key(id);
        if dead && !held.contains(id) && !open {
            inner.remove_volume(&volume.name).await;
        }
    }
}
