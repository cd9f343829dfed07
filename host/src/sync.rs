//! The one lock helper: skillhost's mutexes guard plain collections that a panic cannot
//! leave half-changed, so a poisoned lock is taken as it is rather than spreading a panic.

use std::sync::{Mutex, MutexGuard};

/// Lock `mutex`, poisoned or not.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
