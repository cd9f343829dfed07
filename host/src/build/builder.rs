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
use skillhost_api::{codes, Status};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::build::content_hash::{BuildSpec, ContentHash, GatheredInputs, HashError};
use crate::build::context::Context;
use crate::build::init_image;
use crate::catalog::Skill;
use crate::engine::{keep_tail, BuildEvent, BuildFailure, BuildRequest, Engine, EngineError};
use crate::lifecycle::labels;

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
    /// The skill's or base image's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// `repository:tag`.
    pub image: String,
    /// The full content hash.
    pub hash: ContentHash,
    /// The engine's ID of the image.
    pub image_id: String,
    /// Reused or built.
    pub cache: CacheOutcome,
    /// How long ensuring it took.
    pub duration_ms: u64,
}

/// Why an image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The sources cannot be read or hashed: the skill directory, a declared input, the
    /// Dockerfile or `.dockerignore`.
    #[error("{name}: {source}")]
    Inputs {
        /// The image's name.
        name: String,
        /// What could not be read.
        #[source]
        source: HashError,
    },
    /// A base image the Dockerfile names is not present locally.
    #[error("{name}: base image {reference} (Dockerfile line {line}) is not on this engine, and skillhost pulls no base image: {}", how_to_get(reference))]
    MissingBase {
        /// The image's name.
        name: String,
        /// The base image, as the Dockerfile names it.
        reference: String,
        /// The Dockerfile line naming it.
        line: usize,
    },
    /// The hash needs a base image's ID, and there is no engine to ask.
    #[error(
        "{name}: the hash needs the ID of base image {reference}, and the engine is not available"
    )]
    NoEngine {
        /// The image's name.
        name: String,
        /// The base image.
        reference: String,
    },
    /// `build.command` failed on the host.
    #[error("{name}: build command `{command}` failed ({status}){}", tail(output))]
    Command {
        /// The image's name.
        name: String,
        /// The command line.
        command: String,
        /// Its exit status, or why it did not start.
        status: String,
        /// Its last lines of output.
        output: Vec<String>,
    },
    /// A `build.outputs` file is missing after the command ran.
    #[error("{name}: build output {} was not found at {}: did build.command produce it?", dest.display(), source_path.display())]
    MissingOutput {
        /// The image's name.
        name: String,
        /// Where it goes in the build context.
        dest: PathBuf,
        /// Where it was looked for.
        source_path: PathBuf,
    },
    /// A Dockerfile step failed.
    #[error("{name}: the image build failed at {failure}{}", fix_hint(dockerfile.as_deref()))]
    Failed {
        /// The image's name.
        name: String,
        /// The Dockerfile whose step failed; `None` for an image made another way.
        dockerfile: Option<PathBuf>,
        /// The failing step and its output (boxed: every `Result` carrying this error
        /// would otherwise be as large as it).
        #[source]
        failure: Box<BuildFailure>,
    },
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The lock file that makes concurrent builds of one image build it once.
    #[error("cannot take the build lock {}: {source}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The runtime shut down under the build's blocking work.
    #[error("{name}: the build was cancelled: the host is shutting down")]
    Cancelled {
        /// The image's name.
        name: String,
    },
}

/// What makes a missing base image present: skillhost builds its own bases; any other is
/// the operator's to load.
fn how_to_get(reference: &str) -> &'static str {
    if reference.starts_with("skillhost/") {
        "build it with `skillhost images build` first"
    } else {
        "load it into the engine yourself (`docker pull` where a registry is reachable, else \
         `docker load`), or build the skill FROM one of skillhost's own bases \
         (skillhost/debian, skillhost/python; `skillhost images build` makes them)"
    }
}

impl BuildError {
    /// The code a call gets when its skill's image fails to build this way, one of
    /// [`skillhost_api::codes`]: a fault of the skill's sources is `build_failed`
    /// (`skill_error`), anything else the host's or the engine's.
    pub fn code(&self) -> &'static str {
        match self {
            BuildError::Inputs { .. }
            | BuildError::Command { .. }
            | BuildError::MissingOutput { .. }
            | BuildError::Failed { .. } => codes::BUILD_FAILED,
            BuildError::MissingBase { .. } => codes::BASE_IMAGE_MISSING,
            BuildError::NoEngine { .. } | BuildError::Engine(_) => codes::ENGINE_ERROR,
            BuildError::Lock { .. } => codes::HOST_ERROR,
            BuildError::Cancelled { .. } => codes::HOST_SHUTTING_DOWN,
        }
    }

    /// The status that goes with [`BuildError::code`]; its exit code is the CLI's.
    pub fn status(&self) -> Status {
        codes::status_of(self.code()).unwrap_or(Status::InfrastructureError)
    }
}

