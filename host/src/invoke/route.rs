//! How a call is served. [`decide`] chooses the path in one place, from the call's shape
//! alone; [`Router::prepare`] makes that path ready (a library, a worker's configuration,
//! a prewarmed container or a fresh one), and [`Router::run`] runs it, one function per
//! path.
//!
//! Prewarmed containers, warm workers and recycled containers were configured before the
//! call: they serve only calls that add nothing of their own (no `env`, no workspace).
//! Every other call, and a call that finds the prewarm pool empty, goes cold.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use skill_sdk::SERVE_MODE_ENV;
use skillhost_api::{codes, InvocationPath};

use super::admission::Admitted;
use super::images::{ImageResolver, SkillImage};
use super::workspace_mount::{self, WorkspaceView};
use super::{InvokeOptions, RecyclePolicy};
use crate::catalog::Skill;
use crate::egress::{Gateway, Gateways, Holder, Holders};
use crate::engine::spec::ContainerSpec;
use crate::engine::Containers;
use crate::lifecycle::guard::ContainerGuard;
use crate::lifecycle::instance::Instance;
use crate::lifecycle::labels::{self, Role};
use crate::lifecycle::reaper::Reaper;
use crate::manifest::{Mode, Network};
use crate::paths::native::{self, NativeLibraries, NativeLibrary};
use crate::paths::prewarm_pool::PrewarmPool;
use crate::paths::serve_pool::{ServeError, ServePools};
use crate::run::container::{run_attached, run_container, Attached, RunOutcome, RunRequest};
use crate::run::container_spec::{container_spec, ContainerInputs, Workspace, RECYCLE_ENV};
use crate::run::exit_trailer::{new_key, ResetVerdict};
use crate::vocab::Refusal;

/// Containers retired after a recycled call, by skill and the reset's verdict.
const RECYCLED_RETIRED: &str = "skillhost_recycled_retired_total";

/// The path a call takes, decided before anything is made ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The skill's library, in this process.
    Native,
    /// A serve-mode worker.
    Warm,
    /// A prewarmed container if one is ready, else a fresh one.
    Prewarmed,
    /// A container of the skill's recycled ones, reset after each call.
    Recycled,
    /// A fresh container.
    Cold,
}

impl Decision {
    /// The result's path while the call is being made ready; a prewarmed call is cold
    /// until it has its container.
    pub(crate) fn path(self) -> InvocationPath {
        match self {
            Decision::Native => InvocationPath::Native,
            Decision::Warm => InvocationPath::Warm,
            Decision::Recycled => InvocationPath::Recycled,
            Decision::Prewarmed | Decision::Cold => InvocationPath::Cold,
        }
    }
}

/// The shape of a call the path is chosen from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    /// Native mode was asked for.
    pub(crate) native: bool,
    pub(crate) mode: Mode,
    /// The call adds nothing of its own: no `env`, no workspace.
    pub(crate) plain: bool,
    /// The skill recycles its containers (`run.recycle`) and the host allows it.
    pub(crate) recycles: bool,
    pub(crate) prewarm_target: usize,
}

/// Choose the path: native only when asked; a serve-mode skill's plain calls go warm, a
/// one-shot skill's plain calls are recycled when it recycles, else try the prewarm pool
/// when it has one; the rest go cold.
pub(crate) fn decide(shape: Shape) -> Decision {
    match (shape.native, shape.mode, shape.plain) {
        (true, _, _) => Decision::Native,
        (false, Mode::Serve, true) => Decision::Warm,
        (false, Mode::Oneshot, true) if shape.recycles => Decision::Recycled,
        (false, Mode::Oneshot, true) if shape.prewarm_target > 0 => Decision::Prewarmed,
        _ => Decision::Cold,
    }
}

