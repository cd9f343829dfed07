//! How a service is set up: [`ServeSettings`] is one layer of optional keys (flags,
//! environment, or `skillhost.toml`), [`ServeSettings::over`] stacks layers, and
//! [`ServeSettings::resolve`] fills what no layer set with the defaults into a
//! [`ServeConfig`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::invoke::RecyclePolicy;
use crate::manifest::units::{ByteSize, HumanDuration, MIB};

/// One layer of settings; every key is optional. The keys of `skillhost.toml` are these
/// fields' names in kebab-case, e.g. `max-in-flight = 16`.
///
/// Fields may be added in any release: outside this crate a layer starts from
/// [`ServeSettings::default`] and sets the keys it has.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub struct ServeSettings {
    /// The unix socket to listen on.
    pub socket: Option<PathBuf>,
    /// A TCP address to listen on too, e.g. `127.0.0.1:8080`; needs `tokens`.
    pub listen: Option<SocketAddr>,
    /// The file of bearer tokens TCP callers must present (see `docs/service.md`).
    pub tokens: Option<PathBuf>,
    /// Directories searched for skills.
    pub skills_dirs: Option<Vec<PathBuf>>,
    /// Build a missing image on first use (default true); false for production hosts.
    pub build: Option<bool>,
    /// Run only the images of this lock file: no source is read, nothing is built.
    pub locked: Option<PathBuf>,
    /// Before taking calls, pull every locked image missing here by its digest (needs
    /// `locked`), so a fresh node answers only once it holds what it runs.
    pub pull: Option<bool>,
    /// Pull from this registry (a mirror, `host:port`) instead of the one the lock
    /// records (needs `pull`).
    pub mirror: Option<String>,
    /// Calls running at once, over all skills.
    pub max_in_flight: Option<usize>,
    /// Calls running at once for one skill.
    pub max_in_flight_per_skill: Option<usize>,
    /// Calls that may wait for a free slot; beyond it a call is refused at once (429).
    pub queue: Option<usize>,
    /// How long a call may wait in the queue before it is refused (429).
    pub queue_wait: Option<HumanDuration>,
    /// Largest accepted request body.
    pub max_body: Option<ByteSize>,
    /// How long a client may take to send a request's headers, and how long an idle
    /// connection is kept.
    pub header_timeout: Option<HumanDuration>,
    /// How long a client may take to send a request's whole body, from its headers on.
    pub body_timeout: Option<HumanDuration>,
    /// Connections open at once, over every listener (default: what fits under the
    /// process's open file limit).
    pub max_connections: Option<usize>,
    /// Connections open at once from one peer (a TCP address; the unix socket's callers
    /// count as one).
    pub max_connections_per_peer: Option<usize>,
    /// How long in-flight calls may run on after a shutdown signal before they are
    /// cancelled.
    pub grace: Option<HumanDuration>,
    /// How long the listeners stay open after a shutdown signal, answering new calls 503
    /// `host_shutting_down` with a Retry-After, before they close.
    pub drain_notice: Option<HumanDuration>,
    /// How long a finished asynchronous invocation's result is kept.
    pub keep_results: Option<HumanDuration>,
    /// Sessions open at once, over all tokens.
    pub max_sessions: Option<usize>,
    /// Sessions one token may have open at once.
    pub max_sessions_per_token: Option<usize>,
    /// Largest file a session's upload or download may move.
    pub max_file: Option<ByteSize>,
    /// Most asynchronous invocations remembered at once, running or finished.
    pub max_results: Option<usize>,
    /// Prewarmed containers are started up to skillhost's init (default true).
    pub prewarm_started: Option<bool>,
    /// Prewarmed containers per skill, over the manifests' `run.prewarm`.
    pub prewarm: Option<BTreeMap<String, u32>>,
    /// The network egress proxies reach the outside through (default `bridge`).
    pub egress_network: Option<String>,
    /// Browser origins whose requests `/mcp` answers, e.g. `https://app.example.com:443`
    /// (default none: a request with an `Origin` header is refused).
    pub mcp_allowed_origins: Option<Vec<String>>,
    /// Whose calls a recycled container serves: `shared` (any token's, the default),
    /// `per-caller` (one token's) or `off` (no container is reused).
    pub recycle: Option<RecyclePolicy>,
}

