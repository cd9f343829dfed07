//! Every `error.code` the host itself puts in a result, each with the [`Status`] it comes
//! with. A skill's own error body (status `skill_error`) carries whatever code the skill
//! chose; skill-sdk's codes are listed in `skill_sdk::protocol::codes`.
//!
//! The list is part of the contract: a code is never reused for another meaning, and
//! [`ALL`] names each one with its status (the reference is `docs/results.md`).

use crate::Status;

/// `rejected`: no skill of that name was found on this host.
pub const UNKNOWN_SKILL: &str = "unknown_skill";
/// `rejected`: the skill has no action of that name.
pub const UNKNOWN_ACTION: &str = "unknown_action";
/// `rejected`: the arguments, serialized, are larger than the host accepts.
pub const INPUT_TOO_LARGE: &str = "input_too_large";
/// `rejected`: the arguments do not match the action's input JSON Schema.
pub const INVALID_ARGS: &str = "invalid_args";
/// `rejected`: the action's input schema does not compile (manifest validation refuses
/// such a manifest first, so this marks a host defect).
pub const INVALID_SCHEMA: &str = "invalid_schema";
/// `rejected`: a per-call option is outside what the manifest allows: a timeout of zero
/// or above the manifest's, an environment variable not in `run.env`, a workspace the
/// skill does not declare or that may not be mounted.
pub const INVALID_OPTIONS: &str = "invalid_options";
/// `rejected`: the manifest's `run.user` is, in the skill's image, uid 0 or gid 0 (its
/// `/etc/passwd` or `/etc/group` maps a name or a primary group to 0), or names a user or
/// group the image does not have. Nothing ran.
pub const INVALID_USER: &str = "invalid_user";
/// `rejected`: native mode was asked for, but the host does not allow it or the skill has
/// no native library.
pub const NATIVE_UNAVAILABLE: &str = "native_unavailable";
/// `skill_error`: the skill's image could not be built from its sources: its build
/// command failed, a declared output or input is missing, or a Dockerfile step failed.
pub const BUILD_FAILED: &str = "build_failed";
/// `infrastructure_error`: a base image the skill's Dockerfile names is not present
/// (`skillhost images build` makes it).
pub const BASE_IMAGE_MISSING: &str = "base_image_missing";
/// `infrastructure_error`: the skill's image is not present and this host does not build.
pub const IMAGE_UNAVAILABLE: &str = "image_unavailable";
/// `infrastructure_error`: on a locked host, the skill's image is missing or is not the
/// image its lock pins (another image under the same tag, a manifest that does not match).
pub const INTEGRITY_ERROR: &str = "integrity_error";
/// `infrastructure_error`: the skill asks for an OCI runtime the engine does not have.
pub const RUNTIME_UNAVAILABLE: &str = "runtime_unavailable";
/// `infrastructure_error`: the engine failed a request (create, attach, start, inspect,
/// build) or could not be reached.
pub const ENGINE_ERROR: &str = "engine_error";
/// `infrastructure_error`: the engine stopped the container before the skill answered (a
/// `docker stop`, or the engine shutting down).
pub const ENGINE_STOPPED: &str = "engine_stopped";
/// `infrastructure_error`: the host failed outside the engine (a build lock file, a
/// temporary directory).
pub const HOST_ERROR: &str = "host_error";
/// `infrastructure_error`: the host was shutting down and could not run the call.
pub const HOST_SHUTTING_DOWN: &str = "host_shutting_down";
/// `rejected`: the service could not read the call: its body is not JSON of the documented
/// shape, or not sent as `application/json` (`skillhost serve` only).
pub const INVALID_REQUEST: &str = "invalid_request";
/// `infrastructure_error`: the service is at its concurrency limits and the call waited
/// in its queue past the deadline, or the queue was full; nothing ran. Retry after the
/// time the service names (HTTP 429, `skillhost serve` only).
pub const OVERLOADED: &str = "overloaded";
/// `infrastructure_error`: the call was cancelled before it finished (an asynchronous
/// invocation deleted by its caller, or the service's grace at shutdown ran out); its
/// container was removed.
pub const CANCELLED: &str = "cancelled";
/// `timeout`: no result before the deadline (the container was killed), or no warm
/// worker became free before it.
pub const TIMEOUT: &str = "timeout";
/// `memory_limit`: the kernel killed the skill for exceeding its memory limit.
pub const MEMORY_LIMIT: &str = "memory_limit";
/// `output_limit`: stdout exceeded the output limit; the container was killed.
pub const OUTPUT_LIMIT: &str = "output_limit";
/// `protocol_error`: stdout held something other than well-formed frames with one result
/// for this request.
pub const PROTOCOL_ERROR: &str = "protocol_error";
/// `protocol_error`: the skill's output does not match its action's declared `output`
/// schema; the message and `details.problems` name each path, `details.output` holds it.
pub const OUTPUT_SCHEMA: &str = "output_schema";
/// `crashed`: the skill exited without a result, for no reason above.
pub const CRASHED: &str = "crashed";
/// `rejected`: no open session of that id belongs to the caller (it never existed, it
/// ended or expired, or another caller made it).
pub const UNKNOWN_SESSION: &str = "unknown_session";
/// `rejected`: the skill's manifest declares no `run.session`, or the session asked for
/// is outside what it allows (a timeout above its ceiling, a variable not in `run.env`),
/// or a call in a session asked for something a session call cannot have (its own
/// environment, a workspace, native mode).
pub const INVALID_SESSION: &str = "invalid_session";
/// `rejected`: the host (or the caller's token) has as many open sessions as it allows;
/// end one, or retry once one expires (HTTP 429 with Retry-After).
pub const TOO_MANY_SESSIONS: &str = "too_many_sessions";
/// `rejected`: the `process` session's process was lost before this call, for a reason
/// no earlier result reported (the service restarted; the process died between calls).
/// Nothing ran; a new process is ready with the session's files and none of its
/// variables: set them up again and call again (HTTP 409).
pub const SESSION_STATE_RESET: &str = "session_state_reset";

