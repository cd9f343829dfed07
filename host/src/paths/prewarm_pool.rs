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

use futures_util::{FutureExt, StreamExt};

use crate::engine::spec::ContainerSpec;
use crate::engine::Containers;
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
    engine: Containers,
    reaper: Reaper,
    /// Most containers held for all skills together, ready or being created.
    cap: usize,
    state: Mutex<Stock<Attached>>,
}

impl PrewarmPool {
    pub(crate) fn new(engine: Containers, reaper: Reaper, cap: usize) -> Self {
        PrewarmPool {
            inner: Arc::new(Inner {
                engine,
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
    /// within the host-wide cap. `spec` is the configuration of every one of them; `start`
    /// starts them too, which only a spec running skillhost's init may ask.
    pub(crate) fn refill(&self, skill: &str, target: usize, spec: &ContainerSpec, start: bool) {
        let wanted = self.inner.lock().reserve(skill, target, self.inner.cap);
        for _ in 0..wanted {
            let (inner, skill, spec) = (self.inner.clone(), skill.to_string(), spec.clone());
            tokio::spawn(async move { inner.create_one(&skill, &spec, start).await });
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

    async fn create_one(&self, skill: &str, spec: &ContainerSpec, start: bool) {
        let name = container_name(skill, Role::Prewarmed);
        // Known to the reaper before it exists, so a host stopping meanwhile removes it.
        self.reaper.track(&name);
        let created = match create_attached(&self.engine, &name, spec).await {
            Ok(mut attached) if start => {
                start_container(&self.engine, &attached.id).await.map(|()| {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::double::{FakeEngine, Script};

    /// Until `ready` containers of `skill` are ready (the refill runs in the background).
    async fn until_ready(pool: &PrewarmPool, skill: &str, ready: usize) {
        while pool.ready(skill) < ready {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn pool(cap: usize) -> (Arc<FakeEngine>, PrewarmPool, Reaper) {
        let fake = FakeEngine::new(|_, _| Script::default());
        let containers: Containers = fake.clone();
        let reaper = Reaper::new(containers.clone());
        (
            fake.clone(),
            PrewarmPool::new(containers, reaper.clone(), cap),
            reaper,
        )
    }

    #[tokio::test]
    async fn a_refill_makes_the_target_each_taken_once_and_close_removes_the_rest() {
        let (fake, pool, reaper) = pool(8);
        let spec = ContainerSpec {
            image: "skill-echo:1".into(),
            ..Default::default()
        };
        pool.refill("echo", 2, &spec, false);
        until_ready(&pool, "echo", 2).await;
        assert_eq!(fake.containers().len(), 2);
        let taken = pool.take("echo").unwrap();
        assert!(!taken.started, "never started before its call");
        assert_eq!(fake.spec(&taken.name).unwrap().image, "skill-echo:1");
        assert_eq!(pool.ready("echo"), 1);
        pool.close();
        reaper.settled().await;
        assert_eq!(
            fake.containers(),
            vec![taken.name.clone()],
            "only the one taken is left"
        );
        assert!(!fake.calls().iter().any(|c| c.starts_with("start")));
    }

    #[tokio::test]
    async fn the_host_wide_cap_bounds_every_skill_together() {
        let (fake, pool, _reaper) = pool(3);
        let spec = ContainerSpec::default();
        pool.refill("a", 2, &spec, true);
        until_ready(&pool, "a", 2).await;
        pool.refill("b", 2, &spec, true);
        until_ready(&pool, "b", 1).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!((pool.ready("a"), pool.ready("b")), (2, 1));
        assert_eq!(fake.containers().len(), 3);
        assert!(
            pool.take("b").unwrap().started,
            "started up to the init when asked"
        );
    }

    #[tokio::test]
    async fn a_container_that_failed_to_start_is_removed_not_kept() {
        let (fake, pool, reaper) = pool(8);
        fake.fail("start", 1);
        pool.refill("a", 1, &ContainerSpec::default(), true);
        // Nothing ready: the one made could not start, and was given to the reaper.
        while !fake.calls().iter().any(|c| c.starts_with("remove")) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        reaper.settled().await;
        assert_eq!(pool.ready("a"), 0);
        assert!(fake.containers().is_empty());
    }
}
