//! The `skill.yaml` schema. Every struct refuses unknown keys: a misspelt limit must never
//! silently fall back to a default.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::egress::Destination;
use super::units::{ByteSize, Cpus, HumanDuration, InvalidValue, MIB};

/// A parsed and validated skill manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `[a-z][a-z0-9-]*`; the image repository is `skill-<name>`.
    pub name: String,
    /// The skill's version, semver.
    pub version: semver::Version,
    /// Requirement on the host's protocol version, e.g. `^1`.
    #[schemars(with = "String")]
    pub protocol: semver::VersionReq,
    /// What the skill does, for people and for tool listings.
    #[serde(default)]
    pub description: String,
    /// How the image is built.
    #[serde(default)]
    pub build: Build,
    /// How each action's container runs.
    #[serde(default)]
    pub run: Run,
    /// The actions, by name; at least one.
    pub actions: BTreeMap<String, Action>,
    /// Example calls, with what they should return.
    #[serde(default)]
    pub examples: Vec<Example>,
    /// Where a trusted host finds this skill built as a native library (see
    /// [`Native`]). Unsandboxed; used only when the host config and the caller both ask.
    #[serde(default)]
    pub native: Option<Native>,
}

/// The skill built as a `cdylib` exporting skill-sdk's native C ABI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Native {
    /// Path of the shared library, relative to the skill directory.
    pub library: PathBuf,
}

/// How the image is built. Everything here feeds the content hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// Path of the Dockerfile inside the skill directory.
    #[serde(default = "default_dockerfile")]
    pub dockerfile: PathBuf,
    /// Docker build args.
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// Extra paths, relative to the skill directory, whose content feeds the build.
    #[serde(default)]
    pub inputs: Vec<PathBuf>,
    /// A host-side command run in the skill directory before the image build.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Environment for `command`, on top of the host's.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Files produced by `command`, staged into the build context: context path to
    /// host path (relative to the skill directory).
    #[serde(default)]
    pub outputs: BTreeMap<PathBuf, PathBuf>,
}

/// How each action's container runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Run {
    /// The user the skill runs as; never root.
    #[serde(default)]
    pub user: User,
    /// Resource limits of each call.
    #[serde(default)]
    pub limits: Limits,
    /// Network access.
    #[serde(default)]
    pub network: Network,
    /// Environment variable names a caller may pass; nothing else reaches the container.
    #[serde(default)]
    pub env: Vec<String>,
    /// Whether a caller may mount a host directory at `/workspace`, and how.
    #[serde(default)]
    pub workspace: WorkspaceMode,
    /// An OCI runtime the engine knows, e.g. `runsc` (gVisor) for a kernel of the
    /// skill's own; the engine's default (runc) when absent.
    #[serde(default)]
    pub runtime: Option<String>,
    /// `oneshot` (the default: a fresh container per invocation) or `serve`.
    #[serde(default)]
    pub mode: Mode,
    /// One-shot mode: containers created ahead and never started, each used exactly once,
    /// so an invocation skips the create. 0 (the default) prewarms none.
    #[serde(default)]
    pub prewarm: u32,
    /// One-shot mode: the skill's own process starts with its container, before the
    /// request (an interpreter with its imports done, waiting on stdin), so a prewarmed
    /// container answers without starting it. Still one container per request, which
    /// no request entered before. Needs skillhost's init in the image; ignored without.
    #[serde(default)]
    pub prestart: bool,
    /// Serve mode's worker limits.
    #[serde(default)]
    pub serve: Serve,
    /// One-shot mode: plain calls (no `env`, no workspace, no session) reuse a container,
    /// one call at a time, which skillhost's init resets after each call (every process
    /// killed, every writable place emptied, IPC objects removed); a container that
    /// cannot be shown clean is destroyed. Absent, every call has a container of its own.
    #[serde(default)]
    pub recycle: Option<Recycle>,
    /// Whether and how the skill takes sessions; absent, it takes none.
    #[serde(default)]
    pub session: Option<SessionSettings>,
}

