//! Starting a service from its configuration alone, as `skillhost serve` does and as an
//! application embedding the service may: bind first, then answer 503 `host_starting`
//! while the engine is reached, the locked images pulled and the host started.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use super::{Listeners, ServeConfig, ServeError, Service, Starting};
use crate::engine::Engine;
use crate::lock::LockFile;
use crate::ship::{pull, ShipObserver};
use crate::{Error, Host, HostConfig};

impl ServeConfig {
    /// The configuration of the service's host, running `locked` when given.
    pub fn host_config(&self, locked: Option<LockFile>) -> HostConfig {
        HostConfig {
            skill_roots: self.skills_dirs.clone(),
            build_images: self.build,
            locked,
            prewarm_started: self.prewarm_started,
            prewarm: self.prewarm.clone(),
            egress_network: self.egress_network.clone(),
            max_sessions: self.max_sessions,
            max_sessions_per_owner: self.max_sessions_per_token,
            max_session_file_bytes: self.max_file,
            // A service started again serves the sessions its predecessor left.
            adopt_sessions: true,
            // Two services on one engine are told apart by their sockets.
            session_scope: Some(format!("serve:{}", self.socket.display())),
            recycle: self.recycle,
            ..HostConfig::default()
        }
    }
}

impl Service {
    /// Read the lock (when `config.locked` names one), bind the listeners, and start the
    /// host behind them: reach the engine, pull the locked images it lacks (with
    /// `config.pull`) and start the host, while callers are answered 503 `host_starting`.
    /// `Ok(None)` when `interrupted` resolves first: no host, so no container, was made.
    pub async fn start(
        config: ServeConfig,
        interrupted: impl Future<Output = ()>,
    ) -> Result<Option<Service>, ServeError> {
        let locked = config
            .locked
            .as_deref()
            .map(LockFile::load)
            .transpose()
            .map_err(Error::from)?;
        let listeners = Listeners::bind(config.clone()).await?;
        let starting = Starting::new("connecting to the engine");
        let start = async {
            let engine = Engine::connect().await?;
            if let (true, Some(lock)) = (config.pull, &locked) {
                pull_locked(&engine, lock, config.mirror.as_deref(), &starting).await?;
            }
            starting.set("reading the skills and checking their images");
            Host::with_engine(engine, config.host_config(locked.clone())).await
        };
        let started = async {
            tokio::select! {
                host = start => Some(host),
                () = interrupted => None,
            }
        };
        let (listeners, host) = listeners.while_starting(&starting, started).await?;
        match host {
            Some(host) => Ok(Some(listeners.serve(host?))),
            None => Ok(None),
        }
    }
}

/// Every locked image the engine lacks, by digest, before the service takes calls (so its
/// readiness, and a health check on it, wait for the images).
async fn pull_locked(
    engine: &Engine,
    lock: &LockFile,
    mirror: Option<&str>,
    starting: &Starting,
) -> Result<(), Error> {
    let observer: ShipObserver = Arc::new(|name: &str, progress| {
        tracing::debug!(image = name, ?progress, "pull");
    });
    let started = Instant::now();
    let pins = lock.pins();
    for (index, pin) in pins.iter().enumerate() {
        starting.set(format!(
            "pulling the locked images ({} of {}: {})",
            index + 1,
            pins.len(),
            pin.name()
        ));
        let pinned = Instant::now();
        let outcome = pull(engine, pin, mirror, &observer).await?.as_str();
        tracing::info!(
            skill = pin.name(),
            image = pin.image,
            seconds = pinned.elapsed().as_secs_f64(),
            "{outcome}"
        );
    }
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        "every locked image is here"
    );
    Ok(())
}
