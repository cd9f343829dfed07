//! `skillhost serve`: the HTTP service, configured by flags, environment and an optional
//! `skillhost.toml` (in that order of precedence), until SIGTERM or SIGINT. It binds its
//! listeners first and answers 503 host_starting while it pulls and starts its host. The
//! first signal drains; a second one stops at once. Either way every container is removed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use skillhost::manifest::units::{ByteSize, HumanDuration};
use skillhost::service::{ServeError, ServeSettings, Service};

use super::invoke::Interrupts;
use super::{output, Format};

/// The settings file read when `--config` is not given and it exists.
const DEFAULT_CONFIG: &str = "skillhost.toml";

#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Every setting can also be given as SKILLHOST_<FLAG> in the environment (e.g. \
SKILLHOST_MAX_IN_FLIGHT=32, SKILLHOST_PREWARM=echo=4,python=2) or as a key of \
skillhost.toml (--config; read from the current directory when present). A flag wins over \
the environment, which wins over the file. Keys of the file: socket, listen, tokens, \
skills-dirs, build, locked, pull, mirror, max-in-flight, max-in-flight-per-skill, queue, queue-wait, max-body, \
header-timeout, body-timeout, max-connections, max-connections-per-peer, grace, drain-notice, keep-results, max-results, prewarm-started, prewarm, egress-network, mcp-allowed-origins, recycle.")]
pub(crate) struct ServeCli {
    /// The unix socket to listen on, mode 0600 [key: socket]. Default:
    /// $XDG_RUNTIME_DIR/skillhost/skillhost.sock, else skillhost-<uid>/skillhost.sock in
    /// the temporary directory.
    #[arg(long, env = "SKILLHOST_SOCKET")]
    socket: Option<PathBuf>,
    /// Also listen on TCP, e.g. 127.0.0.1:8080; every caller must then present a bearer
    /// token from --tokens [key: listen].
    #[arg(long, env = "SKILLHOST_LISTEN")]
    listen: Option<SocketAddr>,
    /// The tokens file for TCP callers: [[token]] entries with a name, the token's
    /// sha256 and an optional max-in-flight (`skillhost token NAME` makes one) [key: tokens].
    #[arg(long, env = "SKILLHOST_TOKENS")]
    tokens: Option<PathBuf>,
    /// A settings file [default: ./skillhost.toml when present].
    #[arg(long, env = "SKILLHOST_CONFIG")]
    config: Option<PathBuf>,
    /// Never build: a skill whose image is missing is refused, and /readyz says so
    /// [key: build = false].
    #[arg(long, env = "SKILLHOST_NO_BUILD")]
    no_build: bool,
    /// Run only the images of this lock file (`skillhost lock`): no skill directory is
    /// read, nothing is built, and each image is checked against the lock at start; a
    /// mismatch makes /readyz false and its skill's calls integrity_error [key: locked].
    #[arg(long, env = "SKILLHOST_LOCKED", value_name = "LOCK")]
    locked: Option<PathBuf>,
    /// Before taking calls, pull each locked image this engine lacks, by its digest, from
    /// the registry the lock records, and check it against the lock (callers are answered
    /// 503 host_starting meanwhile); a failed pull stops the service (a supervisor
    /// restarts it) [key: pull = true; needs --locked].
    #[arg(long, env = "SKILLHOST_PULL")]
    pull: bool,
    /// Pull from this registry (HOST:PORT, a mirror) instead of the lock's [key: mirror;
    /// needs --pull].
    #[arg(long, env = "SKILLHOST_MIRROR", value_name = "HOST:PORT")]
    mirror: Option<String>,
    /// The network through which the egress proxies of skills with an allowlist
    /// (run.network.egress) reach their destinations [key: egress-network; default:
    /// Docker's bridge].
    #[arg(long, env = "SKILLHOST_EGRESS_NETWORK", value_name = "NETWORK")]
    egress_network: Option<String>,
    /// Calls running at once over all skills [key: max-in-flight; default 16].
    #[arg(long, env = "SKILLHOST_MAX_IN_FLIGHT")]
    max_in_flight: Option<usize>,
    /// Calls running at once for one skill [key: max-in-flight-per-skill; default: the
    /// global limit].
    #[arg(long, env = "SKILLHOST_MAX_IN_FLIGHT_PER_SKILL")]
    max_in_flight_per_skill: Option<usize>,
    /// Calls that may wait for a slot; beyond it, 429 at once [key: queue; default 64].
    #[arg(long, env = "SKILLHOST_QUEUE")]
    queue: Option<usize>,
    /// How long a call may wait for a slot before 429 [key: queue-wait; default 5s].
    #[arg(long, env = "SKILLHOST_QUEUE_WAIT", value_parser = duration)]
    queue_wait: Option<HumanDuration>,
    /// Largest request body [key: max-body; default 2MiB].
    #[arg(long, env = "SKILLHOST_MAX_BODY", value_parser = size)]
    max_body: Option<ByteSize>,
    /// How long a client may take to send its headers; also how long an idle connection
    /// stays open [key: header-timeout; default 10s].
    #[arg(long, env = "SKILLHOST_HEADER_TIMEOUT", value_parser = duration)]
    header_timeout: Option<HumanDuration>,
    /// How long a client may take to send a request's whole body, from its headers on;
    /// slower ones get 408 and their connection closed [key: body-timeout; default 30s].
    #[arg(long, env = "SKILLHOST_BODY_TIMEOUT", value_parser = duration)]
    body_timeout: Option<HumanDuration>,
    /// Connections open at once over every listener; more are closed unserved [key:
    /// max-connections; default: three quarters of the open file limit, less 256].
    #[arg(long, env = "SKILLHOST_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Connections open at once from one TCP address (the unix socket's callers count as
    /// one) [key: max-connections-per-peer; default 256].
    #[arg(long, env = "SKILLHOST_MAX_CONNECTIONS_PER_PEER")]
    max_connections_per_peer: Option<usize>,
    /// How long in-flight calls may finish after SIGTERM before they are cancelled
    /// [key: grace; default 30s].
    #[arg(long, env = "SKILLHOST_GRACE", value_parser = duration)]
    grace: Option<HumanDuration>,
    /// After SIGTERM, how long new calls are still accepted and answered 503
    /// host_shutting_down with a Retry-After (so callers back off instead of meeting a
    /// closing socket) before the listeners close [key: drain-notice; default 1s].
    #[arg(long, env = "SKILLHOST_DRAIN_NOTICE", value_parser = duration)]
    drain_notice: Option<HumanDuration>,
    /// How long a finished asynchronous result is kept [key: keep-results; default 10m].
    #[arg(long, env = "SKILLHOST_KEEP_RESULTS", value_parser = duration)]
    keep_results: Option<HumanDuration>,
    /// Most asynchronous invocations remembered [key: max-results; default 1000].
    #[arg(long, env = "SKILLHOST_MAX_RESULTS")]
    max_results: Option<usize>,
    /// Sessions open at once, over all tokens [key: max-sessions; default 64].
    #[arg(long, env = "SKILLHOST_MAX_SESSIONS")]
    max_sessions: Option<usize>,
    /// Sessions one token may have open at once [key: max-sessions-per-token; default:
    /// max-sessions].
    #[arg(long, env = "SKILLHOST_MAX_SESSIONS_PER_TOKEN")]
    max_sessions_per_token: Option<usize>,
    /// Largest file a session's upload or download may move [key: max-file; default
    /// 256MiB].
    #[arg(long, env = "SKILLHOST_MAX_FILE", value_parser = size)]
    max_file: Option<ByteSize>,
    /// NAME=K: keep K prewarmed containers of skill NAME, over its manifest's run.prewarm;
    /// repeat for several [key: prewarm = {NAME = K}]. Pools fill at start.
    #[arg(
        long = "prewarm",
        value_name = "NAME=K",
        value_parser = prewarm_pair,
        env = "SKILLHOST_PREWARM",
        value_delimiter = ','
    )]
    prewarm: Vec<(String, u32)>,
    /// Only create prewarmed containers instead of starting them up to skillhost's init
    /// [key: prewarm-started = false].
    #[arg(long, env = "SKILLHOST_PREWARM_CREATED_ONLY")]
    prewarm_created_only: bool,
    /// A browser origin whose requests /mcp answers, e.g. https://app.example.com:443;
    /// repeat for several [key: mcp-allowed-origins; default none: a request that sends
    /// an Origin is refused].
    #[arg(
        long = "mcp-allowed-origin",
        value_name = "ORIGIN",
        env = "SKILLHOST_MCP_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    mcp_allowed_origins: Vec<String>,
    /// Whose calls a recycled container (a skill's run.recycle) serves: shared (any
    /// token's), per-caller (one token's each) or off (every call has a container of
    /// its own) [key: recycle; default shared].
    #[arg(long, value_name = "POLICY", env = "SKILLHOST_RECYCLE")]
    recycle: Option<skillhost::RecyclePolicy>,
}

