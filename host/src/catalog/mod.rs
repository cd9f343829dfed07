//! Finding skill directories under one or more roots.
//!
//! A directory holding `skill.yaml` is a skill; its subdirectories are its sources and are
//! not searched further. Symbolic links are followed only while they stay inside the root
//! they were found under, so a skill tree cannot smuggle in a directory from elsewhere.
//!
//! A [`Deployment`] names the skills (and versions) a deployment runs, out of a catalog.

mod deployment;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

pub use deployment::{Deployment, DeploymentError};

use crate::manifest::{Manifest, ManifestError, MANIFEST_FILE};

/// Directories never searched: build output and version-control metadata.
const SKIPPED_DIRS: &[&str] = &["target", "node_modules"];
/// Deep enough for `skills/<group>/<name>`, shallow enough to stay fast on a big tree.
const MAX_DEPTH: usize = 6;

/// A skill found on disk with its validated manifest.
#[derive(Debug, Clone)]
pub struct Skill {
    /// Its validated manifest.
    pub manifest: Manifest,
    /// The skill directory, canonical.
    pub dir: PathBuf,
    /// The directory relative to its root, for output that must not depend on where the
    /// skills live.
    pub relative_dir: PathBuf,
}

impl Skill {
    /// The skill's name, from its manifest.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// Its `skill.yaml`.
    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST_FILE)
    }

    /// `skills/x/skill.yaml:7:9: run.user`: where a field of the manifest stands, for a
    /// problem found only once the image is known. A locked skill, which has no source
    /// directory, is named by its skill and field alone.
    pub fn locate(&self, field: &[&str]) -> String {
        let dotted = field.join(".");
        if self.dir.as_os_str().is_empty() {
            return format!("skill {} (from its locked image): {dotted}", self.name());
        }
        let path = self.manifest_path();
        let position = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| crate::manifest::position_of(&text, field));
        match position {
            Some((line, column)) => format!("{}:{line}:{column}: {dotted}", path.display()),
            None => format!("{}: {dotted}", path.display()),
        }
    }

    /// Load one skill directory directly, outside any root.
    pub fn load(dir: &Path) -> Result<Skill, ManifestError> {
        let manifest = Manifest::load(&dir.join(MANIFEST_FILE))?;
        let canonical = dir.canonicalize().map_err(|source| ManifestError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Skill {
            manifest,
            relative_dir: PathBuf::from(canonical.file_name().unwrap_or_default()),
            dir: canonical,
        })
    }
}

/// Every skill under the roots, by name, plus the directories whose manifest is broken.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Every valid skill, by name.
    pub skills: BTreeMap<String, Skill>,
    /// Skill directories whose manifest failed to load; reported, never silently skipped.
    pub broken: Vec<ManifestError>,
}

/// Why the roots could not be searched.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// A skills directory does not exist.
    #[error("skills directory {} does not exist or is not a directory", .0.display())]
    MissingRoot(PathBuf),
    /// A skills directory cannot be searched.
    #[error("cannot search {}: {source}", root.display())]
    Walk {
        /// The skills directory.
        root: PathBuf,
        /// Why.
        #[source]
        source: walkdir::Error,
    },
    /// Two skill directories have the same name in their manifests.
    #[error("two skills are named {name:?}: {} and {}", first.display(), second.display())]
    DuplicateName {
        /// The name.
        name: String,
        /// One manifest.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
}

impl Catalog {
    /// Search every root, in order.
    pub fn discover(roots: &[PathBuf]) -> Result<Catalog, DiscoveryError> {
        let mut catalog = Catalog::default();
        for root in roots {
            catalog.search(root)?;
        }
        Ok(catalog)
    }

    /// Skills known from their manifests alone (a lock's, read from the images it pins):
    /// they have no source directory, so `dir` is empty.
    pub fn from_manifests(manifests: impl IntoIterator<Item = Manifest>) -> Catalog {
        let skills = manifests
            .into_iter()
            .map(|manifest| {
                let skill = Skill {
                    relative_dir: PathBuf::from(&manifest.name),
                    dir: PathBuf::new(),
                    manifest,
                };
                (skill.manifest.name.clone(), skill)
            })
            .collect();
        Catalog {
            skills,
            broken: Vec::new(),
        }
    }

    /// The skill named `name`.
    pub fn get(&self, name: &str) -> Option<&Skill> {
        self.skills.get(name)
    }

