//! The library's error type for everything but invocations (which never fail: they return
//! a result with a status): one variant per concern, each mapped to an exit code.

use skillhost_api::exit_code;

use crate::build::{BaseImageError, BuildError};
use crate::catalog::DeploymentError;
use crate::catalog::DiscoveryError;
use crate::engine::EngineError;
use crate::manifest::ManifestError;

/// Why a library operation (discovery, a build, an engine call) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The skills directories could not be searched.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// A manifest is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A deployment manifest is invalid or cannot be met.
    #[error(transparent)]
    Deployment(#[from] DeploymentError),
    /// A skill's image could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A base image could not be built.
    #[error(transparent)]
    BaseImage(#[from] BaseImageError),
    /// The engine could not be used.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A lock file could not be read, written or made.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    /// An image could not be pushed or pulled.
    #[error(transparent)]
    Ship(#[from] crate::ship::ShipError),
    /// The swarm's state could not be read.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// The request itself is wrong: an unknown skill, conflicting options.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// The process exit code this error maps to. A failed build gives the exit code of
    /// the status an invocation gets for the same failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Discovery(_) | Error::Manifest(_) | Error::Deployment(_) | Error::Usage(_) => {
                exit_code::USAGE
            }
            Error::Engine(_) => exit_code::INFRASTRUCTURE,
            Error::Build(e) => e.status().exit_code(),
            Error::BaseImage(BaseImageError::Build(e)) => e.status().exit_code(),
            Error::BaseImage(
                BaseImageError::Read { .. }
                | BaseImageError::Manifest { .. }
                | BaseImageError::Dependency { .. },
            ) => exit_code::USAGE,
            Error::BaseImage(BaseImageError::NotRoot { .. } | BaseImageError::Tool { .. }) => {
                exit_code::INFRASTRUCTURE
            }
            Error::Lock(e) => match e {
                crate::lock::LockError::Read { .. } | crate::lock::LockError::Invalid { .. } => {
                    exit_code::USAGE
                }
                crate::lock::LockError::Build(e) => e.status().exit_code(),
                _ => exit_code::INFRASTRUCTURE,
            },
            Error::Ship(e) => match e {
                crate::ship::ShipError::NotPushed { .. } | crate::ship::ShipError::Bundle(_) => {
                    exit_code::USAGE
                }
                _ => exit_code::INFRASTRUCTURE,
            },
            Error::Cluster(e) => match e {
                crate::cluster::ClusterError::NoService(_) => exit_code::USAGE,
                _ => exit_code::INFRASTRUCTURE,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use skillhost_api::Status;

    use super::*;
    use crate::build::ContextError;
    use crate::build::HashError;

    #[test]
    fn a_failed_build_exits_as_the_skills_failure_from_build_and_invoke_alike() {
        let failures = [
            BuildError::Inputs {
                name: "s".into(),
                source: HashError::Context(ContextError::Missing(PathBuf::from("x"))),
            },
            BuildError::Command {
                name: "s".into(),
                command: "make".into(),
                status: "exit status: 2".into(),
                output: Vec::new(),
            },
            BuildError::MissingOutput {
                name: "s".into(),
                dest: PathBuf::from("bin"),
                source_path: PathBuf::from("target/bin"),
            },
        ];
        for failure in failures {
            assert_eq!(failure.status(), Status::SkillError, "{failure}");
            assert_eq!(Error::Build(failure).exit_code(), exit_code::SKILL_FAILED);
        }
        let missing_base = BuildError::MissingBase {
            name: "s".into(),
            reference: "skillhost/debian:latest".into(),
            line: 1,
        };
        assert_eq!(missing_base.status(), Status::InfrastructureError);
        assert_eq!(
            Error::Build(missing_base).exit_code(),
            exit_code::INFRASTRUCTURE
        );
    }
}