/// A path made ready for one call of a skill of the catalog `'c`.
#[derive(Debug)]
pub(crate) enum Route<'c> {
    /// The skill's native library.
    Native(Arc<NativeLibrary>),
    /// A worker of the skill's serve pool.
    Warm {
        skill: &'c Skill,
        image: SkillImage,
        egress: Option<Arc<Gateway>>,
    },
    /// A recycled container of the skill, kept under `key`.
    Recycled {
        skill: &'c Skill,
        key: String,
        image: SkillImage,
        egress: Option<Arc<Gateway>>,
    },
    /// A container made ahead of time, used by this call alone.
    Prewarmed {
        image: SkillImage,
        container: Attached,
        egress: Option<Arc<Gateway>>,
    },
    /// A container made for this call, named `name`; with an allowlist, in the network
    /// namespace of `holder`; with a workspace, through `view` where there is one.
    Cold {
        image: SkillImage,
        name: String,
        spec: Box<ContainerSpec>,
        egress: Option<Arc<Gateway>>,
        holder: Option<Holder>,
        view: Option<WorkspaceView>,
    },
}

impl Route<'_> {
    /// The result's `path`.
    pub(crate) fn path(&self) -> InvocationPath {
        match self {
            Route::Native(_) => InvocationPath::Native,
            Route::Warm { .. } => InvocationPath::Warm,
            Route::Recycled { .. } => InvocationPath::Recycled,
            Route::Prewarmed { .. } => InvocationPath::Prewarmed,
            Route::Cold { .. } => InvocationPath::Cold,
        }
    }

    /// The gateway of a skill with an egress allowlist.
    fn egress(&self) -> Option<Arc<Gateway>> {
        match self {
            Route::Native(_) => None,
            Route::Warm { egress, .. }
            | Route::Recycled { egress, .. }
            | Route::Prewarmed { egress, .. }
            | Route::Cold { egress, .. } => egress.clone(),
        }
    }

    /// The result's `image`, for the paths that run one.
    pub(crate) fn image(&self) -> Option<&str> {
        match self {
            Route::Native(_) => None,
            Route::Warm { image, .. }
            | Route::Recycled { image, .. }
            | Route::Prewarmed { image, .. }
            | Route::Cold { image, .. } => Some(&image.reference),
        }
    }
}

/// What the router is configured with, from the host's config.
#[derive(Debug, Clone)]
pub(crate) struct RouterConfig {
    /// Prewarmed containers per skill, overriding the manifests' `run.prewarm`.
    pub(crate) prewarm: BTreeMap<String, u32>,
    /// Most prewarmed containers held for all skills together.
    pub(crate) prewarm_cap: usize,
    /// Start prewarmed containers up to skillhost's init.
    pub(crate) prewarm_started: bool,
    /// Hand workspaces to the engine as `nosuid,nodev` views (the host can make them).
    pub(crate) workspace_views: bool,
    /// Whether native mode may be used at all.
    pub(crate) allow_native: bool,
    /// The network egress proxies reach the outside through.
    pub(crate) egress_network: String,
    /// The image egress proxies run.
    pub(crate) egress_proxy_image: String,
    /// Whether and whose calls recycled containers serve.
    pub(crate) recycle: RecyclePolicy,
}

/// Makes paths ready and runs them: owns the containers held for later and the native
/// libraries loaded.
#[derive(Debug)]
pub(crate) struct Router {
    engine: Containers,
    reaper: Reaper,
    instance: Instance,
    prewarmed: PrewarmPool,
    workers: ServePools,
    recycled: ServePools,
    recycle: RecyclePolicy,
    natives: NativeLibraries,
    gateways: Gateways,
    holders: Holders,
    prewarm: BTreeMap<String, u32>,
    prewarm_started: bool,
    /// Whether workspaces are handed to the engine as `nosuid,nodev` views.
    workspace_views: bool,
}

impl Router {
    pub(crate) fn new(engine: Containers, instance: Instance, config: RouterConfig) -> Self {
        let reaper = Reaper::new(engine.clone());
        Router {
            holders: Holders::new(
                engine.clone(),
                reaper.clone(),
                instance.clone(),
                config.egress_proxy_image.clone(),
            ),
            gateways: Gateways::new(
                engine.clone(),
                instance.clone(),
                config.egress_network,
                config.egress_proxy_image,
            ),
            prewarmed: PrewarmPool::new(engine.clone(), reaper.clone(), config.prewarm_cap),
            workers: ServePools::new(engine.clone(), reaper.clone(), Role::Worker),
            recycled: ServePools::new(engine.clone(), reaper.clone(), Role::Recycled),
            recycle: config.recycle,
            natives: NativeLibraries::new(config.allow_native),
            instance,
            prewarm: config.prewarm,
            prewarm_started: config.prewarm_started,
            workspace_views: config.workspace_views,
            reaper,
            engine,
        }
    }

