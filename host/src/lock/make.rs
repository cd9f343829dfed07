//! Lock entries from the engine: what a skill's sources hash to now, and its image
//! pinned after a build or a reuse.

use super::{LockError, LockedBase, LockedSkill, SourceState};
use crate::build::{BuildError, ImageBuilder, ImageTarget};
use crate::catalog::Skill;
use crate::Error;

/// What the sources of `skill` give now. Builds nothing; base images must be present.
pub async fn source_state(
    builder: &ImageBuilder,
    skill: &Skill,
) -> Result<SourceState, BuildError> {
    let plan = builder.plan(&ImageTarget::for_skill(skill)).await?;
    let m = &skill.manifest;
    Ok(SourceState {
        name: m.name.clone(),
        version: m.version.to_string(),
        protocol: m.protocol.to_string(),
        hash: plan.hash().0.clone(),
    })
}

/// Build or reuse `skill`'s image and pin it. A registry and digest recorded for the same
/// image in `previous` are kept.
pub async fn lock_skill(
    builder: &ImageBuilder,
    skill: &Skill,
    previous: Option<&LockedSkill>,
) -> Result<LockedSkill, Error> {
    let plan = builder.plan(&ImageTarget::for_skill(skill)).await?;
    let report = builder.ensure_plan(&plan, false).await?;
    let image = builder
        .engine()
        .inspect_image(&report.image)
        .await?
        .ok_or_else(|| LockError::ImageGone {
            image: report.image.clone(),
        })?;
    let m = &skill.manifest;
    let same_image = previous.filter(|p| p.image_id == image.id);
    Ok(LockedSkill {
        name: m.name.clone(),
        version: m.version.to_string(),
        protocol: m.protocol.to_string(),
        hash: plan.hash().0.clone(),
        covers: plan.covers(),
        image: report.image,
        image_id: image.id,
        platform: image.platform,
        base_images: plan
            .bases()
            .iter()
            .map(|(reference, id)| LockedBase {
                reference: reference.clone(),
                id: id.clone(),
            })
            .collect(),
        registry: same_image.and_then(|p| p.registry.clone()),
        digest: same_image.and_then(|p| p.digest.clone()),
    })
}
