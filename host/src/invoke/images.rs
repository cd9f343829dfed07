//! Making a skill's image ready to run: the runtime it asks for must exist, and its
//! `skill-<name>:<hash>` image must be present (built on first use where the host builds).
//! Each skill's image is resolved once per host; concurrent first calls share it.
//!
//! A locked host neither builds nor reads sources: its images are the lock's, checked at
//! start, and its containers are made from the locked image IDs, so another image put
//! under the same tag later cannot run (`/readyz` reports it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use skillhost_api::codes;
use tokio::sync::OnceCell;

use crate::build::builder::{BuildError, ImageBuilder, ImageTarget};
use crate::build::init_image;
use crate::catalog::Skill;
use crate::engine::{Engine, EngineError};
use crate::lifecycle::instance::Instance;
use crate::lifecycle::labels::{self, Role};
use crate::lock::{verify, IntegrityProblem, LockFile, Verification};
use crate::run::run_as::{self, RunAs};
use crate::sync::lock;
use crate::vocab::Refusal;

/// A skill's image, as containers are made of it.
#[derive(Debug, Clone)]
pub(crate) struct SkillImage {
    /// `skill-<name>:<hash>`.
    pub(crate) reference: String,
    /// The image's command, when the image has skillhost's init to run it.
    pub(crate) init_command: Option<Vec<String>>,
    /// Its init can serve calls one after another, resetting between them.
    pub(crate) init_recycles: bool,
    /// The numeric user and group the manifest's `run.user` is in this image.
    pub(crate) run_as: RunAs,
}

/// A skill's image before its user is resolved in it.
#[derive(Debug, Clone)]
pub(crate) struct FoundImage {
    /// `skill-<name>:<hash>`, or a locked image's ID.
    reference: String,
    /// The image's command, when the image has skillhost's init to run it.
    init_command: Option<Vec<String>>,
    /// Its init can recycle the container.
    init_recycles: bool,
}

/// What is known of a skill's image without building it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageState {
    /// The content hash of the skill's sources.
    pub hash: String,
    /// `skill-<name>:<hash>`.
    pub image: String,
    /// Whether the engine has that image, with that hash.
    pub present: bool,
}

/// Where a host's images come from.
#[derive(Debug)]
pub(crate) enum ImageSource {
    /// The skills' source directories, hashed.
    Sources {
        builder: ImageBuilder,
        /// Build a missing image (development), or refuse the call (production).
        build: bool,
    },
    /// A lock, whose images were checked at start.
    Locked {
        lock: LockFile,
        /// The verified skills' images, by skill name.
        images: HashMap<String, FoundImage>,
        /// What was wrong at start, by skill name.
        problems: HashMap<String, IntegrityProblem>,
    },
}

impl ImageSource {
    /// A locked source from the start-time check of `lock`.
    pub(crate) fn locked(lock: LockFile, verification: &Verification) -> ImageSource {
        let images = verification
            .verified
            .iter()
            .map(|v| {
                let image = FoundImage {
                    reference: v.entry.image_id.clone(),
                    init_command: init_image::init_command(&v.image),
                    init_recycles: init_image::recycles(&v.image),
                };
                (v.entry.name.clone(), image)
            })
            .collect();
        // A proxy image that is not the locked one refuses every skill that needs it.
        let proxy_problem = verification.problems.iter().find(|p| p.skill().is_none());
        let needing_proxy = verification
            .verified
            .iter()
            .filter(|v| v.manifest.run.network.is_egress())
            .filter_map(|v| proxy_problem.map(|p| (v.entry.name.clone(), p.clone())));
        let problems = verification
            .problems
            .iter()
            .filter_map(|p| p.skill().map(|skill| (skill.to_string(), p.clone())))
            .chain(needing_proxy)
            .collect();
        ImageSource::Locked {
            lock,
            images,
            problems,
        }
    }
}

/// Resolves and remembers each skill's image.
#[derive(Debug)]
pub(crate) struct ImageResolver {
    engine: Engine,
    /// The host process, for the labels of the containers that read an image's users.
    instance: Instance,
    source: ImageSource,
    images: Mutex<HashMap<String, Arc<OnceCell<SkillImage>>>>,
    /// The engine's runtimes, asked once, when a skill first names one.
    runtimes: OnceCell<Vec<String>>,
}

impl ImageResolver {
    pub(crate) fn new(engine: Engine, instance: Instance, source: ImageSource) -> Self {
        ImageResolver {
            engine,
            instance,
            source,
            images: Mutex::default(),
            runtimes: OnceCell::new(),
        }
    }

    /// A runtime the manifest names must exist in the engine; refused before any
    /// container.
    pub(crate) async fn check_runtime(&self, skill: &Skill) -> Result<(), Refusal> {
        let Some(wanted) = &skill.manifest.run.runtime else {
            return Ok(());
        };
        let known = self
            .runtimes
            .get_or_try_init(|| self.engine.runtimes())
            .await
            .map_err(|e| Refusal::new(codes::ENGINE_ERROR, e.to_string()))?;
        if known.contains(wanted) {
            return Ok(());
        }
        Err(Refusal::new(
            codes::RUNTIME_UNAVAILABLE,
            format!(
                "skill {} asks for the {wanted} runtime, which the engine at {} does not have (it has: {}); install and register it with dockerd first",
                skill.name(),
                self.engine.endpoint(),
                known.join(", ")
            ),
        ))
    }

    /// Whether this host builds missing images.
    pub(crate) fn builds(&self) -> bool {
        matches!(self.source, ImageSource::Sources { build: true, .. })
    }

