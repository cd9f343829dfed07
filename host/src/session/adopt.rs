//! Sessions outlive the host process that made them: a service killed and started again
//! finds them by their keepers' labels and keeps serving them. Adopting a session makes a
//! keeper of this process's own for its volume first and removes the old one after, so
//! the volume stays mounted (and its files kept) throughout. The record is on the keeper,
//! or, for a session that took a spare keeper, on a container of its own (see
//! [`super::spares`]). A session past its lifetime, or whose keeper stopped (the engine
//! restarted: its tmpfs is gone), is removed instead, and so are spares no one took and
//! workspace volumes no keeper holds.
//!
//! Only hosts that serve sessions adopt ([`crate::HostConfig::adopt_sessions`]): a CLI
//! call started beside a stopped service must not take its sessions and end them at exit.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::record::Record;
use super::terms::Ending;
use super::{Inner, Open, OPEN};
use crate::catalog::Catalog;
use crate::engine::containers::{Labelled, Resource};
use crate::lifecycle::labels::{self, Role};
use crate::lifecycle::leftovers::Judge;
use crate::manifest::SessionMode;
use crate::sync::lock;

/// What the engine holds of one session.
#[derive(Default)]
struct Found {
    record: Option<Record>,
    /// Its keeper (made for it, or a spare it took).
    keeper: Option<Labelled>,
    /// Containers that carry its record beside the keeper.
    holders: Vec<Labelled>,
}

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
    let mut sessions: BTreeMap<String, Found> = BTreeMap::new();
    for container in containers {
        let Some(id) = container.labels.get(labels::SESSION).cloned() else {
            continue;
        };
        let found = sessions.entry(id).or_default();
        if let Some(record) = Record::from_labels(&container.labels) {
            found.record = Some(record);
        }
        match container.labels.get(labels::INVOCATION).map(String::as_str) {
            Some("session-keeper" | "session-spare") => found.keeper = Some(container),
            Some("session-record") => found.holders.push(container),
            _ => {}
        }
    }
    let mut judge = Judge::new(inner.engine.as_ref());
    let held: HashSet<String> = sessions
        .iter()
        .filter(|(_, found)| found.keeper.is_some())
        .map(|(id, _)| id.clone())
        .collect();
    for (id, found) in sessions {
        let Some(carrier) = found.keeper.as_ref().or(found.holders.first()) else {
            continue;
        };
        // Another service's (two on one engine): its own restart adopts it.
        if found
            .record
            .as_ref()
            .is_some_and(|r| r.scope != inner.scope)
        {
            continue;
        }
        let instance = carrier.labels.get(labels::INSTANCE).map(String::as_str);
        if !judge.dead(instance).await {
            continue;
        }
        match (found.record, found.keeper) {
            (Some(record), Some(keeper)) => {
                adopt_one(inner, catalog, &keeper, record, &found.holders).await
            }
            // A spare no one took, or a session whose keeper is gone: its files are.
            (_, keeper) => {
                tracing::info!(session = %id, "removing what a host that is gone left of a session it had not handed out, or whose workspace is lost");
                for container in keeper.iter().chain(&found.holders) {
                    inner.remove_container(&container.id).await;
                }
                inner.remove_volume(&labels::session_volume(&id)).await;
            }
        }
    }
    remove_orphan_volumes(inner, &held, &mut judge).await;
}

async fn adopt_one(
    inner: &Inner,
    catalog: &Catalog,
    keeper: &Labelled,
    record: Record,
    holders: &[Labelled],
) {
    let id = record.id.clone();
    let expired = SystemTime::now() >= record.created() + Duration::from_millis(record.lifetime_ms);
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
        for container in std::iter::once(keeper).chain(holders) {
            inner.remove_container(&container.id).await;
        }
        inner.remove_volume(&record.volume()).await;
        return;
    }
    let name = labels::container_name(&record.skill, Role::SessionKeeper(&id));
    let role = Role::SessionKeeper(&id);
    if let Err(refusal) = inner.start_keeper(skill, &record, &name, role).await {
        tracing::warn!(session = %id, "cannot adopt a session: {refusal}");
        inner.remove_container(&name).await;
        return;
    }
    // The new keeper holds the volume, and the record: the old ones can go.
    for container in std::iter::once(keeper).chain(holders) {
        inner.remove_container(&container.id).await;
    }
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
