//! Removes this host's containers off the caller's path, and all of them at the end.
//!
//! An invocation's answer does not wait for its container's removal (tens of ms of
//! unmounting); the reaper removes it in the background instead. It also knows every
//! container the host holds for later (prewarmed and warm ones), so [`Reaper::shutdown`]
//! or, failing that, dropping the reaper leaves nothing behind.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::engine::containers::Leftovers;
use crate::engine::Containers;
use crate::sync::lock;

/// Removes containers in the background and, at the end, everything this host holds.
#[derive(Debug, Clone)]
pub(crate) struct Reaper {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    engine: Containers,
    /// Containers to remove eventually: held for later use, or being removed.
    live: Mutex<HashSet<String>>,
    /// Containers whose background removal has not finished.
    removing: Mutex<HashSet<String>>,
    removed: Notify,
}

impl Reaper {
    pub(crate) fn new(engine: Containers) -> Self {
        Reaper {
            shared: Arc::new(Shared {
                engine,
                live: Mutex::default(),
                removing: Mutex::default(),
                removed: Notify::new(),
            }),
        }
    }

    /// Remember a container (by name or id) that must not outlive this host.
    pub(crate) fn track(&self, id: &str) {
        lock(&self.shared.live).insert(id.to_string());
    }

    /// Forget a container removed some other way.
    pub(crate) fn forget(&self, id: &str) {
        lock(&self.shared.live).remove(id);
    }

    /// Remove the container in the background.
    pub(crate) fn remove_later(&self, id: &str) {
        let id = id.to_string();
        lock(&self.shared.live).insert(id.clone());
        lock(&self.shared.removing).insert(id.clone());
        // Without a runtime (a drop during shutdown) the id stays known, and the last
        // reaper handle to go removes it.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            lock(&self.shared.removing).remove(&id);
            return;
        };
        let shared = self.shared.clone();
        runtime.spawn(async move {
            let removed = shared.engine.remove(&id).await;
            if removed.is_ok() {
                lock(&shared.live).remove(&id);
            }
            lock(&shared.removing).remove(&id);
            shared.removed.notify_waiters();
            if let Err(e) = removed {
                tracing::warn!(container = %id, "background removal failed, retrying: {e}");
                retry_removal(Arc::downgrade(&shared), id).await;
            }
        });
    }

    /// Wait until every background removal started so far has finished.
    pub(crate) async fn settled(&self) {
        loop {
            let notified = self.shared.removed.notified();
            if lock(&self.shared.removing).is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// Remove every container this host still holds, and wait for it.
    pub(crate) async fn shutdown(&self) {
        let ids: Vec<String> = lock(&self.shared.live).drain().collect();
        let removals = ids.iter().map(|id| self.shared.engine.remove(id));
        for (id, removed) in ids
            .iter()
            .zip(futures_util::future::join_all(removals).await)
        {
            if let Err(e) = removed {
                tracing::warn!(container = %id, "removal at shutdown failed: {e}");
            }
        }
    }
}

/// First wait between attempts to remove a container the engine would not remove (it was
/// away, say); doubled after each failure, up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Keep trying to remove `id` while the host lives and still holds it, so an engine that
/// went away and came back does not leave this host's containers behind until it stops.
/// Holds the reaper only weakly between attempts: its last handle going still removes
/// everything at once.
async fn retry_removal(shared: std::sync::Weak<Shared>, id: String) {
    let mut wait = RETRY_FIRST;
    loop {
        tokio::time::sleep(wait).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if !lock(&shared.live).contains(&id) {
            return; // Shutdown took it.
        }
        match shared.engine.remove(&id).await {
            Ok(()) => {
                lock(&shared.live).remove(&id);
                tracing::info!(container = %id, "removed after a retry");
                return;
            }
            Err(e) => tracing::debug!(container = %id, "removal retry failed: {e}"),
        }
        wait = (wait * 2).min(RETRY_MAX);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let ids: Vec<String> = lock(&self.live).drain().collect();
        if ids.is_empty() {
            return;
        }
        if !self.engine.remove_blocking(
            Leftovers {
                containers: ids,
                ..Leftovers::default()
            },
            Duration::ZERO,
        ) {
            tracing::error!("could not remove every container of this host; `skillhost gc` will");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::engine::double::{FakeEngine, Script};

    fn engine() -> (Arc<FakeEngine>, Containers) {
        let fake = FakeEngine::new(|_, _| Script::default());
        let containers: Containers = fake.clone();
        (fake, containers)
    }

    #[tokio::test]
    async fn a_finished_container_is_removed_in_the_background() {
        let (fake, containers) = engine();
        fake.add_stopped("done", HashMap::new());
        let reaper = Reaper::new(containers);
        reaper.remove_later("done");
        reaper.settled().await;
        assert!(fake.containers().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_removal_the_engine_refused_is_tried_again_until_it_goes() {
        let (fake, containers) = engine();
        fake.add_stopped("stubborn", HashMap::new());
        fake.fail("remove", 2);
        let reaper = Reaper::new(containers);
        reaper.remove_later("stubborn");
        reaper.settled().await;
        assert_eq!(fake.containers(), ["stubborn"], "the first attempt failed");
        // The first retry fails too; the second, a second later, succeeds.
        tokio::time::sleep(RETRY_FIRST * 4).await;
        assert!(fake.containers().is_empty());
        let removals = fake
            .calls()
            .iter()
            .filter(|c| *c == "remove stubborn")
            .count();
        assert_eq!(removals, 3);
    }

    #[tokio::test]
    async fn shutdown_removes_every_container_held_for_later() {
        let (fake, containers) = engine();
        for name in ["prewarmed", "worker"] {
            fake.add_stopped(name, HashMap::new());
        }
        let reaper = Reaper::new(containers);
        reaper.track("prewarmed");
        reaper.track("worker");
        reaper.shutdown().await;
        assert!(fake.containers().is_empty());
    }

    #[test]
    fn the_last_handle_going_removes_what_is_still_held() {
        let (fake, containers) = engine();
        fake.add_stopped("held", HashMap::new());
        let reaper = Reaper::new(containers);
        let copy = reaper.clone();
        reaper.track("held");
        drop(reaper);
        assert_eq!(fake.containers(), ["held"], "a handle is left");
        drop(copy);
        assert!(fake.containers().is_empty());
    }
}
