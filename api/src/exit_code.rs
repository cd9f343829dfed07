//! Process exit codes of the `skillhost` CLI. Each [`crate::Status`] maps to one of them
//! ([`crate::Status::exit_code`]), and every other failure of a command does too.

/// Everything succeeded.
pub const OK: i32 = 0;
/// A skill reported an error or failed: a skill error, a timeout, a memory or output
/// limit, a protocol error, a crash, or a failed build of its image.
pub const SKILL_FAILED: i32 = 1;
/// Bad usage, a bad manifest or a bad input file, or an invocation refused before any
/// container existed (`rejected`).
pub const USAGE: i32 = 2;
/// The engine is unavailable, or another infrastructure failure.
pub const INFRASTRUCTURE: i32 = 3;
