//! Lock files: what a deployment runs, pinned. `skillhost lock --manifest FILE` writes
//! one entry per skill (its version, protocol requirement, content hash and what the hash
//! covers, image, local image ID, platform, the base images it was built on by ID, and
//! once pushed its registry and digest), in a stable order so a review sees only what
//! moved. [`compare`] tells, with no engine and no build, whether the sources still give
//! what the lock says.

mod make;
mod verify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use make::{lock_egress_proxy, lock_skill, source_state};
pub use verify::{check_entry, check_pin, verify, IntegrityProblem, Verification, VerifiedSkill};

/// The lock file format's version; a file with another is refused.
pub const SCHEMA: u32 = 1;

/// A lock file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The skillhost version that wrote it.
    pub skillhost: String,
    /// The egress proxy's image, when a locked skill has an egress allowlist
    /// (`run.network.egress`): a locked host runs its proxies from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_proxy: Option<LockedImage>,
    /// One entry per skill, by name.
    #[serde(default, rename = "skill")]
    pub skills: Vec<LockedSkill>,
}

/// An image the host runs beside the skills (the egress proxy), pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedImage {
    /// `skillhost/<name>:<hash>`, as `skillhost images build` tags it.
    pub image: String,
    /// The local image ID.
    pub image_id: String,
    /// `os/architecture`.
    pub platform: String,
    /// Where it was pushed, once it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// The manifest digest the registry returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// Which of a lock's images: a skill's (by its index in [`LockFile::skills`]) or the
/// egress proxy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinId {
    /// `skills[i]`.
    Skill(usize),
    /// [`LockFile::egress_proxy`].
    EgressProxy,
}

/// One image a lock pins, as `push`, `pull`, `export` and `import` move it.
#[derive(Debug, Clone, Copy)]
pub struct Pin<'l> {
    /// Where it sits in the lock.
    pub id: PinId,
    /// The reference it is tagged as.
    pub image: &'l str,
    /// The locked image ID.
    pub image_id: &'l str,
    /// Where it was pushed.
    pub registry: Option<&'l str>,
    /// Its manifest digest there.
    pub digest: Option<&'l str>,
    /// The skill's entry; `None` for the egress proxy.
    pub skill: Option<&'l LockedSkill>,
}

/// How the egress proxy is named where skills' names go (selection, progress).
pub const EGRESS_PROXY_NAME: &str = "egress-proxy";

impl Pin<'_> {
    /// The skill's name, or [`EGRESS_PROXY_NAME`].
    pub fn name(&self) -> &str {
        self.skill.map_or(EGRESS_PROXY_NAME, |s| s.name.as_str())
    }

    /// What it is, for messages: `skill echo`, `the egress proxy`.
    pub fn subject(&self) -> String {
        match self.skill {
            Some(skill) => format!("skill {}", skill.name),
            None => "the egress proxy".into(),
        }
    }
}

/// One skill, pinned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedSkill {
    /// The skill's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its protocol requirement.
    pub protocol: String,
    /// The full content hash of its sources.
    pub hash: String,
    /// What the hash covers, for a reviewer.
    pub covers: Vec<String>,
    /// Each part the hash is made of (`file src/main.py`, `dockerfile`, `base image
    /// debian:12`, ...) with its digest, so `lock --check` names what moved. Empty in a
    /// lock written before it was recorded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, String>,
    /// `skill-<name>:<hash>`.
    pub image: String,
    /// The local image ID it was built as.
    pub image_id: String,
    /// `os/architecture`.
    pub platform: String,
    /// The base images it was built on.
    #[serde(default)]
    pub base_images: Vec<LockedBase>,
    /// Where it was pushed, once it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// The manifest digest the registry returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// A base image, by the ID the skill's hash took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedBase {
    /// As the Dockerfile names it.
    pub reference: String,
    /// Its local image ID.
    pub id: String,
}

/// What the sources of a skill give now, compared with its lock entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceState {
    /// The skill's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its protocol requirement.
    pub protocol: String,
    /// Its content hash.
    pub hash: String,
    /// The parts of the hash, each with its digest (see [`LockedSkill::inputs`]).
    pub inputs: BTreeMap<String, String>,
}

