//! Removes this host's containers off the caller's path, and all of them at the end.
//!
//! An invocation's answer does not wait for its container's removal (tens of ms of
//! unmounting); the reaper removes it in the background instead. It also knows every
//! container the host holds for later (prewarmed and warm ones), so [`Reaper::shutdown`]
//! or, failing that, dropping the reaper leaves nothing behind.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use tokio::sync::Notify;

use super::removal::{remove, remove_blocking};
use crate::sync::lock;

/// Removes containers in the background and, at the end, everything this host holds.
#[derive(Debug, Clone)]
pub(crate) struct Reaper {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    docker: Docker,
    /// Containers to remove eventually: held for later use, or being removed.
    live: Mutex<HashSet<String>>,
    /// Containers whose background removal has not finished.
    removing: Mutex<HashSet<String>>,
    removed: Notify,
}

impl Reaper {
    pub(crate) fn new(docker: Docker) -> Self {
        Reaper {
            shared: Arc::new(Shared {
                docker,
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
            let removed = remove(&shared.docker, &id).await;
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
        let removals = ids.iter().map(|id| remove(&self.shared.docker, id));
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
        match remove(&shared.docker, &id).await {
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
        if !remove_blocking(ids, Duration::ZERO) {
            tracing::error!("could not remove every container of this host; `skillhost gc` will");
        }
    }
}
