//! Checking the engine's images against a lock: each locked skill's `skill-<name>:<hash>`
//! must be present, be the image ID the lock pins, and carry a valid manifest of the
//! locked name, version and protocol. Used after a pull or an import, and by a locked
//! host at start and for `/readyz`. [`check_entry`] is the pure part.

use crate::engine::{Engine, EngineError, LocalImage};
use crate::lifecycle::labels;
use crate::manifest::Manifest;

use super::{LockFile, LockedSkill};

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
}

impl IntegrityProblem {
    /// The skill it concerns.
    pub fn skill(&self) -> &str {
        match self {
            IntegrityProblem::Missing { skill, .. }
            | IntegrityProblem::WrongImage { skill, .. }
            | IntegrityProblem::Manifest { skill, .. }
            | IntegrityProblem::OtherSkill { skill, .. } => skill,
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
    /// Each mismatch, naming its skill.
    pub problems: Vec<IntegrityProblem>,
}

/// Check every locked skill's image on `engine`.
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
    Ok(out)
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
    fn a_manifest_of_another_version_is_refused() {
        let other = MANIFEST.replace("1.2.0", "1.3.0");
        let problem = check_entry(&entry(), Some(image("sha256:1111", Some(&other)))).unwrap_err();
        assert!(
            problem.to_string().contains("holds echo 1.3.0"),
            "{problem}"
        );
    }
}
