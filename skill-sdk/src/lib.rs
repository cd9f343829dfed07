//! The skillhost protocol (v1) and a runtime for writing skills in Rust.
//!
//! A skill is a program in a container that reads one JSON request from stdin and writes
//! JSON frames to stdout, one per line (see [`protocol`]). [`Skill`] does that work so an
//! author only registers typed actions. Anything written to stderr is kept by the host as
//! the invocation's logs.

pub mod native;
pub mod protocol;
pub mod runtime;

pub use protocol::{
    ErrorBody, Frame, Progress, Request, ResultFrame, PROTOCOL_VERSION, SERVE_MODE_ENV,
};
pub use runtime::{ActionError, Context, Skill};
