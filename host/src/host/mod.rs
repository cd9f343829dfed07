//! The library API for the core application: a [`Host`] invokes skills by name and action.
//!
//! ```no_run
//! # async fn demo() -> Result<(), skillhost::Error> {
//! use skillhost::{Host, HostConfig};
//!
//! let host = Host::new(HostConfig::default()).await?;
//! let result = host.invoke("echo", "say", serde_json::json!({"text": "hi"})).await;
//! assert_eq!(result.status, skillhost::Status::Ok);
//! # Ok(()) }
//! ```

mod sessions;

pub use sessions::Session;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use skill_sdk::Request;
use skillhost_api::{codes, Egress, InvocationResult, Status};

use crate::build::ImageBuilder;
use crate::catalog::Catalog;
use crate::engine::Engine;
use crate::invoke::admission::{self, Admitted};
use crate::invoke::images::{ImageResolver, ImageSource};
use crate::invoke::route::{Router, RouterConfig};
use crate::invoke::schemas::Schemas;
use crate::invoke::{
    classify, telemetry, workspace_mount, workspace_sweep, ImageState, InvokeOptions, RecyclePolicy,
};
use crate::lifecycle::instance::Instance;
use crate::lifecycle::leftovers;
use crate::lock::{verify, LockFile};
use crate::manifest::{Network, WorkspaceMode};
use crate::run::container::{RunOutcome, RunRequest};
use crate::session::{Limits as SessionLimits, Sessions};
use crate::vocab::Refusal;
use crate::vocab::PROXY_IMAGE;
use crate::Error;

/// How a [`Host`] is set up: [`HostConfig::new`] with the skills' directories, then a
/// method per setting that is not its default, e.g.
/// `HostConfig::new(vec!["skills".into()]).prewarm_cap(8)`. Fields may be added in any
/// release, so it is not built as a struct literal outside this crate.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HostConfig {
    /// Directories searched for skills.
    pub skill_roots: Vec<PathBuf>,
    /// Largest accepted arguments, serialized, in bytes. Larger is `rejected`.
    pub max_input_bytes: usize,
    /// How much stderr an invocation keeps as `logs`.
    pub log_limit_bytes: usize,
    /// Build a missing image on first use (development). A production host sets this
    /// false and runs only prebuilt images.
    pub build_images: bool,
    /// Prewarmed containers, per skill, overriding the manifests' `run.prewarm`.
    pub prewarm: BTreeMap<String, u32>,
    /// Most prewarmed containers held for all skills together.
    pub prewarm_cap: usize,
    /// Start prewarmed containers too, up to skillhost's init, which starts the skill
    /// only when the request arrives: the engine's start leaves the call's path (about
    /// 50 ms here), at the cost of a running container (its init, the engine's shim)
    /// per prewarmed slot. On by default; images without the init are only created.
    pub prewarm_started: bool,
    /// Whether a caller may ask for native mode, which runs a skill's library inside
    /// this process with no sandbox at all. Only for trusted skills.
    pub allow_native: bool,
    /// Run a lock's images and nothing else: no skill directory is searched or hashed,
    /// no image is built. Each locked image is checked at start (present, the locked ID,
    /// a manifest of the locked skill); a skill that fails is refused with
    /// `integrity_error`, and [`Host::problems`] names it. `skill_roots` and
    /// `build_images` are then unused, and native mode is refused.
    pub locked: Option<LockFile>,
    /// The network through which the egress proxies of skills with an allowlist
    /// (`run.network.egress`) reach their destinations: Docker's default `bridge`, or
    /// one an operator made (with its own firewall rules, say).
    pub egress_network: String,
    /// Most sessions open on this host at once.
    pub max_sessions: usize,
    /// Most sessions one owner (a service token) may have open at once.
    pub max_sessions_per_owner: usize,
    /// Largest file a session's upload or download may move, in bytes.
    pub max_session_file_bytes: u64,
    /// Adopt, at start, the sessions of host processes that are gone (what a restarted
    /// service does). Off by default: a host that does not serve sessions leaves them to
    /// one that does.
    pub adopt_sessions: bool,
    /// Recorded with every session this host makes; a host adopts only the sessions of
    /// its own scope, so two services on one engine never take each other's (a service
    /// uses its unix socket's path). `None` by default.
    pub session_scope: Option<String>,
    /// Whether plain calls of skills with `run.recycle` reuse containers, and whose:
    /// any caller's (the default), one caller's each, or none at all.
    pub recycle: RecyclePolicy,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            skill_roots: vec![PathBuf::from("skills")],
            max_input_bytes: 1024 * 1024,
            log_limit_bytes: 64 * 1024,
            build_images: true,
            prewarm: BTreeMap::new(),
            prewarm_cap: 32,
            prewarm_started: true,
            allow_native: false,
            locked: None,
            egress_network: "bridge".into(),
            max_sessions: 64,
            max_sessions_per_owner: 64,
            max_session_file_bytes: 256 * 1024 * 1024,
            adopt_sessions: false,
            session_scope: None,
            recycle: RecyclePolicy::Shared,
        }
    }
}

