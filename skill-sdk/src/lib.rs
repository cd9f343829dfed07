// The crate's documentation is its README, so that its examples are compiled and run
// by `cargo test --doc` and what crates.io shows is what docs.rs shows.
#![doc = include_str!("../README.md")]

pub mod native;
pub mod protocol;
pub mod runtime;

pub use protocol::{
    ErrorBody, Frame, Progress, Request, ResultFrame, PROTOCOL_VERSION, SERVE_MODE_ENV,
};
pub use runtime::{ActionError, Context, Skill};
