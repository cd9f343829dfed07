//! Labels on every resource skillhost creates, so each can be found and cleaned up.

/// On every container: `true`.
pub const MANAGED: &str = "io.skillhost.managed";
/// The skill a container or image belongs to.
pub const SKILL: &str = "io.skillhost.skill";
/// The invocation a container serves.
pub const INVOCATION: &str = "io.skillhost.invocation";
/// The host process that created a container.
pub const INSTANCE: &str = "io.skillhost.instance";
/// The version of the skill or base image.
pub const VERSION: &str = "io.skillhost.version";
/// The full content hash of an image; its tag holds a prefix.
pub const HASH: &str = "io.skillhost.hash";
/// The base image a `skillhost/<name>` image was built as.
pub const BASE: &str = "io.skillhost.base";

/// [`INVOCATION`] of a container created before its invocation was known.
pub const ROLE_PREWARMED: &str = "prewarmed";
/// [`INVOCATION`] of a serve-mode worker, which answers many invocations.
pub const ROLE_WORKER: &str = "worker";
/// On images that carry skillhost's init; the value is the trailer format it writes.
pub const INIT: &str = "io.skillhost.init";
