//! After a call with a writable workspace: no file the skill left there may carry the
//! setuid or setgid bit, and none may be a device.
//!
//! The seccomp profile already refuses every call that would set those bits, and without
//! CAP_MKNOD no device can be made, so this is the second line: it finds what the first
//! should have stopped, clears the bits and removes the device. The walk holds each
//! directory open and names entries relative to it, never following a link, so a skill
//! (or another call on the same directory) that swaps a path for a link meanwhile cannot
//! steer a change onto a file outside the workspace.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// Deeper than this the walk stops, and says so: each level holds a directory open.
const MAX_DEPTH: usize = 128;

/// The set-id bits of a mode.
const SET_ID_BITS: u32 = 0o6000;

/// What the sweep found and did, each with its path below the workspace.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Sweep {
    /// Files and directories whose set-id bits were cleared.
    pub(crate) cleared: Vec<PathBuf>,
    /// Device nodes, removed.
    pub(crate) removed: Vec<PathBuf>,
    /// What could not be checked or mended, and why.
    pub(crate) failed: Vec<(PathBuf, String)>,
}

impl Sweep {
    /// Whether the skill left nothing to mend and everything could be checked.
    pub(crate) fn is_clean(&self) -> bool {
        self.cleared.is_empty() && self.removed.is_empty() && self.failed.is_empty()
    }
}

/// Sweep the workspace `root` (canonical, checked before the call).
pub(crate) fn sweep(root: &Path) -> Sweep {
    let mut found = Sweep::default();
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::open(root, flags, Mode::empty()) {
        Ok(dir) => walk(&dir, Path::new(""), 0, &mut found),
        Err(e) => found.failed.push((PathBuf::new(), e.to_string())),
    }
    found
}

fn walk(dir: &OwnedFd, at: &Path, depth: usize, found: &mut Sweep) {
    if depth >= MAX_DEPTH {
        found.failed.push((
            at.to_path_buf(),
            format!("deeper than {MAX_DEPTH} directories: not checked"),
        ));
        return;
    }
    let entries = match rustix::fs::Dir::read_from(dir) {
        Ok(entries) => entries,
        Err(e) => {
            found.failed.push((at.to_path_buf(), e.to_string()));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                found.failed.push((at.to_path_buf(), e.to_string()));
                return;
            }
        };
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let path =
            at.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name.to_bytes()));
        if let Err(e) = visit(dir, name, &path, depth, found) {
            found.failed.push((path, e.to_string()));
        }
    }
}

/// Check one entry of `dir`, mend it, and walk into it when it is a directory.
fn visit(
    dir: &OwnedFd,
    name: &std::ffi::CStr,
    path: &Path,
    depth: usize,
    found: &mut Sweep,
) -> rustix::io::Result<()> {
    let stat = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::CharacterDevice | FileType::BlockDevice => {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
            found.removed.push(path.to_path_buf());
        }
        FileType::Directory => {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let child = rustix::fs::openat(dir, name, flags, Mode::empty())?;
            clear_set_id(&child, path, found)?;
            walk(&child, path, depth + 1, found);
        }
        FileType::RegularFile if stat.st_mode & SET_ID_BITS != 0 => {
            // O_PATH opens whatever the name is now without following it or needing
            // read access; fstat then says what was opened.
            let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let file = rustix::fs::openat(dir, name, flags, Mode::empty())?;
            clear_set_id(&file, path, found)?;
        }
        _ => {}
    }
    Ok(())
}

/// Clear the set-id bits of the open regular file or directory `fd`, if it has any.
fn clear_set_id(fd: &OwnedFd, path: &Path, found: &mut Sweep) -> rustix::io::Result<()> {
    let stat = rustix::fs::fstat(fd)?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    if stat.st_mode & SET_ID_BITS == 0
        || !matches!(kind, FileType::RegularFile | FileType::Directory)
    {
        return Ok(());
    }
    let mode = Mode::from_raw_mode(stat.st_mode & 0o1777);
    // fchmod does not take an O_PATH descriptor; its /proc/self/fd link names exactly
    // the file opened, whatever its path has become.
    let link = format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd.as_fd())
    );
    rustix::fs::chmod(link.as_str(), mode)?;
    found.cleared.push(path.to_path_buf());
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn set_id_bits_are_cleared_at_any_depth_and_nothing_else_changes() {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        let files = [
            (root.path().join("rootsh"), 0o4755, 0o755),
            (deep.join("gsh"), 0o2750, 0o750),
            (deep.join("plain"), 0o644, 0o644),
            (root.path().join("sticky"), 0o1777, 0o1777),
        ];
        for (path, set, _) in &files {
            std::fs::write(path, "x").unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(*set)).unwrap();
        }
        std::fs::set_permissions(
            root.path().join("a"),
            std::fs::Permissions::from_mode(0o2775),
        )
        .unwrap();
        let found = sweep(root.path());
        for (path, _, expected) in &files {
            assert_eq!(mode(path), *expected, "{}", path.display());
        }
        assert_eq!(mode(&root.path().join("a")), 0o775);
        let mut cleared = found.cleared.clone();
        cleared.sort();
        assert_eq!(
            cleared,
            vec![
                PathBuf::from("a"),
                PathBuf::from("a/b/gsh"),
                PathBuf::from("rootsh")
            ]
        );
        assert!(
            found.removed.is_empty() && found.failed.is_empty(),
            "{found:?}"
        );
        assert!(
            sweep(root.path()).is_clean(),
            "a second sweep finds nothing"
        );
    }

    #[test]
    fn links_are_never_followed() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("suid");
        std::fs::write(&target, "x").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::symlink(&target, root.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("dirlink")).unwrap();
        let found = sweep(root.path());
        assert!(found.is_clean(), "{found:?}");
        assert_eq!(mode(&target), 0o4755, "the file outside is not touched");
    }

    #[test]
    fn a_missing_root_is_a_failure_not_a_clean_sweep() {
        let found = sweep(Path::new("/nonexistent/skillhost-sweep"));
        assert!(!found.is_clean());
        assert_eq!(found.failed.len(), 1);
    }
}
