//! skillhost: discover skills, build their images by content hash, and run their actions
//! in hardened containers.

pub mod manifest;