/// A settings file that could not be used, naming it and what was wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the settings file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the documented keys.
    #[error("the settings file {path} is not valid: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the line and the key.
        message: String,
    },
    /// A value is outside what the service accepts.
    #[error("setting {key}: {message}")]
    Value {
        /// The key, as in `skillhost.toml`.
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

impl ServeSettings {
    /// Read a `skillhost.toml`.
    pub fn from_file(path: &Path) -> Result<ServeSettings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        ServeSettings::from_toml(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    fn from_toml(text: &str) -> Result<ServeSettings, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
    }

    /// This layer over `lower`: each key this layer sets wins.
    pub fn over(self, lower: ServeSettings) -> ServeSettings {
        ServeSettings {
            socket: self.socket.or(lower.socket),
            listen: self.listen.or(lower.listen),
            tokens: self.tokens.or(lower.tokens),
            skills_dirs: self.skills_dirs.or(lower.skills_dirs),
            build: self.build.or(lower.build),
            locked: self.locked.or(lower.locked),
            pull: self.pull.or(lower.pull),
            mirror: self.mirror.or(lower.mirror),
            max_in_flight: self.max_in_flight.or(lower.max_in_flight),
            max_in_flight_per_skill: self
                .max_in_flight_per_skill
                .or(lower.max_in_flight_per_skill),
            queue: self.queue.or(lower.queue),
            queue_wait: self.queue_wait.or(lower.queue_wait),
            max_body: self.max_body.or(lower.max_body),
            header_timeout: self.header_timeout.or(lower.header_timeout),
            body_timeout: self.body_timeout.or(lower.body_timeout),
            max_connections: self.max_connections.or(lower.max_connections),
            max_connections_per_peer: self
                .max_connections_per_peer
                .or(lower.max_connections_per_peer),
            grace: self.grace.or(lower.grace),
            drain_notice: self.drain_notice.or(lower.drain_notice),
            keep_results: self.keep_results.or(lower.keep_results),
            max_sessions: self.max_sessions.or(lower.max_sessions),
            max_sessions_per_token: self.max_sessions_per_token.or(lower.max_sessions_per_token),
            max_file: self.max_file.or(lower.max_file),
            max_results: self.max_results.or(lower.max_results),
            prewarm_started: self.prewarm_started.or(lower.prewarm_started),
            prewarm: self.prewarm.or(lower.prewarm),
            egress_network: self.egress_network.or(lower.egress_network),
            mcp_allowed_origins: self.mcp_allowed_origins.or(lower.mcp_allowed_origins),
            recycle: self.recycle.or(lower.recycle),
        }
    }

    /// The settings with defaults for what no layer set, checked.
    pub fn resolve(self) -> Result<ServeConfig, ConfigError> {
        let positive = |key: &'static str, value: Option<usize>, default: usize| match value {
            Some(0) => Err(ConfigError::Value {
                key,
                message: "must be at least 1".into(),
            }),
            other => Ok(other.unwrap_or(default)),
        };
        if self.listen.is_some() && self.tokens.is_none() {
            return Err(ConfigError::Value {
                key: "listen",
                message: "a TCP listener needs a tokens file (--tokens): TCP callers must present a bearer token".into(),
            });
        }
        if self.pull == Some(true) && self.locked.is_none() {
            return Err(ConfigError::Value {
                key: "pull",
                message: "pulling takes a lock's images by their digests: give the lock (--locked)"
                    .into(),
            });
        }
        if self.mirror.is_some() && self.pull != Some(true) {
            return Err(ConfigError::Value {
                key: "mirror",
                message: "a mirror is where --pull pulls from: give --pull too".into(),
            });
        }
        let max_in_flight = positive("max-in-flight", self.max_in_flight, 16)?;
        let max_sessions = positive("max-sessions", self.max_sessions, 64)?;
        let duration = |value: Option<HumanDuration>, default: u64| {
            value.map_or(Duration::from_secs(default), |d| d.0)
        };
        Ok(ServeConfig {
            socket: self.socket.unwrap_or_else(default_socket),
            listen: self.listen,
            tokens: self.tokens,
            skills_dirs: self
                .skills_dirs
                .unwrap_or_else(|| vec![PathBuf::from("skills")]),
            build: self.build.unwrap_or(true),
            locked: self.locked,
            pull: self.pull.unwrap_or(false),
            mirror: self.mirror,
            max_in_flight,
            max_in_flight_per_skill: positive(
                "max-in-flight-per-skill",
                self.max_in_flight_per_skill,
                max_in_flight,
            )?,
            queue: self.queue.unwrap_or(64),
            queue_wait: duration(self.queue_wait, 5),
            max_body: self.max_body.map_or(2 * MIB, |b| b.0) as usize,
            header_timeout: duration(self.header_timeout, 10),
            body_timeout: duration(self.body_timeout, 30),
            max_connections: match self.max_connections {
                Some(0) => {
                    return Err(ConfigError::Value {
                        key: "max-connections",
                        message: "must be at least 1".into(),
                    })
                }
                other => other,
            },
            max_connections_per_peer: positive(
                "max-connections-per-peer",
                self.max_connections_per_peer,
                256,
            )?,
            grace: duration(self.grace, 30),
            drain_notice: duration(self.drain_notice, 1),
            keep_results: duration(self.keep_results, 600),
            max_results: positive("max-results", self.max_results, 1000)?,
            max_sessions,
            max_sessions_per_token: positive(
                "max-sessions-per-token",
                self.max_sessions_per_token,
                max_sessions,
            )?,
            max_file: self.max_file.map_or(256 * MIB, |b| b.0),
            prewarm_started: self.prewarm_started.unwrap_or(true),
            egress_network: self.egress_network.unwrap_or_else(|| "bridge".into()),
            prewarm: self.prewarm.unwrap_or_default(),
            mcp_allowed_origins: self.mcp_allowed_origins.unwrap_or_default(),
            recycle: self.recycle.unwrap_or_default(),
        })
    }
}

