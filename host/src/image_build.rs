//! Build or reuse the image for a content hash.
//!
//! A present tag whose label carries the full hash is a cache hit: nothing runs. Otherwise
//! the host-side build command runs, its outputs are staged into the context, and the
//! engine builds from exactly the tar that was hashed. A lock file per image makes
//! concurrent requests, in this process or another, build it once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::build_context::Context;
use crate::content_hash::{BuildSpec, ContentHash, GatheredInputs, HashError};
use crate::discovery::Skill;
use crate::engine::{keep_tail, BuildEvent, BuildFailure, BuildRequest, Engine, EngineError};
use crate::labels;
use crate::skill_init;

/// Receives progress from every build: the image's name and the event.
pub type Observer = Arc<dyn Fn(&str, BuildEvent) + Send + Sync>;

/// Whether the image was reused or built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheOutcome {
    /// The tag was present with the same full hash: nothing ran.
    Hit,
    /// The image was built now.
    Built,
}

/// The outcome of ensuring one image.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    pub name: String,
    pub version: String,
    /// `repository:tag`.
    pub image: String,
    pub hash: ContentHash,
    pub image_id: String,
    pub cache: CacheOutcome,
    pub duration_ms: u64,
}

/// Why an image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{name}: {source}")]
    Inputs {
        name: String,
        #[source]
        source: HashError,
    },
    #[error("{name}: base image {reference} (Dockerfile line {line}) is not present locally, and no registry is used: build it with `skillhost images build` first")]
    MissingBase {
        name: String,
        reference: String,
        line: usize,
    },
    #[error(
        "{name}: the hash needs the ID of base image {reference}, and the engine is not available"
    )]
    NoEngine { name: String, reference: String },
    #[error("{name}: build command `{command}` failed ({status}){}", tail(output))]
    Command {
        name: String,
        command: String,
        status: String,
        output: Vec<String>,
    },
    #[error("{name}: build output {} was not found at {}: did build.command produce it?", dest.display(), source_path.display())]
    MissingOutput {
        name: String,
        dest: PathBuf,
        source_path: PathBuf,
    },
    #[error("{name}: the image build failed at {failure}")]
    Failed {
        name: String,
        #[source]
        failure: BuildFailure,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot take the build lock {}: {source}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn tail(output: &[String]) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!("; its last output:\n    {}", output.join("\n    "))
    }
}

/// One image to ensure: a skill's, or a base image's.
#[derive(Debug, Clone)]
pub struct ImageTarget {
    pub name: String,
    pub version: String,
    pub repository: String,
    pub dir: PathBuf,
    pub dockerfile: Option<PathBuf>,
    pub args: BTreeMap<String, String>,
    pub inputs: Vec<PathBuf>,
    pub command: Option<Vec<String>>,
    pub command_env: BTreeMap<String, String>,
    pub outputs: BTreeMap<PathBuf, PathBuf>,
    /// Labels beyond the hash and version, e.g. `io.skillhost.skill`.
    pub labels: HashMap<String, String>,
    /// Add skillhost's init to the image (skill images, on a host that has it).
    pub init: bool,
}

impl ImageTarget {
    pub fn for_skill(skill: &Skill) -> ImageTarget {
        let m = &skill.manifest;
        ImageTarget {
            name: m.name.clone(),
            version: m.version.to_string(),
            repository: m.repository(),
            dir: skill.dir.clone(),
            dockerfile: Some(m.build.dockerfile.clone()),
            args: m.build.args.clone(),
            inputs: m.build.inputs.clone(),
            command: m.build.command.clone(),
            command_env: m.build.env.clone(),
            outputs: m.build.outputs.clone(),
            labels: HashMap::from([(labels::SKILL.to_string(), m.name.clone())]),
            init: skill_init::binary().is_some(),
        }
    }
}

/// A target whose hash is known.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: ImageTarget,
    pub hash: ContentHash,
    pub gathered: GatheredInputs,
}

impl Plan {
    /// `repository:tag`.
    pub fn image(&self) -> String {
        format!("{}:{}", self.target.repository, self.hash.tag())
    }

    /// The labels every image of this plan carries.
    pub fn labels(&self) -> HashMap<String, String> {
        let mut labels = self.target.labels.clone();
        labels.insert(labels::VERSION.into(), self.target.version.clone());
        labels.insert(labels::HASH.into(), self.hash.0.clone());
        if self.target.init {
            labels.insert(labels::INIT.into(), skill_init::TRAILER_FORMAT.into());
        }
        labels
    }