/// One way the lock no longer matches the sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// The skill.
    pub skill: String,
    /// What moved, for people.
    pub what: String,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "skill {}: {}", self.skill, self.what)
    }
}

/// A lock file that could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Reading failed.
    #[error("cannot read the lock file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Writing failed.
    #[error("cannot write the lock file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A skill's image vanished between its build and its pinning.
    #[error("image {image} was gone right after its build (removed meanwhile?)")]
    ImageGone {
        /// The image.
        image: String,
    },
    /// A locked skill has an egress allowlist, and the proxy's image is not usable.
    #[error("the egress proxy's image {image} {problem}: build it with `skillhost images build`, then lock again")]
    EgressProxy {
        /// The image looked for.
        image: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The file is not a lock file of this schema.
    #[error("the lock file {path} is not valid: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A skill's image could not be built to be pinned.
    #[error(transparent)]
    Build(#[from] crate::build::BuildError),
    /// The engine could not be asked about an image.
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
}

const HEADER: &str =
    "# Written by `skillhost lock`; `skillhost lock --check` tells when the sources moved.\n";

impl LockFile {
    /// A lock of these skills, sorted by name (and their base images by reference).
    pub fn new(mut skills: Vec<LockedSkill>) -> LockFile {
        skills.sort_by(|a, b| a.name.cmp(&b.name));
        for skill in &mut skills {
            skill
                .base_images
                .sort_by(|a, b| a.reference.cmp(&b.reference));
        }
        LockFile {
            schema: SCHEMA,
            skillhost: env!("CARGO_PKG_VERSION").to_string(),
            egress_proxy: None,
            skills,
        }
    }

    /// Every image the lock pins: the skills', by name, then the egress proxy's.
    pub fn pins(&self) -> Vec<Pin<'_>> {
        let skills = self.skills.iter().enumerate().map(|(i, s)| Pin {
            id: PinId::Skill(i),
            image: &s.image,
            image_id: &s.image_id,
            registry: s.registry.as_deref(),
            digest: s.digest.as_deref(),
            skill: Some(s),
        });
        let proxy = self.egress_proxy.iter().map(|p| Pin {
            id: PinId::EgressProxy,
            image: &p.image,
            image_id: &p.image_id,
            registry: p.registry.as_deref(),
            digest: p.digest.as_deref(),
            skill: None,
        });
        skills.chain(proxy).collect()
    }

    /// Record where the image `id` was pushed and its digest there.
    pub fn record_push(&mut self, id: PinId, registry: &str, digest: &str) {
        let (slot_registry, slot_digest) = match id {
            PinId::Skill(i) => match self.skills.get_mut(i) {
                Some(s) => (&mut s.registry, &mut s.digest),
                None => return,
            },
            PinId::EgressProxy => match self.egress_proxy.as_mut() {
                Some(p) => (&mut p.registry, &mut p.digest),
                None => return,
            },
        };
        *slot_registry = Some(registry.to_string());
        *slot_digest = Some(digest.to_string());
    }

    /// The file's text: the same lock always gives the same bytes.
    pub fn render(&self) -> String {
        let body = toml::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
        format!("{HEADER}{body}")
    }

    pub(crate) fn parse(text: &str) -> Result<LockFile, String> {
        let lock: LockFile =
            toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        if lock.schema != SCHEMA {
            return Err(format!(
                "schema {} is not {SCHEMA}, the one this skillhost reads",
                lock.schema
            ));
        }
        Ok(lock)
    }

    /// Read a lock file.
    pub fn load(path: &Path) -> Result<LockFile, LockError> {
        let text = std::fs::read_to_string(path).map_err(|source| LockError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        LockFile::parse(&text).map_err(|message| LockError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Write it.
    pub fn save(&self, path: &Path) -> Result<(), LockError> {
        std::fs::write(path, self.render()).map_err(|source| LockError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The entry of `name`.
    pub fn get(&self, name: &str) -> Option<&LockedSkill> {
        self.skills.iter().find(|s| s.name == name)
    }
}

/// Every way `lock` differs from what the sources give now (`current`, one per skill of
/// the deployment): a skill added or gone, a version, protocol or content hash moved.
pub fn compare(lock: &LockFile, current: &[SourceState]) -> Vec<Drift> {
    let mut drift = Vec::new();
    let moved = |skill: &str, what: String| Drift {
        skill: skill.to_string(),
        what,
    };
    for now in current {
        let Some(locked) = lock.get(&now.name) else {
            drift.push(moved(
                &now.name,
                "in the deployment but not in the lock".into(),
            ));
            continue;
        };
        if locked.version != now.version {
            drift.push(moved(
                &now.name,
                format!("version moved from {} to {}", locked.version, now.version),
            ));
        }
        if locked.protocol != now.protocol {
            drift.push(moved(
                &now.name,
                format!(
                    "protocol moved from {} to {}",
                    locked.protocol, now.protocol
                ),
            ));
        }
        if locked.hash != now.hash {
            drift.push(moved(
                &now.name,
                format!(
                    "content hash moved from {} to {}: {}",
                    short(&locked.hash),
                    short(&now.hash),
                    what_moved(&locked.inputs, &now.inputs)
                ),
            ));
        }
    }
    for locked in &lock.skills {
        if !current.iter().any(|now| now.name == locked.name) {
            drift.push(moved(
                &locked.name,
                "locked but no longer in the deployment".into(),
            ));
        }
    }
    drift
}

/// The parts of a content hash that differ between a lock and the sources, by name.
fn what_moved(locked: &BTreeMap<String, String>, now: &BTreeMap<String, String>) -> String {
    if locked.is_empty() {
        return "its sources, build inputs, args, base images or skillhost's init changed \
                (this lock records no digest per input: lock again, and the next check names \
                what moved)"
            .into();
    }
    let mut changes = Vec::new();
    for (part, digest) in now {
        match locked.get(part) {
            None => changes.push(format!("added {part}")),
            Some(was) if was != digest => changes.push(format!("changed {part}")),
            Some(_) => {}
        }
    }
    changes.extend(
        locked
            .keys()
            .filter(|part| !now.contains_key(*part))
            .map(|part| format!("removed {part}")),
    );
    if changes.is_empty() {
        // Every part the same, yet another hash: the hashing scheme itself moved.
        return "every input is the same: this skillhost hashes them differently".into();
    }
    changes.join(", ")
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(16)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locked(name: &str, hash: &str) -> LockedSkill {
        LockedSkill {
            name: name.into(),
            version: "1.0.0".into(),
            protocol: "^1".into(),
            hash: hash.into(),
            covers: vec!["context".into()],
            inputs: BTreeMap::new(),
            image: format!("skill-{name}:{}", &hash[..4]),
            image_id: "sha256:1".into(),
            platform: "linux/amd64".into(),
            base_images: vec![
                LockedBase {
                    reference: "z:latest".into(),
                    id: "sha256:z".into(),
                },
                LockedBase {
                    reference: "a:latest".into(),
                    id: "sha256:a".into(),
                },
            ],
            registry: None,
            digest: None,
        }
    }

    fn state(name: &str, hash: &str) -> SourceState {
        SourceState {
            name: name.into(),
            version: "1.0.0".into(),
            protocol: "^1".into(),
            hash: hash.into(),
            inputs: BTreeMap::new(),
        }
    }

    fn parts(items: &[(&str, &str)]) -> BTreeMap<String, String> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_moved_hash_names_the_inputs_that_moved() {
        let mut entry = locked("a", "aaaa");
        entry.inputs = parts(&[
            ("file main.py", "11"),
            ("file old.py", "22"),
            ("dockerfile", "33"),
            ("base image skillhost/python", "sha256:p1"),
        ]);
        let lock = LockFile::new(vec![entry]);
        let mut now = state("a", "bbbb");
        now.inputs = parts(&[
            ("file main.py", "99"),
            ("file new.py", "44"),
            ("dockerfile", "33"),
            ("base image skillhost/python", "sha256:p2"),
        ]);
        let drift = compare(&lock, &[now])[0].to_string();
        assert!(
            drift.ends_with(
                "changed base image skillhost/python, changed file main.py, added file new.py, removed file old.py"
            ),
            "{drift}"
        );
        assert!(!drift.contains("dockerfile"), "{drift}");
        // A lock from before the digests were kept says how to get them named.
        let old = LockFile::new(vec![locked("a", "aaaa")]);
        let drift = compare(&old, &[state("a", "bbbb")])[0].to_string();
        assert!(drift.contains("lock again"), "{drift}");
    }

    #[test]
    fn a_lock_renders_the_same_bytes_whatever_the_order_it_was_made_in() {
        let one = LockFile::new(vec![locked("b", "bbbb"), locked("a", "aaaa")]);
        let two = LockFile::new(vec![locked("a", "aaaa"), locked("b", "bbbb")]);
        assert_eq!(one.render(), two.render());
        let text = one.render();
        assert!(text.find("name = \"a\"").unwrap() < text.find("name = \"b\"").unwrap());
        assert!(text.find("a:latest").unwrap() < text.find("z:latest").unwrap());
        assert_eq!(LockFile::parse(&text).unwrap(), one);
    }

    #[test]
    fn drift_names_the_skill_and_what_moved() {
        let lock = LockFile::new(vec![locked("a", "aaaa"), locked("gone", "gggg")]);
        assert!(compare(&lock, &[state("a", "aaaa"), state("gone", "gggg")]).is_empty());
        let mut bumped = state("a", "cccc");
        bumped.version = "1.1.0".into();
        let drift: Vec<String> = compare(&lock, &[bumped, state("new", "nnnn")])
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(drift.len(), 4, "{drift:?}");
        assert!(drift[0].contains("skill a: version moved from 1.0.0 to 1.1.0"));
        assert!(drift[1].contains("skill a: content hash moved from aaaa to cccc"));
        assert!(drift[2].contains("skill new: in the deployment but not in the lock"));
        assert!(drift[3].contains("skill gone: locked but no longer in the deployment"));
    }

    #[test]
    fn the_egress_proxy_is_pinned_after_the_skills_and_keeps_its_push() {
        let mut lock = LockFile::new(vec![locked("a", "aaaa")]);
        assert_eq!(lock.pins().len(), 1, "no proxy pinned");
        lock.egress_proxy = Some(LockedImage {
            image: "skillhost/egress-proxy:0123".into(),
            image_id: "sha256:p".into(),
            platform: "linux/amd64".into(),
            registry: None,
            digest: None,
        });
        let names: Vec<(String, String)> = lock
            .pins()
            .iter()
            .map(|p| (p.name().to_string(), p.subject()))
            .collect();
        assert_eq!(
            names,
            [
                ("a".to_string(), "skill a".to_string()),
                (
                    EGRESS_PROXY_NAME.to_string(),
                    "the egress proxy".to_string()
                ),
            ]
        );
        lock.record_push(PinId::EgressProxy, "127.0.0.1:5000", "sha256:d");
        lock.record_push(PinId::Skill(0), "127.0.0.1:5000", "sha256:s");
        let text = lock.render();
        let again = LockFile::parse(&text).unwrap();
        assert_eq!(again, lock);
        let proxy = again.egress_proxy.unwrap();
        assert_eq!(proxy.digest.as_deref(), Some("sha256:d"));
        assert_eq!(again.skills[0].digest.as_deref(), Some("sha256:s"));
    }

    #[test]
    fn another_schema_or_an_unknown_key_is_refused() {
        let text = LockFile::new(vec![locked("a", "aaaa")]).render();
        let err = LockFile::parse(&text.replace("schema = 1", "schema = 9")).unwrap_err();
        assert!(err.contains("schema 9"), "{err}");
        let err = LockFile::parse(&format!("{text}extra = 1\n")).unwrap_err();
        assert!(err.contains("extra"), "{err}");
    }
}
