//! The build context as a deterministic tar: the same files give the same bytes on any
//! machine, at any path, with any mtimes or owners. The hash is taken over these bytes and
//! the engine is sent these bytes, so what is hashed is exactly what is built.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use crate::build::dockerignore::DockerIgnore;

pub const DOCKERIGNORE: &str = ".dockerignore";

/// Why a context could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// A file or directory cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// What.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `.dockerignore` has a pattern that does not parse.
    #[error("{}: {message}", path.display())]
    Ignore {
        /// The `.dockerignore`.
        path: PathBuf,
        /// The pattern and what is wrong with it.
        message: String,
    },
    /// A path that must exist does not.
    #[error("{} does not exist", .0.display())]
    Missing(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// Relative, `/`-separated.
    path: String,
    /// Permission bits only; owners and times are never recorded.
    mode: u32,
    kind: Kind,
}

/// The files of a context, sorted by path.
#[derive(Debug, Clone, Default)]
pub struct Context {
    entries: Vec<Entry>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Context {
    /// Read `dir`, honouring its `.dockerignore`. Paths in `always` are kept even when
    /// ignored, as the Docker CLI keeps the Dockerfile and `.dockerignore` itself.
    pub fn read_dir(dir: &Path, always: &[&str]) -> Result<Context, ContextError> {
        if !dir.is_dir() {
            return Err(ContextError::Missing(dir.to_path_buf()));
        }
        let ignore_path = dir.join(DOCKERIGNORE);
        let mut ignore = match std::fs::read_to_string(&ignore_path) {
            Ok(text) => DockerIgnore::parse(&text).map_err(|message| ContextError::Ignore {
                path: ignore_path.clone(),
                message,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => DockerIgnore::default(),
            Err(e) => return Err(io_err(&ignore_path)(e)),
        };
        for keep in always {
            ignore
                .push(true, keep)
                .map_err(|message| ContextError::Ignore {
                    path: ignore_path.clone(),
                    message,
                })?;
        }
        let mut context = Context::default();
        let mut walk = WalkDir::new(dir)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter();
        while let Some(entry) = walk.next() {
            let entry = entry.map_err(|e| ContextError::Io {
                path: e.path().unwrap_or(dir).to_path_buf(),
                source: e.into(),
            })?;
            if entry.depth() == 0 {
                continue;
            }
            let relative = entry.path().strip_prefix(dir).unwrap_or(entry.path());
            let Some(relative) = relative.to_str().map(str::to_owned) else {
                tracing::warn!(path = %entry.path().display(), "skipping a file whose name is not UTF-8");
                continue;
            };
            if ignore.is_excluded(&relative) {
                if entry.file_type().is_dir() && !ignore.has_exceptions() {
                    walk.skip_current_dir();
                }
                continue;
            }
            context.entries.push(read_entry(entry.path(), relative)?);
        }
        Ok(context)
    }

    /// Read one file or directory as an extra build input.
    pub fn read_input(path: &Path) -> Result<Context, ContextError> {
        let meta = std::fs::symlink_metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ContextError::Missing(path.to_path_buf()),
            _ => io_err(path)(e),
        })?;
        if meta.is_dir() {
            return Context::read_dir(path, &[]);
        }
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        Ok(Context {
            entries: vec![read_entry(path, name)?],
        })
    }

    /// Add or replace a file, for build outputs staged into the context.
    pub fn stage(&mut self, path: &str, contents: Vec<u8>, mode: u32) {
        self.entries.retain(|e| e.path != path);
        self.entries.push(Entry {
            path: path.to_string(),
            mode: mode & 0o7777,
            kind: Kind::File(contents),
        });
        self.entries.sort_by(|a, b| a.path.cmp(&b.path));
    }

    /// The contents of a file of the context.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.entries.iter().find_map(|e| match &e.kind {
            Kind::File(bytes) if e.path == path => Some(bytes.as_slice()),
            _ => None,
        })
    }

    /// Whether the context holds `path`.
    #[cfg(test)]
    pub fn contains(&self, path: &str) -> bool {
        self.entries.iter().any(|e| e.path == path)
    }

    /// Each entry's path and a digest of what the tar records of it (its kind, mode and
    /// contents or link target), in path order: what tells which file moved.
    pub(crate) fn digests(&self) -> impl Iterator<Item = (&str, [u8; 32])> + '_ {
        use sha2::{Digest, Sha256};
        self.entries.iter().map(|entry| {
            let mut h = Sha256::new();
            h.update(entry.mode.to_le_bytes());
            match &entry.kind {
                Kind::Dir => h.update(b"dir"),
                Kind::File(bytes) => {
                    h.update(b"file");
                    h.update(bytes);
                }
                Kind::Symlink(target) => {
                    h.update(b"symlink");
                    h.update(target.as_os_str().as_encoded_bytes());
                }
            }
            (entry.path.as_str(), h.finalize().into())
        })
    }

    /// The tar the engine receives; deterministic for equal contexts.
    pub fn to_tar(&self) -> std::io::Result<Vec<u8>> {
        let mut tar = tar::Builder::new(Vec::new());
        for entry in &self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_mode(entry.mode);
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            match &entry.kind {
                Kind::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    tar.append_data(&mut header, format!("{}/", entry.path), std::io::empty())?;
                }
                Kind::File(bytes) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(bytes.len() as u64);
                    tar.append_data(&mut header, &entry.path, bytes.as_slice())?;
                }
                Kind::Symlink(target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    tar.append_link(&mut header, &entry.path, target)?;
                }
            }
        }
        tar.into_inner()
    }
}