impl HostConfig {
    /// The defaults, searching `skill_roots` for skills.
    pub fn new(skill_roots: Vec<PathBuf>) -> Self {
        HostConfig {
            skill_roots,
            ..HostConfig::default()
        }
    }

    /// Sets [`HostConfig::max_input_bytes`].
    pub fn max_input_bytes(mut self, bytes: usize) -> Self {
        self.max_input_bytes = bytes;
        self
    }

    /// Sets [`HostConfig::log_limit_bytes`].
    pub fn log_limit_bytes(mut self, bytes: usize) -> Self {
        self.log_limit_bytes = bytes;
        self
    }

    /// Sets [`HostConfig::build_images`].
    pub fn build_images(mut self, build: bool) -> Self {
        self.build_images = build;
        self
    }

    /// Sets [`HostConfig::prewarm`].
    pub fn prewarm(mut self, per_skill: BTreeMap<String, u32>) -> Self {
        self.prewarm = per_skill;
        self
    }

    /// Sets [`HostConfig::recycle`].
    pub fn recycle(mut self, policy: RecyclePolicy) -> Self {
        self.recycle = policy;
        self
    }

    /// Sets [`HostConfig::prewarm_cap`].
    pub fn prewarm_cap(mut self, cap: usize) -> Self {
        self.prewarm_cap = cap;
        self
    }

    /// Sets [`HostConfig::prewarm_started`].
    pub fn prewarm_started(mut self, started: bool) -> Self {
        self.prewarm_started = started;
        self
    }

    /// Sets [`HostConfig::allow_native`].
    pub fn allow_native(mut self, allow: bool) -> Self {
        self.allow_native = allow;
        self
    }

    /// Sets [`HostConfig::locked`].
    pub fn locked(mut self, lock: impl Into<Option<LockFile>>) -> Self {
        self.locked = lock.into();
        self
    }

    /// Sets [`HostConfig::egress_network`].
    pub fn egress_network(mut self, network: impl Into<String>) -> Self {
        self.egress_network = network.into();
        self
    }

    /// Sets [`HostConfig::max_sessions`] and [`HostConfig::max_sessions_per_owner`].
    pub fn max_sessions(mut self, in_all: usize, per_owner: usize) -> Self {
        self.max_sessions = in_all;
        self.max_sessions_per_owner = per_owner;
        self
    }

    /// Sets [`HostConfig::max_session_file_bytes`].
    pub fn max_session_file_bytes(mut self, bytes: u64) -> Self {
        self.max_session_file_bytes = bytes;
        self
    }

    /// Sets [`HostConfig::session_scope`].
    pub fn session_scope(mut self, scope: impl Into<Option<String>>) -> Self {
        self.session_scope = scope.into();
        self
    }

    /// Sets [`HostConfig::adopt_sessions`].
    pub fn adopt_sessions(mut self, adopt: bool) -> Self {
        self.adopt_sessions = adopt;
        self
    }
}

/// Runs skills' actions in fresh hardened containers.
#[derive(Debug)]
pub struct Host {
    catalog: Catalog,
    schemas: Schemas,
    max_input_bytes: usize,
    log_limit_bytes: usize,
    images: ImageResolver,
    router: Router,
    sessions: Sessions,
}

impl Host {
    /// Connect to the engine, discover the skills, and remove containers that host
    /// processes which are gone left behind.
    pub async fn new(config: HostConfig) -> Result<Host, Error> {
        let engine = Engine::connect().await?;
        Host::with_engine(engine, config).await
    }