/// Whether a build failed because an image a step started from was removed while it ran
/// (an image removal or a prune racing the build, which takes the untagged layers of the
/// build cache with it): the sources are sound, and building again makes the layers anew.
/// The engine words it three ways: at a step that starts a container from the lost layer,
/// and, at a step that commits on top of it, the classic builder's `failed to get digest`
/// (the layer's record is gone) or `unknown parent image ID` (its parent is).
fn lost_a_layer(failure: &BuildFailure) -> bool {
    let message = &failure.message;
    message.contains("No such image: sha256:")
        || (message.contains("failed to get digest sha256:")
            && message.contains("no such file or directory"))
        || message.contains("unknown parent image ID sha256:")
}

fn fix_hint(dockerfile: Option<&Path>) -> String {
    dockerfile
        .map(|path| {
            format!(
                "\n  fix that step in {} and build again (skillhost build, or skillhost test)",
                path.display()
            )
        })
        .unwrap_or_default()
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
    /// The skill's or base image's name.
    pub name: String,
    /// Its version, for the `io.skillhost.version` label.
    pub version: String,
    /// `skill-<name>` or `skillhost/<name>`.
    pub repository: String,
    /// The build context's directory.
    pub dir: PathBuf,
    /// The Dockerfile, relative to `dir`; `None` for an image made another way
    /// (debootstrap).
    pub dockerfile: Option<PathBuf>,
    /// Docker build args.
    pub args: BTreeMap<String, String>,
    /// Extra paths, relative to `dir`, whose content feeds the hash.
    pub inputs: Vec<PathBuf>,
    /// A host-side command run in `dir` before the image build.
    pub command: Option<Vec<String>>,
    /// Environment for `command`, on top of the host's.
    pub command_env: BTreeMap<String, String>,
    /// Files `command` produces, staged into the context: context path to host path.
    pub outputs: BTreeMap<PathBuf, PathBuf>,
    /// Labels beyond the hash and version, e.g. `io.skillhost.skill`.
    pub labels: HashMap<String, String>,
    /// Add skillhost's init to the image (skill images, on a host that has it).
    pub init: bool,
}

impl ImageTarget {
    /// The target of a skill's image, from its manifest.
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
            labels: HashMap::from([
                (labels::SKILL.to_string(), m.name.clone()),
                // A validated manifest always serializes; the label is then left out
                // rather than the build refused.
                (
                    labels::MANIFEST.to_string(),
                    serde_json::to_string(m).unwrap_or_default(),
                ),
            ]),
            init: init_image::binary().is_some(),
        }
    }
}

/// A target whose hash is known.
#[derive(Debug, Clone)]
pub struct Plan {
    pub(crate) target: ImageTarget,
    pub(crate) hash: ContentHash,
    pub(crate) gathered: GatheredInputs,
    /// Each base image the Dockerfile names, with the local ID the hash took.
    pub(crate) bases: Vec<(String, String)>,
}

impl Plan {
    /// What is to be built.
    pub fn target(&self) -> &ImageTarget {
        &self.target
    }

    /// The content hash of its inputs.
    pub fn hash(&self) -> &ContentHash {
        &self.hash
    }

    /// Each base image the Dockerfile names (`reference`, local image ID), in order.
    pub fn bases(&self) -> &[(String, String)] {
        &self.bases
    }

    /// What the content hash covers, for people.
    pub fn covers(&self) -> Vec<String> {
        self.gathered.covers()
    }

    /// The parts the content hash is made of, each with its digest.
    pub fn digests(&self) -> BTreeMap<String, String> {
        let ids: Vec<String> = self.bases.iter().map(|(_, id)| id.clone()).collect();
        self.gathered.digests(&ids)
    }

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
            labels.insert(labels::INIT.into(), init_image::TRAILER_FORMAT.into());
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
    .map_err(|joined| join_failure(joined, &target.name))?
    .map_err(|source| BuildError::Inputs {
        name: target.name.clone(),
        source,
    })?;
    let mut gathered = gathered;
    for (dest, digest) in staged_digests(target).await? {
        gathered.add_generated(&dest, digest);
    }
    if target.init {
        gathered.add_generated(init_image::CONTEXT_NAME, init_image::source_digest());
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
    let bases = gathered
        .bases
        .iter()
        .map(|b| b.reference.clone())
        .zip(base_ids)
        .collect();
    Ok(Plan {
        target: target.clone(),
        hash,
        gathered,
        bases,
    })
}

/// Builds images against one engine.
#[derive(Clone)]
pub struct ImageBuilder {
    engine: Engine,
    observer: Observer,
}

impl std::fmt::Debug for ImageBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageBuilder")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl ImageBuilder {
    /// A builder on `engine` that tells `observer` of every build's progress.
    pub fn new(engine: Engine, observer: Observer) -> Self {
        ImageBuilder { engine, observer }
    }