    fn search(&mut self, root: &Path) -> Result<(), DiscoveryError> {
        let canonical_root = root
            .canonicalize()
            .ok()
            .filter(|p| p.is_dir())
            .ok_or_else(|| DiscoveryError::MissingRoot(root.to_path_buf()))?;
        let mut walk = WalkDir::new(&canonical_root)
            .follow_links(true)
            .max_depth(MAX_DEPTH)
            .sort_by_file_name()
            .into_iter();
        while let Some(entry) = walk.next() {
            let entry = match entry {
                Ok(entry) => entry,
                // A dangling link is not a skill; anything else is worth stopping for.
                Err(e)
                    if e.io_error()
                        .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) =>
                {
                    continue
                }
                Err(source) => {
                    return Err(DiscoveryError::Walk {
                        root: root.to_path_buf(),
                        source,
                    })
                }
            };
            if !entry.file_type().is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy();
            let skipped = entry.depth() > 0
                && (name.starts_with('.') || SKIPPED_DIRS.contains(&name.as_ref()));
            let escapes = entry.path_is_symlink() && !stays_inside(entry.path(), &canonical_root);
            if escapes {
                tracing::warn!(path = %entry.path().display(), "not following a symbolic link that leads outside {}", root.display());
            }
            if skipped || escapes {
                walk.skip_current_dir();
                continue;
            }
            let manifest_path = entry.path().join(MANIFEST_FILE);
            if !manifest_path.is_file() {
                continue;
            }
            walk.skip_current_dir();
            if !stays_inside(&manifest_path, &canonical_root) {
                tracing::warn!(path = %manifest_path.display(), "ignoring a manifest that links outside {}", root.display());
                continue;
            }
            let relative_dir = entry
                .path()
                .strip_prefix(&canonical_root)
                .unwrap_or(entry.path())
                .to_path_buf();
            match Manifest::load(&manifest_path) {
                Ok(manifest) => self.add(Skill {
                    manifest,
                    dir: entry
                        .path()
                        .canonicalize()
                        .unwrap_or_else(|_| entry.path().to_path_buf()),
                    relative_dir,
                })?,
                Err(e) => self.broken.push(e),
            }
        }
        Ok(())
    }

    fn add(&mut self, skill: Skill) -> Result<(), DiscoveryError> {
        if let Some(existing) = self.skills.get(skill.name()) {
            if existing.dir == skill.dir {
                // The same directory reached again through a link inside the root.
                return Ok(());
            }
            return Err(DiscoveryError::DuplicateName {
                name: skill.name().to_string(),
                first: existing.manifest_path(),
                second: skill.manifest_path(),
            });
        }
        self.skills.insert(skill.name().to_string(), skill);
        Ok(())
    }
}

fn stays_inside(path: &Path, canonical_root: &Path) -> bool {
    path.canonicalize()
        .is_ok_and(|p| p.starts_with(canonical_root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write_skill(dir: &Path, name: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(
            dir.join(MANIFEST_FILE),
            format!("name: {name}\nversion: 1.0.0\nprotocol: '^1'\nactions: {{go: {{}}}}\n"),
        )
        .unwrap();
    }

    #[test]
    fn finds_skills_and_reports_broken_ones() {
        let root = tempfile::tempdir().unwrap();
        write_skill(&root.path().join("a"), "alpha");
        write_skill(&root.path().join("group/b"), "beta");
        // Nested inside a skill: sources, not a skill of its own.
        write_skill(&root.path().join("a/vendor/c"), "gamma");
        write_skill(&root.path().join("target/d"), "delta");
        fs::create_dir_all(root.path().join("bad")).unwrap();
        fs::write(root.path().join("bad").join(MANIFEST_FILE), "name: [").unwrap();

        let catalog = Catalog::discover(&[root.path().to_path_buf()]).unwrap();
        let names: Vec<&str> = catalog.skills.keys().map(String::as_str).collect();
        assert_eq!(names, ["alpha", "beta"]);
        assert_eq!(catalog.skills["beta"].relative_dir, Path::new("group/b"));
        assert_eq!(catalog.broken.len(), 1);
        assert!(
            catalog.broken[0].to_string().contains("bad/skill.yaml:1:"),
            "{}",
            catalog.broken[0]
        );
    }

    #[test]
    fn duplicate_names_name_both_paths() {
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        write_skill(&one.path().join("x"), "same");
        write_skill(&two.path().join("y"), "same");
        let err = Catalog::discover(&[one.path().into(), two.path().into()]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("x/skill.yaml") && text.contains("y/skill.yaml"),
            "{text}"
        );
    }

    #[test]
    fn symlinks_never_lead_outside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        write_skill(&outside.path().join("evil"), "evil");
        let root = tempfile::tempdir().unwrap();
        write_skill(&root.path().join("real"), "real");
        std::os::unix::fs::symlink(outside.path().join("evil"), root.path().join("link")).unwrap();
        std::os::unix::fs::symlink(root.path().join("real"), root.path().join("alias")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", root.path().join("dangling")).unwrap();

        // The in-root alias leads to the same skill; the outside one is never reached.
        let catalog = Catalog::discover(&[root.path().into()]).unwrap();
        assert_eq!(catalog.skills.keys().collect::<Vec<_>>(), ["real"]);
    }

    #[test]
    fn a_missing_root_is_named() {
        let err = Catalog::discover(&["/nonexistent/skills".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "skills directory /nonexistent/skills does not exist or is not a directory"
        );
    }
}
