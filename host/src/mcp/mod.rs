//! The Model Context Protocol: every skill action a tool any MCP client (a desktop
//! assistant, an IDE agent, an agent framework) can list and call, through the official
//! Rust SDK, `rmcp`. See docs/mcp.md.
//!
//! [`server`] is the one handler, over a front end that runs its calls: on stdio
//! ([`stdio`], `skillhost mcp`) a host of the process's own; on `/mcp` the service's gate
//! and tokens (`service::routes::mcp`). [`results`] turns a skillhost result into a tool
//! result, a pure function.

mod results;
pub(crate) mod server;
mod stdio;

pub use stdio::{serve_stdio, StdioError};
