//! Asynchronous invocations (`Prefer: respond-async`): each runs as its own task, and its
//! result is kept for a bounded time and count so the caller can fetch it. Deleting a
//! running one aborts its task, and dropping the invocation removes its container.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use skillhost_api::{codes, Invocation, InvocationResult, InvocationState};
use tokio::task::AbortHandle;

use crate::sync::lock;
use crate::Refusal;

enum Stage {
    Running(AbortHandle),
    Finished(Box<InvocationResult>),
    Cancelled(Box<InvocationResult>),
}

struct Entry {
    skill: String,
    action: String,
    stage: Stage,
    /// When it finished or was cancelled; running entries are never evicted.
    ended: Option<Instant>,
}

impl Entry {
    fn view(&self, id: &str) -> Invocation {
        let (state, result) = match &self.stage {
            Stage::Running(_) => (InvocationState::Running, None),
            Stage::Finished(result) => (InvocationState::Finished, Some((**result).clone())),
            Stage::Cancelled(result) => (InvocationState::Cancelled, Some((**result).clone())),
        };
        Invocation::new(id, &self.skill, &self.action, state, result)
    }
}

/// No room for another asynchronous invocation: every remembered one is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoreFull;

/// The asynchronous invocations this service remembers.
pub(crate) struct Invocations {
    entries: Mutex<HashMap<String, Entry>>,
    keep: Duration,
    max: usize,
}

impl std::fmt::Debug for Invocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invocations")
            .field("count", &lock(&self.entries).len())
            .field("keep", &self.keep)
            .field("max", &self.max)
            .finish()
    }
}

impl Invocations {
    /// A store keeping finished results for `keep`, and at most `max` entries.
    pub(crate) fn new(keep: Duration, max: usize) -> Self {
        Invocations {
            entries: Mutex::default(),
            keep,
            max,
        }
    }

    /// Make room for one more, forgetting expired results and then the oldest finished.
    pub(crate) fn reserve(&self) -> Result<(), StoreFull> {
        let mut entries = lock(&self.entries);
        let now = Instant::now();
        entries.retain(|_, e| e.ended.is_none_or(|at| now.duration_since(at) < self.keep));
        while entries.len() >= self.max {
            let oldest = entries
                .iter()
                .filter_map(|(id, e)| e.ended.map(|at| (at, id.clone())))
                .min();
            match oldest {
                Some((_, id)) => entries.remove(&id),
                None => return Err(StoreFull),
            };
        }
        Ok(())
    }

    /// Remember a running invocation, whose task `abort` stops.
    pub(crate) fn started(&self, id: &str, skill: &str, action: &str, abort: AbortHandle) {
        lock(&self.entries).insert(
            id.to_string(),
            Entry {
                skill: skill.to_string(),
                action: action.to_string(),
                stage: Stage::Running(abort),
                ended: None,
            },
        );
    }

    /// Record the result of a finished invocation (unless it was cancelled first).
    pub(crate) fn finished(&self, result: InvocationResult) {
        if let Some(entry) = lock(&self.entries).get_mut(&result.id) {
            if matches!(entry.stage, Stage::Running(_)) {
                entry.stage = Stage::Finished(Box::new(result));
                entry.ended = Some(Instant::now());
            }
        }
    }

    /// Where an invocation stands.
    pub(crate) fn get(&self, id: &str) -> Option<Invocation> {
        lock(&self.entries).get(id).map(|e| e.view(id))
    }

    /// Cancel a running invocation, or forget a finished one; its last state.
    pub(crate) fn delete(&self, id: &str) -> Option<Invocation> {
        let mut entries = lock(&self.entries);
        let entry = entries.get_mut(id)?;
        if let Stage::Running(abort) = &entry.stage {
            abort.abort();
            let mut result = InvocationResult::new(id, &entry.skill, &entry.action);
            Refusal::new(codes::CANCELLED, "cancelled by its caller (DELETE)")
                .apply_to(&mut result);
            entry.stage = Stage::Cancelled(Box::new(result));
            entry.ended = Some(Instant::now());
            return Some(entry.view(id));
        }
        entries.remove(id).map(|e| e.view(id))
    }

    /// Running and finished invocations remembered now.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let entries = lock(&self.entries);
        let running = entries
            .values()
            .filter(|e| matches!(e.stage, Stage::Running(_)))
            .count();
        (running, entries.len() - running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str) -> InvocationResult {
        InvocationResult::new(id, "echo", "say")
    }

    #[tokio::test]
    async fn an_invocation_runs_then_finishes_and_is_forgotten_on_delete() {
        let store = Invocations::new(Duration::from_secs(60), 10);
        let task = tokio::spawn(std::future::pending::<()>());
        store.started("1", "echo", "say", task.abort_handle());
        assert_eq!(store.get("1").unwrap().state, InvocationState::Running);
        store.finished(result("1"));
        let view = store.get("1").unwrap();
        assert_eq!(view.state, InvocationState::Finished);
        assert_eq!(view.result.unwrap().id, "1");
        assert_eq!(store.delete("1").unwrap().state, InvocationState::Finished);
        assert!(store.get("1").is_none());
        task.abort();
    }

    #[tokio::test]
    async fn deleting_a_running_invocation_aborts_it_and_keeps_a_cancelled_result() {
        let store = Invocations::new(Duration::from_secs(60), 10);
        let task = tokio::spawn(std::future::pending::<()>());
        store.started("1", "echo", "say", task.abort_handle());
        let view = store.delete("1").unwrap();
        assert_eq!(view.state, InvocationState::Cancelled);
        assert_eq!(view.result.unwrap().error.unwrap().code, codes::CANCELLED);
        assert!(task.await.unwrap_err().is_cancelled());
        store.finished(result("1"));
        assert_eq!(store.get("1").unwrap().state, InvocationState::Cancelled);
    }

    #[tokio::test]
    async fn the_oldest_finished_make_room_and_running_ones_never_do() {
        let store = Invocations::new(Duration::from_secs(60), 2);
        let task = tokio::spawn(std::future::pending::<()>());
        store.started("a", "echo", "say", task.abort_handle());
        store.started("b", "echo", "say", task.abort_handle());
        assert_eq!(store.reserve(), Err(StoreFull));
        store.finished(result("a"));
        assert_eq!(store.reserve(), Ok(()));
        assert!(store.get("a").is_none());
        assert_eq!(store.counts(), (1, 0));
        task.abort();
    }

    #[tokio::test]
    async fn results_expire_after_the_keep_time() {
        let store = Invocations::new(Duration::ZERO, 10);
        let task = tokio::spawn(std::future::pending::<()>());
        store.started("a", "echo", "say", task.abort_handle());
        store.finished(result("a"));
        store.reserve().unwrap();
        assert!(store.get("a").is_none());
        task.abort();
    }
}
