//! Reading a bundle before anything of it reaches the engine: `skillhost export` writes a
//! tar holding the lock (`skillhost-bundle.lock`) and the engine's save of the locked
//! images (`images.tar`). Every path must stay inside the bundle, every locked image must
//! be in it with the locked ID (the SHA-256 of its config), and each layer must hash to the
//! digest its config names; otherwise the whole bundle is refused.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::lock::LockFile;

/// The lock's name inside a bundle.
pub(super) const LOCK_NAME: &str = "skillhost-bundle.lock";
/// The engine's save of the images, inside a bundle.
pub(super) const IMAGES_NAME: &str = "images.tar";

/// Why a bundle was refused; nothing of it was imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The tar ends early or is not a tar.
    #[error("the bundle is damaged or truncated ({part}): {reason}; nothing was imported")]
    Damaged {
        /// The bundle itself, or the images inside it.
        part: &'static str,
        /// What the reader said.
        reason: String,
    },
    /// A path would land outside the bundle's root.
    #[error("the bundle holds {path:?}, a path outside its root; nothing was imported")]
    UnsafePath {
        /// The path as written in the tar.
        path: String,
    },
    /// Something a bundle does not hold.
    #[error(
        "the bundle holds {path:?}, which a skillhost bundle does not have; nothing was imported"
    )]
    Unexpected {
        /// The path.
        path: String,
    },
    /// A part of the bundle is missing.
    #[error("the bundle has no {what}; nothing was imported")]
    Incomplete {
        /// What.
        what: String,
    },
    /// The bundle's lock cannot be read.
    #[error("the bundle's lock is not valid: {reason}; nothing was imported")]
    Lock {
        /// Why.
        reason: String,
    },
    /// A locked image is not in the bundle.
    #[error("{subject}: image {image} is not in the bundle; nothing was imported")]
    NotInBundle {
        /// Whose image: `skill echo`, `the egress proxy`.
        subject: String,
        /// `skill-<name>:<hash>`.
        image: String,
    },
    /// The bundle's image is not the locked one.
    #[error("{subject}: the bundle's {image} is image {found}, but the lock pins {expected}; nothing was imported")]
    WrongImage {
        /// Whose image.
        subject: String,
        /// `skill-<name>:<hash>`.
        image: String,
        /// The lock's image ID.
        expected: String,
        /// The SHA-256 of the bundle's config.
        found: String,
    },
    /// A layer does not hash to the digest its image's config names.
    #[error("{subject}: layer {layer} of {image} does not match its digest {expected}; nothing was imported")]
    LayerMismatch {
        /// Whose image.
        subject: String,
        /// `skill-<name>:<hash>`.
        image: String,
        /// The layer's file in the bundle.
        layer: String,
        /// The digest the config names.
        expected: String,
    },
    /// An image the lock does not name.
    #[error("the bundle carries {tag}, which its lock does not name; nothing was imported")]
    Unlocked {
        /// Its tag.
        tag: String,
    },
}

/// A path inside a tar, if it stays inside the root: relative, with no `..`.
fn inside(path: &Path) -> bool {
    path.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

fn damaged(part: &'static str) -> impl Fn(std::io::Error) -> BundleError {
    move |e| BundleError::Damaged {
        part,
        reason: e.to_string(),
    }
}

/// Unpack the bundle's two members into `dest` and read its lock. Any other member, or a
/// path outside the root, refuses the bundle.
pub(super) fn unpack(bundle: &Path, dest: &Path) -> Result<(LockFile, PathBuf), BundleError> {
    let file = std::fs::File::open(bundle).map_err(|source| BundleError::Io {
        action: "cannot open the bundle",
        path: bundle.to_path_buf(),
        source,
    })?;
    let mut archive = tar::Archive::new(file);
    let mut lock = None;
    let mut images = None;
    for entry in archive.entries().map_err(damaged("the bundle"))? {
        let mut entry = entry.map_err(damaged("the bundle"))?;
        let path = entry.path().map_err(damaged("the bundle"))?.into_owned();
        let shown = path.display().to_string();
        if !inside(&path) {
            return Err(BundleError::UnsafePath { path: shown });
        }
        let kind = entry.header().entry_type();
        if shown == LOCK_NAME && kind.is_file() {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(damaged("the bundle"))?;
            lock = Some(LockFile::parse(&text).map_err(|reason| BundleError::Lock { reason })?);
        } else if shown == IMAGES_NAME && kind.is_file() {
            let target = dest.join(IMAGES_NAME);
            let mut out = std::fs::File::create(&target).map_err(|source| BundleError::Io {
                action: "cannot write",
                path: target.clone(),
                source,
            })?;
            std::io::copy(&mut entry, &mut out).map_err(damaged("the bundle"))?;
            images = Some(target);
        } else {
            return Err(BundleError::Unexpected { path: shown });
        }
    }
    let lock = lock.ok_or_else(|| BundleError::Incomplete {
        what: LOCK_NAME.into(),
    })?;
    let images = images.ok_or_else(|| BundleError::Incomplete {
        what: IMAGES_NAME.into(),
    })?;
    Ok((lock, images))
}

/// One image of the engine's save, as `manifest.json` lists it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SavedImage {
    config: String,
    #[serde(default)]
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ImageConfig {
    rootfs: RootFs,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// What one pass over the save found: every regular file's SHA-256, each link's target
/// (resolved inside the root), and the bytes of `manifest.json` and of the configs.
#[derive(Debug, Default)]
struct Scan {
    hashes: HashMap<String, String>,
    links: HashMap<String, String>,
    small: HashMap<String, Vec<u8>>,
}

/// Files read whole: the index and the image configs (JSON, a few KiB).
const SMALL_FILE: u64 = 4 * 1024 * 1024;

fn scan(images: &Path) -> Result<Scan, BundleError> {
    let file = std::fs::File::open(images).map_err(|source| BundleError::Io {
        action: "cannot open",
        path: images.to_path_buf(),
        source,
    })?;
    let mut archive = tar::Archive::new(file);
    let mut found = Scan::default();
    for entry in archive.entries().map_err(damaged("the images"))? {
        let mut entry = entry.map_err(damaged("the images"))?;
        let path = entry.path().map_err(damaged("the images"))?.into_owned();
        let name = normal(&path);
        if !inside(&path) {
            return Err(BundleError::UnsafePath { path: name });
        }
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(damaged("the images"))?
                .unwrap_or_default()
                .into_owned();
            // A symbolic link is relative to its own directory, a hard link to the root.
            let base = if kind.is_symlink() {
                path.parent().unwrap_or(Path::new("")).to_path_buf()
            } else {
                PathBuf::new()
            };
            let resolved = resolve(&base.join(&target)).ok_or_else(|| BundleError::UnsafePath {
                path: format!("{name} -> {}", target.display()),
            })?;
            found.links.insert(name, resolved);
        } else if kind.is_file() {
            let size = entry.header().size().map_err(damaged("the images"))?;
            let mut hasher = Sha256::new();
            let mut kept = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = entry.read(&mut buf).map_err(damaged("the images"))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                if size <= SMALL_FILE {
                    kept.extend_from_slice(&buf[..n]);
                }
            }
            found
                .hashes
                .insert(name.clone(), hex::encode(hasher.finalize()));
            if size <= SMALL_FILE {
                found.small.insert(name, kept);
            }
        }
    }
    Ok(found)
}

