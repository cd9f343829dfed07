//! Back-pressure: how many calls run at once (over all skills, per skill, per token) and
//! how many may wait, for how long. Explicit semaphores, because a concurrency layer
//! behind axum's router would not see which skill a call is for.
//!
//! A call first takes a [`Ticket`] without waiting: a slot now, or a place in the queue,
//! or a refusal at once when the queue is full. The ticket then turns into a [`Pass`]
//! (the slots, held until the call ends) or an [`Overload`] when the wait passes its
//! deadline. A refused call never holds a socket open beyond that deadline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a call is refused for load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overload {
    /// Every slot is taken and the queue is full.
    QueueFull,
    /// The call waited in the queue for the whole deadline.
    WaitedTooLong,
    /// The caller's token runs as many calls as its quota allows.
    TokenQuota,
}

impl Overload {
    /// The metric label and the message's subject.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Overload::QueueFull => "queue_full",
            Overload::WaitedTooLong => "queue_timeout",
            Overload::TokenQuota => "token_quota",
        }
    }
}

/// The slots a running call holds; dropping it frees them.
#[derive(Debug)]
pub(crate) struct Pass {
    _token: Option<OwnedSemaphorePermit>,
    _skill: Option<OwnedSemaphorePermit>,
    _global: OwnedSemaphorePermit,
}

/// A call admitted to run now or to wait in the queue.
#[derive(Debug)]
pub(crate) enum Ticket {
    /// Slots were free.
    Now(Pass),
    /// In the queue; [`Ticket::wait`] waits for slots.
    Queued(Queued),
}

/// A place in the queue, given back when dropped.
#[derive(Debug)]
pub(crate) struct Queued {
    gate: Arc<GateInner>,
    token: Option<OwnedSemaphorePermit>,
    skill: Option<Arc<Semaphore>>,
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.gate.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug)]
struct GateInner {
    global: Arc<Semaphore>,
    global_limit: usize,
    per_skill: HashMap<String, Arc<Semaphore>>,
    queue_limit: usize,
    waiting: AtomicUsize,
    wait: Duration,
}

/// The service's limits on concurrent calls.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    inner: Arc<GateInner>,
}

impl Gate {
    /// Limits for the skills named (an unknown skill is refused by admission, at once and
    /// without a slot of its own).
    pub(crate) fn new<'a>(
        skills: impl IntoIterator<Item = &'a str>,
        global: usize,
        per_skill: usize,
        queue: usize,
        wait: Duration,
    ) -> Gate {
        Gate {
            inner: Arc::new(GateInner {
                global: Arc::new(Semaphore::new(global)),
                global_limit: global,
                per_skill: skills
                    .into_iter()
                    .map(|name| (name.to_string(), Arc::new(Semaphore::new(per_skill))))
                    .collect(),
                queue_limit: queue,
                waiting: AtomicUsize::new(0),
                wait,
            }),
        }
    }

    /// A slot now, a place in the queue, or a refusal at once.
    pub(crate) fn enter(
        &self,
        skill: &str,
        quota: Option<&Arc<Semaphore>>,
    ) -> Result<Ticket, Overload> {
        let token = match quota {
            Some(quota) => Some(
                quota
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| Overload::TokenQuota)?,
            ),
            None => None,
        };
        let skill = self.inner.per_skill.get(skill).cloned();
        let skill_now = match &skill {
            Some(semaphore) => semaphore.clone().try_acquire_owned().ok().map(Some),
            None => Some(None),
        };
        if let Some(skill_permit) = skill_now {
            match self.inner.global.clone().try_acquire_owned() {
                Ok(global) => {
                    return Ok(Ticket::Now(Pass {
                        _token: token,
                        _skill: skill_permit,
                        _global: global,
                    }))
                }
                // Give the skill's slot back while waiting, so a call of this skill that
                // finds a global slot first is not blocked by us.
                Err(_) => drop(skill_permit),
            }
        }
        let place = self.inner.waiting.fetch_add(1, Ordering::SeqCst);
        let queued = Queued {
            gate: self.inner.clone(),
            token,
            skill,
        };
        if place >= self.inner.queue_limit {
            return Err(Overload::QueueFull);
        }
        Ok(Ticket::Queued(queued))
    }

    /// How long a caller should wait before trying again, in whole seconds.
    pub(crate) fn retry_after(&self) -> u64 {
        self.inner.wait.as_secs_f64().ceil().max(1.0) as u64
    }

    /// Calls running now.
    pub(crate) fn in_flight(&self) -> usize {
        self.inner.global_limit - self.inner.global.available_permits()
    }

    /// Calls waiting in the queue now.
    pub(crate) fn queued(&self) -> usize {
        self.inner.waiting.load(Ordering::SeqCst)
    }
}