    /// [`Host::new`] with an engine already connected.
    pub async fn with_engine(engine: Engine, config: HostConfig) -> Result<Host, Error> {
        let mut egress_proxy_image = PROXY_IMAGE.to_string();
        let (catalog, source) = match config.locked {
            None => {
                let catalog = Catalog::discover(&config.skill_roots)?;
                for broken in &catalog.broken {
                    tracing::warn!("skipping a skill whose manifest is broken: {broken}");
                }
                let builder = ImageBuilder::new(
                    engine.clone(),
                    Arc::new(|name: &str, event| {
                        tracing::debug!(skill = name, ?event, "build");
                    }),
                );
                let source = ImageSource::Sources {
                    builder,
                    build: config.build_images,
                };
                (catalog, source)
            }
            Some(lock) => {
                if config.allow_native {
                    return Err(Error::Usage(
                        "a locked host runs only its locked images; native mode loads a library from a skill's source directory, so it cannot be allowed with a lock".into(),
                    ));
                }
                let verification = verify(&engine, &lock).await?;
                for problem in &verification.problems {
                    tracing::error!("{problem}");
                }
                // The manifest an image carries names the skill its lock entry pins.
                let manifests = verification.verified.iter().map(|v| v.manifest.clone());
                let catalog = Catalog::from_manifests(manifests);
                if let Some(locked) = &verification.egress_proxy {
                    egress_proxy_image = locked.clone();
                }
                (catalog, ImageSource::locked(lock, &verification))
            }
        };
        let containers = engine.containers();
        leftovers::reap_dead_instances(containers.as_ref()).await?;
        // Asked once: the router hands workspaces through views when this is true.
        let workspace_views = workspace_mount::can_make_views();
        if workspace_views {
            workspace_mount::reap_dead_views();
        }
        let instance = Instance::on_engine(containers.as_ref()).await;
        let sessions = Sessions::new(
            containers.clone(),
            instance.clone(),
            SessionLimits {
                max_open: config.max_sessions,
                max_per_owner: config.max_sessions_per_owner,
                max_file_bytes: config.max_session_file_bytes,
            },
            config.session_scope.clone(),
        );
        if config.adopt_sessions {
            sessions.adopt(&catalog).await;
        }
        let router = Router::new(
            containers,
            instance.clone(),
            RouterConfig {
                prewarm: config.prewarm,
                prewarm_cap: config.prewarm_cap,
                prewarm_started: config.prewarm_started,
                workspace_views,
                allow_native: config.allow_native,
                egress_network: config.egress_network,
                egress_proxy_image,
                recycle: config.recycle,
            },
        );
        Ok(Host {
            schemas: Schemas::compile(&catalog),
            catalog,
            max_input_bytes: config.max_input_bytes,
            log_limit_bytes: config.log_limit_bytes,
            images: ImageResolver::new(engine, instance, source),
            router,
            sessions,
        })
    }

    /// The skills this host found.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// This host process's id, as in each container's `io.skillhost.instance` label.
    pub fn instance_id(&self) -> &str {
        &self.router.instance().id
    }

    /// Invoke `action` of `skill` with `args` and the manifest's defaults.
    pub async fn invoke(&self, skill: &str, action: &str, args: Value) -> InvocationResult {
        self.invoke_with(skill, action, args, InvokeOptions::default())
            .await
    }

    /// Invoke with per-call options. Never fails: every outcome, including refusals and
    /// engine failures, is a result with its own status.
    ///
    /// The call is admitted (no engine), routed (native, warm, prewarmed or cold), run,
    /// and classified; a refusal at any stage ends it with that stage's code.
    pub async fn invoke_with(
        &self,
        skill: &str,
        action: &str,
        args: Value,
        options: InvokeOptions,
    ) -> InvocationResult {
        let started = Instant::now();
        let id = options
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut result = InvocationResult::new(id, skill, action);
        match self.run(&mut result, args, &options).await {
            Ok((run, admitted)) => {
                classify::fill(&mut result, &run, admitted.timeout, admitted.output_limit);
                self.keep_output_contract(&mut result);
            }
            Err(refusal) => refusal.apply_to(&mut result),
        }
        result.duration_ms = started.elapsed().as_millis() as u64;
        telemetry::record(&self.catalog, &result, started.elapsed());
        result
    }

