//! One invocation's data path, stage by stage: [`admission`] checks the call against the
//! manifest with no engine, [`images`] resolves the skill's image, [`route`] chooses how
//! the call is served and runs it, and [`classify`] turns what was observed into the
//! result, which [`telemetry`] counts. [`crate::Host::invoke_with`] strings them together.

pub(crate) mod admission;
pub(crate) mod classify;
pub(crate) mod images;
pub(crate) mod route;
pub(crate) mod schemas;
pub(crate) mod telemetry;
pub(crate) mod workspace;
pub(crate) mod workspace_mount;
pub(crate) mod workspace_sweep;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use images::ImageState;

use crate::vocab::ProgressCallback;

/// Per-invocation choices, each within what the manifest allows: the default, then a
/// method per choice, e.g. `InvokeOptions::default().timeout(Duration::from_secs(5))`.
/// Fields may be added in any release, so it is not built as a struct literal outside
/// this crate.
#[derive(Clone, Default)]
#[non_exhaustive]
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
    /// The invocation's id, for a caller that names it before it runs (the service's
    /// asynchronous invocations). Default: a new UUID.
    pub id: Option<String>,
    /// Who makes the call (the service's token name). Under
    /// [`RecyclePolicy::PerCaller`], recycled containers serve one caller only.
    pub caller: Option<String>,
}

/// Whether plain calls of skills with `run.recycle` reuse containers, and whose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RecyclePolicy {
    /// A recycled container serves any caller's calls of its skill: the reset between
    /// calls is what keeps them apart.
    #[default]
    Shared,
    /// A recycled container serves one caller's calls (by
    /// [`InvokeOptions::caller`]), so two tokens never meet in one container even if a
    /// reset missed something.
    PerCaller,
    /// No container is reused: every call has its own.
    Off,
}

impl std::str::FromStr for RecyclePolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "shared" => Ok(RecyclePolicy::Shared),
            "per-caller" => Ok(RecyclePolicy::PerCaller),
            "off" => Ok(RecyclePolicy::Off),
            other => Err(format!(
                "{other:?} is not a recycle policy: give shared, per-caller or off"
            )),
        }
    }
}

impl InvokeOptions {
    /// Sets [`InvokeOptions::timeout`].
    pub fn timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.timeout = timeout.into();
        self
    }

    /// Sets [`InvokeOptions::env`].
    pub fn env(mut self, env: BTreeMap<String, String>) -> Self {
        self.env = env;
        self
    }

    /// Sets [`InvokeOptions::workspace`].
    pub fn workspace(mut self, dir: impl Into<Option<PathBuf>>) -> Self {
        self.workspace = dir.into();
        self
    }

    /// Sets [`InvokeOptions::on_progress`].
    pub fn on_progress(mut self, callback: ProgressCallback) -> Self {
        self.on_progress = Some(callback);
        self
    }

    /// Sets [`InvokeOptions::native`].
    pub fn native(mut self, native: bool) -> Self {
        self.native = native;
        self
    }

    /// Sets [`InvokeOptions::id`].
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets [`InvokeOptions::caller`].
    pub fn caller(mut self, caller: impl Into<String>) -> Self {
        self.caller = Some(caller.into());
        self
    }
}

impl std::fmt::Debug for InvokeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvokeOptions")
            .field("timeout", &self.timeout)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("workspace", &self.workspace)
            .field("on_progress", &self.on_progress.is_some())
            .field("native", &self.native)
            .field("id", &self.id)
            .field("caller", &self.caller)
            .finish()
    }
}
