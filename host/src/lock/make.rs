//! Lock entries from the engine: what a skill's sources hash to now, and its image
//! pinned after a build or a reuse.

use super::{LockError, LockedBase, LockedImage, LockedSkill, SourceState};
use crate::build::{BuildError, ContentHash, ImageBuilder, ImageTarget};
use crate::catalog::Skill;
use crate::engine::Engine;
use crate::lifecycle::labels;
use crate::vocab::PROXY_IMAGE;

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
        inputs: plan.digests(),
    })
}

/// Build or reuse `skill`'s image and pin it. A registry and digest recorded for the same
/// image in `previous` are kept.
pub async fn lock_skill(
    builder: &ImageBuilder,
    skill: &Skill,
    previous: Option<&LockedSkill>,
) -> Result<LockedSkill, LockError> {
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
        inputs: plan.digests(),
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

/// Pin the egress proxy's image as `skillhost images build` left it: the image under
/// `skillhost/egress-proxy:latest`, by its content-hash tag. A registry and digest
/// recorded for the same image in `previous` are kept.
pub async fn lock_egress_proxy(
    engine: &Engine,
    previous: Option<&LockedImage>,
) -> Result<LockedImage, LockError> {
    let refused = |problem: &str| LockError::EgressProxy {
        image: PROXY_IMAGE.to_string(),
        problem: problem.to_string(),
    };
    let latest = engine
        .inspect_image(PROXY_IMAGE)
        .await?
        .ok_or_else(|| refused("is not on this engine"))?;
    let hash = latest
        .labels
        .get(labels::HASH)
        .ok_or_else(|| refused(&format!("has no {} label", labels::HASH)))?;
    let repository = PROXY_IMAGE
        .rsplit_once(':')
        .map_or(PROXY_IMAGE, |(repository, _)| repository);
    let image = format!("{repository}:{}", ContentHash(hash.clone()).tag());
    let tagged = engine.inspect_image(&image).await?;
    if tagged.as_ref().map(|i| &i.id) != Some(&latest.id) {
        return Err(refused(&format!("is not the image tagged {image}")));
    }
    let same_image = previous.filter(|p| p.image_id == latest.id);
    Ok(LockedImage {
        image,
        image_id: latest.id,
        platform: latest.platform,
        registry: same_image.and_then(|p| p.registry.clone()),
        digest: same_image.and_then(|p| p.digest.clone()),
    })
}
