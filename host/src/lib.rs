//! skillhost: discover skills, build their images by content hash, and run their actions
//! in hardened containers.
//!
//! - [`discovery::Catalog`] finds skill directories and validates their manifests.
//! - [`image_build::ImageBuilder`] builds or reuses `skill-<name>:<hash>` images.
//! - [`base_images`] builds the local base images skills start `FROM`.
//! - [`Host`] invokes an action in a fresh hardened container and returns an
//!   [`InvocationResult`] whose [`Status`] tells every kind of failure apart.
//! - [`Error::exit_code`] maps every failure to the CLI's exit codes.

pub mod base_images;
pub mod build_context;
pub mod container_reaper;
pub mod container_run;
pub mod container_spec;
pub mod content_hash;
pub mod deployment;
pub mod discovery;
pub mod dockerfile;
pub mod dockerignore;
pub mod engine;
mod error;
pub mod exit_code;
pub mod exit_trailer;
pub mod frame_reader;
mod host;
pub mod image_build;
pub mod instance;
pub mod invocation;
pub mod labels;
pub mod leftovers;
pub mod manifest;
pub mod native_skill;
pub mod outcome;
pub mod prewarm_pool;
pub mod seccomp_profile;
pub mod serve_pool;
pub mod serve_worker;
pub mod skill_init;
pub mod workspace;

pub use error::Error;
pub use host::{Host, HostConfig};
pub use invocation::{InvocationError, InvocationResult, InvokeOptions, Path, Status};
