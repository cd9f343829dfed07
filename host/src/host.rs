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

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::models::ContainerCreateBody;
use serde_json::Value;
use skill_sdk::{Request, SERVE_MODE_ENV};
use tokio::sync::OnceCell;

use crate::container_reaper::Reaper;
use crate::container_run::{
    run_attached, run_container, ContainerGuard, HostKill, RunOutcome, RunRequest,
};
use crate::container_spec::{container_body, ContainerInputs};
use crate::discovery::{Catalog, Skill};
use crate::engine::Engine;
use crate::exit_trailer::new_key;
use crate::frame_reader::FrameReader;
use crate::image_build::{ImageBuilder, ImageTarget};
use crate::instance::Instance;
use crate::invocation::{InvocationError, InvocationResult, InvokeOptions, Path, Stats, Status};
use crate::manifest::Mode;
use crate::native_skill::NativeLibrary;
use crate::prewarm_pool::PrewarmPool;
use crate::serve_pool::{ServeError, ServePools};
use crate::{labels, leftovers, outcome, skill_init, workspace, Error};

/// How a [`Host`] is set up.
#[derive(Debug, Clone)]
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
    /// 100 ms here), at the cost of a running container (its init, the engine's shim)
    /// per prewarmed slot. Images without the init are only created.
    pub prewarm_started: bool,
    /// Whether a caller may ask for native mode, which runs a skill's library inside
    /// this process with no sandbox at all. Only for trusted skills.
    pub allow_native: bool,
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
            prewarm_started: false,
            allow_native: false,
        }
    }
}

/// A skill's image, as containers are made of it.
#[derive(Debug, Clone)]
struct SkillImage {
    /// `skill-<name>:<hash>`.
    reference: String,
    /// The image's command, when the image has skillhost's init to run it.
    init_command: Option<Vec<String>>,
}