/// `run.session`: how a session of the skill keeps what its calls leave behind, and for
/// how long. Every container of a session is hardened and limited as a plain call's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    /// `files` or `process`.
    pub mode: SessionMode,
    /// A session no call or file operation touched for this long ends; a caller may ask
    /// for less.
    #[serde(default = "default_session_idle")]
    pub idle_timeout: HumanDuration,
    /// The longest idle timeout a caller may ask for; `idle_timeout` when absent.
    #[serde(default)]
    pub max_idle_timeout: Option<HumanDuration>,
    /// A session ends this long after it was made, however busy; a caller may ask for
    /// less.
    #[serde(default = "default_session_lifetime")]
    pub lifetime: HumanDuration,
    /// The longest lifetime a caller may ask for; `lifetime` when absent.
    #[serde(default)]
    pub max_lifetime: Option<HumanDuration>,
    /// The workspace's size: the kernel refuses writes past it (`ENOSPC`).
    #[serde(default = "default_session_workspace")]
    pub workspace: ByteSize,
}

impl SessionSettings {
    /// The longest idle timeout a caller may ask for.
    pub fn idle_ceiling(&self) -> HumanDuration {
        self.max_idle_timeout.unwrap_or(self.idle_timeout)
    }

    /// The longest lifetime a caller may ask for.
    pub fn lifetime_ceiling(&self) -> HumanDuration {
        self.max_lifetime.unwrap_or(self.lifetime)
    }
}

/// What persists across the calls of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionMode {
    /// Files: each call is a fresh container with the session's workspace at
    /// `/workspace`; processes end with their call.
    Files,
    /// Files and memory: the session owns one container in which the skill runs as a
    /// long-lived worker (serve mode) for this session alone.
    Process,
}

impl SessionMode {
    /// `files` or `process`.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionMode::Files => "files",
            SessionMode::Process => "process",
        }
    }
}

fn default_session_idle() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(600))
}
fn default_session_lifetime() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(3600))
}
fn default_session_workspace() -> ByteSize {
    ByteSize(64 * MIB)
}

/// How invocations map to containers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A fresh container per invocation: nothing carries over.
    #[default]
    Oneshot,
    /// Long-running workers answer many requests each. **State can carry between
    /// requests** (memory, /tmp, child processes) of different callers: use it only for
    /// skills whose actions keep none, or where sharing it is acceptable.
    Serve,
}

/// Limits on serve-mode workers. A worker that timed out, hit its memory limit or broke
/// the protocol is discarded at once and never reused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Serve {
    /// Workers kept for the skill; each answers one request at a time.
    #[serde(default = "default_workers")]
    pub workers: u32,
    /// A worker is retired after this many requests.
    #[serde(default = "default_max_requests")]
    pub max_requests: u64,
    /// A worker idle this long is retired.
    #[serde(default = "default_idle_ttl")]
    pub idle_ttl: HumanDuration,
    /// A worker older than this is retired after its current request.
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime: HumanDuration,
}

/// `run.recycle`: how many containers a skill's recycled calls share, and for how long
/// each serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Recycle {
    /// Containers kept for the skill; each serves one call at a time, and a call that
    /// finds them all busy waits for one.
    #[serde(default = "default_recycle_containers")]
    pub containers: u32,
    /// A container is retired after this many calls.
    #[serde(default = "default_recycle_uses")]
    pub uses: u64,
    /// A container older than this is retired after its current call.
    #[serde(default = "default_max_lifetime")]
    pub age: HumanDuration,
    /// A container idle this long is retired.
    #[serde(default = "default_idle_ttl")]
    pub idle: HumanDuration,
}

impl Default for Recycle {
    fn default() -> Self {
        Recycle {
            containers: default_recycle_containers(),
            uses: default_recycle_uses(),
            age: default_max_lifetime(),
            idle: default_idle_ttl(),
        }
    }
}

impl Recycle {
    /// The same bounds in the words of a pool of reused containers.
    pub(crate) fn as_pool(&self) -> Serve {
        Serve {
            workers: self.containers,
            max_requests: self.uses,
            idle_ttl: self.idle,
            max_lifetime: self.age,
        }
    }
}

fn default_recycle_containers() -> u32 {
    4
}
fn default_recycle_uses() -> u64 {
    1_000
}

impl Default for Serve {
    fn default() -> Self {
        Serve {
            workers: default_workers(),
            max_requests: default_max_requests(),
            idle_ttl: default_idle_ttl(),
            max_lifetime: default_max_lifetime(),
        }
    }
}

fn default_workers() -> u32 {
    2
}
fn default_max_requests() -> u64 {
    10_000
}
fn default_idle_ttl() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(60))
}
fn default_max_lifetime() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(600))
}

