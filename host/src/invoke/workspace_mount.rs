//! The workspace as the container sees it: a `nosuid`, `nodev` view of the caller's
//! directory, where this process can make one.
//!
//! Docker binds a directory with the flags of the mount it lives on, and neither its
//! bind options nor its local volume driver can add `nosuid` or `nodev` to a bind. So a
//! host running as root, in the engine's own mount namespace, binds the directory at a
//! path of its own (`/run/skillhost/workspaces/<instance>/<invocation>`), remounts that
//! bind `nosuid,nodev` (keeping `ro` and `noexec` where the directory had them), and
//! hands the engine that path; the view goes when the call ends. A host that cannot
//! (not root, another mount namespace, a remote engine) hands the directory as it is:
//! the seccomp profile and the sweep after the call still keep set-id files and devices
//! out, as SECURITY.md says.
//!
//! The bind is not recursive: a filesystem mounted inside the workspace, which would not
//! carry the flags, is not seen through it.

use std::path::{Path, PathBuf};

use rustix::fs::StatVfsMountFlags;
use rustix::mount::{MountFlags, UnmountFlags};

use crate::lifecycle::instance::{Instance, Liveness};

/// Where the views live, one directory per host process.
const VIEWS: &str = "/run/skillhost/workspaces";

/// A `nosuid,nodev` view of a workspace, unmounted and removed when dropped.
#[derive(Debug)]
pub(crate) struct WorkspaceView {
    path: PathBuf,
}

impl WorkspaceView {
    /// The path to hand the engine.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkspaceView {
    fn drop(&mut self) {
        remove_view(&self.path);
        // The host process's directory goes with its last view (it stays while another
        // view is in it).
        if let Some(parent) = self.path.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// Unmount a view (lazily: a container being torn down may still hold it) and remove
/// its directory.
fn remove_view(path: &Path) {
    if let Err(e) = rustix::mount::unmount(path, UnmountFlags::DETACH) {
        tracing::warn!(view = %path.display(), "cannot unmount a workspace view: {e}");
        return;
    }
    if let Err(e) = std::fs::remove_dir(path) {
        tracing::warn!(view = %path.display(), "cannot remove a workspace view: {e}");
    }
}

/// Whether this process can make views the engine sees: root, and in the mount
/// namespace of the engine on the local socket (known from its pid file).
pub fn can_make_views() -> bool {
    let local_engine = std::env::var("DOCKER_HOST")
        .map(|host| host.starts_with("unix://"))
        .unwrap_or(true);
    if !rustix::process::geteuid().is_root() || !local_engine {
        return false;
    }
    let ours = std::fs::read_link("/proc/self/ns/mnt").ok();
    ["/run/docker.pid", "/var/run/docker.pid"]
        .iter()
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .filter_map(|pid| std::fs::read_link(format!("/proc/{}/ns/mnt", pid.trim())).ok())
        .any(|engines| Some(engines) == ours)
}

/// The per-mount flags a view keeps from the directory's own mount, with `nosuid` and
/// `nodev` added.
pub(crate) fn view_flags(of_directory: StatVfsMountFlags) -> MountFlags {
    let mut flags = MountFlags::BIND | MountFlags::NOSUID | MountFlags::NODEV;
    for (has, keep) in [
        (StatVfsMountFlags::RDONLY, MountFlags::RDONLY),
        (StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
        (StatVfsMountFlags::NOATIME, MountFlags::NOATIME),
        (StatVfsMountFlags::NODIRATIME, MountFlags::NODIRATIME),
        (StatVfsMountFlags::RELATIME, MountFlags::RELATIME),
    ] {
        if of_directory.contains(has) {
            flags |= keep;
        }
    }
    flags
}

/// A view of the canonical workspace `dir` for `invocation`.
pub(crate) fn make_view(
    dir: &Path,
    instance: &Instance,
    invocation: &str,
) -> std::io::Result<WorkspaceView> {
    use std::os::unix::fs::DirBuilderExt;
    let parent = Path::new(VIEWS).join(&instance.id);
    let path = parent.join(invocation);
    let make = || -> std::io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&parent)?;
        std::fs::DirBuilder::new().mode(0o700).create(&path)
    };
    // Another view of this process may remove the parent, its last, in between: once more.
    make().or_else(|_| make())?;
    if let Err(e) = rustix::mount::mount_bind(dir, &path) {
        let _ = std::fs::remove_dir(&path);
        return Err(e.into());
    }
    // From here on, dropping the view unmounts it.
    let view = WorkspaceView { path };
    let flags = view_flags(rustix::fs::statvfs(view.path())?.f_flag);
    rustix::mount::mount_remount(view.path(), flags, "")?;
    Ok(view)
}

/// Remove the views of host processes that are gone (killed before they could).
pub(crate) fn reap_dead_views() {
    let Ok(instances) = std::fs::read_dir(VIEWS) else {
        return;
    };
    for instance in instances.flatten() {
        let id = instance.file_name().to_string_lossy().into_owned();
        if Instance::liveness(&id, None) != Liveness::Dead {
            continue;
        }
        for view in std::fs::read_dir(instance.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            remove_view(&view.path());
        }
        let _ = std::fs::remove_dir(instance.path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_adds_nosuid_and_nodev_and_keeps_ro_and_noexec() {
        let plain = view_flags(StatVfsMountFlags::empty());
        assert_eq!(
            plain,
            MountFlags::BIND | MountFlags::NOSUID | MountFlags::NODEV
        );
        let kept = view_flags(StatVfsMountFlags::RDONLY | StatVfsMountFlags::NOEXEC);
        assert!(kept.contains(MountFlags::RDONLY | MountFlags::NOEXEC | MountFlags::NOSUID));
    }

    #[test]
    fn a_view_shows_the_directory_without_set_id_or_devices_where_it_can_be_made() {
        if !can_make_views() {
            eprintln!("not root in the engine's mount namespace: no view to make here");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "x").unwrap();
        let instance = Instance::current();
        let view = make_view(dir.path(), &instance, "unit-test-view").unwrap();
        assert_eq!(std::fs::read_to_string(view.path().join("f")).unwrap(), "x");
        let flags = rustix::fs::statvfs(view.path()).unwrap().f_flag;
        assert!(flags.contains(StatVfsMountFlags::NOSUID | StatVfsMountFlags::NODEV));
        let path = view.path().to_path_buf();
        drop(view);
        assert!(!path.exists(), "unmounted and removed");
        assert!(dir.path().join("f").exists(), "the directory itself stays");
    }
}