    /// The engine it builds on.
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
        let produced = produce(plan).await;
        drop(lock);
        let outcome = if produced.is_ok() { "built" } else { "failed" };
        metrics::counter!("skillhost_builds_total", "outcome" => outcome).increment(1);
        metrics::histogram!("skillhost_build_duration_seconds", "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        Ok(report(produced?, CacheOutcome::Built))
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
        if let (true, Some(init)) = (target.init, init_image::binary()) {
            let with_init = context
                .file(&dockerfile)
                .map(init_image::dockerfile_with_init)
                .unwrap_or_default();
            context.stage(&dockerfile, with_init, 0o644);
            context.stage(init_image::CONTEXT_NAME, init.to_vec(), 0o755);
        }
        let mut labels = plan.labels();
        if let Some(labelled) = context
            .file(&dockerfile)
            .and_then(|text| dockerfile_with_labels(text, &labels))
        {
            context.stage(&dockerfile, labelled, 0o644);
            labels.clear();
        }
        let tar = || {
            context.to_tar().map_err(|source| BuildError::Inputs {
                name: target.name.clone(),
                source: HashError::Context(crate::build::context::ContextError::Io {
                    path: target.dir.clone(),
                    source,
                }),
            })
        };
        let image = plan.image();
        let request = BuildRequest {
            tag: &image,
            dockerfile: &dockerfile,
            args: target.args.clone().into_iter().collect(),
            labels,
        };
        let observer = self.observer.clone();
        let name = target.name.clone();
        let mut on_event = move |event| observer(&name, event);
        let mut rebuilt = false;
        loop {
            match self
                .engine
                .build_image(tar()?, &request, &mut on_event)
                .await?
            {
                Ok(id) => {
                    self.remove_lost_builds(plan, &id).await;
                    return Ok(id);
                }
                Err(failure) if !rebuilt && lost_a_layer(&failure) => {
                    tracing::info!(
                        image = %image,
                        "a layer the build started from was removed under it; building again"
                    );
                    rebuilt = true;
                }
                Err(failure) => {
                    return Err(BuildError::Failed {
                        name: target.name.clone(),
                        dockerfile: target.dockerfile.as_ref().map(|d| target.dir.join(d)),
                        failure: Box::new(failure),
                    })
                }
            }
        }
    }
}

