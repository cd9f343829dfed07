//! `skillhost serve`: one [`Host`] behind an HTTP API, so callers in any language reach
//! its prewarmed containers and warm workers.
//!
//! The data path of one call: [`listen`] accepts a connection (unix socket, or TCP with a
//! bearer token checked by [`auth`]), axum routes it to [`routes`], [`gate`] admits it or
//! answers 429, the host runs it, and [`http`] turns its result into a response.
//! [`invocations`] keeps asynchronous results; [`telemetry`] renders `/metrics`; the API
//! is described by [`openapi`]. Before the host exists, [`starting`] answers on the same
//! listeners. [`Service::run`] drains on the first stop signal and
//! removes every container before it returns.

mod auth;
mod body_deadline;
mod config;
mod connections;
mod gate;
mod http;
mod invocations;
mod listen;
pub(crate) mod openapi;
mod routes;
mod start;
mod starting;
mod telemetry;
mod tokens;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{default_socket, ConfigError, ServeConfig, ServeSettings};
pub use openapi::document as openapi_document;
pub use starting::Starting;
pub use tokens::{new_token, TokensError};

use crate::sync::lock;
use crate::Host;
use connections::{ConnectionLimits, Connections};
use gate::Gate;
use invocations::Invocations;
use listen::{Accepting, Bound};

/// A service that could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The settings are wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The tokens file is wrong.
    #[error(transparent)]
    Tokens(#[from] TokensError),
    /// A socket or address could not be listened on.
    #[error("cannot listen on {address}: {message}")]
    Listen {
        /// The socket path or TCP address.
        address: String,
        /// Why.
        message: String,
    },
    /// The host behind it could not start: its lock, the engine, a pull, its skills.
    #[error(transparent)]
    Host(#[from] crate::Error),
}

impl ServeError {
    /// The process exit code this failure maps to.
    pub fn exit_code(&self) -> i32 {
        match self {
            ServeError::Config(_) | ServeError::Tokens(_) => skillhost_api::exit_code::USAGE,
            ServeError::Listen { .. } => skillhost_api::exit_code::INFRASTRUCTURE,
            ServeError::Host(e) => e.exit_code(),
        }
    }
}

/// What the handlers share.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) host: Arc<Host>,
    pub(crate) gate: Gate,
    pub(crate) invocations: Invocations,
    /// Set at the first stop signal: `/readyz` turns false and new calls are refused.
    pub(crate) draining: AtomicBool,
    /// Cancels every running invocation (grace over, or a second signal).
    pub(crate) cancel: CancellationToken,
    /// Every invocation task, so shutdown can wait for them.
    pub(crate) tasks: TaskTracker,
    /// Ends `/mcp`'s streams and sessions at shutdown, once no call runs (an idle MCP
    /// client's open stream would otherwise hold its connection for the whole grace).
    pub(crate) mcp_streams: CancellationToken,
    pub(crate) metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Largest accepted request body, in bytes.
    pub(crate) max_body: usize,
    /// The browser origins `/mcp` answers (`mcp-allowed-origins`).
    pub(crate) mcp_origins: Vec<String>,
    /// How long new calls are answered 503 after the stop signal, before the listeners
    /// close.
    pub(crate) drain_notice: Duration,
    readiness: std::sync::Mutex<Option<(Instant, Vec<String>)>>,
}

/// How long a readiness answer is reused, so probes do not hammer the engine.
const READINESS_TTL: Duration = Duration::from_secs(1);

impl AppState {
    /// What keeps the service from being ready; empty when it is.
    pub(crate) async fn problems(&self) -> Vec<String> {
        if self.draining.load(Ordering::SeqCst) {
            return vec!["draining: the service is shutting down".into()];
        }
        if let Some((at, problems)) = lock(&self.readiness).as_ref() {
            if at.elapsed() < READINESS_TTL {
                return problems.clone();
            }
        }
        let problems = self.host.problems().await;
        *lock(&self.readiness) = Some((Instant::now(), problems.clone()));
        problems
    }
}

/// How a running service is told to stop; cloned freely.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    drain: CancellationToken,
    now: CancellationToken,
}

impl Stop {
    /// Stop accepting, let in-flight calls finish within the grace, then cancel the rest.
    pub fn drain(&self) {
        self.drain.cancel();
    }

    /// Cancel every call now (their containers are still removed).
    pub fn now(&self) {
        self.drain.cancel();
        self.now.cancel();
    }

    /// Whether a drain was asked for.
    pub fn draining(&self) -> bool {
        self.drain.is_cancelled()
    }
}

/// The service's listeners, bound before its host exists, so that callers who come while
/// it starts are answered 503 `host_starting` ([`Listeners::while_starting`]) rather than
/// refused.
#[derive(Debug)]
pub struct Listeners {
    bound: Vec<Bound>,
    config: ServeConfig,
    /// The connections open on them, bounded, from the start through the handover.
    connections: Connections,
}

impl Listeners {
    /// Bind the unix socket (and the TCP address, with its tokens).
    pub async fn bind(config: ServeConfig) -> Result<Listeners, ServeError> {
        let tokens = match &config.tokens {
            Some(path) if config.listen.is_some() => Some(Arc::new(tokens::Tokens::load(path)?)),
            _ => None,
        };
        let mut bound = vec![listen::bind_unix(&config.socket)?];
        if let (Some(address), Some(tokens)) = (config.listen, tokens) {
            bound.push(listen::bind_tcp(address, tokens).await?);
        }
        let nofile = connections::raise_nofile();
        let limits = ConnectionLimits {
            total: config
                .max_connections
                .unwrap_or_else(|| connections::total_for(nofile)),
            per_peer: config.max_connections_per_peer,
        };
        tracing::debug!(nofile, ?limits, "connection bounds");
        Ok(Listeners {
            bound,
            config,
            connections: Connections::new(limits),
        })
    }

