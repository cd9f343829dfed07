//! What a caller asks for and what it gets back: the invocation result of DESIGN.md.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use skill_sdk::Progress;

use crate::exit_code;

/// How an invocation ended. Every failure has its own status; none is a bare string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The skill returned an output.
    Ok,
    /// The skill returned an error body.
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
    /// Refused before any container existed: unknown action, bad arguments, bad options.
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
            _ => exit_code::SKILL_FAILED,
        }
    }
}

/// Which way an invocation was served. Every path gives the same result model and the
/// same limits, except where [`Path::Native`] says otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Path {
    /// A container created, started and removed for this invocation alone.
    #[default]
    Cold,
    /// A container created ahead of time and never started before: as fresh as cold.
    Prewarmed,
    /// A long-running serve-mode worker that may have answered earlier requests.
    Warm,
    /// In the host's own process, through the skill's native library: **no sandbox**.
    Native,
}

/// Why an invocation did not succeed: the skill's own error body, or one the host made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InvocationError {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl InvocationError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        InvocationError {
            code: code.into(),
            message: message.into(),
            details: None,
        }
    }
}

/// Measurements of one invocation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InvocationResult {
    pub id: String,
    pub skill: String,
    pub action: String,
    /// `skill-<name>:<hash>`, when an image was resolved.
    pub image: Option<String>,
    pub status: Status,
    /// How it was served; `cold` also for refusals, which ran nothing.
    pub path: Path,
    /// The skill's output, when `status` is `ok`.
    pub output: Option<Value>,
    pub error: Option<InvocationError>,
    /// The container's exit code, when it ran.
    pub exit_code: Option<i64>,
    /// Whether the kernel killed a process of the container for memory, even when the
    /// skill still answered.
    pub oom_killed: bool,
    pub duration_ms: u64,
    /// stderr, lossily decoded, up to the log limit.
    pub logs: String,
    pub logs_truncated: bool,
    pub stats: Stats,
}

/// Receives progress frames while an action runs.
pub type ProgressCallback = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Per-invocation choices, each within what the manifest allows.
#[derive(Clone, Default)]
pub struct InvokeOptions {
    /// A deadline shorter than the manifest's timeout (never longer).
    pub timeout: Option<Duration>,
    /// Environment variables; each name must be in the manifest's `run.env`.
    pub env: BTreeMap<String, String>,
    /// A host directory mounted at `/workspace`, when the manifest declares `run.workspace`.
    pub workspace: Option<PathBuf>,
    /// Called with every progress frame, as it arrives.
    pub on_progress: Option<ProgressCallback>,
    /// Run in process through the skill's native library, unsandboxed. Refused unless
    /// the host config allows native mode and the manifest names a library.
    pub native: bool,
}

impl std::fmt::Debug for InvokeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvokeOptions")
            .field("timeout", &self.timeout)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("workspace", &self.workspace)
            .field("on_progress", &self.on_progress.is_some())
            .field("native", &self.native)
            .finish()
    }
}