impl ImageBuilder {
    /// Remove what another process built of this very image when the tag went to the
    /// image `kept`: an untagged image with the same content hash. Costs nothing to the
    /// build when it fails.
    async fn remove_lost_builds(&self, plan: &Plan, kept: &str) {
        match self
            .engine
            .remove_untagged(labels::HASH, &plan.hash.0, kept)
            .await
        {
            Ok(removed) if !removed.is_empty() => tracing::info!(
                image = %plan.image(),
                ?removed,
                "removed the untagged image of a concurrent build of the same sources"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(image = %plan.image(), "cannot look for untagged builds: {e}"),
        }
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

/// The Dockerfile with one `LABEL` instruction setting every label at its end: one build
/// step, where the engine's `labels` option adds a step per label, each a commit that on
/// some storage drivers (fuse-overlayfs) walks the whole image. `None` where the text
/// cannot carry them safely (a Dockerfile with another escape character, a value with a
/// line break): the engine's option sets them then.
fn dockerfile_with_labels(dockerfile: &[u8], labels: &HashMap<String, String>) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(dockerfile).ok()?;
    let escape_directive = text.lines().take_while(|l| l.starts_with('#')).any(|l| {
        l.trim_start_matches('#')
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("escape")
    });
    let breaks = |v: &String| v.contains(['\n', '\r']);
    if labels.is_empty() || escape_directive || labels.iter().any(|(k, v)| breaks(k) || breaks(v)) {
        return None;
    }
    let quoted = |v: &str| {
        let mut out = String::with_capacity(v.len() + 2);
        out.push('"');
        for c in v.chars() {
            if matches!(c, '\\' | '"' | '$') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        out
    };
    let mut sorted: Vec<_> = labels.iter().collect();
    sorted.sort();
    let mut out = text.to_string();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("# Added by skillhost: the image's labels, in one step.\nLABEL");
    for (key, value) in sorted {
        out.push_str(&format!(" {}={}", quoted(key), quoted(value)));
    }
    out.push('\n');
    Some(out.into_bytes())
}

/// The digests of the files staged into the context that exist before the build (a
/// target with outputs and no command, such as the skillhost image's own executable):
/// they feed the hash like any input. A command's outputs do not exist yet when the
/// image is planned; the command and its inputs are what the hash covers for them.
async fn staged_digests(target: &ImageTarget) -> Result<Vec<(String, [u8; 32])>, BuildError> {
    if target.command.is_some() || target.outputs.is_empty() {
        return Ok(Vec::new());
    }
    let owned = target.clone();
    tokio::task::spawn_blocking(move || {
        owned
            .outputs
            .iter()
            .map(|(dest, source)| {
                let source_path = owned.dir.join(source);
                let digest = file_digest(&source_path).map_err(|_| BuildError::MissingOutput {
                    name: owned.name.clone(),
                    dest: dest.clone(),
                    source_path,
                })?;
                Ok((dest.to_string_lossy().into_owned(), digest))
            })
            .collect()
    })
    .await
    .map_err(|joined| join_failure(joined, &target.name))?
}

fn file_digest(path: &Path) -> std::io::Result<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hasher.finalize().into())
}

/// A blocking task that did not return: a panic in it is passed on as the panic it is,
/// a cancellation (the runtime shutting down) becomes [`BuildError::Cancelled`].
fn join_failure(joined: tokio::task::JoinError, name: &str) -> BuildError {
    match joined.try_into_panic() {
        Ok(panic) => std::panic::resume_unwind(panic),
        Err(_) => BuildError::Cancelled {
            name: name.to_string(),
        },
    }
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
                    .map_err(|joined| join_failure(joined, repository))?
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

#[cfg(test)]
mod tests {
    use super::dockerfile_with_labels;

    #[test]
    fn labels_become_one_instruction_quoted_against_the_builders_expansion() {
        let labels = std::collections::HashMap::from([
            ("io.skillhost.skill".to_string(), "echo".to_string()),
            (
                "io.skillhost.manifest".to_string(),
                r#"{"pattern":"^a\\d$","q":"say \"hi\""}"#.to_string(),
            ),
        ]);
        let text = dockerfile_with_labels(b"FROM scratch\nCOPY a /a", &labels).unwrap();
        let text = String::from_utf8(text).unwrap();
        let last = text.lines().last().unwrap();
        assert_eq!(
            last,
            r#"LABEL "io.skillhost.manifest"="{\"pattern\":\"^a\\\\d\$\",\"q\":\"say \\\"hi\\\"\"}" "io.skillhost.skill"="echo""#
        );
        assert!(text.starts_with("FROM scratch\nCOPY a /a\n# Added by skillhost"));
        // Another escape character, or a line break in a value: left to the engine.
        assert!(dockerfile_with_labels(b"# escape=`\nFROM scratch\n", &labels).is_none());
        let broken = std::collections::HashMap::from([("k".to_string(), "a\nb".to_string())]);
        assert!(dockerfile_with_labels(b"FROM scratch\n", &broken).is_none());
    }

    use super::*;

    #[test]
    fn a_missing_base_says_who_makes_it() {
        let missing = |reference: &str| BuildError::MissingBase {
            name: "t".into(),
            reference: reference.into(),
            line: 1,
        };
        let ours = missing("skillhost/python:latest").to_string();
        assert!(
            ours.ends_with("build it with `skillhost images build` first"),
            "{ours}"
        );
        let theirs = missing("python:3.12-slim").to_string();
        assert!(
            theirs.contains("load it into the engine yourself"),
            "{theirs}"
        );
        assert!(!theirs.contains("first"), "{theirs}");
        assert_eq!(
            missing("python:3.12-slim").status(),
            Status::InfrastructureError
        );
    }

    #[test]
    fn only_a_layer_removed_under_the_build_is_worth_a_second_build() {
        let failure = |message: &str| BuildFailure {
            step: Some("Step 3/11 : RUN cp /usr/bin/id /x".into()),
            message: message.into(),
            output: Vec::new(),
        };
        assert!(lost_a_layer(&failure(
            "No such image: sha256:4a3ad4f393b3bb429d25e2a995ff1b6e38ff4cb228147661d67820c51f379a91"
        )));
        assert!(lost_a_layer(&failure(
            "failed to get digest sha256:6b41a39b20e7430baa4d3e896b89b6ef617d34e8ab1510c1c14093713cf86bed: \
             open /var/lib/docker/image/fuse-overlayfs/imagedb/content/sha256/6b41a39b20e7430baa4d3e896b89b6ef617d34e8ab1510c1c14093713cf86bed: \
             no such file or directory"
        )));
        assert!(lost_a_layer(&failure(
            "failed to export image: failed to set parent \
             sha256:576947d90a8b37a8985a6186b3f425de6200343a757039d01cec06d61c74422b: \
             unknown parent image ID \
             sha256:576947d90a8b37a8985a6186b3f425de6200343a757039d01cec06d61c74422b"
        )));
        assert!(!lost_a_layer(&failure(
            "The command '/bin/sh -c false' returned a non-zero code: 1"
        )));
    }
}
