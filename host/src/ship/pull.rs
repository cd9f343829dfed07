//! `skillhost pull`: one locked image from its registry by digest, checked against the
//! lock's image ID and tagged `skill-<name>:<hash>`.

use super::{repo_and_tag, with_retries, ShipError, ShipObserver};
use crate::engine::Engine;
use crate::lock::{check_entry, LockedSkill};

/// What a pull did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pulled {
    /// The engine already had the locked image under its tag.
    AlreadyPresent,
    /// It was pulled, checked and tagged.
    Pulled,
}

/// Pull `entry`'s image by its locked digest, from `registry` when given (a mirror),
/// otherwise from the one the lock records. Nothing stays on a mismatch.
pub async fn pull(
    engine: &Engine,
    entry: &LockedSkill,
    registry: Option<&str>,
    observer: &ShipObserver,
) -> Result<Pulled, ShipError> {
    let local = engine.inspect_image(&entry.image).await?;
    if local.as_ref().is_some_and(|i| i.id == entry.image_id) {
        check_entry(entry, local)?;
        return Ok(Pulled::AlreadyPresent);
    }
    let (Some(registry), Some(digest)) = (
        registry.or(entry.registry.as_deref()),
        entry.digest.as_deref(),
    ) else {
        return Err(ShipError::NotPushed {
            skill: entry.name.clone(),
        });
    };
    let (repo, tag) = repo_and_tag(entry);
    let reference = format!("{registry}/{repo}@{digest}");
    let on_progress = |line| observer(&entry.name, line);
    with_retries(registry, &entry.name, &reference, || {
        engine.pull_image(&reference, &on_progress)
    })
    .await?;
    let found = engine
        .inspect_image(&reference)
        .await?
        .map(|i| i.id)
        .unwrap_or_default();
    if found != entry.image_id {
        engine.untag(&reference).await?;
        return Err(ShipError::DigestMismatch {
            skill: entry.name.clone(),
            reference,
            expected: entry.image_id.clone(),
            found,
        });
    }
    engine.tag_image(&entry.image_id, repo, tag).await?;
    engine.untag(&reference).await?;
    if let Err(problem) = check_entry(entry, engine.inspect_image(&entry.image).await?) {
        engine.untag(&entry.image).await?;
        return Err(problem.into());
    }
    Ok(Pulled::Pulled)
}
