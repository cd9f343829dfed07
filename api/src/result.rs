//! The result of one invocation, as the library returns it and `--format json` prints it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::exit_code;

/// How an invocation ended. Every failure has its own status; none is a bare string.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Status {
    /// The skill returned an output.
    Ok,
    /// The skill failed on its own terms: it returned an error body, or its image could
    /// not be built from its sources (code `build_failed`).
    SkillError,
    /// The deadline passed; the container was killed.
    Timeout,
    /// The container was killed for exceeding its memory limit.
    MemoryLimit,
    /// stdout exceeded the output limit; the container was killed.
    OutputLimit,
    /// stdout held something other than well-formed frames, or no result.
    ProtocolError,
    /// The skill exited without a result, not for any reason above.
    Crashed,
    /// Refused before any container existed: unknown skill or action, bad arguments, bad
    /// options.
    Rejected,
    /// The engine or the host failed; nothing is known about the skill's answer.
    InfrastructureError,
}

impl Status {
    /// The CLI exit code for this status.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => exit_code::OK,
            Status::Rejected => exit_code::USAGE,
            Status::InfrastructureError => exit_code::INFRASTRUCTURE,
            Status::SkillError
            | Status::Timeout
            | Status::MemoryLimit
            | Status::OutputLimit
            | Status::ProtocolError
            | Status::Crashed => exit_code::SKILL_FAILED,
        }
    }

    /// The name used in JSON, e.g. `memory_limit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::SkillError => "skill_error",
            Status::Timeout => "timeout",
            Status::MemoryLimit => "memory_limit",
            Status::OutputLimit => "output_limit",
            Status::ProtocolError => "protocol_error",
            Status::Crashed => "crashed",
            Status::Rejected => "rejected",
            Status::InfrastructureError => "infrastructure_error",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which way an invocation was served (the result's `path`). Every path gives the same
/// result model and the same limits, except where [`InvocationPath::Native`] says
/// otherwise.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum InvocationPath {
    /// A container created, started and removed for this invocation alone. Also the
    /// path of a refusal, which ran nothing.
    #[default]
    Cold,
    /// A container made ahead of time and used once: as fresh as cold.
    Prewarmed,
    /// A long-running serve-mode worker that may have answered earlier requests.
    Warm,
    /// In the host's own process, through the skill's native library: **no sandbox**.
    Native,
    /// Inside a session: a fresh container with the session's workspace (`files`
    /// sessions), or the session's own worker (`process` sessions).
    Session,
    /// A container that served earlier calls of the skill, one at a time, and was reset
    /// after each (every process killed, every writable place emptied, IPC objects
    /// removed) before serving this one: nothing of an earlier call carries. Opt-in per
    /// skill (`run.recycle`).
    Recycled,
}

impl InvocationPath {
    /// The name used in JSON, e.g. `prewarmed`.
    pub fn as_str(self) -> &'static str {
        match self {
            InvocationPath::Cold => "cold",
            InvocationPath::Prewarmed => "prewarmed",
            InvocationPath::Warm => "warm",
            InvocationPath::Native => "native",
            InvocationPath::Session => "session",
            InvocationPath::Recycled => "recycled",
        }
    }
}

/// Why an invocation did not succeed: the skill's own error body, or one the host made
/// (its code is then one of [`crate::codes`]).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InvocationError {
    /// A stable, machine-readable code, e.g. `timeout` or a skill's own `not_found`.
    pub code: String,
    /// What happened, for people.
    pub message: String,
    /// Structured details a skill attached to its error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl InvocationError {
    /// An error with no details.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        InvocationError {
            code: code.into(),
            message: message.into(),
            details: None,
        }
    }

    /// The same error with structured details.
    pub fn with_details(mut self, details: Option<Value>) -> Self {
        self.details = details;
        self
    }
}

/// Measurements of one invocation.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes the skill wrote to stdout.
    pub stdout_bytes: u64,
    /// Bytes the skill wrote to stderr (kept or not).
    pub stderr_bytes: u64,
    /// Progress frames received.
    pub progress_frames: u64,
    /// Milliseconds from the request to a started container (or a free warm worker).
    pub startup_ms: u64,
    /// The most memory the container's cgroup was charged at once (the skill, its
    /// children, their page cache), read by skillhost's init as the skill ended. `None`
    /// where no init reported: a kill by the host, the warm and native paths, images
    /// built without the init.
    pub peak_memory_bytes: Option<u64>,
}