    /// This host process's identity, as in each container's `io.skillhost.instance`.
    pub(crate) fn instance(&self) -> &Instance {
        &self.instance
    }

    /// The path for a call of `admitted` with `options`.
    pub(crate) fn decide(&self, admitted: &Admitted<'_>, options: &InvokeOptions) -> Decision {
        let skill = admitted.skill;
        decide(Shape {
            native: options.native,
            mode: skill.manifest.run.mode,
            plain: options.env.is_empty() && admitted.workspace.is_none(),
            recycles: self.recycles(skill),
            prewarm_target: self.prewarm_target(skill),
        })
    }

    /// Make `decision` ready for invocation `id`: load the library, or resolve the image
    /// and take or configure a container.
    pub(crate) async fn prepare<'c>(
        &self,
        decision: Decision,
        id: &str,
        admitted: &Admitted<'c>,
        options: &InvokeOptions,
        images: &ImageResolver,
    ) -> Result<Route<'c>, Refusal> {
        let skill = admitted.skill;
        if decision == Decision::Native {
            return self
                .natives
                .get(skill)
                .map(Route::Native)
                .map_err(|e| Refusal::new(codes::NATIVE_UNAVAILABLE, e.to_string()));
        }
        images.check_runtime(skill).await?;
        let image = images.resolve(skill).await?;
        let egress = self.gateway(skill).await?;
        match decision {
            Decision::Warm => Ok(Route::Warm {
                skill,
                image,
                egress,
            }),
            // Only skillhost's init resets a container: an image without it (or with one
            // older than recycling) goes cold.
            Decision::Recycled if image.init_recycles => Ok(Route::Recycled {
                skill,
                key: match (self.recycle, &options.caller) {
                    (RecyclePolicy::PerCaller, Some(caller)) => {
                        format!("{}\u{0}{caller}", skill.name())
                    }
                    _ => skill.name().to_string(),
                },
                image,
                egress,
            }),
            Decision::Prewarmed => {
                let taken = self.prewarmed.take(skill.name());
                self.refill(skill, &image, egress.as_deref());
                match taken {
                    Some(container) => Ok(Route::Prewarmed {
                        image,
                        container,
                        egress,
                    }),
                    None => self.cold(id, admitted, options, image, egress).await,
                }
            }
            Decision::Native | Decision::Recycled | Decision::Cold => {
                self.cold(id, admitted, options, image, egress).await
            }
        }
    }

    /// The egress gateway of a skill with an allowlist, made on first use; `None` for
    /// every other skill.
    async fn gateway(&self, skill: &Skill) -> Result<Option<Arc<Gateway>>, Refusal> {
        match &skill.manifest.run.network {
            Network::Egress(destinations) => self.gateways.ensure(destinations).await.map(Some),
            Network::None | Network::Bridge => Ok(None),
        }
    }

    /// Run a prepared route to the skill's end; for a skill with an egress allowlist,
    /// learn what its proxy refused it meanwhile.
    pub(crate) async fn run(
        &self,
        route: Route<'_>,
        mut request: RunRequest,
    ) -> Result<RunOutcome, Refusal> {
        let gateway = route.egress();
        request.egress = gateway.clone();
        let since = SystemTime::now();
        let mut outcome = match route {
            Route::Native(library) => run_native(library, request).await,
            Route::Warm {
                skill,
                image,
                egress,
            } => {
                self.run_warm(skill, &image, egress.as_deref(), request)
                    .await
            }
            Route::Recycled {
                skill,
                key,
                image,
                egress,
            } => {
                request.trailer_key = Some(new_key());
                self.run_recycled(skill, &key, &image, egress.as_deref(), request)
                    .await
            }
            Route::Prewarmed {
                image, container, ..
            } => {
                // One container, one request: the init's trailer tells how it ended.
                request.trailer_key = image.init_command.is_some().then(new_key);
                self.run_prewarmed(container, request).await
            }
            Route::Cold {
                image,
                name,
                spec,
                holder,
                view,
                ..
            } => {
                request.trailer_key = image.init_command.is_some().then(new_key);
                request.egress_client = holder.as_ref().and_then(|h| h.address);
                let ran = self.run_cold(&name, &spec, request).await;
                // Used once: it goes (to the reaper) with this call's container.
                drop(holder);
                drop(view);
                ran
            }
        }?;
        if let (Some(gateway), Some(client)) = (gateway, outcome.egress.client) {
            outcome.egress.denied = gateway
                .denials(self.engine.as_ref(), client, since, SystemTime::now())
                .await;
        }
        Ok(outcome)
    }

    /// Fill the prewarm pool of `skill` now rather than at its first call; for a skill
    /// whose plain calls are recycled, start that many recycled containers ahead.
    pub(crate) async fn prewarm(
        &self,
        skill: &Skill,
        images: &ImageResolver,
    ) -> Result<(), Refusal> {
        if self.prewarm_target(skill) == 0 {
            return Err(Refusal::new(
                codes::INVALID_OPTIONS,
                format!(
                    "skill {} has run.prewarm 0 and no host override",
                    skill.name()
                ),
            ));
        }
        let image = images.resolve(skill).await?;
        let egress = self.gateway(skill).await?;
        if self.recycles(skill) && image.init_recycles {
            self.fill_recycled(skill, &image, egress.as_deref());
        } else {
            self.refill(skill, &image, egress.as_deref());
        }
        Ok(())
    }

    /// Whether plain calls of `skill` are recycled on this host.
    fn recycles(&self, skill: &Skill) -> bool {
        skill.manifest.run.recycle.is_some() && self.recycle != RecyclePolicy::Off
    }

    /// Start recycled containers of `skill`, shared by every caller, up to its prewarm
    /// target, in the background.
    fn fill_recycled(&self, skill: &Skill, image: &SkillImage, egress: Option<&Gateway>) {
        let target = self.prewarm_target(skill);
        if target == 0 || self.recycle != RecyclePolicy::Shared {
            return;
        }
        let limits = recycle_limits(skill);
        let spec = || self.shared_spec(skill, image, Role::Recycled, egress);
        self.recycled
            .fill((skill.name(), skill.name()), &limits, spec, target);
    }

    /// Prewarmed containers of `skill` ready to use.
    pub(crate) fn prewarmed_ready(&self, skill: &str) -> usize {
        self.prewarmed.ready(skill)
    }

    /// Idle serve-mode workers of `skill`.
    pub(crate) fn idle_workers(&self, skill: &str) -> usize {
        self.workers.idle(skill)
    }

    /// Idle recycled containers of `skill` (those shared by every caller).
    pub(crate) fn idle_recycled(&self, skill: &str) -> usize {
        self.recycled.idle(skill)
    }

    /// Wait until the network holders being made are made, and the containers of
    /// finished calls are removed.
    pub(crate) async fn settled(&self) {
        self.holders.settled().await;
        self.reaper.settled().await
    }

    /// Retire workers and prewarmed containers and remove everything held.
    pub(crate) async fn shutdown(&self) {
        self.prewarmed.close();
        self.holders.close();
        self.workers.close();
        self.recycled.close();
        self.reaper.settled().await;
        self.reaper.shutdown().await;
        // Last: a network goes only once no container is on it.
        self.gateways.shutdown().await;
    }

    async fn run_warm(
        &self,
        skill: &Skill,
        image: &SkillImage,
        egress: Option<&Gateway>,
        request: RunRequest,
    ) -> Result<RunOutcome, Refusal> {
        let limits = &skill.manifest.run.serve;
        // Only a skill's first warm call makes its workers' configuration.
        let spec = || self.shared_spec(skill, image, Role::Worker, egress);
        let exchanged = self
            .workers
            .exchange((skill.name(), skill.name()), limits, spec, &request)
            .await;
        pooled(exchanged, skill.name(), "workers", limits.workers)
    }

    /// A call in a recycled container: the init runs the skill's command for it and
    /// resets the container after; a container whose reset was not clean is retired.
    async fn run_recycled(
        &self,
        skill: &Skill,
        key: &str,
        image: &SkillImage,
        egress: Option<&Gateway>,
        request: RunRequest,
    ) -> Result<RunOutcome, Refusal> {
        let limits = recycle_limits(skill);
        let spec = || self.shared_spec(skill, image, Role::Recycled, egress);
        let exchanged = self
            .recycled
            .exchange((skill.name(), key), &limits, spec, &request)
            .await;
        // Replace a container this call retired, off the call's path.
        self.fill_recycled(skill, image, egress);
        if let Ok((exchange, _)) = &exchanged {
            let verdict = exchange.outcome.init_report.and_then(|r| r.reset);
            if verdict != Some(ResetVerdict::Clean) {
                let reason = verdict.map_or("no_report", ResetVerdict::as_str);
                tracing::debug!(skill = skill.name(), reason, "retired a recycled container");
                metrics::counter!(RECYCLED_RETIRED, "skill" => skill.name().to_string(), "reason" => reason)
                    .increment(1);
            }
        }
        pooled(
            exchanged,
            skill.name(),
            "recycled containers",
            limits.workers,
        )
    }

    async fn run_prewarmed(
        &self,
        container: Attached,
        request: RunRequest,
    ) -> Result<RunOutcome, Refusal> {
        let guard = ContainerGuard::for_existing(container.name.clone(), self.engine.clone());
        run_attached(
            &self.engine,
            &self.reaper,
            guard,
            container,
            request,
            Instant::now(),
        )
        .await
        .map_err(|e| Refusal::new(codes::ENGINE_ERROR, e.to_string()))
    }

    async fn run_cold(
        &self,
        name: &str,
        spec: &ContainerSpec,
        request: RunRequest,
    ) -> Result<RunOutcome, Refusal> {
        run_container(&self.engine, &self.reaper, name, spec, request)
            .await
            .map_err(|e| Refusal::new(codes::ENGINE_ERROR, e.to_string()))
    }

    /// A fresh container's route, configured for this call alone; with an allowlist, it
    /// joins a network holder.
    async fn cold(
        &self,
        id: &str,
        admitted: &Admitted<'_>,
        options: &InvokeOptions,
        image: SkillImage,
        egress: Option<Arc<Gateway>>,
    ) -> Result<Route<'static>, Refusal> {
        let holder = match &egress {
            Some(gateway) => Some(self.holders.take(gateway).await?),
            None => None,
        };
        let manifest = &admitted.skill.manifest;
        let view = match &admitted.workspace {
            Some(dir) if self.workspace_views => Some(
                workspace_mount::make_view(dir, &self.instance, id).map_err(|e| {
                    Refusal::new(
                        codes::HOST_ERROR,
                        format!(
                            "cannot make the nosuid,nodev view of workspace {}: {e}",
                            dir.display()
                        ),
                    )
                })?,
            ),
            _ => None,
        };
        let workspace = view
            .as_ref()
            .map(WorkspaceView::path)
            .or(admitted.workspace.as_deref());
        let spec = container_spec(&ContainerInputs {
            manifest,
            image: &image.reference,
            run_as: image.run_as,
            labels: labels::for_container(&manifest.name, Role::Invocation(id), &self.instance),
            env: &options.env,
            workspace: workspace.map(|dir| Workspace::Dir(dir, manifest.run.workspace)),
            init_command: image.init_command.as_deref(),
            egress: egress.as_deref(),
            holder: holder.as_ref().map(|h| h.name.as_str()),
        });
        Ok(Route::Cold {
            name: labels::container_name(&manifest.name, Role::Invocation(id)),
            image,
            spec: Box::new(spec),
            egress,
            holder,
            view,
        })
    }

    fn refill(&self, skill: &Skill, image: &SkillImage, egress: Option<&Gateway>) {
        let spec = self.shared_spec(skill, image, Role::Prewarmed, egress);
        // Started up to the init only where there is one to wait for the request.
        let start = self.prewarm_started && image.init_command.is_some();
        self.prewarmed
            .refill(skill.name(), self.prewarm_target(skill), &spec, start);
    }

    /// The configuration of a container made before its call is known: prewarmed or a
    /// worker. Its invocation label names its role instead of an id.
    fn shared_spec(
        &self,
        skill: &Skill,
        image: &SkillImage,
        role: Role<'_>,
        egress: Option<&Gateway>,
    ) -> ContainerSpec {
        let manifest = &skill.manifest;
        let serve = manifest.run.mode == Mode::Serve;
        let recycled = matches!(role, Role::Recycled);
        let mut spec = container_spec(&ContainerInputs {
            manifest,
            image: &image.reference,
            run_as: image.run_as,
            labels: labels::for_container(skill.name(), role, &self.instance),
            env: &BTreeMap::new(),
            workspace: None,
            // A worker answers many requests and ends with no one to report to.
            init_command: image.init_command.as_deref().filter(|_| !serve),
            egress,
            // Held for later, it has its own endpoint, made off any call's path.
            holder: None,
        });
        if serve {
            spec.env.push(format!("{SERVE_MODE_ENV}=serve"));
        }
        if recycled {
            spec.env.push(format!("{RECYCLE_ENV}=1"));
        }
        spec
    }

    pub(crate) fn prewarm_target(&self, skill: &Skill) -> usize {
        if skill.manifest.run.mode == Mode::Serve {
            return 0;
        }
        let wanted = self.prewarm.get(skill.name()).copied();
        wanted.unwrap_or(skill.manifest.run.prewarm) as usize
    }
}

