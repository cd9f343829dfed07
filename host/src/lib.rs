//! skillhost: discover skills, build their images by content hash, and run their actions
//! in hardened containers.
//!
//! The data path of one call, module by module:
//!
//! 1. [`catalog`] finds skill directories and validates their [`manifest`]s.
//! 2. [`build`] hashes each skill's sources and builds or reuses `skill-<name>:<hash>`.
//! 3. [`Host::invoke_with`] admits the call (no engine), routes it (native, warm,
//!    prewarmed or cold), runs it in a hardened container, and classifies what it saw
//!    into an [`InvocationResult`] whose [`Status`] tells every kind of failure apart.
//! 4. Every container is labelled and removed, and a dead host's leftovers are found
//!    again ([`lifecycle`]).
//! 5. [`lock`] pins a deployment's images; [`ship`] moves them through a registry; a host
//!    given a lock ([`HostConfig::locked`]) runs those images and nothing else.
//! 6. [`examples`] runs each manifest's examples as real calls and judges them
//!    (`skillhost test`).
//! 7. With the `serve` feature, [`service`] puts a host behind an HTTP API.
//!
//! The caller-facing contract (result, statuses, error and exit codes) is the serde-only
//! crate [`api`], re-exported here. [`Error::exit_code`] maps every other failure to the
//! CLI's exit codes.

pub mod build;
pub mod catalog;
pub mod cluster;
mod egress;
pub mod engine;
mod error;
pub mod examples;
mod host;
mod invoke;
#[cfg(test)]
mod layering;
pub mod lifecycle;
pub mod lock;
pub mod manifest;
#[cfg(feature = "serve")]
pub mod mcp;
mod paths;
mod run;
#[cfg(feature = "serve")]
pub mod service;
pub mod session;
pub mod ship;
mod sync;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
mod tools;
mod vocab;

pub use skillhost_api as api;
pub use skillhost_api::{InvocationError, InvocationPath, InvocationResult, Stats, Status};

pub use error::Error;
pub use host::{Host, HostConfig, Session};
pub use invoke::{ImageState, InvokeOptions, RecyclePolicy};
pub use vocab::{ProgressCallback, Refusal};
