//! Checking the engine's images against a lock: each locked skill's `skill-<name>:<hash>`
//! must be present, be the image ID the lock pins, and carry a valid manifest of the
//! locked name, version and protocol. Used after a pull or an import, and by a locked
//! host at start and for `/readyz`. [`check_entry`] is the pure part.

use crate::engine::{Engine, EngineError, LocalImage};
use crate::lifecycle::labels;
use crate::manifest::Manifest;

use super::{LockFile, LockedSkill, Pin};

/// One way an image on this engine is not what the lock pins.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrityProblem {
    /// No image under the locked reference.
    #[error(
        "skill {skill}: image {image} is not present on this engine (pull or import it first)"
    )]
    Missing {
        /// The skill.
        skill: String,
        /// `skill-<name>:<hash>`.
        image: String,
    },
    /// Another image stands under the locked reference.
    #[error("skill {skill}: image {image} is {found}, but the lock pins {expected}: a different image stands under the locked tag")]
    WrongImage {
        /// The skill.
        skill: String,
        /// `skill-<name>:<hash>`.
        image: String,
        /// The lock's image ID.
        expected: String,
        /// The engine's.
        found: String,
    },
    /// The image does not carry a usable manifest.
    #[error("skill {skill}: image {image} carries no valid manifest: {reason}")]
    Manifest {
        /// The skill.
        skill: String,
        /// `skill-<name>:<hash>`.
        image: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The image's manifest describes another skill, version or protocol than the lock.
    #[error("skill {skill}: image {image} holds {found}, but the lock says {expected}")]
    OtherSkill {
        /// The skill.
        skill: String,
        /// `skill-<name>:<hash>`.
        image: String,
        /// `name version (protocol P)` as locked.
        expected: String,
        /// As the image says.
        found: String,
    },
    /// The egress proxy's image is not what the lock pins.
    #[error("the egress proxy: image {image} is {found}, but the lock pins {expected} (pull or import it)")]
    EgressProxy {
        /// `skillhost/egress-proxy:<hash>`.
        image: String,
        /// The lock's image ID.
        expected: String,
        /// The engine's, or `not present on this engine`.
        found: String,
    },
    /// A locked skill has an egress allowlist, and the lock pins no proxy image.
    #[error("skill {skill} has an egress allowlist, and the lock pins no egress proxy image: lock again with this skillhost")]
    EgressProxyNotLocked {
        /// The skill.
        skill: String,
    },
}

impl IntegrityProblem {
    /// The skill it concerns; `None` for the egress proxy's image, which concerns every
    /// skill with an allowlist.
    pub fn skill(&self) -> Option<&str> {
        match self {
            IntegrityProblem::Missing { skill, .. }
            | IntegrityProblem::WrongImage { skill, .. }
            | IntegrityProblem::Manifest { skill, .. }
            | IntegrityProblem::OtherSkill { skill, .. }
            | IntegrityProblem::EgressProxyNotLocked { skill } => Some(skill),
            IntegrityProblem::EgressProxy { .. } => None,
        }
    }
}

/// A locked skill whose image is present and matches.
#[derive(Debug, Clone)]
pub struct VerifiedSkill {
    /// Its lock entry.
    pub entry: LockedSkill,
    /// The manifest its image carries, validated.
    pub manifest: Manifest,
    /// The image.
    pub image: LocalImage,
}

/// What a lock's images look like on this engine.
#[derive(Debug, Default)]
pub struct Verification {
    /// Skills whose image matches the lock.
    pub verified: Vec<VerifiedSkill>,
    /// The egress proxy's locked image ID, when the lock pins one and it matches.
    pub egress_proxy: Option<String>,
    /// Each mismatch, naming its skill.
    pub problems: Vec<IntegrityProblem>,
}

/// Check every locked image on `engine`: each skill's, and the egress proxy's.
pub async fn verify(engine: &Engine, lock: &LockFile) -> Result<Verification, EngineError> {
    let mut out = Verification::default();
    for entry in &lock.skills {
        let image = engine.inspect_image(&entry.image).await?;
        match check_entry(entry, image) {
            Ok((manifest, image)) => out.verified.push(VerifiedSkill {
                entry: entry.clone(),
                manifest,
                image,
            }),
            Err(problem) => out.problems.push(problem),
        }
    }
    match &lock.egress_proxy {
        Some(proxy) => {
            let image = engine.inspect_image(&proxy.image).await?;
            match check_proxy(&proxy.image, &proxy.image_id, image) {
                Ok(()) => out.egress_proxy = Some(proxy.image_id.clone()),
                Err(problem) => out.problems.push(problem),
            }
        }
        None => {
            let needing = out
                .verified
                .iter()
                .filter(|v| v.manifest.run.network.is_egress());
            out.problems
                .extend(needing.map(|v| IntegrityProblem::EgressProxyNotLocked {
                    skill: v.entry.name.clone(),
                }));
        }
    }
    Ok(out)
}

/// Whether `found` (under the proxy's locked reference `image`) is the locked `image_id`.
fn check_proxy(
    image: &str,
    image_id: &str,
    found: Option<LocalImage>,
) -> Result<(), IntegrityProblem> {
    match found {
        Some(found) if found.id == image_id => Ok(()),
        other => Err(IntegrityProblem::EgressProxy {
            image: image.to_string(),
            expected: image_id.to_string(),
            found: other.map_or_else(|| "not present on this engine".into(), |i| i.id),
        }),
    }
}

