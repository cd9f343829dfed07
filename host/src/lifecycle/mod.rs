//! Every container skillhost makes is labelled, guarded, removed and, if a host dies,
//! found again: [`labels`] and names, this process's [`instance`] identity, the
//! [`guard`] that removes a container whose future was dropped, the [`reaper`] that
//! removes finished containers off the caller's path, the process-wide [`removal`]
//! thread, and [`leftovers`] of dead hosts (`skillhost gc`).

pub(crate) mod guard;
pub(crate) mod instance;
pub(crate) mod labels;
pub mod leftovers;
pub(crate) mod reaper;
pub(crate) mod removal;

pub use leftovers::{gc, GcReport};