impl Ticket {
    /// Wait for the slots, up to the queue's deadline.
    pub(crate) async fn wait(self) -> Result<Pass, Overload> {
        let queued = match self {
            Ticket::Now(pass) => return Ok(pass),
            Ticket::Queued(queued) => queued,
        };
        let wait = queued.gate.wait;
        let acquire = async {
            let skill = match &queued.skill {
                Some(semaphore) => Some(semaphore.clone().acquire_owned().await.ok()?),
                None => None,
            };
            let global = queued.gate.global.clone().acquire_owned().await.ok()?;
            Some((skill, global))
        };
        match tokio::time::timeout(wait, acquire).await {
            Ok(Some((skill, global))) => {
                let mut queued = queued;
                Ok(Pass {
                    _token: queued.token.take(),
                    _skill: skill,
                    _global: global,
                })
            }
            _ => Err(Overload::WaitedTooLong),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(global: usize, per_skill: usize, queue: usize) -> Gate {
        Gate::new(
            ["a", "b"],
            global,
            per_skill,
            queue,
            Duration::from_millis(50),
        )
    }

    #[tokio::test]
    async fn free_slots_admit_at_once_and_are_given_back() {
        let gate = gate(2, 2, 0);
        let first = gate.enter("a", None).unwrap().wait().await.unwrap();
        let _second = gate.enter("b", None).unwrap().wait().await.unwrap();
        assert_eq!(gate.in_flight(), 2);
        drop(first);
        assert_eq!(gate.in_flight(), 1);
    }

    #[tokio::test]
    async fn beyond_the_queue_a_call_is_refused_at_once() {
        let gate = gate(1, 1, 1);
        let _running = gate.enter("a", None).unwrap().wait().await.unwrap();
        let queued = gate.enter("a", None).unwrap();
        assert_eq!(gate.queued(), 1);
        assert_eq!(gate.enter("b", None).unwrap_err(), Overload::QueueFull);
        assert_eq!(gate.queued(), 1, "a refused call gives its place back");
        assert_eq!(queued.wait().await.unwrap_err(), Overload::WaitedTooLong);
        assert_eq!(gate.queued(), 0);
    }

    #[tokio::test]
    async fn a_queued_call_runs_when_a_slot_frees_before_its_deadline() {
        let gate = Gate::new(["a"], 1, 1, 4, Duration::from_secs(5));
        let running = gate.enter("a", None).unwrap().wait().await.unwrap();
        let queued = gate.enter("a", None).unwrap();
        let waiter = tokio::spawn(queued.wait());
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(running);
        assert!(waiter.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn the_per_skill_limit_queues_only_that_skill() {
        let gate = gate(4, 1, 4);
        let _a = gate.enter("a", None).unwrap().wait().await.unwrap();
        assert!(matches!(gate.enter("a", None).unwrap(), Ticket::Queued(_)));
        assert!(matches!(gate.enter("b", None).unwrap(), Ticket::Now(_)));
    }

    #[tokio::test]
    async fn a_token_over_its_quota_is_refused_without_queueing() {
        let gate = gate(4, 4, 4);
        let quota = Arc::new(Semaphore::new(1));
        let _held = gate.enter("a", Some(&quota)).unwrap().wait().await.unwrap();
        assert_eq!(
            gate.enter("a", Some(&quota)).unwrap_err(),
            Overload::TokenQuota
        );
        assert_eq!(gate.queued(), 0);
    }

    #[test]
    fn retry_after_is_the_wait_rounded_up_to_a_second() {
        assert_eq!(gate(1, 1, 1).retry_after(), 1);
        let gate = Gate::new(["a"], 1, 1, 1, Duration::from_millis(2500));
        assert_eq!(gate.retry_after(), 3);
    }
}
