//! skillhost: discover skills, build their images by content hash, and run their actions
//! in hardened containers.
//!
//! - [`discovery::Catalog`] finds skill directories and validates their manifests.
//! - [`image_build::ImageBuilder`] builds or reuses `skill-<name>:<hash>` images.
//! - [`base_images`] builds the local base images skills start `FROM`.
//! - [`Error::exit_code`] maps every failure to the CLI's exit codes.

pub mod base_images;
pub mod build_context;
pub mod content_hash;
pub mod deployment;
pub mod discovery;
pub mod dockerfile;
pub mod dockerignore;
pub mod engine;
mod error;
pub mod exit_code;
pub mod image_build;
pub mod labels;
pub mod manifest;

pub use error::Error;
