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

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use skill_sdk::Request;
use tokio::sync::OnceCell;

use crate::container_run::{run_container, RunRequest};
use crate::container_spec::{container_body, ContainerInputs};
use crate::discovery::{Catalog, Skill};
use crate::engine::Engine;
use crate::image_build::{ImageBuilder, ImageTarget};
use crate::instance::Instance;
use crate::invocation::{InvocationError, InvocationResult, InvokeOptions, Stats, Status};
use crate::{labels, leftovers, outcome, workspace, Error};

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
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            skill_roots: vec![PathBuf::from("skills")],
            max_input_bytes: 1024 * 1024,
            log_limit_bytes: 64 * 1024,
            build_images: true,
        }
    }
}

/// Runs skills' actions in fresh hardened containers.
pub struct Host {
    engine: Engine,
    catalog: Catalog,
    config: HostConfig,
    instance: Instance,
    builder: ImageBuilder,
    /// Each skill's image, resolved once: concurrent first uses share one resolution.
    images: Mutex<HashMap<String, Arc<OnceCell<String>>>>,
    /// The engine's runtimes, asked once, when a skill first names one.
    runtimes: OnceCell<Vec<String>>,
    /// Each action's input schema, compiled once: (skill, action) to validator.
    validators: HashMap<(String, String), jsonschema::Validator>,
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
        Ok(Host {
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
        result.image = Some(image.clone());

        let manifest = &found.manifest;
        let labels = HashMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::SKILL.to_string(), skill.to_string()),
            (labels::INVOCATION.to_string(), id.clone()),
            (labels::INSTANCE.to_string(), self.instance.id.clone()),
        ]);
        let body = container_body(&ContainerInputs {
            manifest,
            image: &image,
            labels,
            env: &options.env,
            workspace: prepared
                .workspace
                .as_deref()
                .map(|dir| (dir, manifest.run.workspace)),
        });
        let mut request = Request::new(id.clone(), action, args);
        request.deadline_ms = Some(prepared.timeout.as_millis() as u64);
        let output_limit = manifest.run.limits.output.0;
        let run = run_container(
            self.engine.docker(),
            RunRequest {
                name: format!("skillhost-{skill}-{}", &id[..8]),
                body,
                stdin: request.to_line().into_bytes(),
                request_id: id.clone(),
                timeout: prepared.timeout,
                output_limit,
                log_limit: self.config.log_limit_bytes,
                on_progress: options.on_progress.clone(),
            },
        )
        .await;
        let run = match run {
            Ok(run) => run,
            Err(e) => {
                return refuse(
                    result,
                    Status::InfrastructureError,
                    "engine_error",
                    e.to_string(),
                )
            }
        };
        let (status, output, error) =
            outcome::classify(&run, prepared.timeout.as_millis(), output_limit);
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
        };
        finish(result)
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
    async fn image_for(&self, skill: &Skill) -> Result<String, String> {
        let cell = self
            .images
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(skill.name().to_string())
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            let target = ImageTarget::for_skill(skill);
            if self.config.build_images {
                let report = self.builder.ensure(&target, false).await.map_err(|e| e.to_string())?;
                return Ok(report.image);
            }
            let plan = self.builder.plan(&target).await.map_err(|e| e.to_string())?;
            match self.builder.cached(&plan).await.map_err(|e| e.to_string())? {
                Some(_) => Ok(plan.image()),
                None => Err(format!(
                    "image {} is not present and this host does not build: prebuild it with `skillhost build {}`",
                    plan.image(),
                    skill.name()
                )),
            }
        })
        .await
        .cloned()
    }
}

struct Prepared {
    timeout: Duration,
    workspace: Option<PathBuf>,
}