/// The bounds of `skill`'s recycled containers, in a pool's words.
fn recycle_limits(skill: &Skill) -> crate::manifest::Serve {
    match &skill.manifest.run.recycle {
        Some(recycle) => recycle.as_pool(),
        None => crate::manifest::Recycle::default().as_pool(),
    }
}

/// A pooled call's outcome, or the refusal that says why no container of the pool
/// answered; `what` names the pool's containers, `size` how many it keeps.
fn pooled(
    exchanged: Result<(crate::paths::serve_worker::Exchange, std::time::Duration), ServeError>,
    skill: &str,
    what: &str,
    size: u32,
) -> Result<RunOutcome, Refusal> {
    match exchanged {
        Ok((exchange, waited)) => {
            let mut run = exchange.outcome;
            run.startup = waited;
            Ok(run)
        }
        Err(ServeError::Busy) => Err(Refusal::new(
            codes::TIMEOUT,
            format!("all {size} {what} of {skill} stayed busy until the deadline"),
        )),
        Err(ServeError::Closed) => Err(Refusal::new(
            codes::HOST_SHUTTING_DOWN,
            format!("the host is shutting down; {skill}'s {what} are retired"),
        )),
        Err(ServeError::Engine(e)) => Err(Refusal::new(codes::ENGINE_ERROR, e.to_string())),
    }
}

