//! Making a skill's image ready to run: the runtime it asks for must exist, and its
//! `skill-<name>:<hash>` image must be present (built on first use where the host builds).
//! Each skill's image is resolved once per host; concurrent first calls share it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use skillhost_api::codes;
use tokio::sync::OnceCell;

use super::Refusal;
use crate::build::builder::{BuildError, ImageBuilder, ImageTarget};
use crate::build::init_image;
use crate::catalog::Skill;
use crate::engine::Engine;
use crate::sync::lock;

/// A skill's image, as containers are made of it.
#[derive(Debug, Clone)]
pub(crate) struct SkillImage {
    /// `skill-<name>:<hash>`.
    pub(crate) reference: String,
    /// The image's command, when the image has skillhost's init to run it.
    pub(crate) init_command: Option<Vec<String>>,
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

/// Resolves and remembers each skill's image.
#[derive(Debug)]
pub(crate) struct ImageResolver {
    engine: Engine,
    builder: ImageBuilder,
    /// Build a missing image (development), or refuse the call (production).
    build_images: bool,
    images: Mutex<HashMap<String, Arc<OnceCell<SkillImage>>>>,
    /// The engine's runtimes, asked once, when a skill first names one.
    runtimes: OnceCell<Vec<String>>,
}

impl ImageResolver {
    pub(crate) fn new(engine: Engine, builder: ImageBuilder, build_images: bool) -> Self {
        ImageResolver {
            engine,
            builder,
            build_images,
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
        self.build_images
    }

    /// The engine this host runs on.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The skill's hash and image, and whether the image is present; builds nothing.
    pub(crate) async fn state(&self, skill: &Skill) -> Result<ImageState, Refusal> {
        let plan = self
            .builder
            .plan(&ImageTarget::for_skill(skill))
            .await
            .map_err(|e| build_refusal(&e))?;
        let present = self
            .builder
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

    /// The skill's image, built on first use when this host builds.
    pub(crate) async fn resolve(&self, skill: &Skill) -> Result<SkillImage, Refusal> {
        let cell = lock(&self.images)
            .entry(skill.name().to_string())
            .or_default()
            .clone();
        cell.get_or_try_init(|| self.find_or_build(skill))
            .await
            .cloned()
    }

    async fn find_or_build(&self, skill: &Skill) -> Result<SkillImage, Refusal> {
        let target = ImageTarget::for_skill(skill);
        let reference = if self.build_images {
            self.builder
                .ensure(&target, false)
                .await
                .map_err(|e| build_refusal(&e))?
                .image
        } else {
            let plan = self
                .builder
                .plan(&target)
                .await
                .map_err(|e| build_refusal(&e))?;
            if self
                .builder
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
        Ok(SkillImage {
            reference,
            init_command,
        })
    }
}

/// A failed build as the call's outcome: the same status and code `skillhost build`
/// reports for it.
fn build_refusal(e: &BuildError) -> Refusal {
    Refusal::new(e.code(), e.to_string())
}