fn read_entry(path: &Path, relative: String) -> Result<Entry, ContextError> {
    let meta = std::fs::symlink_metadata(path).map_err(io_err(path))?;
    let mode = meta.permissions().mode() & 0o7777;
    let kind = if meta.is_dir() {
        Kind::Dir
    } else if meta.file_type().is_symlink() {
        Kind::Symlink(std::fs::read_link(path).map_err(io_err(path))?)
    } else if meta.is_file() {
        Kind::File(std::fs::read(path).map_err(io_err(path))?)
    } else {
        return Err(ContextError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(
                "sockets, pipes and devices cannot be part of a build context",
            ),
        });
    };
    Ok(Entry {
        path: relative,
        mode,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn names(tar_bytes: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn dockerignore_is_honoured_but_the_dockerfile_is_always_sent() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(
            dir.path().join(DOCKERIGNORE),
            "Dockerfile\n.dockerignore\nsecret*\nlogs\n",
        )
        .unwrap();
        fs::write(dir.path().join("secret.key"), "x").unwrap();
        fs::create_dir(dir.path().join("logs")).unwrap();
        fs::write(dir.path().join("logs/a.log"), "x").unwrap();
        fs::write(dir.path().join("main.py"), "print(1)").unwrap();
        let ctx = Context::read_dir(dir.path(), &["Dockerfile", DOCKERIGNORE]).unwrap();
        assert_eq!(
            names(&ctx.to_tar().unwrap()),
            [".dockerignore", "Dockerfile", "main.py"]
        );
    }

    #[test]
    fn tar_headers_carry_no_time_or_owner() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), "x").unwrap();
        let bytes = Context::read_dir(dir.path(), &[])
            .unwrap()
            .to_tar()
            .unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        for entry in archive.entries().unwrap() {
            let header = entry.unwrap().header().clone();
            assert_eq!(header.mtime().unwrap(), 0);
            assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
        }
    }

    #[test]
    fn staging_replaces_and_keeps_order() {
        let mut ctx = Context::default();
        ctx.stage("b", b"1".to_vec(), 0o644);
        ctx.stage("a", b"2".to_vec(), 0o755);
        ctx.stage("b", b"3".to_vec(), 0o644);
        assert_eq!(names(&ctx.to_tar().unwrap()), ["a", "b"]);
        assert!(ctx.contains("a") && !ctx.contains("c"));
    }
}
