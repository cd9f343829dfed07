//! Every container skillhost makes is labelled, guarded, removed and, if a host dies,
//! found again: labels and names (`labels`), this process's identity (`instance`), the
//! guard that removes a container whose future was dropped (`guard`), the reaper that
//! removes finished containers off the caller's path (`reaper`), the bookkeeping of
//! containers made ahead of time (`stock`), the leftovers of dead hosts (`leftovers`), and
//! what `skillhost gc` removes ([`gc`]). Every engine call goes through the engine's
//! container seam ([`crate::engine`]).

pub mod gc;
pub(crate) mod guard;
pub(crate) mod instance;
pub(crate) mod labels;
pub(crate) mod leftovers;
pub(crate) mod reaper;
pub(crate) mod stock;

pub use gc::{gc, GcReport, GcScope};