/// Whether `image` (under the pin's reference) is what the lock pins.
pub fn check_pin(pin: &Pin<'_>, image: Option<LocalImage>) -> Result<(), IntegrityProblem> {
    match pin.skill {
        Some(skill) => check_entry(skill, image).map(|_| ()),
        None => check_proxy(pin.image, pin.image_id, image),
    }
}

/// Whether `image` (as the engine has it under the entry's reference) is what `entry`
/// pins; with its manifest when it is.
pub fn check_entry(
    entry: &LockedSkill,
    image: Option<LocalImage>,
) -> Result<(Manifest, LocalImage), IntegrityProblem> {
    let skill = entry.name.clone();
    let reference = entry.image.clone();
    let Some(image) = image else {
        return Err(IntegrityProblem::Missing {
            skill,
            image: reference,
        });
    };
    if image.id != entry.image_id {
        return Err(IntegrityProblem::WrongImage {
            skill,
            image: reference,
            expected: entry.image_id.clone(),
            found: image.id.clone(),
        });
    }
    let Some(text) = image.labels.get(labels::MANIFEST) else {
        return Err(IntegrityProblem::Manifest {
            skill,
            image: reference,
            reason: format!("it has no {} label", labels::MANIFEST),
        });
    };
    let manifest = Manifest::from_image_label(text).map_err(|problems| {
        let reasons: Vec<String> = problems.iter().map(ToString::to_string).collect();
        IntegrityProblem::Manifest {
            skill: skill.clone(),
            image: reference.clone(),
            reason: reasons.join("; "),
        }
    })?;
    let describe = |name: &str, version: &str, protocol: &str| {
        format!("{name} {version} (protocol {protocol})")
    };
    let expected = describe(&entry.name, &entry.version, &entry.protocol);
    let found = describe(
        &manifest.name,
        &manifest.version.to_string(),
        &manifest.protocol.to_string(),
    );
    if expected != found {
        return Err(IntegrityProblem::OtherSkill {
            skill,
            image: reference,
            expected,
            found,
        });
    }
    Ok((manifest, image))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"{"name": "echo", "version": "1.2.0", "protocol": "1", "description": "Echoes", "actions": {"say": {"description": "Say it", "input": {"type": "object"}}}}"#;

    fn entry() -> LockedSkill {
        LockedSkill {
            name: "echo".into(),
            version: "1.2.0".into(),
            protocol: "^1".into(),
            hash: "abc".into(),
            covers: vec![],
            inputs: Default::default(),
            image: "skill-echo:abc".into(),
            image_id: "sha256:1111".into(),
            platform: "linux/amd64".into(),
            base_images: vec![],
            registry: None,
            digest: None,
        }
    }

    fn image(id: &str, manifest: Option<&str>) -> LocalImage {
        LocalImage {
            id: id.into(),
            labels: manifest
                .map(|m| [(labels::MANIFEST.to_string(), m.to_string())].into())
                .unwrap_or_default(),
            entrypoint: vec![],
            cmd: vec![],
            platform: "linux/amd64".into(),
        }
    }

    #[test]
    fn the_locked_image_gives_its_manifest() {
        let (m, _) = check_entry(&entry(), Some(image("sha256:1111", Some(MANIFEST)))).unwrap();
        assert_eq!(m.name, "echo");
    }

    #[test]
    fn a_missing_image_is_named() {
        let problem = check_entry(&entry(), None).unwrap_err();
        assert!(matches!(problem, IntegrityProblem::Missing { .. }));
        assert!(problem
            .to_string()
            .contains("skill echo: image skill-echo:abc"));
    }

    #[test]
    fn another_image_under_the_tag_is_caught_by_its_id() {
        let problem =
            check_entry(&entry(), Some(image("sha256:2222", Some(MANIFEST)))).unwrap_err();
        let text = problem.to_string();
        assert!(
            text.contains("sha256:2222") && text.contains("sha256:1111"),
            "{text}"
        );
    }

    #[test]
    fn an_image_without_a_valid_manifest_is_refused() {
        let none = check_entry(&entry(), Some(image("sha256:1111", None))).unwrap_err();
        assert!(none.to_string().contains(labels::MANIFEST), "{none}");
        let bad =
            check_entry(&entry(), Some(image("sha256:1111", Some("{\"name\": 3}")))).unwrap_err();
        assert!(matches!(bad, IntegrityProblem::Manifest { .. }), "{bad}");
    }

    #[test]
    fn the_proxys_pin_is_held_to_its_image_id_alone() {
        let pin = Pin {
            id: super::super::PinId::EgressProxy,
            image: "skillhost/egress-proxy:0123",
            image_id: "sha256:1111",
            registry: None,
            digest: None,
            skill: None,
        };
        assert!(check_pin(&pin, Some(image("sha256:1111", None))).is_ok());
        let missing = check_pin(&pin, None).unwrap_err();
        assert!(missing.skill().is_none());
        assert!(
            missing
                .to_string()
                .contains("the egress proxy: image skillhost/egress-proxy:0123 is not present"),
            "{missing}"
        );
        let other = check_pin(&pin, Some(image("sha256:2222", None))).unwrap_err();
        assert!(
            other
                .to_string()
                .contains("is sha256:2222, but the lock pins sha256:1111"),
            "{other}"
        );
    }

    #[test]
    fn a_manifest_of_another_version_is_refused() {
        let other = MANIFEST.replace("1.2.0", "1.3.0");
        let problem = check_entry(&entry(), Some(image("sha256:1111", Some(&other)))).unwrap_err();
        assert!(
            problem.to_string().contains("holds echo 1.3.0"),
            "{problem}"
        );
    }
}
