//! `skillhost push`: one locked image to a registry, under its content-hash tag, and the
//! digest the registry gave it.

use super::{repo_and_tag, with_retries, ShipError, ShipObserver};
use crate::engine::Engine;
use crate::lock::{check_pin, Pin};

/// A pushed image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// `registry/skill-<name>:<hash>`.
    pub reference: String,
    /// The manifest digest the registry holds it under, `sha256:...`.
    pub digest: String,
}

/// Push `pin`'s image to `registry` (`HOST:PORT`), after checking it is the locked one.
/// The names the push needed are removed again: the engine keeps only the locked tag.
pub async fn push(
    engine: &Engine,
    pin: &Pin<'_>,
    registry: &str,
    observer: &ShipObserver,
) -> Result<Pushed, ShipError> {
    check_pin(pin, engine.inspect_image(pin.image).await?)?;
    let subject = pin.subject();
    let (repo, tag) = repo_and_tag(pin);
    let remote = format!("{registry}/{repo}");
    let reference = format!("{remote}:{tag}");
    engine.tag_image(pin.image_id, &remote, tag).await?;
    let on_progress = |line| observer(pin.name(), line);
    let pushed = with_retries(registry, &subject, &reference, || {
        engine.push_image(&remote, tag, &on_progress)
    })
    .await;
    let digests = match pushed {
        Ok(()) => engine.repo_digests(pin.image_id).await,
        Err(e) => {
            engine.untag(&reference).await?;
            return Err(e);
        }
    };
    engine.untag(&reference).await?;
    let prefix = format!("{remote}@");
    let digest = digests?
        .iter()
        .find_map(|d| d.strip_prefix(&prefix).map(str::to_string))
        .ok_or_else(|| ShipError::NoDigest {
            subject: subject.clone(),
            repository: remote.clone(),
        })?;
    engine.untag(&format!("{remote}@{digest}")).await?;
    Ok(Pushed { reference, digest })
}
