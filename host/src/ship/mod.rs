//! Moving locked images between hosts: [`push`] to a registry and [`pull`] back by digest,
//! or [`export`] to a bundle file and [`import`] it, each checked against the lock. The
//! lock's image ID is the proof: what leaves must be the locked image, and what arrives
//! must come out as it.

mod bundle;
mod bundle_check;
mod pull;
mod push;
mod transient;

use std::sync::Arc;
use std::time::Duration;

pub use bundle::{export, import, Exported};
pub use bundle_check::BundleError;
pub use pull::{pull, Pulled};
pub use push::{push, Pushed};

use crate::engine::{EngineError, TransferProgress};
use crate::lock::{IntegrityProblem, Pin};

/// Receives each image's transfer progress, by the skill's name (or `egress-proxy`).
pub type ShipObserver = Arc<dyn Fn(&str, TransferProgress) + Send + Sync>;

/// Attempts of a push or pull whose failure looks transient, and the first wait between
/// them (doubled after each).
const ATTEMPTS: u32 = 4;
const FIRST_WAIT: Duration = Duration::from_millis(500);

/// Why a locked image could not be pushed or pulled. `subject` names it: `skill echo`,
/// `the egress proxy`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShipError {
    /// The local image is not what the lock pins.
    #[error(transparent)]
    Integrity(#[from] IntegrityProblem),
    /// Nothing answered at the registry's address.
    #[error(
        "cannot reach the registry {registry} ({subject}, after {ATTEMPTS} attempts): {reason}"
    )]
    Unreachable {
        /// `HOST:PORT`.
        registry: String,
        /// What was being moved.
        subject: String,
        /// The engine's words.
        reason: String,
    },
    /// The registry answered, and refused.
    #[error("the registry {registry} refused {reference} ({subject}): {reason}")]
    Refused {
        /// `HOST:PORT`.
        registry: String,
        /// What was being moved.
        subject: String,
        /// What was pushed or pulled.
        reference: String,
        /// The engine's words.
        reason: String,
    },
    /// The lock records no registry and digest for the image.
    #[error("{subject} has no registry and digest in the lock: push it first (`skillhost push --lock FILE --registry HOST:PORT`)")]
    NotPushed {
        /// What was to be moved.
        subject: String,
    },
    /// The registry served, under the locked digest, an image the lock does not pin.
    #[error("{subject}: {reference} came out as image {found}, but the lock pins {expected}; the pulled image was removed")]
    DigestMismatch {
        /// What was pulled.
        subject: String,
        /// `registry/skill-<name>@sha256:...`.
        reference: String,
        /// The lock's image ID.
        expected: String,
        /// What the pull gave.
        found: String,
    },
    /// After a push, the engine reported no digest for the pushed name.
    #[error("{subject}: the engine reports no digest for {repository} after the push")]
    NoDigest {
        /// What was pushed.
        subject: String,
        /// `registry/skill-<name>`.
        repository: String,
    },
    /// A bundle was refused.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The engine failed otherwise.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// `skill-<name>` and `<hash>` of a locked `skill-<name>:<hash>` (or the proxy's
/// `skillhost/egress-proxy:<hash>`).
fn repo_and_tag<'p>(pin: &Pin<'p>) -> (&'p str, &'p str) {
    pin.image.rsplit_once(':').unwrap_or((pin.image, "latest"))
}

/// The engine's error text, for classification and for the message.
fn engine_words(error: &EngineError) -> String {
    match error {
        EngineError::Api { source, .. } => source.words().to_string(),
        other => other.to_string(),
    }
}

/// Run `attempt` until it succeeds, fails for good, or [`ATTEMPTS`] transient failures
/// pass; then turn the failure into a [`ShipError`] naming `registry` and `subject`.
async fn with_retries<F, Fut>(
    registry: &str,
    subject: &str,
    reference: &str,
    mut attempt: F,
) -> Result<(), ShipError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), EngineError>>,
{
    let mut wait = FIRST_WAIT;
    let mut tries = 0;
    loop {
        tries += 1;
        let error = match attempt().await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        if matches!(
            error,
            EngineError::Unavailable { .. } | EngineError::TooOld { .. }
        ) {
            return Err(error.into());
        }
        let words = engine_words(&error);
        let kind = transient::classify(&words);
        if kind.transient && tries < ATTEMPTS {
            tracing::info!(
                subject,
                registry,
                "transient failure, retrying in {wait:?}: {words}"
            );
            tokio::time::sleep(wait).await;
            wait *= 2;
            continue;
        }
        return Err(if kind.unreachable {
            ShipError::Unreachable {
                registry: registry.to_string(),
                subject: subject.to_string(),
                reason: words,
            }
        } else {
            ShipError::Refused {
                registry: registry.to_string(),
                subject: subject.to_string(),
                reference: reference.to_string(),
                reason: words,
            }
        });
    }
}