    /// On a locked host, the refusal of a skill whose image failed its start-time check.
    pub(crate) fn refuse_unverified(&self, skill: &str) -> Result<(), Refusal> {
        match &self.source {
            ImageSource::Locked { problems, .. } => match problems.get(skill) {
                Some(problem) => Err(Refusal::new(codes::INTEGRITY_ERROR, problem.to_string())),
                None => Ok(()),
            },
            ImageSource::Sources { .. } => Ok(()),
        }
    }

    /// On a locked host, every way the engine's images differ from the lock now (a tag
    /// moved since the start, say); `None` on a host of sources.
    pub(crate) async fn integrity(&self) -> Option<Result<Vec<IntegrityProblem>, EngineError>> {
        let ImageSource::Locked { lock, .. } = &self.source else {
            return None;
        };
        Some(verify(&self.engine, lock).await.map(|v| v.problems))
    }

    /// The engine this host runs on.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The skill's hash and image, and whether the image is present; builds nothing.
    pub(crate) async fn state(&self, skill: &Skill) -> Result<ImageState, Refusal> {
        let builder = match &self.source {
            ImageSource::Sources { builder, .. } => builder,
            ImageSource::Locked { lock, .. } => return self.locked_state(lock, skill).await,
        };
        let plan = builder
            .plan(&ImageTarget::for_skill(skill))
            .await
            .map_err(|e| build_refusal(&e))?;
        let present = builder
            .cached(&plan)
            .await
            .map_err(|e| build_refusal(&e))?
            .is_some();
        Ok(ImageState {
            hash: plan.hash().0.clone(),
            image: plan.image(),
            present,
        })
    }

    /// The skill's image, built on first use when this host builds, with the user its
    /// manifest names resolved in it.
    pub(crate) async fn resolve(&self, skill: &Skill) -> Result<SkillImage, Refusal> {
        let cell = lock(&self.images)
            .entry(skill.name().to_string())
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            let found = self.find_or_build(skill).await?;
            let run_as = self.run_as(skill, &found.reference).await?;
            Ok(SkillImage {
                reference: found.reference,
                init_command: found.init_command,
                init_recycles: found.init_recycles,
                run_as,
            })
        })
        .await
        .cloned()
    }

    /// `run.user` in numbers, read from the image's passwd and group files unless the
    /// manifest already gives two numbers; refused (with the manifest's position) when
    /// the image makes it uid 0 or gid 0 or does not know a name.
    async fn run_as(&self, skill: &Skill, image: &str) -> Result<RunAs, Refusal> {
        let spec = &skill.manifest.run.user.0;
        if let Some(run_as) = run_as::numeric(spec) {
            return Ok(run_as);
        }
        let labels = labels::for_container(skill.name(), Role::Lookup, &self.instance);
        let files = self
            .engine
            .read_image_files(image, &["/etc/passwd", "/etc/group"], labels)
            .await
            .map_err(|e| Refusal::new(codes::ENGINE_ERROR, e.to_string()))?;
        let text = |i: usize| {
            files
                .get(i)
                .and_then(Option::as_ref)
                .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
        };
        run_as::resolve(spec, text(0).as_deref(), text(1).as_deref()).map_err(|e| {
            Refusal::new(
                codes::INVALID_USER,
                format!("{}: {e}", skill.locate(&["run", "user"])),
            )
        })
    }

    /// A locked skill's state: its locked hash and tag, present when the tag still holds
    /// the locked image.
    async fn locked_state(&self, lock: &LockFile, skill: &Skill) -> Result<ImageState, Refusal> {
        let entry = lock.get(skill.name()).ok_or_else(|| {
            Refusal::new(
                codes::INTEGRITY_ERROR,
                format!("skill {} is not in the lock", skill.name()),
            )
        })?;
        let found = self
            .engine
            .inspect_image(&entry.image)
            .await
            .map_err(|e| Refusal::new(codes::ENGINE_ERROR, e.to_string()))?;
        Ok(ImageState {
            hash: entry.hash.clone(),
            image: entry.image.clone(),
            present: found.is_some_and(|image| image.id == entry.image_id),
        })
    }

    async fn find_or_build(&self, skill: &Skill) -> Result<FoundImage, Refusal> {
        let (builder, build) = match &self.source {
            ImageSource::Sources { builder, build } => (builder, *build),
            ImageSource::Locked { images, .. } => {
                return images.get(skill.name()).cloned().ok_or_else(|| {
                    Refusal::new(
                        codes::INTEGRITY_ERROR,
                        format!("skill {} has no verified image in the lock", skill.name()),
                    )
                })
            }
        };
        let target = ImageTarget::for_skill(skill);
        let reference = if build {
            builder
                .ensure(&target, false)
                .await
                .map_err(|e| build_refusal(&e))?
                .image
        } else {
            let plan = builder.plan(&target).await.map_err(|e| build_refusal(&e))?;
            if builder
                .cached(&plan)
                .await
                .map_err(|e| build_refusal(&e))?
                .is_none()
            {
                return Err(Refusal::new(
                    codes::IMAGE_UNAVAILABLE,
                    format!(
                        "image {} is not present and this host does not build: prebuild it with `skillhost build {}`",
                        plan.image(),
                        skill.name()
                    ),
                ));
            }
            plan.image()
        };
        let inspected = self
            .engine
            .inspect_image(&reference)
            .await
            .map_err(|e| Refusal::new(codes::ENGINE_ERROR, e.to_string()))?;
        let init_command = inspected.as_ref().and_then(init_image::init_command);
        Ok(FoundImage {
            reference,
            init_command,
            init_recycles: inspected.as_ref().is_some_and(init_image::recycles),
        })
    }
}

/// A failed build as the call's outcome: the same status and code `skillhost build`
/// reports for it.
fn build_refusal(e: &BuildError) -> Refusal {
    Refusal::new(e.code(), e.to_string())
}
