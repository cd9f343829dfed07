//! Process exit codes, part of the CLI contract (DESIGN.md).

/// Everything succeeded.
pub const OK: i32 = 0;
/// A skill reported an error, or its build failed.
pub const SKILL_FAILED: i32 = 1;
/// Bad usage, a bad manifest or a bad input file.
pub const USAGE: i32 = 2;
/// The engine is unavailable, or another infrastructure failure.
pub const INFRASTRUCTURE: i32 = 3;