/// Runs skills' actions in fresh hardened containers.
pub struct Host {
    engine: Engine,
    catalog: Catalog,
    config: HostConfig,
    instance: Instance,
    builder: ImageBuilder,
    /// Each skill's image, resolved once: concurrent first uses share one resolution.
    images: Mutex<HashMap<String, Arc<OnceCell<SkillImage>>>>,
    /// The engine's runtimes, asked once, when a skill first names one.
    runtimes: OnceCell<Vec<String>>,
    /// Each action's input schema, compiled once: (skill, action) to validator.
    validators: HashMap<(String, String), jsonschema::Validator>,
    reaper: Reaper,
    prewarmed: PrewarmPool,
    workers: ServePools,
    /// Native libraries, loaded once each when native mode is allowed and asked for.
    natives: Mutex<HashMap<String, Arc<NativeLibrary>>>,
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
        let catalog = Catalog::discover(&config.skill_roots)?;
        for broken in &catalog.broken {
            tracing::warn!("skipping a skill whose manifest is broken: {broken}");
        }
        leftovers::reap_dead_instances(engine.docker()).await?;
        // Manifest validation already compiled each schema, so none fails here.
        let validators = catalog
            .skills
            .iter()
            .flat_map(|(skill, found)| {
                found
                    .manifest
                    .actions
                    .iter()
                    .filter_map(move |(action, declared)| {
                        let validator = jsonschema::validator_for(&declared.input).ok()?;
                        Some(((skill.clone(), action.clone()), validator))
                    })
            })
            .collect();
        let builder = ImageBuilder::new(
            engine.clone(),
            Arc::new(|name: &str, event| {
                tracing::debug!(skill = name, ?event, "build");
            }),
        );
        let reaper = Reaper::new(engine.docker().clone());
        Ok(Host {
            prewarmed: PrewarmPool::new(
                engine.docker().clone(),
                reaper.clone(),
                config.prewarm_cap,
            ),
            workers: ServePools::new(engine.docker().clone(), reaper.clone()),
            reaper,
            natives: Mutex::default(),
            engine,
            catalog,
            config,
            instance: Instance::current(),
            builder,
            images: Mutex::new(HashMap::new()),
            runtimes: OnceCell::new(),
            validators,
        })
    }

    /// The skills this host found.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// This host process's id, as in each container's `io.skillhost.instance` label.
    pub fn instance_id(&self) -> &str {
        &self.instance.id
    }

    /// Invoke `action` of `skill` with `args` and the manifest's defaults.
    pub async fn invoke(&self, skill: &str, action: &str, args: Value) -> InvocationResult {
        self.invoke_with(skill, action, args, InvokeOptions::default())
            .await
    }

    /// Invoke with per-call options. Never fails: every outcome, including refusals and
    /// engine failures, is a result with its own status.
    pub async fn invoke_with(
        &self,
        skill: &str,
        action: &str,
        args: Value,
        options: InvokeOptions,
    ) -> InvocationResult {
        let started = Instant::now();
        let id = uuid::Uuid::new_v4().to_string();
        let mut result = InvocationResult {
            id: id.clone(),
            skill: skill.to_string(),
            action: action.to_string(),
            image: None,
            status: Status::Rejected,
            path: Path::Cold,
            output: None,
            error: None,
            exit_code: None,
            oom_killed: false,
            duration_ms: 0,
            logs: String::new(),
            logs_truncated: false,
            stats: Stats::default(),
        };
        let finish = |mut result: InvocationResult| {
            result.duration_ms = started.elapsed().as_millis() as u64;
            result
        };
        let refuse = |mut result: InvocationResult, status, code: &str, message: String| {
            result.status = status;
            result.error = Some(InvocationError::new(code, message));
            finish(result)
        };

        let Some(found) = self.catalog.get(skill) else {
            let known: Vec<&str> = self.catalog.skills.keys().map(String::as_str).collect();
            let message = format!(
                "no skill named {skill:?}; this host has: {}",
                known.join(", ")
            );
            return refuse(result, Status::Rejected, "unknown_skill", message);
        };
        let prepared = match self.prepare(found, action, &args, &options) {
            Ok(prepared) => prepared,
            Err((code, message)) => return refuse(result, Status::Rejected, code, message),
        };
        let output_limit = found.manifest.run.limits.output.0;
        let mut request = Request::new(id.clone(), action, args);
        request.deadline_ms = Some(prepared.timeout.as_millis() as u64);
        let mut run_request = RunRequest {
            stdin: request.to_line().into_bytes(),
            request_id: id.clone(),
            timeout: prepared.timeout,
            output_limit,
            log_limit: self.config.log_limit_bytes,
            on_progress: options.on_progress.clone(),
            trailer_key: None,
        };
        if options.native {
            result.path = Path::Native;
            let run = match self.native_library(found) {
                Ok(library) => run_native(library, run_request).await,
                Err(message) => {
                    return refuse(result, Status::Rejected, "native_unavailable", message)
                }
            };
            return finish(complete(result, &run, prepared.timeout, output_limit));
        }
        if let Err(message) = self.check_runtime(found).await {
            return refuse(
                result,
                Status::InfrastructureError,
                "runtime_unavailable",
                message,
            );
        }
        let image = match self.image_for(found).await {
            Ok(image) => image,
            Err(message) => {
                return refuse(
                    result,
                    Status::InfrastructureError,
                    "image_unavailable",
                    message,
                )
            }
        };
        result.image = Some(image.reference.clone());

        let manifest = &found.manifest;
        // Prewarmed containers and workers were configured before this call: they serve
        // only calls that add nothing of their own to the configuration.
        let plain = options.env.is_empty() && prepared.workspace.is_none();
        let docker = self.engine.docker();
        let run = if plain && manifest.run.mode == Mode::Serve {
            result.path = Path::Warm;
            let body = self.shared_body(found, &image, labels::ROLE_WORKER);
            match self
                .workers
                .exchange(skill, &manifest.run.serve, &body, &run_request)
                .await
            {
                Ok((exchange, waited)) => {
                    let mut run = exchange.outcome;
                    run.startup = waited;
                    Ok(run)
                }
                Err(ServeError::Busy) => {
                    let message = format!(
                        "all {} workers of {skill} stayed busy until the deadline",
                        manifest.run.serve.workers
                    );
                    return refuse(result, Status::Timeout, "timeout", message);
                }
                Err(ServeError::Engine(e)) => Err(e),
            }
        } else {
            // One container, one request: the init's trailer tells how it ended.
            run_request.trailer_key = image.init_command.is_some().then(new_key);
            let prewarm = self.prewarm_target(found);
            let taken = (plain && prewarm > 0)
                .then(|| self.prewarmed.take(skill))
                .flatten();
            if plain && prewarm > 0 {
                let body = self.shared_body(found, &image, labels::ROLE_PREWARMED);
                self.prewarmed
                    .refill(skill, prewarm, &body, self.prewarm_starts(&image));
            }
            match taken {
                Some(attached) => {
                    result.path = Path::Prewarmed;
                    let guard = ContainerGuard::for_existing(attached.name.clone());
                    run_attached(
                        docker,
                        &self.reaper,
                        guard,
                        attached,
                        run_request,
                        Instant::now(),
                    )
                    .await
                }
                None => {
                    let labels = self.labels(skill, &id);
                    let body = container_body(&ContainerInputs {
                        manifest,
                        image: &image.reference,
                        labels,
                        env: &options.env,
                        workspace: prepared
                            .workspace
                            .as_deref()
                            .map(|dir| (dir, manifest.run.workspace)),
                        init_command: image.init_command.as_deref(),
                    });
                    let name = format!("skillhost-{skill}-{}", &id[..8]);
                    run_container(docker, &self.reaper, &name, body, run_request).await
                }
            }
        };
        match run {
            Ok(run) => finish(complete(result, &run, prepared.timeout, output_limit)),
            Err(e) => refuse(
                result,
                Status::InfrastructureError,
                "engine_error",
                e.to_string(),
            ),
        }
    }

    /// Fill the prewarm pool of `skill` now rather than at its first invocation. Returns
    /// once the creates are started; [`Host::prewarmed_ready`] tells how many are ready.
    pub async fn prewarm(&self, skill: &str) -> Result<(), String> {
        let found = self
            .catalog
            .get(skill)
            .ok_or_else(|| format!("no skill named {skill:?}"))?;
        let target = self.prewarm_target(found);
        if target == 0 {
            return Err(format!(
                "skill {skill} has run.prewarm 0 and no host override"
            ));
        }
        let image = self.image_for(found).await?;
        let body = self.shared_body(found, &image, labels::ROLE_PREWARMED);
        self.prewarmed
            .refill(skill, target, &body, self.prewarm_starts(&image));
        Ok(())
    }

    /// Prewarmed containers of `skill` ready to start.
    pub fn prewarmed_ready(&self, skill: &str) -> usize {
        self.prewarmed.ready(skill)
    }

    /// Idle serve-mode workers of `skill`.
    pub fn idle_workers(&self, skill: &str) -> usize {
        self.workers.idle(skill)
    }

    /// Wait until the containers of finished invocations are removed. Results do not
    /// wait for it; a caller about to count containers does.
    pub async fn settled(&self) {
        self.reaper.settled().await
    }

    /// Retire workers and prewarmed containers and remove everything this host holds.
    /// Dropping the host does the same, blocking; a process about to exit calls this.
    pub async fn shutdown(&self) {
        self.prewarmed.close();
        self.workers.close();
        self.reaper.settled().await;
        self.reaper.shutdown().await;
    }

    fn labels(&self, skill: &str, invocation: &str) -> HashMap<String, String> {
        HashMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::SKILL.to_string(), skill.to_string()),
            (labels::INVOCATION.to_string(), invocation.to_string()),
            (labels::INSTANCE.to_string(), self.instance.id.clone()),
        ])
    }

    /// The configuration of a container made before its invocation is known: prewarmed
    /// or a worker. Its invocation label names its role instead of an id.
    fn shared_body(&self, skill: &Skill, image: &SkillImage, role: &str) -> ContainerCreateBody {
        let manifest = &skill.manifest;
        // A worker answers many requests and ends with no one to report to.
        let one_shot = manifest.run.mode != Mode::Serve;
        let mut body = container_body(&ContainerInputs {
            manifest,
            image: &image.reference,
            labels: self.labels(skill.name(), role),
            env: &BTreeMap::new(),
            workspace: None,
            init_command: image.init_command.as_deref().filter(|_| one_shot),
        });
        if manifest.run.mode == Mode::Serve {
            body.env
                .get_or_insert_with(Vec::new)
                .push(format!("{SERVE_MODE_ENV}=serve"));
        }
        body
    }

    /// Whether prewarmed containers of `image` are started up to the init.
    fn prewarm_starts(&self, image: &SkillImage) -> bool {
        self.config.prewarm_started && image.init_command.is_some()
    }

    fn prewarm_target(&self, skill: &Skill) -> usize {
        if skill.manifest.run.mode == Mode::Serve {
            return 0;
        }
        let wanted = self.config.prewarm.get(skill.name()).copied();
        wanted.unwrap_or(skill.manifest.run.prewarm) as usize
    }

    /// The skill's native library, when this host and the manifest allow native mode.
    fn native_library(&self, skill: &Skill) -> Result<Arc<NativeLibrary>, String> {
        if !self.config.allow_native {
            return Err("native mode is off in this host's config (allow_native); it runs skills unsandboxed, in process".into());
        }
        let native = skill.manifest.native.as_ref().ok_or_else(|| {
            format!(
                "skill {} declares no native library (manifest key native.library)",
                skill.name()
            )
        })?;
        let mut natives = self.natives.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(library) = natives.get(skill.name()) {
            return Ok(library.clone());
        }
        let path = skill.dir.join(&native.library);
        let library = Arc::new(NativeLibrary::load(&path).map_err(|e| e.to_string())?);
        tracing::warn!(skill = skill.name(), path = %path.display(), "loaded a native skill library: it runs unsandboxed, in this process");
        natives.insert(skill.name().to_string(), library.clone());
        Ok(library)
    }

    /// Everything checked before a container may exist.
    fn prepare(
        &self,
        skill: &Skill,
        action: &str,
        args: &Value,
        options: &InvokeOptions,
    ) -> Result<Prepared, (&'static str, String)> {
        let manifest = &skill.manifest;
        if !manifest.actions.contains_key(action) {
            let known: Vec<&str> = manifest.actions.keys().map(String::as_str).collect();
            return Err((
                "unknown_action",
                format!(
                    "skill {} has no action {action:?}; it has: {}",
                    manifest.name,
                    known.join(", ")
                ),
            ));
        }
        let size = serde_json::to_vec(args)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > self.config.max_input_bytes {
            return Err((
                "input_too_large",
                format!(
                    "arguments are {size} bytes; the limit is {}",
                    self.config.max_input_bytes
                ),
            ));
        }
        let key = (manifest.name.clone(), action.to_string());
        let validator = self.validators.get(&key).ok_or_else(|| {
            (
                "invalid_schema",
                format!("the input schema of {action} does not compile"),
            )
        })?;
        let problems: Vec<String> = validator
            .iter_errors(args)
            .take(10)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect();
        if !problems.is_empty() {
            return Err((
                "invalid_args",
                format!(
                    "arguments do not match the input schema of {action}: {}",
                    problems.join("; ")
                ),
            ));
        }
        let max = manifest.run.limits.timeout.0;
        let timeout = match options.timeout {
            Some(t) if t.is_zero() || t > max => {
                return Err((
                    "invalid_options",
                    format!(
                        "timeout {t:?} must be above 0 and at most the manifest's {}",
                        manifest.run.limits.timeout
                    ),
                ))
            }
            Some(t) => t,
            None => max,
        };
        let allowed: Vec<&String> = manifest.run.env.iter().collect();
        if let Some(name) = options.env.keys().find(|name| !allowed.contains(name)) {
            return Err((
                "invalid_options",
                format!(
                    "environment variable {name} is not in the manifest's run.env allowlist ({})",
                    manifest.run.env.join(", ")
                ),
            ));
        }
        let workspace = match &options.workspace {
            Some(dir) => Some(
                workspace::check(dir, manifest.run.workspace, &manifest.run.user)
                    .map_err(|message| ("invalid_options", message))?,
            ),
            None => None,
        };
        Ok(Prepared { timeout, workspace })
    }

    /// A runtime the manifest names must exist in the engine; refused before any container.
    async fn check_runtime(&self, skill: &Skill) -> Result<(), String> {
        let Some(wanted) = &skill.manifest.run.runtime else {
            return Ok(());
        };
        let known = self
            .runtimes
            .get_or_try_init(|| self.engine.runtimes())
            .await
            .map_err(|e| e.to_string())?;
        if known.contains(wanted) {
            return Ok(());
        }
        Err(format!(
            "skill {} asks for the {wanted} runtime, which the engine at {} does not have (it has: {}); install and register it with dockerd first",
            skill.name(),
            self.engine.endpoint(),
            known.join(", ")
        ))
    }

    /// The skill's image, built on first use when allowed.
    async fn image_for(&self, skill: &Skill) -> Result<SkillImage, String> {
        let cell = self
            .images
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(skill.name().to_string())
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            let target = ImageTarget::for_skill(skill);
            let reference = if self.config.build_images {
                let report = self.builder.ensure(&target, false).await.map_err(|e| e.to_string())?;
                report.image
            } else {
                let plan = self.builder.plan(&target).await.map_err(|e| e.to_string())?;
                match self.builder.cached(&plan).await.map_err(|e| e.to_string())? {
                    Some(_) => plan.image(),
                    None => return Err(format!(
                        "image {} is not present and this host does not build: prebuild it with `skillhost build {}`",
                        plan.image(),
                        skill.name()
                    )),
                }
            };
            let inspected = self.engine.inspect_image(&reference).await.map_err(|e| e.to_string())?;
            let init_command = inspected.as_ref().and_then(skill_init::init_command);
            Ok(SkillImage { reference, init_command })
        })
        .await
        .cloned()
    }
}