/// The unix socket used when none is given: in `$XDG_RUNTIME_DIR` when set, otherwise
/// in a directory of this user's under the system's temporary directory.
pub fn default_socket() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("skillhost/skillhost.sock"),
        _ => {
            // Other users share this directory: the socket's own directory is made
            // private, and its owner checked, when the socket is bound. Named by the uid,
            // which every process of the user has (`$USER` is unset under many service
            // managers and in containers), as the Python client names it.
            let uid = rustix::process::getuid().as_raw();
            std::env::temp_dir().join(format!("skillhost-{uid}/skillhost.sock"))
        }
    }
}

/// A service's settings, every one decided ([`ServeSettings::resolve`]). Fields may be
/// added in any release.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ServeConfig {
    /// The unix socket to listen on (mode 0600).
    pub socket: PathBuf,
    /// A TCP address to listen on too.
    pub listen: Option<SocketAddr>,
    /// The bearer tokens file, required with `listen`.
    pub tokens: Option<PathBuf>,
    /// Directories searched for skills.
    pub skills_dirs: Vec<PathBuf>,
    /// Build a missing image on first use.
    pub build: bool,
    /// The lock file whose images alone are run, when set.
    pub locked: Option<PathBuf>,
    /// Pull the locked images missing here before listening.
    pub pull: bool,
    /// The registry to pull from instead of the lock's.
    pub mirror: Option<String>,
    /// Calls running at once, over all skills.
    pub max_in_flight: usize,
    /// Calls running at once for one skill.
    pub max_in_flight_per_skill: usize,
    /// Calls that may wait for a free slot.
    pub queue: usize,
    /// How long a call may wait for one.
    pub queue_wait: Duration,
    /// Largest accepted request body, in bytes.
    pub max_body: usize,
    /// How long a client may take to send its headers; also the idle connection timeout.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's whole body.
    pub body_timeout: Duration,
    /// Connections open at once; `None` for what fits under the open file limit.
    pub max_connections: Option<usize>,
    /// Connections open at once from one peer.
    pub max_connections_per_peer: usize,
    /// How long in-flight calls may finish after a shutdown signal.
    pub grace: Duration,
    /// How long the listeners answer new calls 503 after a shutdown signal.
    pub drain_notice: Duration,
    /// How long a finished asynchronous result is kept.
    pub keep_results: Duration,
    /// Sessions open at once, over all tokens.
    pub max_sessions: usize,
    /// Sessions one token may have open at once.
    pub max_sessions_per_token: usize,
    /// Largest file a session's upload or download may move, in bytes.
    pub max_file: u64,
    /// Most asynchronous invocations remembered at once.
    pub max_results: usize,
    /// Start prewarmed containers up to skillhost's init.
    pub prewarm_started: bool,
    /// Prewarmed containers per skill, over the manifests' `run.prewarm`.
    pub prewarm: BTreeMap<String, u32>,
    /// The network egress proxies reach the outside through.
    pub egress_network: String,
    /// Browser origins whose requests `/mcp` answers.
    pub mcp_allowed_origins: Vec<String>,
    /// Whose calls a recycled container serves.
    pub recycle: RecyclePolicy,
}

