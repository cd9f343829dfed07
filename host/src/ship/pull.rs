//! `skillhost pull`: one locked image from its registry by digest, checked against the
//! lock's image ID and tagged `skill-<name>:<hash>`.

use super::{repo_and_tag, with_retries, ShipError, ShipObserver};
use crate::engine::Engine;
use crate::lock::{check_pin, Pin};

/// What a pull did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pulled {
    /// The engine already had the locked image under its tag.
    AlreadyPresent,
    /// It was pulled, checked and tagged.
    Pulled,
}

impl Pulled {
    /// What the pull did, for people: `already present` or `pulled`.
    pub fn as_str(self) -> &'static str {
        match self {
            Pulled::AlreadyPresent => "already present",
            Pulled::Pulled => "pulled",
        }
    }
}

/// Pull `pin`'s image by its locked digest, from `registry` when given (a mirror),
/// otherwise from the one the lock records. Nothing stays on a mismatch.
pub async fn pull(
    engine: &Engine,
    pin: &Pin<'_>,
    registry: Option<&str>,
    observer: &ShipObserver,
) -> Result<Pulled, ShipError> {
    let subject = pin.subject();
    let local = engine.inspect_image(pin.image).await?;
    if local.as_ref().is_some_and(|i| i.id == pin.image_id) {
        check_pin(pin, local)?;
        return Ok(Pulled::AlreadyPresent);
    }
    let (Some(registry), Some(digest)) = (registry.or(pin.registry), pin.digest) else {
        return Err(ShipError::NotPushed { subject });
    };
    let (repo, tag) = repo_and_tag(pin);
    let reference = format!("{registry}/{repo}@{digest}");
    let on_progress = |line| observer(pin.name(), line);
    with_retries(registry, &subject, &reference, || {
        engine.pull_image(&reference, &on_progress)
    })
    .await?;
    let found = engine
        .inspect_image(&reference)
        .await?
        .map(|i| i.id)
        .unwrap_or_default();
    if found != pin.image_id {
        engine.untag(&reference).await?;
        return Err(ShipError::DigestMismatch {
            subject,
            reference,
            expected: pin.image_id.to_string(),
            found,
        });
    }
    engine.tag_image(pin.image_id, repo, tag).await?;
    engine.untag(&reference).await?;
    if let Err(problem) = check_pin(pin, engine.inspect_image(pin.image).await?) {
        engine.untag(pin.image).await?;
        return Err(problem.into());
    }
    Ok(Pulled::Pulled)
}