/// `none` (the default: no host directory is ever mounted), `ro` or `rw`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceMode {
    /// No directory may be mounted.
    #[default]
    None,
    /// A caller's directory may be mounted read-only.
    Ro,
    /// A caller's directory may be mounted read-write.
    Rw,
}

/// Resource limits for one invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// CPUs, as Docker's `--cpus`.
    #[serde(default = "default_cpus")]
    pub cpus: Cpus,
    /// Memory, swap included (there is none).
    #[serde(default = "default_memory")]
    pub memory: ByteSize,
    /// Processes and threads.
    #[serde(default = "default_pids")]
    pub pids: i64,
    /// The longest a call may run; a caller may ask for less.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Largest stdout the host reads before killing the container.
    #[serde(default = "default_output")]
    pub output: ByteSize,
    /// Open files per process.
    #[serde(default = "default_nofile")]
    pub nofile: i64,
    /// Writable tmpfs mounts, path to size; the root filesystem itself is read-only.
    #[serde(default = "default_tmpfs")]
    pub tmpfs: BTreeMap<String, ByteSize>,
}

/// `none` (the default), `bridge`, or `{egress: [host:port, ...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Network {
    /// No network at all: only a loopback interface.
    #[default]
    None,
    /// Docker's default bridge: **unrestricted**, everything the host can reach.
    Bridge,
    /// Only these destinations, through the host's egress proxy: the container sits on
    /// an internal network with no route out, and gets `HTTP_PROXY`/`HTTPS_PROXY`.
    Egress(Vec<Destination>),
}

impl Network {
    /// Whether the skill goes out through an egress proxy.
    pub fn is_egress(&self) -> bool {
        matches!(self, Network::Egress(_))
    }
}

impl Serialize for Network {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Network::None => serializer.serialize_str("none"),
            Network::Bridge => serializer.serialize_str("bridge"),
            Network::Egress(destinations) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("egress", destinations)?;
                map.end()
            }
        }
    }
}

/// A name, or a map of one key: YAML's own enum syntax is tags, which nobody writes.
impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NetworkVisitor;
        const EXPECTED: &str = "none, bridge or {egress: [host:port, ...]}";
        impl<'de> de::Visitor<'de> for NetworkVisitor {
            type Value = Network;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Network, E> {
                match v {
                    "none" => Ok(Network::None),
                    "bridge" => Ok(Network::Bridge),
                    other => Err(E::custom(format!(
                        "unknown network {other:?}, expected {EXPECTED}"
                    ))),
                }
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Network, A::Error> {
                let key: Option<String> = map.next_key()?;
                match key.as_deref() {
                    Some("egress") => {}
                    Some(other) => {
                        return Err(de::Error::custom(format!(
                            "unknown key {other:?}, expected egress"
                        )))
                    }
                    None => return Err(de::Error::custom(format!("expected {EXPECTED}"))),
                }
                let destinations: Vec<Destination> = map.next_value()?;
                if let Some(other) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "unknown key {other:?} beside egress"
                    )));
                }
                Ok(Network::Egress(destinations))
            }
        }
        deserializer.deserialize_any(NetworkVisitor)
    }
}

impl JsonSchema for Network {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Network".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let destination = generator.subschema_for::<Destination>();
        schemars::json_schema!({
            "description": "`none` (no network, the default), `bridge` (Docker's default bridge: everything the host can reach), or `{egress: [host:port, ...]}` (only those destinations, through the host's egress proxy).",
            "oneOf": [
                {"type": "string", "enum": ["none", "bridge"]},
                {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["egress"],
                    "properties": {
                        "egress": {"type": "array", "minItems": 1, "maxItems": 64, "items": destination}
                    }
                }
            ]
        })
    }
}

/// `uid[:gid]` or `name[:group]`: anything but root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User(pub String);

impl JsonSchema for User {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "User".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`uid[:gid]` or `name[:group]`; never root (0 or `root`).",
            "anyOf": [
                {"type": "integer", "minimum": 1},
                {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$"}
            ]
        })
    }
}

/// One action a skill offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// What the action does.
    #[serde(default)]
    pub description: String,
    /// JSON Schema the arguments must satisfy.
    #[serde(default = "default_input_schema")]
    pub input: Value,
    /// JSON Schema of the output, for documentation and `skillhost test`.
    #[serde(default)]
    pub output: Option<Value>,
}

