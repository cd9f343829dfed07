//! Serve-mode workers per skill: at most `run.serve.workers` containers, each answering
//! one request at a time; a worker is retired after `max_requests`, when idle longer than
//! `idle_ttl`, when older than `max_lifetime`, and at once after any failed request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bollard::models::ContainerCreateBody;
use bollard::Docker;
use tokio::sync::Semaphore;

use crate::container_reaper::Reaper;
use crate::container_run::{RunError, RunRequest};
use crate::manifest::Serve;
use crate::serve_worker::{Exchange, Worker};

/// How often idle workers are checked against their TTL and lifetime.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct ServePools {
    inner: Arc<Inner>,
}

struct Inner {
    docker: Docker,
    reaper: Reaper,
    skills: Mutex<HashMap<String, Arc<SkillWorkers>>>,
}

struct SkillWorkers {
    skill: String,
    limits: Serve,
    body: ContainerCreateBody,
    /// One permit per worker slot: a request holds one while it uses a worker.
    slots: Semaphore,
    idle: Mutex<Vec<Worker>>,
}

/// Why a request got no answer from a worker.
pub enum ServeError {
    /// No worker became free before the deadline.
    Busy,
    Engine(RunError),
}

impl ServePools {
    pub fn new(docker: Docker, reaper: Reaper) -> Self {
        let inner = Arc::new(Inner {
            docker,
            reaper,
            skills: Mutex::default(),
        });
        tokio::spawn(sweep(Arc::downgrade(&inner)));
        ServePools { inner }
    }

    /// Answer `request` with a worker of `skill`, starting one if none is idle.
    /// `body` configures new workers; the first call for a skill fixes it.
    pub async fn exchange(
        &self,
        skill: &str,
        limits: &Serve,
        body: &ContainerCreateBody,
        request: &RunRequest,
    ) -> Result<(Exchange, Duration), ServeError> {
        let waited = std::time::Instant::now();
        let workers = self.workers(skill, limits, body);
        let _permit = tokio::time::timeout(request.timeout, workers.slots.acquire())
            .await
            .map_err(|_| ServeError::Busy)?
            .expect("the semaphore is never closed");
        let idle = loop {
            let Some(mut worker) = lock(&workers.idle).pop() else {
                break None;
            };
            if worker.ready_for_next() {
                break Some(worker);
            }
            tracing::debug!(skill, worker = %worker.name, "retiring a worker that wrote after its answer or ended");
            self.inner.reaper.remove_later(&worker.name);
        };
        let worker = match idle {
            Some(worker) => worker,
            None => {
                let name = format!(
                    "skillhost-{skill}-w-{}",
                    &uuid::Uuid::new_v4().to_string()[..8]
                );
                self.inner.reaper.track(&name);
                match Worker::start(&self.inner.docker, &name, workers.body.clone()).await {
                    Ok(worker) => worker,
                    Err(e) => {
                        self.inner.reaper.remove_later(&name);
                        return Err(ServeError::Engine(e));
                    }
                }
            }
        };
        let waited = waited.elapsed();
        // Dropped mid-request (the caller gave up), the worker is in an unknown state.
        let mut in_use = InUse {
            worker: Some(worker),
            reaper: &self.inner.reaper,
        };
        let worker = in_use.worker.as_mut().expect("set above");
        let exchange = worker.exchange(&self.inner.docker, request).await;
        let keep = matches!(&exchange, Ok(e) if e.reusable)
            && worker.served < workers.limits.max_requests
            && worker.age() < workers.limits.max_lifetime.0;
        if keep {
            lock(&workers.idle).extend(in_use.worker.take());
        }
        exchange.map(|e| (e, waited)).map_err(ServeError::Engine)
    }

    /// Retire every worker; requests in flight finish with the worker removed under them.
    pub fn close(&self) {
        for workers in lock(&self.inner.skills).drain().map(|(_, w)| w) {
            workers.slots.close();
            for worker in lock(&workers.idle).drain(..) {
                self.inner.reaper.remove_later(&worker.name);
            }
        }
    }

    /// Idle workers of `skill`.
    pub fn idle(&self, skill: &str) -> usize {
        lock(&self.inner.skills)
            .get(skill)
            .map_or(0, |w| lock(&w.idle).len())
    }

    fn workers(
        &self,
        skill: &str,
        limits: &Serve,
        body: &ContainerCreateBody,
    ) -> Arc<SkillWorkers> {
        lock(&self.inner.skills)
            .entry(skill.to_string())
            .or_insert_with(|| {
                Arc::new(SkillWorkers {
                    skill: skill.to_string(),
                    limits: limits.clone(),
                    body: body.clone(),
                    slots: Semaphore::new(limits.workers as usize),
                    idle: Mutex::default(),
                })
            })
            .clone()
    }
}

/// A worker taken for one request: retired unless it is handed back.
struct InUse<'a> {
    worker: Option<Worker>,
    reaper: &'a Reaper,
}

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take() {
            self.reaper.remove_later(&worker.name);
        }
    }
}

/// Retire idle workers past their idle TTL or lifetime, until the pools are gone.
async fn sweep(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(inner) = inner.upgrade() else { return };
        let skills: Vec<Arc<SkillWorkers>> = lock(&inner.skills).values().cloned().collect();
        for workers in skills {
            let mut idle = lock(&workers.idle);
            let (expired, kept): (Vec<Worker>, Vec<Worker>) = idle.drain(..).partition(|w| {
                w.last_used.elapsed() >= workers.limits.idle_ttl.0
                    || w.age() >= workers.limits.max_lifetime.0
            });
            *idle = kept;
            for worker in expired {
                tracing::debug!(skill = %workers.skill, worker = %worker.name, "retiring an idle worker");
                inner.reaper.remove_later(&worker.name);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