impl Default for ServeConfig {
    fn default() -> Self {
        // The defaults have no invalid combination.
        match ServeSettings::default().resolve() {
            Ok(config) => config,
            Err(e) => unreachable!("the default settings are valid: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_names_keys_in_kebab_case_with_units() {
        let settings = ServeSettings::from_toml(
            "max-in-flight = 4\nqueue-wait = \"250ms\"\nmax-body = \"1MiB\"\nlisten = \"127.0.0.1:9000\"\ntokens = \"t.toml\"\nprewarm = {echo = 2}\n",
        )
        .unwrap();
        let config = settings.resolve().unwrap();
        assert_eq!(config.max_in_flight, 4);
        assert_eq!(
            config.max_in_flight_per_skill, 4,
            "defaults to the global limit"
        );
        assert_eq!(config.queue_wait, Duration::from_millis(250));
        assert_eq!(config.max_body, 1024 * 1024);
        assert_eq!(config.listen, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(config.prewarm, BTreeMap::from([("echo".to_string(), 2)]));
        assert_eq!(config.egress_network, "bridge", "Docker's default");
        let settings = ServeSettings::from_toml("egress-network = \"outbound\"\n").unwrap();
        assert_eq!(settings.resolve().unwrap().egress_network, "outbound");
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let err = ServeSettings::from_toml("max-in-flight = 4\nmax-inflight = 5\n").unwrap_err();
        assert!(err.contains("max-inflight"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn a_higher_layer_wins_key_by_key() {
        let flags = ServeSettings {
            queue: Some(1),
            ..ServeSettings::default()
        };
        let file = ServeSettings {
            queue: Some(9),
            grace: Some(HumanDuration(Duration::from_secs(2))),
            ..ServeSettings::default()
        };
        let config = flags.over(file).resolve().unwrap();
        assert_eq!(config.queue, 1);
        assert_eq!(config.grace, Duration::from_secs(2));
    }

    #[test]
    fn tcp_without_tokens_and_zero_limits_are_refused() {
        let tcp = ServeSettings {
            listen: Some("127.0.0.1:1".parse().unwrap()),
            ..ServeSettings::default()
        };
        let err = tcp.resolve().unwrap_err().to_string();
        assert!(err.contains("tokens"), "{err}");
        let zero = ServeSettings {
            max_in_flight: Some(0),
            ..ServeSettings::default()
        };
        let err = zero.resolve().unwrap_err().to_string();
        assert!(err.contains("max-in-flight"), "{err}");
    }

    #[test]
    fn pulling_needs_a_lock_and_a_mirror_needs_pulling() {
        let err = ServeSettings::from_toml("pull = true\n")
            .unwrap()
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("setting pull") && err.contains("--locked"),
            "{err}"
        );
        let err = ServeSettings::from_toml("locked = \"p.lock\"\nmirror = \"m:5000\"\n")
            .unwrap()
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("setting mirror") && err.contains("--pull"),
            "{err}"
        );
        let config =
            ServeSettings::from_toml("locked = \"p.lock\"\npull = true\nmirror = \"m:5000\"\n")
                .unwrap()
                .resolve()
                .unwrap();
        assert!(config.pull);
        assert_eq!(config.mirror.as_deref(), Some("m:5000"));
    }
}
