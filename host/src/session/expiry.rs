//! Ends sessions at their deadlines: a task that looks every [`TICK`], so a session goes
//! (its containers and its volume) well within two seconds of its deadline. An idle
//! timeout waits while a call or file operation is under way; a lifetime does not. Now
//! and then it also checks each keeper is still running: a session whose keeper is gone
//! (removed by hand, the engine restarted) has lost its workspace and is ended as `lost`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use super::terms::Ending;
use super::{Inner, Open};
use crate::sync::lock;

/// How often deadlines are checked.
const TICK: Duration = Duration::from_millis(200);
/// Every this many ticks, keepers are checked.
const KEEPER_CHECK_TICKS: u32 = 25;

/// Start the task; it ends once the sessions are dropped or shut down.
pub(super) fn spawn(inner: Weak<Inner>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut ticks = 0u32;
        loop {
            tokio::time::sleep(TICK).await;
            let Some(inner) = inner.upgrade() else { return };
            if inner.closed.load(Ordering::SeqCst) {
                return;
            }
            ticks = ticks.wrapping_add(1);
            for (open, why) in due(&inner, SystemTime::now()) {
                inner.end(&open, why).await;
            }
            if ticks.is_multiple_of(KEEPER_CHECK_TICKS) {
                check_keepers(&inner).await;
            }
        }
    });
}

/// The ready sessions past a deadline at `now`, with why.
fn due(inner: &Inner, now: SystemTime) -> Vec<(Arc<Open>, Ending)> {
    lock(&inner.open)
        .values()
        .filter(|open| open.ready.load(Ordering::SeqCst))
        .filter_map(|open| {
            let why = open.clocks().expired(now)?;
            let idle_but_busy = why == Ending::Idle && open.busy.load(Ordering::SeqCst) > 0;
            (!idle_but_busy).then(|| (open.clone(), why))
        })
        .collect()
}

async fn check_keepers(inner: &Inner) {
    let all: Vec<Arc<Open>> = lock(&inner.open)
        .values()
        .filter(|open| open.ready.load(Ordering::SeqCst))
        .cloned()
        .collect();
    for open in all {
        if let Ok(false) = inner.engine.running(&open.keeper).await {
            tracing::warn!(session = %open.record.id, keeper = %open.keeper, "the session's keeper is gone, and its workspace with it");
            inner.end(&open, Ending::Lost).await;
        }
    }
}
