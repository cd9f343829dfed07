//! The library's error type: one variant per concern, each mapped to an exit code.

use crate::base_images::BaseImageError;
use crate::deployment::DeploymentError;
use crate::discovery::DiscoveryError;
use crate::engine::EngineError;
use crate::exit_code;
use crate::image_build::BuildError;
use crate::manifest::ManifestError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Deployment(#[from] DeploymentError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    BaseImage(#[from] BaseImageError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The request itself is wrong: an unknown skill, conflicting options.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// The process exit code this error maps to.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Discovery(_) | Error::Manifest(_) | Error::Deployment(_) | Error::Usage(_) => {
                exit_code::USAGE
            }
            Error::Engine(_) => exit_code::INFRASTRUCTURE,
            Error::Build(e) => build_exit_code(e),
            Error::BaseImage(BaseImageError::Build(e)) => build_exit_code(e),
            Error::BaseImage(
                BaseImageError::Read { .. }
                | BaseImageError::Manifest { .. }
                | BaseImageError::Dependency { .. },
            ) => exit_code::USAGE,
            Error::BaseImage(BaseImageError::NotRoot { .. } | BaseImageError::Tool { .. }) => {
                exit_code::INFRASTRUCTURE
            }
        }
    }
}

fn build_exit_code(e: &BuildError) -> i32 {
    match e {
        BuildError::Inputs { .. } => exit_code::USAGE,
        BuildError::Command { .. }
        | BuildError::MissingOutput { .. }
        | BuildError::Failed { .. } => exit_code::SKILL_FAILED,
        BuildError::MissingBase { .. }
        | BuildError::NoEngine { .. }
        | BuildError::Engine(_)
        | BuildError::Lock { .. } => exit_code::INFRASTRUCTURE,
    }
}