    /// The labels as `docker import --change` instructions.
    pub fn label_changes(&self) -> Vec<String> {
        let mut labels: Vec<_> = self.labels().into_iter().collect();
        labels.sort();
        labels
            .into_iter()
            .map(|(k, v)| format!("LABEL {k}={}", serde_json::Value::String(v)))
            .collect()
    }
}

/// Gather the inputs and resolve base images to compute the hash. Runs nothing. Without
/// an engine, only images with no base image (`FROM scratch`) can be planned.
pub async fn plan(engine: Option<&Engine>, target: &ImageTarget) -> Result<Plan, BuildError> {
    let owned = target.clone();
    let gathered = tokio::task::spawn_blocking(move || {
        let spec = BuildSpec {
            dir: &owned.dir,
            dockerfile: owned.dockerfile.as_deref(),
            args: &owned.args,
            inputs: &owned.inputs,
        };
        GatheredInputs::gather(&spec)
    })
    .await
    .expect("gathering inputs does not panic")
    .map_err(|source| BuildError::Inputs {
        name: target.name.clone(),
        source,
    })?;
    let mut gathered = gathered;
    if target.init {
        gathered.add_generated(skill_init::CONTEXT_NAME, skill_init::source_digest());
    }
    let mut base_ids = Vec::new();
    for base in &gathered.bases {
        let missing = || BuildError::MissingBase {
            name: target.name.clone(),
            reference: base.reference.clone(),
            line: base.line,
        };
        let Some(engine) = engine else {
            return Err(BuildError::NoEngine {
                name: target.name.clone(),
                reference: base.reference.clone(),
            });
        };
        let image = engine
            .inspect_image(&base.reference)
            .await?
            .ok_or_else(missing)?;
        base_ids.push(image.id);
    }
    let hash = gathered.hash(&base_ids);
    Ok(Plan {
        target: target.clone(),
        hash,
        gathered,
    })
}

/// Builds images against one engine.
#[derive(Clone)]
pub struct ImageBuilder {
    engine: Engine,
    observer: Observer,
}

