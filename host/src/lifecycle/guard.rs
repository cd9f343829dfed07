//! A container that must not outlive its invocation, whatever happens to the future that
//! drives it.

use std::time::Duration;

use super::reaper::Reaper;
use crate::engine::containers::Leftovers;
use crate::engine::Containers;

/// How long a container whose create was abandoned may take to appear.
const CREATE_IN_FLIGHT: Duration = Duration::from_secs(2);

/// Removes its container when dropped unless [`ContainerGuard::release`] ran: a dropped
/// invocation future, a panic or an early return must not leak a container.
#[derive(Debug)]
pub struct ContainerGuard {
    id: String,
    engine: Containers,
    armed: bool,
    /// The engine answered the create, so a container it says is missing is gone.
    created: bool,
}

impl ContainerGuard {
    /// A guard for a container about to be created under the name `id`.
    pub(crate) fn new(id: String, engine: Containers) -> Self {
        ContainerGuard {
            id,
            engine,
            armed: true,
            created: false,
        }
    }

    /// A guard for a container that exists already.
    pub(crate) fn for_existing(id: String, engine: Containers) -> Self {
        ContainerGuard {
            id,
            engine,
            armed: true,
            created: true,
        }
    }

    /// The engine has answered the create: a container it says is missing is gone.
    pub(crate) fn created(&mut self) {
        self.created = true;
    }

    /// The run is over: the reaper removes the container in the background.
    pub(crate) fn release(mut self, reaper: &Reaper) {
        self.armed = false;
        reaper.remove_later(&self.id);
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Dropped while the create was in flight, the engine may still be making it: a
        // remove by name answers 404 until it has, and the container would outlive us.
        let patience = if self.created {
            Duration::ZERO
        } else {
            CREATE_IN_FLIGHT
        };
        let id = std::mem::take(&mut self.id);
        if !self.engine.remove_blocking(
            Leftovers {
                containers: vec![id],
                ..Leftovers::default()
            },
            patience,
        ) {
            tracing::error!("could not remove an abandoned container; `skillhost gc` will");
        }
    }
}