/// Run through a native library; a cancelled call (the runtime shutting down) is the
/// host's failure, not the skill's.
async fn run_native(
    library: Arc<NativeLibrary>,
    request: RunRequest,
) -> Result<RunOutcome, Refusal> {
    native::run(library, request)
        .await
        .map_err(|e| Refusal::new(codes::HOST_SHUTTING_DOWN, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The path of a call of this shape.
    fn path(native: bool, mode: Mode, plain: bool, recycles: bool, prewarm: usize) -> Decision {
        decide(Shape {
            native,
            mode,
            plain,
            recycles,
            prewarm_target: prewarm,
        })
    }

    #[test]
    fn native_wins_whenever_it_is_asked_for() {
        for mode in [Mode::Oneshot, Mode::Serve] {
            for plain in [true, false] {
                assert_eq!(path(true, mode, plain, true, 3), Decision::Native);
            }
        }
    }

    #[test]
    fn plain_calls_take_the_fast_path_of_their_mode() {
        assert_eq!(path(false, Mode::Serve, true, false, 0), Decision::Warm);
        assert_eq!(
            path(false, Mode::Oneshot, true, false, 2),
            Decision::Prewarmed
        );
        assert_eq!(path(false, Mode::Oneshot, true, false, 0), Decision::Cold);
        assert_eq!(
            path(false, Mode::Oneshot, true, true, 2),
            Decision::Recycled,
            "over prewarm"
        );
        assert_eq!(
            path(false, Mode::Oneshot, true, true, 0),
            Decision::Recycled
        );
    }

    #[test]
    fn calls_with_their_own_env_or_workspace_go_cold() {
        assert_eq!(path(false, Mode::Serve, false, false, 0), Decision::Cold);
        assert_eq!(path(false, Mode::Oneshot, false, false, 2), Decision::Cold);
        assert_eq!(
            path(false, Mode::Oneshot, false, true, 2),
            Decision::Cold,
            "never recycled"
        );
    }

    mod with_a_double {
        use std::path::PathBuf;
        use std::time::Duration;

        use super::super::*;
        use crate::engine::double::{FakeEngine, Script};
        use crate::manifest::Manifest;
        use crate::run::run_as::RunAs;

        const ANSWER: &[u8] = b"{\"type\":\"result\",\"id\":\"r-1\",\"ok\":true,\"output\":{}}\n";

        fn router(prewarm: u32) -> (Arc<FakeEngine>, Router, Skill, SkillImage) {
            let fake = FakeEngine::new(|_, _| Script {
                stdout: ANSWER.to_vec(),
                ..Default::default()
            });
            let text = format!(
                "name: echo\nversion: 1.0.0\nprotocol: '^1'\nrun:\n  user: '10001:10001'\n  prewarm: {prewarm}\nactions: {{say: {{}}}}\n"
            );
            let skill = Skill {
                manifest: Manifest::parse(&text).unwrap(),
                dir: PathBuf::from("/skills/echo"),
                relative_dir: PathBuf::from("echo"),
            };
            let image = SkillImage {
                reference: "skill-echo:abc".into(),
                init_command: Some(vec!["/skill".into()]),
                init_recycles: true,
                run_as: RunAs {
                    uid: 10001,
                    gid: 10001,
                },
            };
            let config = test_config();
            let engine: Containers = fake.clone();
            let router = Router::new(engine, Instance::current(), config);
            (fake, router, skill, image)
        }

        fn request() -> RunRequest {
            RunRequest::for_test("r-1", b"{}\n".to_vec())
        }

        fn test_config() -> RouterConfig {
            RouterConfig {
                prewarm: BTreeMap::new(),
                prewarm_cap: 8,
                prewarm_started: true,
                workspace_views: false,
                allow_native: false,
                egress_network: "bridge".into(),
                egress_proxy_image: "skillhost/egress-proxy:latest".into(),
                recycle: RecyclePolicy::Shared,
            }
        }

        /// A router whose containers answer as a recycling init does: the call's header
        /// line gives the key; the request line is answered with a result and the
        /// trailer, whose verdict is `leftover` (the container then exits) for the
        /// action `dirty`, `clean` otherwise.
        fn recycling_router() -> (Arc<FakeEngine>, Router, Skill, SkillImage) {
            let key = Arc::new(std::sync::Mutex::new(String::new()));
            let fake = FakeEngine::new(move |_, line| {
                let text = String::from_utf8_lossy(line).to_string();
                if let Some((header_key, _)) = text.split_once(' ') {
                    *key.lock().unwrap() = header_key.to_string();
                    return Script::default();
                }
                let dirty = text.contains("dirty");
                let verdict = if dirty { "leftover" } else { "clean" };
                let trailer = format!(
                    "\0skillhost-exit:{}:0:0:-1:0:{verdict}\n",
                    key.lock().unwrap()
                );
                let mut stdout = ANSWER.to_vec();
                stdout.extend_from_slice(trailer.as_bytes());
                Script {
                    stdout,
                    stderr: trailer.into_bytes(),
                    exit: i64::from(dirty),
                    hang: false,
                }
            });
            let (_, _, _, image) = router(0);
            let text = "name: echo\nversion: 1.0.0\nprotocol: '^1'\nrun:\n  user: '10001:10001'\n  recycle: {containers: 2}\nactions: {say: {}, dirty: {}}\n";
            let skill = Skill {
                manifest: Manifest::parse(text).unwrap(),
                dir: PathBuf::from("/skills/echo"),
                relative_dir: PathBuf::from("echo"),
            };
            let config = test_config();
            let engine: Containers = fake.clone();
            (
                fake.clone(),
                Router::new(engine, Instance::current(), config),
                skill,
                image,
            )
        }

        #[tokio::test]
        async fn a_recycled_container_serves_call_after_call_until_a_reset_is_not_clean() {
            let (fake, router, skill, image) = recycling_router();
            let call = |action: &str| {
                let route = Route::Recycled {
                    skill: &skill,
                    key: "echo".into(),
                    image: image.clone(),
                    egress: None,
                };
                let line = format!("{{\"id\":\"r-1\",\"action\":\"{action}\"}}\n");
                router.run(route, RunRequest::for_test("r-1", line.into_bytes()))
            };
            let creates = || {
                fake.calls()
                    .iter()
                    .filter(|c| c.starts_with("create"))
                    .count()
            };
            for _ in 0..3 {
                let outcome = call("say").await.unwrap();
                assert!(outcome.decoded.result.is_some());
                let report = outcome.init_report.unwrap();
                assert_eq!(report.reset, Some(ResetVerdict::Clean));
                assert_eq!(report.peak_memory_bytes, None);
            }
            assert_eq!(creates(), 1, "one container served all three");
            assert_eq!(router.idle_recycled("echo"), 1);
            let spec = fake.spec(&fake.containers()[0]).unwrap();
            assert!(spec.env.iter().any(|e| e == "SKILLHOST_INIT_RECYCLE=1"));

            let dirty = call("dirty").await.unwrap();
            assert_eq!(
                dirty.init_report.and_then(|r| r.reset),
                Some(ResetVerdict::Leftover)
            );
            router.settled().await;
            assert!(fake.containers().is_empty(), "retired and removed");
            assert_eq!(router.idle_recycled("echo"), 0);
            call("say").await.unwrap();
            assert_eq!(creates(), 2, "the next call has a new container");
            router.shutdown().await;
            assert!(fake.containers().is_empty());
        }

        #[tokio::test]
        async fn a_prewarmed_call_takes_a_started_container_and_the_pool_refills() {
            let (fake, router, skill, image) = router(1);
            router.refill(&skill, &image, None);
            while router.prewarmed_ready("echo") == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let container = router.prewarmed.take("echo").unwrap();
            let name = container.name.clone();
            assert!(container.started, "started up to its init");
            let spec = fake.spec(&name).unwrap();
            assert_eq!(
                spec.labels[crate::lifecycle::labels::INVOCATION],
                "prewarmed"
            );
            router.refill(&skill, &image, None);
            let route = Route::Prewarmed {
                image,
                container,
                egress: None,
            };
            let outcome = router.run(route, request()).await.unwrap();
            assert!(outcome.decoded.result.is_some());
            router.settled().await;
            assert!(
                !fake.containers().contains(&name),
                "used once, then removed"
            );
            router.shutdown().await;
            assert!(fake.containers().is_empty(), "{:?}", fake.containers());
        }

        #[tokio::test]
        async fn a_cold_call_runs_its_own_spec_and_shutdown_leaves_nothing() {
            let (fake, router, skill, image) = router(0);
            let spec = router.shared_spec(&skill, &image, Role::Invocation("i-1"), None);
            let route = Route::Cold {
                image,
                name: "skillhost-echo-i-1".into(),
                spec: Box::new(spec),
                egress: None,
                holder: None,
                view: None,
            };
            let outcome = router.run(route, request()).await.unwrap();
            assert_eq!(outcome.exit_code, Some(0));
            assert!(outcome.decoded.result.is_some());
            router.shutdown().await;
            assert!(fake.containers().is_empty());
            assert_eq!(fake.calls()[0], "create skillhost-echo-i-1");
        }
    }

    #[test]
    fn a_path_is_reported_before_the_route_is_ready() {
        assert_eq!(Decision::Native.path(), InvocationPath::Native);
        assert_eq!(Decision::Warm.path(), InvocationPath::Warm);
        assert_eq!(Decision::Prewarmed.path(), InvocationPath::Cold);
        assert_eq!(Decision::Cold.path(), InvocationPath::Cold);
    }
}