/// The result of one invocation.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InvocationResult {
    /// This invocation's id, also the request id the skill saw and the container's
    /// `io.skillhost.invocation` label.
    pub id: String,
    /// The skill asked for.
    pub skill: String,
    /// The action asked for.
    pub action: String,
    /// `skill-<name>:<hash>`, when an image was resolved.
    pub image: Option<String>,
    /// How it ended.
    pub status: Status,
    /// How it was served; `cold` also for refusals, which ran nothing.
    pub path: InvocationPath,
    /// The skill's output, when `status` is `ok`.
    pub output: Option<Value>,
    /// Why it did not succeed, for every status but `ok`.
    pub error: Option<InvocationError>,
    /// The container's exit code, when it ran and its exit is known.
    pub exit_code: Option<i64>,
    /// Whether the kernel killed a process of the container for memory, even when the
    /// skill still answered.
    pub oom_killed: bool,
    /// Milliseconds from the call to its result.
    pub duration_ms: u64,
    /// stderr, lossily decoded, up to the host's log limit.
    pub logs: String,
    /// Whether stderr went past the log limit and was cut.
    pub logs_truncated: bool,
    /// Measurements.
    pub stats: Stats,
    /// For a skill with an egress allowlist (`run.network.egress`), run in a container:
    /// what it was allowed to reach. Absent for every other skill and for native calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Egress>,
    /// For a call made in a session: which, and whether the session's in-memory state was
    /// lost. Absent for every other call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionCall>,
}

/// What a call made in a session says of it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionCall {
    /// The session's id.
    pub id: String,
    /// True when this call cost a `process` session its process (a timeout, the memory
    /// limit, a crash, a broken protocol): the next call starts a new one, with the
    /// session's files but none of its variables. Never true in a `files` session.
    pub state_reset: bool,
}

impl SessionCall {
    /// A call in session `id`.
    pub fn new(id: impl Into<String>, state_reset: bool) -> Self {
        SessionCall {
            id: id.into(),
            state_reset,
        }
    }
}

/// The network a skill with an egress allowlist had on one call.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Egress {
    /// The destinations the proxy admitted, `host:port` (a leading `*.` for every name
    /// under one), as the manifest lists them; nothing else was reachable.
    pub allowed: Vec<String>,
    /// What the proxy refused this call, by destination: why a request of the skill got
    /// `403 Filtered`. Empty when nothing was refused (or the proxy's log could not be
    /// read; the host logs why).
    #[serde(default)]
    pub denied: Vec<Denial>,
}

impl Egress {
    /// The network of a call allowed `allowed`, with nothing denied yet.
    pub fn new(allowed: Vec<String>) -> Self {
        Egress {
            allowed,
            denied: Vec::new(),
        }
    }
}

/// Requests the egress proxy refused for one destination.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Denial {
    /// What the skill asked to reach, `host:port`, lower-cased.
    pub destination: String,
    /// How many of its requests there the proxy refused.
    pub count: u64,
}

impl Denial {
    /// `count` refusals of `destination`.
    pub fn new(destination: String, count: u64) -> Self {
        Denial { destination, count }
    }
}

impl InvocationResult {
    /// A result for invocation `id` that has not run yet: `rejected` with no error, on
    /// the cold path, until the host fills it in.
    pub fn new(id: impl Into<String>, skill: impl Into<String>, action: impl Into<String>) -> Self {
        InvocationResult {
            id: id.into(),
            skill: skill.into(),
            action: action.into(),
            image: None,
            status: Status::Rejected,
            path: InvocationPath::Cold,
            output: None,
            error: None,
            exit_code: None,
            oom_killed: false,
            duration_ms: 0,
            logs: String::new(),
            logs_truncated: false,
            stats: Stats::default(),
            egress: None,
            session: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_serialize_as_their_names_and_map_to_exit_codes() {
        let all = [
            (Status::Ok, 0),
            (Status::SkillError, 1),
            (Status::Timeout, 1),
            (Status::MemoryLimit, 1),
            (Status::OutputLimit, 1),
            (Status::ProtocolError, 1),
            (Status::Crashed, 1),
            (Status::Rejected, 2),
            (Status::InfrastructureError, 3),
        ];
        for (status, exit) in all {
            let json = serde_json::to_value(status).unwrap();
            assert_eq!(json, Value::String(status.as_str().into()));
            assert_eq!(serde_json::from_value::<Status>(json).unwrap(), status);
            assert_eq!(status.exit_code(), exit, "{status}");
        }
    }

    #[test]
    fn a_result_round_trips_with_the_documented_fields_in_order() {
        let mut result = InvocationResult::new("i", "echo", "say");
        result.status = Status::Ok;
        result.output = Some(serde_json::json!({"text": "hi"}));
        result.egress = Some(Egress::new(vec!["api.example.com:443".into()]));
        let text = serde_json::to_string(&result).unwrap();
        let keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(&text)
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let mut expected = [
            "id",
            "skill",
            "action",
            "image",
            "status",
            "path",
            "output",
            "error",
            "exit_code",
            "oom_killed",
            "duration_ms",
            "logs",
            "logs_truncated",
            "stats",
            "egress",
        ]
        .map(String::from)
        .to_vec();
        // serde_json's Map sorts its keys; the order written is checked on the text.
        let mut at = 0;
        for key in &expected {
            let found = text[at..].find(&format!("\"{key}\":")).map(|i| i + at);
            assert!(found.is_some(), "{key} missing or out of order in {text}");
            at = found.unwrap_or(at);
        }
        expected.sort();
        assert_eq!(keys, expected);
        let back: InvocationResult = serde_json::from_str(&text).unwrap();
        assert_eq!(back, result);
    }
}