/// Every code the host makes, with the status it comes with.
pub const ALL: &[(&str, Status)] = &[
    (UNKNOWN_SKILL, Status::Rejected),
    (UNKNOWN_ACTION, Status::Rejected),
    (INPUT_TOO_LARGE, Status::Rejected),
    (INVALID_ARGS, Status::Rejected),
    (INVALID_SCHEMA, Status::Rejected),
    (INVALID_OPTIONS, Status::Rejected),
    (INVALID_USER, Status::Rejected),
    (NATIVE_UNAVAILABLE, Status::Rejected),
    (BUILD_FAILED, Status::SkillError),
    (BASE_IMAGE_MISSING, Status::InfrastructureError),
    (IMAGE_UNAVAILABLE, Status::InfrastructureError),
    (INTEGRITY_ERROR, Status::InfrastructureError),
    (RUNTIME_UNAVAILABLE, Status::InfrastructureError),
    (ENGINE_ERROR, Status::InfrastructureError),
    (ENGINE_STOPPED, Status::InfrastructureError),
    (HOST_ERROR, Status::InfrastructureError),
    (HOST_SHUTTING_DOWN, Status::InfrastructureError),
    (INVALID_REQUEST, Status::Rejected),
    (OVERLOADED, Status::InfrastructureError),
    (CANCELLED, Status::InfrastructureError),
    (TIMEOUT, Status::Timeout),
    (MEMORY_LIMIT, Status::MemoryLimit),
    (OUTPUT_LIMIT, Status::OutputLimit),
    (PROTOCOL_ERROR, Status::ProtocolError),
    (OUTPUT_SCHEMA, Status::ProtocolError),
    (CRASHED, Status::Crashed),
    (UNKNOWN_SESSION, Status::Rejected),
    (INVALID_SESSION, Status::Rejected),
    (TOO_MANY_SESSIONS, Status::Rejected),
    (SESSION_STATE_RESET, Status::Rejected),
];

/// The codes of a failed file operation on a session's workspace (a service error's
/// `code`, or the library's `FileError`), each with its HTTP status.
pub mod files {
    /// 404: no such file, or a directory on its path is missing.
    pub const NOT_FOUND: &str = "file_not_found";
    /// 409: not a regular file with one link (a directory, a symbolic link, a FIFO, a
    /// socket, a device, a hard-linked file), or a path through a symbolic link.
    pub const NOT_A_FILE: &str = "not_a_file";
    /// 409: a directory to delete is not empty.
    pub const NOT_EMPTY: &str = "directory_not_empty";
    /// 400: the path is absolute, has a `.`, `..` or empty component, a NUL, or is too
    /// long.
    pub const INVALID_PATH: &str = "invalid_path";
    /// 413: the upload or the file is larger than a transfer may be.
    pub const TOO_LARGE: &str = "file_too_large";
    /// 507: the workspace is full (its size is the manifest's `run.session.workspace`).
    pub const WORKSPACE_FULL: &str = "workspace_full";
    /// 409: the skill made the file or a directory on its path unreadable to its own user
    /// (`chmod 000`, say), or another error of the filesystem; the message has it.
    pub const UNREADABLE: &str = "file_unreadable";

    /// Every file operation code with its HTTP status.
    pub const ALL: &[(&str, u16)] = &[
        (NOT_FOUND, 404),
        (NOT_A_FILE, 409),
        (NOT_EMPTY, 409),
        (INVALID_PATH, 400),
        (TOO_LARGE, 413),
        (WORKSPACE_FULL, 507),
        (UNREADABLE, 409),
    ];
}

/// The status the host gives `code`, or `None` for a code the host never makes (a
/// skill's own).
pub fn status_of(code: &str) -> Option<Status> {
    ALL.iter().find(|(c, _)| *c == code).map(|(_, s)| *s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_documented() {
        let docs =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/results.md"))
                .expect("docs/results.md exists");
        for (i, (code, status)) in ALL.iter().enumerate() {
            assert!(
                code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code}"
            );
            assert!(
                ALL[i + 1..].iter().all(|(other, _)| other != code),
                "{code} twice"
            );
            let row = format!("| `{code}` | `{}` |", status.as_str());
            assert!(docs.contains(&row), "docs/results.md lacks the row {row}");
        }
    }

    #[test]
    fn statuses_of_codes_are_found() {
        assert_eq!(status_of(TIMEOUT), Some(Status::Timeout));
        assert_eq!(status_of("my_skills_own"), None);
    }
}