/// `path` with `.` and `..` worked out, if it never climbs above the root.
fn resolve(path: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

fn normal(path: &Path) -> String {
    resolve(path).unwrap_or_else(|| path.display().to_string())
}

/// Check the save at `images` against `lock`, reading every byte once.
pub(super) fn check_images(images: &Path, lock: &LockFile) -> Result<(), BundleError> {
    let scan = scan(images)?;
    let index = scan
        .small
        .get("manifest.json")
        .ok_or_else(|| BundleError::Incomplete {
            what: "manifest.json in its images".into(),
        })?;
    let saved: Vec<SavedImage> =
        serde_json::from_slice(index).map_err(|e| BundleError::Damaged {
            part: "the images",
            reason: format!("manifest.json: {e}"),
        })?;
    let pins = lock.pins();
    for tag in saved.iter().flat_map(|s| &s.repo_tags) {
        if !pins.iter().any(|p| p.image == tag) {
            return Err(BundleError::Unlocked { tag: tag.clone() });
        }
    }
    for entry in &pins {
        let image = saved
            .iter()
            .find(|s| s.repo_tags.iter().any(|t| t == entry.image))
            .ok_or_else(|| BundleError::NotInBundle {
                subject: entry.subject(),
                image: entry.image.to_string(),
            })?;
        let config_name = normal(Path::new(&image.config));
        let found = scan
            .hashes
            .get(&config_name)
            .map(|h| format!("sha256:{h}"))
            .unwrap_or_default();
        if found != entry.image_id {
            return Err(BundleError::WrongImage {
                subject: entry.subject(),
                image: entry.image.to_string(),
                expected: entry.image_id.to_string(),
                found,
            });
        }
        let config: ImageConfig = scan
            .small
            .get(&config_name)
            .and_then(|bytes| serde_json::from_slice(bytes).ok())
            .ok_or_else(|| BundleError::Damaged {
                part: "the images",
                reason: format!(
                    "the config {config_name} of {} is not readable",
                    entry.image
                ),
            })?;
        if config.rootfs.diff_ids.len() != image.layers.len() {
            return Err(BundleError::Damaged {
                part: "the images",
                reason: format!(
                    "{} lists {} layers, its config {}",
                    entry.image,
                    image.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        for (layer, expected) in image.layers.iter().zip(&config.rootfs.diff_ids) {
            let mut name = normal(Path::new(layer));
            if let Some(target) = scan.links.get(&name) {
                name = target.clone();
            }
            let hash = scan.hashes.get(&name).map(|h| format!("sha256:{h}"));
            if hash.as_deref() != Some(expected.as_str()) {
                return Err(BundleError::LayerMismatch {
                    subject: entry.subject(),
                    image: entry.image.to_string(),
                    layer: layer.clone(),
                    expected: expected.clone(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_climb_or_start_at_the_root_are_outside() {
        assert!(inside(Path::new("images.tar")));
        assert!(inside(Path::new("./a/b")));
        assert!(!inside(Path::new("../x")));
        assert!(!inside(Path::new("a/../../x")));
        assert!(!inside(Path::new("/etc/passwd")));
    }

    #[test]
    fn links_resolve_inside_the_root_or_not_at_all() {
        assert_eq!(
            resolve(Path::new("a/../b/layer.tar")).as_deref(),
            Some("b/layer.tar")
        );
        assert_eq!(resolve(Path::new("a/../../etc")), None);
    }
}
