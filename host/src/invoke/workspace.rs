//! Checking a caller's workspace directory before it is mounted at `/workspace`.
//!
//! It is the only bind mount a container can get. The path is resolved (links and `..`)
//! first, so what is checked is what is mounted; `/`, system directories and anything
//! holding the Docker socket are refused outright.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::manifest::{User, WorkspaceMode};

/// Never mounted, nor anything beneath or above them: the engine's sockets and data (every
/// container's files) and the system's own directories.
const PROTECTED: &[&str] = &[
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/run/containerd",
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/var/run",
    "/boot",
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
];

/// Why a directory cannot be a skill's workspace.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkspaceError {
    #[error("this skill does not declare run.workspace, so no directory can be mounted")]
    NotDeclared,
    #[error("workspace {} cannot be resolved: {source}", dir.display())]
    Unresolvable {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("workspace {} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("the root directory can never be a workspace")]
    Root,
    #[error("workspace {} is under {}, which is never mounted", dir.display(), protected.display())]
    UnderProtected { dir: PathBuf, protected: PathBuf },
    #[error("workspace {} contains {}, which is never mounted", dir.display(), protected.display())]
    ContainsProtected { dir: PathBuf, protected: PathBuf },
    #[error("workspace {} is not writable by the skill's user {user}: give that uid write access (chown or chmod), or use a fresh directory", dir.display())]
    NotWritable { dir: PathBuf, user: User },
}

/// The canonical directory to mount, or why it cannot be.
pub(crate) fn check(
    dir: &Path,
    mode: WorkspaceMode,
    user: &User,
) -> Result<PathBuf, WorkspaceError> {
    if mode == WorkspaceMode::None {
        return Err(WorkspaceError::NotDeclared);
    }
    let unresolvable = |source| WorkspaceError::Unresolvable {
        dir: dir.to_path_buf(),
        source,
    };
    let canonical = dir.canonicalize().map_err(unresolvable)?;
    let meta = std::fs::metadata(&canonical).map_err(unresolvable)?;
    if !meta.is_dir() {
        return Err(WorkspaceError::NotADirectory(dir.to_path_buf()));
    }
    if canonical == Path::new("/") {
        return Err(WorkspaceError::Root);
    }
    for protected in protected_paths() {
        if canonical.starts_with(&protected) {
            return Err(WorkspaceError::UnderProtected {
                dir: dir.to_path_buf(),
                protected,
            });
        }
        if protected.starts_with(&canonical) {
            return Err(WorkspaceError::ContainsProtected {
                dir: dir.to_path_buf(),
                protected,
            });
        }
    }
    if mode == WorkspaceMode::Rw && !writable_by(&meta, user) {
        return Err(WorkspaceError::NotWritable {
            dir: dir.to_path_buf(),
            user: user.clone(),
        });
    }
    Ok(canonical)
}

/// Each protected path both as written and resolved (`/var/run` is a link to `/run`),
/// plus the socket `DOCKER_HOST` names.
fn protected_paths() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = PROTECTED.iter().map(PathBuf::from).collect();
    if let Some(socket) = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
    {
        paths.push(socket);
    }
    let resolved: Vec<PathBuf> = paths.iter().filter_map(|p| p.canonicalize().ok()).collect();
    paths.extend(resolved);
    paths
}

/// Whether the numeric `uid[:gid]` may write the directory; names cannot be resolved
/// here, so they pass and the skill finds out.
fn writable_by(meta: &std::fs::Metadata, user: &User) -> bool {
    let mut parts = user.0.split(':');
    let uid = parts.next().and_then(|u| u.parse::<u32>().ok());
    let gid = parts.next().and_then(|g| g.parse::<u32>().ok());
    let Some(uid) = uid else { return true };
    let mode = meta.mode();
    (meta.uid() == uid && mode & 0o200 != 0)
        || (gid == Some(meta.gid()) && mode & 0o020 != 0)
        || mode & 0o002 != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn user() -> User {
        User::parse("10001:10001").unwrap()
    }

    #[test]
    fn root_system_dirs_and_the_socket_are_refused() {
        for dir in ["/", "/etc", "/proc/self", "/var/run", "/dev"] {
            assert!(
                check(Path::new(dir), WorkspaceMode::Ro, &user()).is_err(),
                "{dir}"
            );
        }
        let err = check(Path::new("/var"), WorkspaceMode::Ro, &user())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Docker socket") || err.contains("never mounted"),
            "{err}"
        );
    }

    #[test]
    fn links_are_resolved_before_checking() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("sneaky");
        std::os::unix::fs::symlink("/etc", &link).unwrap();
        let err = check(&link, WorkspaceMode::Ro, &user())
            .unwrap_err()
            .to_string();
        assert!(err.contains("under /etc"), "{err}");
        let dotdot = dir.path().join("../../../../../../../../etc");
        assert!(check(&dotdot, WorkspaceMode::Ro, &user()).is_err());
    }

    #[test]
    fn undeclared_workspace_and_unwritable_rw_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check(dir.path(), WorkspaceMode::None, &user())
            .unwrap_err()
            .to_string()
            .contains("does not declare"));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(check(dir.path(), WorkspaceMode::Rw, &user())
            .unwrap_err()
            .to_string()
            .contains("not writable"));
        assert!(check(dir.path(), WorkspaceMode::Ro, &user()).is_ok());
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let ok = check(dir.path(), WorkspaceMode::Rw, &user()).unwrap();
        assert_eq!(ok, dir.path().canonicalize().unwrap());
    }
}