    /// Run `work` (pulling images, starting the host) while every caller is answered 503
    /// `host_starting` and `/readyz` names what `starting` says; the listeners are given
    /// back when it is done.
    pub async fn while_starting<T>(
        self,
        starting: &Starting,
        work: impl std::future::Future<Output = T>,
    ) -> Result<(Listeners, T), ServeError> {
        let Listeners {
            bound,
            config,
            connections,
        } = self;
        let accepting =
            Accepting::start(bound, config.header_timeout, connections.clone(), |bound| {
                starting::app(starting.clone(), bound)
            });
        let output = work.await;
        let (bound, graceful) = accepting.stop().await;
        // Every answer of the stand-in closes its connection; the ones still being
        // written get a moment, and connections are then accepted by the running service.
        if let Some(graceful) = graceful {
            let _ = tokio::time::timeout(starting::HANDOVER, graceful.shutdown()).await;
        }
        let bound = bound?;
        let listeners = Listeners {
            bound,
            config,
            connections,
        };
        Ok((listeners, output))
    }

    /// The running service of `host` on these listeners.
    pub fn serve(self, host: Host) -> Service {
        let Listeners {
            bound,
            config,
            connections,
        } = self;
        let gate = Gate::new(
            host.catalog().skills.keys().map(String::as_str),
            config.max_in_flight,
            config.max_in_flight_per_skill,
            config.queue,
            config.queue_wait,
        );
        let state = Arc::new(AppState {
            host: Arc::new(host),
            gate,
            invocations: Invocations::new(config.keep_results, config.max_results),
            draining: AtomicBool::new(false),
            cancel: CancellationToken::new(),
            mcp_streams: CancellationToken::new(),
            tasks: TaskTracker::new(),
            metrics: telemetry::recorder(),
            max_body: config.max_body,
            mcp_origins: config.mcp_allowed_origins.clone(),
            drain_notice: config.drain_notice,
            readiness: std::sync::Mutex::new(None),
        });
        Service {
            state,
            bound,
            config,
            connections,
            stop: Stop::default(),
        }
    }
}

/// A service with its host, on its listeners, ready to [`Service::run`].
#[derive(Debug)]
pub struct Service {
    state: Arc<AppState>,
    bound: Vec<Bound>,
    config: ServeConfig,
    connections: Connections,
    stop: Stop,
}

impl Service {
    /// Where callers reach it: `unix:PATH`, and `http://ADDR` when listening on TCP.
    pub fn endpoints(&self) -> Vec<String> {
        self.bound.iter().map(Bound::endpoint).collect()
    }

    /// The id of its host process, as in each container's `io.skillhost.instance` label.
    pub fn instance_id(&self) -> &str {
        self.state.host.instance_id()
    }

    /// The handle that stops it.
    pub fn stopper(&self) -> Stop {
        self.stop.clone()
    }

    /// Serve until stopped. A drain turns `/readyz` false and answers new calls 503 for
    /// the drain notice, then stops accepting, lets in-flight calls finish within the
    /// grace and cancels the rest; every container, pool and worker is removed before
    /// this returns.
    pub async fn run(self) {
        let Service {
            state,
            bound,
            config,
            connections,
            stop,
        } = self;
        // Fill the prewarm pools in the background; calls are served meanwhile.
        let prewarming = state.clone();
        tokio::spawn(async move {
            for (skill, refusal) in prewarming.host.prewarm_all().await {
                tracing::warn!(skill, "cannot prewarm: {refusal}");
            }
        });
        let accepting = Accepting::start(bound, config.header_timeout, connections, |bound| {
            routes::app(state.clone(), bound, config.max_body, config.body_timeout)
        });
        stop.drain.cancelled().await;
        state.draining.store(true, Ordering::SeqCst);
        // Callers that arrive now are told to come back later, rather than meeting a
        // listener that closes under them with their request sent and unanswered.
        tracing::info!(notice = ?config.drain_notice, "draining: new calls are answered 503 until the listeners close");
        tokio::select! {
            _ = tokio::time::sleep(config.drain_notice) => {}
            _ = stop.now.cancelled() => {}
        }
        tracing::info!(grace = ?config.grace, "draining: no new connections; in-flight calls may finish");
        // The listeners are dropped here, which removes the socket file.
        let (_, graceful) = accepting.stop().await;
        state.tasks.close();
        // The connections are told to finish their requests and close.
        let mut closed = tokio::spawn(async move {
            if let Some(graceful) = graceful {
                graceful.shutdown().await;
            }
        });
        let drained = async {
            state.tasks.wait().await;
            state.mcp_streams.cancel();
            let _ = (&mut closed).await;
        };
        tokio::select! {
            _ = drained => tracing::info!("every call finished"),
            _ = tokio::time::sleep(config.grace) => {
                tracing::warn!("the grace ran out; cancelling the calls still running");
            }
            _ = stop.now.cancelled() => tracing::warn!("stopping now; cancelling every call"),
        }
        state.cancel.cancel();
        state.mcp_streams.cancel();
        // Cancelled calls answer at once; their connections get a moment to send it
        // before the process ends.
        let _ = tokio::time::timeout(Duration::from_secs(2), state.tasks.wait()).await;
        if !closed.is_finished() {
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut closed).await;
        }
        state.host.shutdown().await;
        tracing::info!("stopped; every container removed");
    }
}