fn duration(text: &str) -> Result<HumanDuration, String> {
    HumanDuration::parse(text).map_err(|e| e.to_string())
}

pub(super) fn prewarm_pair(text: &str) -> Result<(String, u32), String> {
    let (name, count) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: give NAME=K, e.g. echo=4"))?;
    let count = count
        .parse()
        .map_err(|_| format!("{text:?}: K must be a whole number"))?;
    Ok((name.to_string(), count))
}

fn size(text: &str) -> Result<ByteSize, String> {
    ByteSize::parse(text).map_err(|e| e.to_string())
}

impl ServeCli {
    /// The flags' and environment's layer.
    fn settings(&self, skills_dirs: Vec<PathBuf>) -> ServeSettings {
        let mut settings = ServeSettings::default();
        settings.socket = self.socket.clone();
        settings.listen = self.listen;
        settings.tokens = self.tokens.clone();
        settings.skills_dirs = (!skills_dirs.is_empty()).then_some(skills_dirs);
        settings.build = self.no_build.then_some(false);
        settings.locked = self.locked.clone();
        settings.pull = self.pull.then_some(true);
        settings.mirror = self.mirror.clone();
        settings.max_in_flight = self.max_in_flight;
        settings.max_in_flight_per_skill = self.max_in_flight_per_skill;
        settings.queue = self.queue;
        settings.queue_wait = self.queue_wait;
        settings.max_body = self.max_body;
        settings.header_timeout = self.header_timeout;
        settings.body_timeout = self.body_timeout;
        settings.max_connections = self.max_connections;
        settings.max_connections_per_peer = self.max_connections_per_peer;
        settings.grace = self.grace;
        settings.drain_notice = self.drain_notice;
        settings.keep_results = self.keep_results;
        settings.max_results = self.max_results;
        settings.max_sessions = self.max_sessions;
        settings.max_sessions_per_token = self.max_sessions_per_token;
        settings.max_file = self.max_file;
        settings.prewarm_started = self.prewarm_created_only.then_some(false);
        settings.prewarm =
            (!self.prewarm.is_empty()).then(|| self.prewarm.iter().cloned().collect());
        settings.egress_network = self.egress_network.clone();
        settings.mcp_allowed_origins =
            (!self.mcp_allowed_origins.is_empty()).then(|| self.mcp_allowed_origins.clone());
        settings.recycle = self.recycle;
        settings
    }
}