    /// An ok result whose output breaks the action's declared output schema becomes a
    /// `protocol_error` (`output_schema`), naming each path.
    fn keep_output_contract(&self, result: &mut InvocationResult) {
        let Some(output) = result
            .output
            .as_ref()
            .filter(|_| result.status == Status::Ok)
        else {
            return;
        };
        if let Err(error) = self
            .schemas
            .check_output(&result.skill, &result.action, output)
        {
            result.status = Status::ProtocolError;
            result.output = None;
            result.error = Some(error);
        }
    }

    /// Admit, route and run one call, recording its path and image on `result` as they
    /// become known.
    async fn run<'h>(
        &'h self,
        result: &mut InvocationResult,
        args: Value,
        options: &InvokeOptions,
    ) -> Result<(RunOutcome, Admitted<'h>), Refusal> {
        self.images.refuse_unverified(&result.skill)?;
        let admitted = admission::admit(
            &self.catalog,
            &self.schemas,
            self.max_input_bytes,
            &result.skill,
            &result.action,
            &args,
            options,
        )?;
        let decision = self.router.decide(&admitted, options);
        result.path = decision.path();
        let route = self
            .router
            .prepare(decision, &result.id, &admitted, options, &self.images)
            .await?;
        result.path = route.path();
        result.image = route.image().map(str::to_string);
        if let (Network::Egress(allowed), Some(_)) =
            (&admitted.skill.manifest.run.network, &result.image)
        {
            result.egress = Some(Egress::new(
                allowed.iter().map(ToString::to_string).collect(),
            ));
        }
        let request = self.request(&result.id, &result.action, args, &admitted, options);
        let run = self.router.run(route, request).await;
        if admitted.skill.manifest.run.workspace == WorkspaceMode::Rw {
            if let Some(dir) = &admitted.workspace {
                sweep_workspace(&result.skill, &result.id, dir).await;
            }
        }
        let mut run = run?;
        if let Some(egress) = result.egress.as_mut() {
            egress.denied = std::mem::take(&mut run.egress.denied);
        }
        Ok((run, admitted))
    }

    /// What the skill receives: the protocol request, with its deadline and limits.
    fn request(
        &self,
        id: &str,
        action: &str,
        args: Value,
        admitted: &Admitted<'_>,
        options: &InvokeOptions,
    ) -> RunRequest {
        let mut request = Request::new(id, action, args);
        request.deadline_ms = Some(admitted.timeout.as_millis() as u64);
        RunRequest {
            stdin: request.to_line().into_bytes(),
            request_id: id.to_string(),
            timeout: admitted.timeout,
            output_limit: admitted.output_limit,
            log_limit: self.log_limit_bytes,
            on_progress: options.on_progress.clone(),
            trailer_key: None,
            egress: None,
            egress_client: None,
        }
    }

    /// What is known of `skill`'s image (hash, reference, presence) without building it.
    pub async fn image_state(&self, skill: &str) -> Result<ImageState, Refusal> {
        let found = self.catalog.get(skill).ok_or_else(|| {
            Refusal::new(codes::UNKNOWN_SKILL, format!("no skill named {skill:?}"))
        })?;
        self.images.state(found).await
    }

    /// What keeps this host from serving calls, empty when nothing does: the engine does
    /// not answer, (on a host that does not build) a skill's image is missing, or (on a
    /// locked host) an image is not the one the lock pins.
    pub async fn problems(&self) -> Vec<String> {
        if let Err(e) = self.images.engine().ping().await {
            return vec![e.to_string()];
        }
        if let Some(integrity) = self.images.integrity().await {
            return match integrity {
                Ok(problems) => problems.iter().map(ToString::to_string).collect(),
                Err(e) => vec![e.to_string()],
            };
        }
        if self.images.builds() {
            return Vec::new();
        }
        let mut problems = Vec::new();
        for skill in self.catalog.skills.values() {
            match self.images.state(skill).await {
                Ok(state) if state.present => {}
                Ok(state) => problems.push(format!(
                    "skill {}: image {} is not present and this host does not build",
                    skill.name(),
                    state.image
                )),
                Err(refusal) => problems.push(format!("skill {}: {refusal}", skill.name())),
            }
        }
        problems
    }

    /// Fill the prewarm pool of `skill` now rather than at its first invocation. Returns
    /// once the creates are started; [`Host::prewarmed_ready`] tells how many are ready.
    pub async fn prewarm(&self, skill: &str) -> Result<(), Refusal> {
        let found = self.catalog.get(skill).ok_or_else(|| {
            Refusal::new(codes::UNKNOWN_SKILL, format!("no skill named {skill:?}"))
        })?;
        self.router.prewarm(found, &self.images).await?;
        self.refill_spare_sessions(found).await
    }

    /// Make the spare sessions of a skill that takes sessions, as many as it has
    /// prewarmed containers.
    async fn refill_spare_sessions(&self, skill: &crate::catalog::Skill) -> Result<(), Refusal> {
        if skill.manifest.run.session.is_none() {
            return Ok(());
        }
        let image = self.images.resolve(skill).await?;
        self.sessions
            .refill(skill, &image, self.router.prewarm_target(skill));
        Ok(())
    }

    /// Spare sessions of `skill` ready to open without making a container.
    pub fn spare_sessions_ready(&self, skill: &str) -> usize {
        self.sessions.spares_ready(skill)
    }

    /// Fill the prewarm pool of every skill that has one (by its manifest or the host's
    /// config), building images where this host builds. The skills that could not be
    /// prewarmed, each with why.
    pub async fn prewarm_all(&self) -> Vec<(String, Refusal)> {
        let mut failed = Vec::new();
        for skill in self.catalog.skills.values() {
            if self.router.prewarm_target(skill) == 0 {
                continue;
            }
            let prewarmed = match self.router.prewarm(skill, &self.images).await {
                Ok(()) => self.refill_spare_sessions(skill).await,
                Err(refusal) => Err(refusal),
            };
            if let Err(refusal) = prewarmed {
                failed.push((skill.name().to_string(), refusal));
            }
        }
        failed
    }

    /// Prewarmed containers of `skill` ready to use.
    pub fn prewarmed_ready(&self, skill: &str) -> usize {
        self.router.prewarmed_ready(skill)
    }

    /// Idle serve-mode workers of `skill`.
    pub fn idle_workers(&self, skill: &str) -> usize {
        self.router.idle_workers(skill)
    }

    /// Idle recycled containers of `skill` that any caller's call may take (under
    /// [`RecyclePolicy::PerCaller`] they are counted per caller, and not here).
    pub fn idle_recycled(&self, skill: &str) -> usize {
        self.router.idle_recycled(skill)
    }

    /// Wait until the containers of finished invocations are removed, and the network
    /// holders being made for the next cold calls are made. Results do not wait for it;
    /// a caller about to count containers does.
    pub async fn settled(&self) {
        self.router.settled().await;
        self.sessions.settled().await
    }

    /// End every session, retire workers and prewarmed containers, and remove everything
    /// this host holds. Dropping the host does the same for containers, blocking; a
    /// process about to exit calls this.
    pub async fn shutdown(&self) {
        self.sessions.shutdown().await;
        self.router.shutdown().await
    }
}

/// Clear any set-id bit and remove any device the call left in its workspace (which the
/// seccomp profile should have made impossible), saying so in the log.
async fn sweep_workspace(skill: &str, id: &str, dir: &std::path::Path) {
    let root = dir.to_path_buf();
    let found = match tokio::task::spawn_blocking(move || workspace_sweep::sweep(&root)).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(skill, invocation = id, workspace = %dir.display(), "the workspace sweep failed: {e}");
            return;
        }
    };
    if found.is_clean() {
        return;
    }
    for path in &found.cleared {
        tracing::warn!(skill, invocation = id, workspace = %dir.display(), path = %path.display(), "cleared a setuid or setgid bit the skill left");
    }
    for path in &found.removed {
        tracing::warn!(skill, invocation = id, workspace = %dir.display(), path = %path.display(), "removed a device node the skill left");
    }
    for (path, why) in &found.failed {
        tracing::error!(skill, invocation = id, workspace = %dir.display(), path = %path.display(), "could not check the workspace for set-id files: {why}");
    }
}
