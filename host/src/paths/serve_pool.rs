//! Workers per skill: at most `run.serve.workers` containers (`run.recycle.containers`
//! for recycled ones), each answering one request at a time; a worker is retired after
//! `max_requests`, when idle longer than `idle_ttl`, when older than `max_lifetime`, and
//! at once after any failed request. One pool serves serve-mode workers, another
//! recycled containers; a pool's workers are grouped by a key, the skill's name or, for
//! recycled containers kept apart per caller, the skill's and the caller's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::engine::spec::ContainerSpec;
use crate::engine::Containers;
use crate::lifecycle::labels::{container_name, Role};
use crate::lifecycle::reaper::Reaper;
use crate::manifest::Serve;
use crate::paths::serve_worker::{Exchange, Worker};
use crate::run::container::{RunError, RunRequest};
use crate::sync::lock;

/// How often idle workers are checked against their TTL and lifetime.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// The workers of every skill, of one kind.
#[derive(Debug, Clone)]
pub(crate) struct ServePools {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    engine: Containers,
    reaper: Reaper,
    /// `Worker` or `Recycled`: what the containers are named and labelled as.
    role: Role<'static>,
    skills: Mutex<Pools>,
}

/// Each skill's workers, until the pools are closed for good.
#[derive(Debug, Default)]
struct Pools {
    by_skill: HashMap<String, Arc<SkillWorkers>>,
    closed: bool,
}

#[derive(Debug)]
struct SkillWorkers {
    /// The skill's name (the pool's key may also name a caller).
    skill: String,
    limits: Serve,
    spec: ContainerSpec,
    /// One permit per worker slot: a request holds one while it uses a worker.
    slots: Semaphore,
    idle: Mutex<Vec<Worker>>,
    /// Workers being started ahead of any request (`fill`).
    starting: AtomicUsize,
    /// How many workers `fill` keeps, idle or busy; 0 for none.
    target: AtomicUsize,
}

/// Why a request got no answer from a worker.
#[derive(Debug)]
pub(crate) enum ServeError {
    /// No worker became free before the deadline.
    Busy,
    /// The pools were closed: the host is shutting down.
    Closed,
    /// The engine failed making or talking to a worker.
    Engine(RunError),
}

impl ServePools {
    pub(crate) fn new(engine: Containers, reaper: Reaper, role: Role<'static>) -> Self {
        let inner = Arc::new(Inner {
            engine,
            reaper,
            role,
            skills: Mutex::default(),
        });
        tokio::spawn(sweep(Arc::downgrade(&inner)));
        ServePools { inner }
    }

    /// Answer `request` with a worker of `skill` kept under `key`, starting one if none
    /// is idle. `spec` makes the configuration of new workers; only the first call for a
    /// key calls it, and that configuration stays.
    pub(crate) async fn exchange(
        &self,
        (skill, key): (&str, &str),
        limits: &Serve,
        spec: impl FnOnce() -> ContainerSpec,
        request: &RunRequest,
    ) -> Result<(Exchange, Duration), ServeError> {
        let waited = std::time::Instant::now();
        let workers = self
            .workers((skill, key), limits, spec)
            .ok_or(ServeError::Closed)?;
        // `close` closes the semaphore: a call waiting for a worker then ends, refused.
        let _permit = tokio::time::timeout(request.timeout, workers.slots.acquire())
            .await
            .map_err(|_| ServeError::Busy)?
            .map_err(|_| ServeError::Closed)?;
        let idle = loop {
            let taken = {
                let mut idle = lock(&workers.idle);
                // A serve-mode worker that just answered is the warmest. A recycled
                // container is readiest when it has waited longest: its next process
                // (prestarted) has had the most time to start since its last reset.
                if matches!(self.inner.role, Role::Recycled) && !idle.is_empty() {
                    Some(idle.remove(0))
                } else {
                    idle.pop()
                }
            };
            let Some(mut worker) = taken else {
                break None;
            };
            if worker.ready_for_next() {
                break Some(worker);
            }
            tracing::debug!(skill, worker = %worker.name, "retiring a worker that wrote after its answer or ended");
            self.inner.reaper.remove_later(&worker.name);
        };
        let mut worker = match idle {
            Some(worker) => worker,
            None => start_worker(&self.inner, &workers)
                .await
                .map_err(ServeError::Engine)?,
        };
        let waited = waited.elapsed();
        // Dropped mid-request (the caller gave up), the worker is in an unknown state.
        let mut in_use = RetireUnlessKept {
            name: worker.name.clone(),
            reaper: &self.inner.reaper,
            kept: false,
        };
        let exchange = worker.exchange(&self.inner.engine, request).await;
        // A worker that finished after `close` is not kept: nobody would retire it.
        in_use.kept = matches!(&exchange, Ok(e) if e.reusable)
            && !workers.slots.is_closed()
            && worker.served < workers.limits.max_requests
            && worker.age() < workers.limits.max_lifetime.0;
        if in_use.kept {
            in_use.kept = workers.park(worker).is_none();
        }
        exchange.map(|e| (e, waited)).map_err(ServeError::Engine)
    }