pub(super) async fn run(
    skills_dirs: Vec<PathBuf>,
    cli: ServeCli,
    format: Format,
) -> Result<i32, ServeError> {
    let mut interrupts = Interrupts::install()?;
    let file = match &cli.config {
        Some(path) => ServeSettings::from_file(path)?,
        None if Path::new(DEFAULT_CONFIG).exists() => {
            ServeSettings::from_file(Path::new(DEFAULT_CONFIG))?
        }
        None => ServeSettings::default(),
    };
    let config = cli.settings(skills_dirs).over(file).resolve()?;
    if let Some(mirror) = &config.mirror {
        super::ship::check_registry("--mirror", mirror)?;
    }
    let mut signal = None;
    let interrupted = async {
        signal = Some(interrupts.recv().await.0);
    };
    let Some(service) = Service::start(config, interrupted).await? else {
        let signal = signal.unwrap_or("a signal");
        errln!("skillhost serve: {signal} while starting: stopped");
        return Ok(0);
    };
    let endpoints = service.endpoints();
    match format {
        Format::Json => output::json(&serde_json::json!({
            "listening": endpoints,
            "instance": service.instance_id(),
        })),
        Format::Human => {
            for endpoint in &endpoints {
                outln!("skillhost serve: listening on {endpoint}");
            }
            errln!(
                "skillhost serve: host instance {} (the io.skillhost.instance label of its containers)",
                service.instance_id()
            );
        }
    }
    let stop = service.stopper();
    let signals = async move {
        let (name, _) = interrupts.recv().await;
        errln!("skillhost serve: {name}: draining (a second signal stops at once)");
        stop.drain();
        let (name, _) = interrupts.recv().await;
        errln!("skillhost serve: {name}: stopping now");
        stop.now();
        // Keep the handlers installed until the process exits, so a third signal does
        // not kill it mid-cleanup.
        std::future::pending::<Duration>().await
    };
    tokio::select! {
        _ = service.run() => {}
        _ = signals => {}
    }
    Ok(0)
}
