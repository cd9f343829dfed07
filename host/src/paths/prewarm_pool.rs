//! Containers created and attached ahead of time, per skill, never started until an
//! invocation takes one. Each is used exactly once, so an invocation served from the pool
//! is as fresh as a cold one; it only skips the create and attach round trips.
//!
//! Optionally a container is also started, up to skillhost's init, which waits for the
//! key line on stdin before it starts the skill: the skill still starts only with its
//! request, and the engine's start (the larger part of a cold call) is off the path.
//!
//! The pool refills in the background after every take, stays under a host-wide cap, and
//! every container in it is labelled and known to the [`Reaper`], so a host that stops
//! or dies leaves nothing the next start does not remove.

use std::sync::{Arc, Mutex};

use bollard::models::ContainerCreateBody;
use bollard::Docker;
use futures_util::{FutureExt, StreamExt};

use crate::lifecycle::labels::{container_name, Role};
use crate::lifecycle::reaper::Reaper;
use crate::lifecycle::stock::Stock;
use crate::run::container::{create_attached, start_container, Attached};
use crate::sync::lock;

/// Containers of each skill made ahead of time, each taken once.
#[derive(Debug, Clone)]
pub(crate) struct PrewarmPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    docker: Docker,
    reaper: Reaper,
    /// Most containers held for all skills together, ready or being created.
    cap: usize,
    state: Mutex<Stock<Attached>>,
}

impl PrewarmPool {
    pub(crate) fn new(docker: Docker, reaper: Reaper, cap: usize) -> Self {
        PrewarmPool {
            inner: Arc::new(Inner {
                docker,
                reaper,
                cap,
                state: Mutex::default(),
            }),
        }
    }

    /// A ready container of `skill`, if one is there. A started one whose init is gone
    /// (its output ended or it said something before its request) is removed, not used.
    pub(crate) fn take(&self, skill: &str) -> Option<Attached> {
        let mut state = self.inner.lock();
        while let Some(mut attached) = state.take(skill) {
            if !attached.started || attached.io.output.next().now_or_never().is_none() {
                return Some(attached);
            }
            tracing::warn!(container = %attached.name, "a started prewarmed container ended before its request; removing it");
            self.inner.reaper.remove_later(&attached.name);
        }
        None
    }

    /// Create containers of `skill` in the background until `target` are held for it,
    /// within the host-wide cap. `body` is the configuration of every one of them; `start`
    /// starts them too, which only a body running skillhost's init may ask.
    pub(crate) fn refill(
        &self,
        skill: &str,
        target: usize,
        body: &ContainerCreateBody,
        start: bool,
    ) {
        let wanted = self.inner.lock().reserve(skill, target, self.inner.cap);
        for _ in 0..wanted {
            let (inner, skill, body) = (self.inner.clone(), skill.to_string(), body.clone());
            tokio::spawn(async move { inner.create_one(&skill, body, start).await });
        }
    }

    /// Stop refilling and give every ready container to the reaper.
    pub(crate) fn close(&self) {
        for attached in self.inner.lock().close() {
            self.inner.reaper.remove_later(&attached.name);
        }
    }

    /// Ready containers per skill.
    pub(crate) fn ready(&self, skill: &str) -> usize {
        self.inner.lock().ready(skill)
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Stock<Attached>> {
        lock(&self.state)
    }

    async fn create_one(&self, skill: &str, body: ContainerCreateBody, start: bool) {
        let name = container_name(skill, Role::Prewarmed);
        // Known to the reaper before it exists, so a host stopping meanwhile removes it.
        self.reaper.track(&name);
        let created = match create_attached(&self.docker, &name, body).await {
            Ok(mut attached) if start => {
                start_container(&self.docker, &attached.id).await.map(|()| {
                    attached.started = true;
                    attached
                })
            }
            other => other,
        };
        let made = match created {
            Ok(attached) => Some(attached),
            Err(e) => {
                tracing::warn!(skill, "prewarming a container failed: {e}");
                self.reaper.remove_later(&name);
                None
            }
        };
        // Closed meanwhile: it is removed rather than kept.
        if let Some(unwanted) = self.lock().made(skill, made) {
            self.reaper.remove_later(&unwanted.name);
        }
    }
}