    /// Start workers of `skill` under `key` in the background, ahead of any request, until
    /// `target` of them (idle, busy or starting; at most the pool's size) exist.
    pub(crate) fn fill(
        &self,
        (skill, key): (&str, &str),
        limits: &Serve,
        spec: impl FnOnce() -> ContainerSpec,
        target: usize,
    ) {
        let Some(workers) = self.workers((skill, key), limits, spec) else {
            return;
        };
        workers.target.store(target, Ordering::SeqCst);
        top_up(&self.inner, &workers);
    }

    /// Retire every worker and take no more requests; requests in flight finish with
    /// the worker removed under them, and those waiting for one are refused.
    pub(crate) fn close(&self) {
        let closing: Vec<Arc<SkillWorkers>> = {
            let mut pools = lock(&self.inner.skills);
            pools.closed = true;
            pools.by_skill.drain().map(|(_, w)| w).collect()
        };
        for workers in closing {
            workers.slots.close();
            for worker in lock(&workers.idle).drain(..) {
                self.inner.reaper.remove_later(&worker.name);
            }
        }
    }

    /// Idle workers kept under `key`.
    pub(crate) fn idle(&self, key: &str) -> usize {
        lock(&self.inner.skills)
            .by_skill
            .get(key)
            .map_or(0, |w| lock(&w.idle).len())
    }

    /// The workers kept under `key`, made on first use; `None` once the pools are closed.
    fn workers(
        &self,
        (skill, key): (&str, &str),
        limits: &Serve,
        spec: impl FnOnce() -> ContainerSpec,
    ) -> Option<Arc<SkillWorkers>> {
        let mut pools = lock(&self.inner.skills);
        if pools.closed {
            return None;
        }
        let workers = pools.by_skill.entry(key.to_string()).or_insert_with(|| {
            Arc::new(SkillWorkers {
                skill: skill.to_string(),
                limits: limits.clone(),
                spec: spec(),
                slots: Semaphore::new(limits.workers as usize),
                idle: Mutex::default(),
                starting: AtomicUsize::new(0),
                target: AtomicUsize::new(0),
            })
        });
        Some(workers.clone())
    }
}

/// A worker taken for one request: retired when this is dropped, unless it was kept.
struct RetireUnlessKept<'a> {
    name: String,
    reaper: &'a Reaper,
    kept: bool,
}

impl Drop for RetireUnlessKept<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.reaper.remove_later(&self.name);
        }
    }
}

