//! The fast paths, beside a fresh container per call: containers made ahead of time
//! ([`prewarm_pool`]), long-running serve-mode workers ([`serve_pool`], one
//! [`serve_worker`] each), and trusted skills' libraries loaded in process ([`native`]).

pub(crate) mod native;
pub(crate) mod prewarm_pool;
pub(crate) mod serve_pool;
pub(crate) mod serve_worker;
