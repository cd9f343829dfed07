//! Deployment manifests (`manifests/*.yaml`): which skills a deployment runs, each with a
//! semver requirement its discovered version must meet. Operators prebuild exactly these.
//!
//! ```yaml
//! skills:
//!   echo: "^1"
//!   python: ">=0.1, <2"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::catalog::{Catalog, Skill};

/// A deployment manifest: the skills a deployment runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// Each skill by name, with the semver requirement its version must meet.
    pub skills: BTreeMap<String, semver::VersionReq>,
}

/// Why a deployment manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    /// The file cannot be read.
    #[error("cannot read deployment manifest {}: {source}", path.display())]
    Read {
        /// The deployment manifest.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid deployment manifest.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The deployment manifest.
        path: PathBuf,
        /// What is wrong, with its position.
        message: String,
    },
    /// Skills it lists are missing or at versions it does not accept.
    #[error("{}: the deployment cannot be met:\n  {}", path.display(), problems.join("\n  "))]
    Unmet {
        /// The deployment manifest.
        path: PathBuf,
        /// Each skill that cannot be met, and why.
        problems: Vec<String>,
    },
}

impl Deployment {
    /// Read and check a deployment manifest.
    pub fn load(path: &Path) -> Result<Deployment, DeploymentError> {
        let text = std::fs::read_to_string(path).map_err(|source| DeploymentError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let deployment: Deployment =
            serde_yaml::from_str(&text).map_err(|e| DeploymentError::Invalid {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        if deployment.skills.is_empty() {
            return Err(DeploymentError::Invalid {
                path: path.to_path_buf(),
                message: "skills: lists no skill".into(),
            });
        }
        Ok(deployment)
    }

    /// The listed skills, or every reason they cannot all be met.
    pub fn resolve<'c>(
        &self,
        path: &Path,
        catalog: &'c Catalog,
    ) -> Result<Vec<&'c Skill>, DeploymentError> {
        let mut problems = Vec::new();
        let mut skills = Vec::new();
        for (name, requirement) in &self.skills {
            match catalog.get(name) {
                None => problems.push(format!(
                    "skill {name} ({requirement}) was not found in the skills directories"
                )),
                Some(skill) if !requirement.matches(&skill.manifest.version) => {
                    problems.push(format!(
                        "skill {name} is version {}, which does not meet {requirement} ({})",
                        skill.manifest.version,
                        skill.manifest_path().display()
                    ))
                }
                Some(skill) => skills.push(skill),
            }
        }
        if problems.is_empty() {
            Ok(skills)
        } else {
            Err(DeploymentError::Unmet {
                path: path.to_path_buf(),
                problems,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog_with(version: &str) -> (tempfile::TempDir, Catalog) {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("echo")).unwrap();
        std::fs::write(
            root.path().join("echo/skill.yaml"),
            format!("name: echo\nversion: {version}\nprotocol: '^1'\nactions: {{say: {{}}}}\n"),
        )
        .unwrap();
        let catalog = Catalog::discover(&[root.path().to_path_buf()]).unwrap();
        (root, catalog)
    }

    #[test]
    fn requirements_are_checked_before_anything_builds() {
        let (_root, catalog) = catalog_with("1.2.0");
        let path = Path::new("prod.yaml");
        let ok: Deployment = serde_yaml::from_str("skills: {echo: '^1'}").unwrap();
        assert_eq!(ok.resolve(path, &catalog).unwrap().len(), 1);

        let bad: Deployment = serde_yaml::from_str("skills: {echo: '^2', shell: '*'}").unwrap();
        let err = bad.resolve(path, &catalog).unwrap_err().to_string();
        assert!(
            err.contains("echo is version 1.2.0, which does not meet ^2"),
            "{err}"
        );
        assert!(err.contains("skill shell (*) was not found"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_requirements_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.yaml");
        std::fs::write(&path, "skill: {echo: '^1'}\n").unwrap();
        assert!(Deployment::load(&path)
            .unwrap_err()
            .to_string()
            .contains("unknown field `skill`"));
        std::fs::write(&path, "skills: {echo: 'one'}\n").unwrap();
        assert!(Deployment::load(&path)
            .unwrap_err()
            .to_string()
            .contains("skills.echo"));
    }
}