/// An example invocation, run by `skillhost test`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Example {
    /// A short name for the example in `skillhost test`'s report; by default its action
    /// and position.
    #[serde(default)]
    pub name: Option<String>,
    /// The action called.
    pub action: String,
    /// Its arguments; `{}` when absent.
    #[serde(default = "empty_object")]
    pub args: Value,
    /// The exact output expected, if any.
    #[serde(default)]
    pub expect: Option<Value>,
    /// The error code expected instead of an output.
    #[serde(default)]
    pub expect_error: Option<String>,
    /// How `expect` is compared with the output.
    #[serde(default, rename = "match")]
    pub matching: Matching,
}

/// How an example's `expect` is compared with the skill's output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Matching {
    /// The output equals `expect`.
    #[default]
    Exact,
    /// Every field `expect` names is in the output with that value, at any depth; arrays
    /// match element by element and must be as long; other fields of the output are
    /// ignored.
    Subset,
}

/// nobody:nogroup, which exists in every Debian image and needs nothing in `scratch`.
pub const DEFAULT_USER: &str = "65534:65534";

fn default_dockerfile() -> PathBuf {
    PathBuf::from("Dockerfile")
}
fn default_cpus() -> Cpus {
    Cpus(1.0)
}
fn default_memory() -> ByteSize {
    ByteSize(256 * MIB)
}
fn default_pids() -> i64 {
    64
}
fn default_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}
fn default_output() -> ByteSize {
    ByteSize(MIB)
}
fn default_nofile() -> i64 {
    1024
}
fn default_tmpfs() -> BTreeMap<String, ByteSize> {
    BTreeMap::from([("/tmp".to_string(), ByteSize(64 * MIB))])
}
fn default_input_schema() -> Value {
    serde_json::json!({"type": "object"})
}
fn empty_object() -> Value {
    serde_json::json!({})
}

impl Default for Build {
    fn default() -> Self {
        Build {
            dockerfile: default_dockerfile(),
            args: BTreeMap::new(),
            inputs: Vec::new(),
            command: None,
            env: BTreeMap::new(),
            outputs: BTreeMap::new(),
        }
    }
}

impl Default for Run {
    fn default() -> Self {
        Run {
            user: User::default(),
            limits: Limits::default(),
            network: Network::None,
            env: Vec::new(),
            workspace: WorkspaceMode::None,
            runtime: None,
            mode: Mode::Oneshot,
            prewarm: 0,
            prestart: false,
            serve: Serve::default(),
            recycle: None,
            session: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpus: default_cpus(),
            memory: default_memory(),
            pids: default_pids(),
            timeout: default_timeout(),
            output: default_output(),
            nofile: default_nofile(),
            tmpfs: default_tmpfs(),
        }
    }
}

impl Default for User {
    fn default() -> Self {
        User(DEFAULT_USER.to_string())
    }
}

impl User {
    /// Refuse root by name or id, for the user and for the group.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let text = text.trim();
        if text.is_empty() {
            return Err(InvalidValue(
                "user is empty: give uid[:gid] such as \"10001:10001\"".into(),
            ));
        }
        let mut parts = text.split(':');
        let (user, group) = (parts.next().unwrap_or_default(), parts.next());
        if parts.next().is_some() {
            return Err(InvalidValue(format!(
                "{text:?} is not uid[:gid] or name[:group]"
            )));
        }
        for (what, part) in [("user", Some(user)), ("group", group)] {
            let Some(part) = part else { continue };
            let numeric = part.chars().all(|c| c.is_ascii_digit());
            if part == "root" || (numeric && part.parse::<u64>().ok() == Some(0)) {
                return Err(InvalidValue(format!(
                    "{what} {part:?} is root: skills never run as root, use a uid such as 10001"
                )));
            }
            let valid_name = part
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if !numeric && !valid_name {
                return Err(InvalidValue(format!(
                    "{what} {part:?} is neither a numeric id nor a valid name"
                )));
            }
            if numeric && part.parse::<u32>().is_err() {
                return Err(InvalidValue(format!("{what} id {part:?} is out of range")));
            }
        }
        Ok(User(text.to_string()))
    }
}

impl fmt::Display for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for User {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A bare uid is a YAML integer; accept it like the string form.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Id(u64),
            Text(String),
        }
        let text = match Raw::deserialize(d)
            .map_err(|_| de::Error::custom("expected a user as uid[:gid] or name[:group]"))?
        {
            Raw::Id(id) => id.to_string(),
            Raw::Text(text) => text,
        };
        User::parse(&text).map_err(de::Error::custom)
    }
}

impl Serialize for User {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}