/// Start workers in the background until the pool's target of them (idle, busy or
/// starting; at most its size) exist. One that fails to start is tried again at the
/// next sweep.
fn top_up(inner: &Arc<Inner>, workers: &Arc<SkillWorkers>) {
    let size = workers.limits.workers as usize;
    let busy = size.saturating_sub(workers.slots.available_permits());
    let have = lock(&workers.idle).len() + busy + workers.starting.load(Ordering::SeqCst);
    let target = workers.target.load(Ordering::SeqCst).min(size);
    for _ in 0..target.saturating_sub(have) {
        workers.starting.fetch_add(1, Ordering::SeqCst);
        let (inner, workers) = (inner.clone(), workers.clone());
        tokio::spawn(async move {
            match start_worker(&inner, &workers).await {
                Ok(worker) => {
                    if let Some(unwanted) = workers.park(worker) {
                        inner.reaper.remove_later(&unwanted.name);
                    }
                }
                Err(e) => {
                    tracing::warn!(skill = %workers.skill, "starting a container ahead failed: {e}");
                }
            }
            workers.starting.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Start a worker of the pool, tracked by the reaper first so that a failure leaves
/// nothing behind.
async fn start_worker(inner: &Inner, workers: &SkillWorkers) -> Result<Worker, RunError> {
    let name = container_name(&workers.skill, inner.role);
    inner.reaper.track(&name);
    let started = Worker::start(&inner.engine, &name, &workers.spec).await;
    if started.is_err() {
        inner.reaper.remove_later(&name);
    }
    started
}

impl SkillWorkers {
    /// Keep `worker` idle for the next request, unless the pool is closed or already
    /// holds as many idle workers as its size (a request and `fill` racing for the last
    /// slot can make one too many): then it is handed back, to be retired. `close`
    /// closes the slots before it drains the idle workers, so one parked here is either
    /// drained by it or handed back.
    fn park(&self, worker: Worker) -> Option<Worker> {
        let mut idle = lock(&self.idle);
        if self.slots.is_closed() || idle.len() >= self.limits.workers as usize {
            return Some(worker);
        }
        idle.push(worker);
        None
    }
}

/// Retire idle workers past their idle TTL or lifetime, and top up the pools kept at a
/// target, until the pools are gone.
async fn sweep(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(inner) = inner.upgrade() else { return };
        let skills: Vec<Arc<SkillWorkers>> =
            lock(&inner.skills).by_skill.values().cloned().collect();
        for workers in skills {
            let expired: Vec<Worker> = {
                let mut idle = lock(&workers.idle);
                let (expired, kept) = idle.drain(..).partition(|w| {
                    w.last_used.elapsed() >= workers.limits.idle_ttl.0
                        || w.age() >= workers.limits.max_lifetime.0
                });
                *idle = kept;
                expired
            };
            for worker in expired {
                tracing::debug!(skill = %workers.skill, worker = %worker.name, "retiring an idle worker");
                inner.reaper.remove_later(&worker.name);
            }
            if !workers.slots.is_closed() {
                top_up(&inner, &workers);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::double::{FakeEngine, Script};

    /// Workers that answer each request line with a result, and die on the action `die`.
    fn pools() -> (Arc<FakeEngine>, ServePools, Reaper) {
        let fake = FakeEngine::new(|_, line| {
            let request: serde_json::Value = serde_json::from_slice(line).unwrap();
            if request["action"] == "die" {
                return Script {
                    exit: 1,
                    ..Default::default()
                };
            }
            let id = request["id"].as_str().unwrap();
            Script {
                stdout: format!(
                    "{{\"type\":\"result\",\"id\":\"{id}\",\"ok\":true,\"output\":{{}}}}\n"
                )
                .into_bytes(),
                ..Default::default()
            }
        });
        let containers: Containers = fake.clone();
        let reaper = Reaper::new(containers.clone());
        (
            fake.clone(),
            ServePools::new(containers, reaper.clone(), Role::Worker),
            reaper,
        )
    }

    fn request(id: &str, action: &str) -> RunRequest {
        let line = format!("{{\"id\":\"{id}\",\"action\":\"{action}\"}}\n");
        RunRequest::for_test(id, line.into_bytes())
    }

    fn worker_spec() -> ContainerSpec {
        ContainerSpec {
            env: vec!["SKILLHOST_MODE=serve".into()],
            interactive: true,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_worker_answers_request_after_request_and_one_that_died_is_replaced() {
        let (fake, pools, reaper) = pools();
        let limits = Serve::default();
        for id in ["r-1", "r-2", "r-3"] {
            let (exchange, _) = pools
                .exchange(("echo", "echo"), &limits, worker_spec, &request(id, "say"))
                .await
                .unwrap();
            assert!(exchange.reusable, "{id}");
            assert!(exchange.outcome.decoded.result.is_some(), "{id}");
        }
        assert_eq!(fake.containers().len(), 1, "one worker served all three");
        assert_eq!(pools.idle("echo"), 1);

        let (died, _) = pools
            .exchange(
                ("echo", "echo"),
                &limits,
                worker_spec,
                &request("r-4", "die"),
            )
            .await
            .unwrap();
        assert!(!died.reusable);
        assert_eq!(died.outcome.exit_code, Some(1));
        reaper.settled().await;
        assert!(fake.containers().is_empty(), "the dead worker is removed");
        let (next, _) = pools
            .exchange(
                ("echo", "echo"),
                &limits,
                worker_spec,
                &request("r-5", "say"),
            )
            .await
            .unwrap();
        assert!(next.reusable);
        let creates = fake
            .calls()
            .iter()
            .filter(|c| c.starts_with("create"))
            .count();
        assert_eq!(creates, 2, "a new worker for the call after the death");

        pools.close();
        reaper.settled().await;
        assert!(fake.containers().is_empty());
        assert!(matches!(
            pools
                .exchange(
                    ("echo", "echo"),
                    &limits,
                    worker_spec,
                    &request("r-6", "say")
                )
                .await,
            Err(ServeError::Closed)
        ));
    }

    #[tokio::test]
    async fn a_pool_filled_ahead_answers_without_starting_a_worker() {
        let (fake, pools, reaper) = pools();
        let limits = Serve {
            workers: 3,
            ..Serve::default()
        };
        pools.fill(("echo", "echo"), &limits, worker_spec, 5);
        while pools.idle("echo") < 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(fake.containers().len(), 3, "no more than the pool's size");
        pools.fill(("echo", "echo"), &limits, worker_spec, 3);
        let (exchange, _) = pools
            .exchange(
                ("echo", "echo"),
                &limits,
                worker_spec,
                &request("r-1", "say"),
            )
            .await
            .unwrap();
        assert!(exchange.reusable);
        let creates = fake
            .calls()
            .iter()
            .filter(|c| c.starts_with("create"))
            .count();
        assert_eq!(creates, 3, "the call took a worker made ahead");
        pools.close();
        reaper.settled().await;
        assert!(fake.containers().is_empty());
    }
}