impl ImageBuilder {
    pub fn new(engine: Engine, observer: Observer) -> Self {
        ImageBuilder { engine, observer }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Gather the inputs and resolve base images to compute the hash. Runs nothing.
    pub async fn plan(&self, target: &ImageTarget) -> Result<Plan, BuildError> {
        plan(Some(&self.engine), target).await
    }

    /// The local image ID when the plan's image is present with the same full hash.
    pub async fn cached(&self, plan: &Plan) -> Result<Option<String>, BuildError> {
        let image = self.engine.inspect_image(&plan.image()).await?;
        Ok(image.and_then(|image| {
            let same = image.labels.get(labels::HASH) == Some(&plan.hash.0);
            if !same {
                tracing::warn!(image = %plan.image(), "tag present with another content hash; rebuilding");
            }
            same.then_some(image.id)
        }))
    }

    /// Reuse the image when present, otherwise build it.
    pub async fn ensure(
        &self,
        target: &ImageTarget,
        force: bool,
    ) -> Result<BuildReport, BuildError> {
        self.ensure_plan(&self.plan(target).await?, force).await
    }

    /// [`Self::ensure`] for a plan already made.
    pub async fn ensure_plan(&self, plan: &Plan, force: bool) -> Result<BuildReport, BuildError> {
        self.ensure_planned(plan, force, |plan| self.build_with_docker(plan))
            .await
    }

    /// The cache check and lock around `produce`, which makes the image and returns its ID.
    pub async fn ensure_planned<'a, F, Fut>(
        &'a self,
        plan: &'a Plan,
        force: bool,
        produce: F,
    ) -> Result<BuildReport, BuildError>
    where
        F: FnOnce(&'a Plan) -> Fut,
        Fut: std::future::Future<Output = Result<String, BuildError>>,
    {
        let started = Instant::now();
        let report = |image_id: String, cache| BuildReport {
            name: plan.target.name.clone(),
            version: plan.target.version.clone(),
            image: plan.image(),
            hash: plan.hash.clone(),
            image_id,
            cache,
            duration_ms: started.elapsed().as_millis() as u64,
        };
        if !force {
            if let Some(id) = self.cached(plan).await? {
                return Ok(report(id, CacheOutcome::Hit));
            }
        }
        let lock = BuildLock::acquire(&plan.target.repository, plan.hash.tag()).await?;
        // Whoever held the lock before us may have built it, even when forced.
        if let Some(id) = self.cached(plan).await? {
            if !force || lock.waited {
                return Ok(report(id, CacheOutcome::Hit));
            }
        }
        let id = produce(plan).await?;
        drop(lock);
        Ok(report(id, CacheOutcome::Built))
    }

    async fn build_with_docker(&self, plan: &Plan) -> Result<String, BuildError> {
        let target = &plan.target;
        let notify = |event| (self.observer)(&target.name, event);
        if let Some(command) = &target.command {
            notify(BuildEvent::Step(format!(
                "running build command: {}",
                command.join(" ")
            )));
            run_build_command(target, command, &self.observer).await?;
        }
        let mut context = plan.gathered.context.clone();
        stage_outputs(target, &mut context)?;
        let dockerfile = target
            .dockerfile
            .as_deref()
            .unwrap_or(Path::new("Dockerfile"))
            .to_string_lossy()
            .into_owned();
        if let (true, Some(init)) = (target.init, skill_init::binary()) {
            let with_init = context
                .file(&dockerfile)
                .map(skill_init::dockerfile_with_init)
                .unwrap_or_default();
            context.stage(&dockerfile, with_init, 0o644);
            context.stage(skill_init::CONTEXT_NAME, init.to_vec(), 0o755);
        }
        let tar = context.to_tar().map_err(|source| BuildError::Inputs {
            name: target.name.clone(),
            source: HashError::Context(crate::build_context::ContextError::Io {
                path: target.dir.clone(),
                source,
            }),
        })?;
        let image = plan.image();
        let request = BuildRequest {
            tag: &image,
            dockerfile: &dockerfile,
            args: target.args.clone().into_iter().collect(),
            labels: plan.labels(),
        };
        let observer = self.observer.clone();
        let name = target.name.clone();
        let mut on_event = move |event| observer(&name, event);
        self.engine
            .build_image(tar, &request, &mut on_event)
            .await?
            .map_err(|failure| BuildError::Failed {
                name: target.name.clone(),
                failure,
            })
    }
}

async fn run_build_command(
    target: &ImageTarget,
    command: &[String],
    observer: &Observer,
) -> Result<(), BuildError> {
    let failed = |status: String, output: Vec<String>| BuildError::Command {
        name: target.name.clone(),
        command: command.join(" "),
        status,
        output,
    };
    let mut child = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .current_dir(&target.dir)
        .envs(&target.command_env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("cannot start it: {e}"), Vec::new()))?;
    // Both pipes are read at once so neither can fill and stall the command; none of it
    // reaches our stdout, which belongs to results.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let mut output: Vec<String> = Vec::new();
    while let Some(line) = rx.recv().await {
        observer(&target.name, BuildEvent::Output(line.clone()));
        keep_tail(&mut output, line);
    }
    let status = child
        .wait()
        .await
        .map_err(|e| failed(format!("cannot wait for it: {e}"), Vec::new()))?;
    if status.success() {
        Ok(())
    } else {
        Err(failed(status.to_string(), output))
    }
}

fn stage_outputs(target: &ImageTarget, context: &mut Context) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    for (dest, source) in &target.outputs {
        let source_path = target.dir.join(source);
        let missing = || BuildError::MissingOutput {
            name: target.name.clone(),
            dest: dest.clone(),
            source_path: source_path.clone(),
        };
        let meta = std::fs::metadata(&source_path).map_err(|_| missing())?;
        let bytes = std::fs::read(&source_path).map_err(|_| missing())?;
        context.stage(&dest.to_string_lossy(), bytes, meta.permissions().mode());
    }
    Ok(())
}

/// An exclusive lock on one image, held while it is built. File locks work across
/// processes, and two opens in one process exclude each other too.
struct BuildLock {
    _file: std::fs::File,
    waited: bool,
}

impl BuildLock {
    async fn acquire(repository: &str, tag: &str) -> Result<BuildLock, BuildError> {
        let dir = std::env::temp_dir().join("skillhost-build-locks");
        let path = dir.join(format!("{}_{tag}.lock", repository.replace('/', "_")));
        let lock_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BuildError::Lock { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(lock_err(&dir))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(lock_err(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(BuildLock {
                _file: file,
                waited: false,
            }),
            Err(std::fs::TryLockError::WouldBlock) => {
                tracing::info!(lock = %path.display(), "another build of this image is running; waiting for it");
                let file = tokio::task::spawn_blocking(move || file.lock().map(|()| file))
                    .await
                    .expect("locking does not panic")
                    .map_err(lock_err(&path))?;
                Ok(BuildLock {
                    _file: file,
                    waited: true,
                })
            }
            Err(std::fs::TryLockError::Error(e)) => Err(lock_err(&path)(e)),
        }
    }
}
