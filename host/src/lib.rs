//! skillhost: discover skills, build their images by content hash, and run their actions
//! in hardened containers.

pub mod build_context;
pub mod content_hash;
pub mod discovery;
pub mod dockerfile;
pub mod dockerignore;
pub mod manifest;