/// Run a request through a native library on a blocking thread. Past the deadline the
/// host stops waiting; the call itself cannot be stopped and runs on.
async fn run_native(library: Arc<NativeLibrary>, request: RunRequest) -> RunOutcome {
    let line = request.stdin;
    let call = tokio::task::spawn_blocking(move || library.call(&line));
    let mut reader = FrameReader::new(&request.request_id, request.output_limit);
    let (host_kill, exit_code) = match tokio::time::timeout(request.timeout, call).await {
        Err(_) => (Some(HostKill::Timeout), None),
        Ok(Err(_)) => (None, Some(CRASHED_EXIT)),
        Ok(Ok(answer)) => {
            let pushed = reader.push(&answer);
            if let Some(callback) = &request.on_progress {
                pushed.progress.iter().for_each(|p| callback(p));
            }
            (pushed.over_limit.then_some(HostKill::OutputLimit), None)
        }
    };
    RunOutcome {
        exit_code,
        oom_killed: false,
        host_kill,
        decoded: reader.finish(),
        logs: Vec::new(),
        logs_truncated: false,
        stderr_bytes: 0,
        startup: Duration::ZERO,
        init_report: None,
    }
}

/// The exit code reported when a native call failed outside the skill's own handling.
const CRASHED_EXIT: i64 = 101;

/// Fill `result` from what was observed of the run.
fn complete(
    mut result: InvocationResult,
    run: &RunOutcome,
    timeout: Duration,
    output_limit: u64,
) -> InvocationResult {
    let (status, output, error) = outcome::classify(run, timeout.as_millis(), output_limit);
    result.status = status;
    result.output = output;
    result.error = error;
    result.exit_code = run.exit_code;
    result.oom_killed = run.oom_killed;
    result.logs = String::from_utf8_lossy(&run.logs).into_owned();
    result.logs_truncated = run.logs_truncated;
    result.stats = Stats {
        stdout_bytes: run.decoded.bytes,
        stderr_bytes: run.stderr_bytes,
        progress_frames: run.decoded.progress_frames,
        startup_ms: run.startup.as_millis() as u64,
        peak_memory_bytes: run.peak_memory_bytes(),
    };
    result
}

struct Prepared {
    timeout: Duration,
    workspace: Option<PathBuf>,
}
