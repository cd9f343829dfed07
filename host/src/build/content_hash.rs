//! The content hash that names an image: sha256 over the canonical build inputs.
//!
//! Everything the build reads goes in: the context tar (deterministic, `.dockerignore`
//! honoured), each declared extra input, the build args, the Dockerfile's path and the
//! local IDs of the images it builds on. Each field is length-prefixed so no two different
//! sets of inputs can produce the same byte stream.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::build::context::{Context, ContextError, DOCKERIGNORE};
use crate::build::dockerfile::{self, BaseImage, DockerfileError};

/// Bumped whenever the hashing scheme changes, so old tags are never mistaken for new.
// v2: skill images carry their manifest as a label.
const SCHEME: &str = "skillhost-content-hash-v2";
/// Hex digits of the hash used in image tags; the full hash goes in a label.
pub const TAG_LEN: usize = 16;

/// A full sha256 content hash, lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct ContentHash(pub String);

impl ContentHash {
    /// The prefix used as the image tag.
    pub fn tag(&self) -> &str {
        &self.0[..TAG_LEN]
    }
}

impl std::fmt::Display for ContentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What to build: a directory, its Dockerfile, build args and extra inputs.
#[derive(Debug, Clone)]
pub struct BuildSpec<'a> {
    pub dir: &'a Path,
    /// `None` for an image made without a Dockerfile (a debootstrap base).
    pub dockerfile: Option<&'a Path>,
    pub args: &'a BTreeMap<String, String>,
    pub inputs: &'a [PathBuf],
}

/// Why the inputs could not be gathered.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The skill directory cannot be read as a build context.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// A declared `build.inputs` path cannot be read.
    #[error("build input {}: {source}", path.display())]
    Input {
        /// The input, as declared.
        path: PathBuf,
        /// Why.
        #[source]
        source: ContextError,
    },
    /// The Dockerfile cannot be read.
    #[error("{}: cannot read the Dockerfile: {source}", path.display())]
    DockerfileRead {
        /// The Dockerfile.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The Dockerfile's base images cannot be told.
    #[error("{}: {source}", path.display())]
    Dockerfile {
        /// The Dockerfile.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: DockerfileError,
    },
}

/// Everything read from disk for one build, before base images are resolved.
#[derive(Debug, Clone)]
pub struct GatheredInputs {
    /// The context the engine will receive (before any staged build outputs).
    pub context: Context,
    context_tar: Vec<u8>,
    inputs: Vec<(String, [u8; 32])>,
    args: BTreeMap<String, String>,
    dockerfile: String,
    /// Images named by the Dockerfile, whose IDs complete the hash.
    pub bases: Vec<BaseImage>,
}

impl GatheredInputs {
    /// Read the context, the extra inputs and the Dockerfile of `spec`.
    pub fn gather(spec: &BuildSpec<'_>) -> Result<GatheredInputs, HashError> {
        let (dockerfile, bases, context) = match spec.dockerfile {
            Some(path) => {
                let name = path.to_string_lossy().replace('\\', "/");
                let context = Context::read_dir(spec.dir, &[&name, DOCKERIGNORE])?;
                let full = spec.dir.join(path);
                let text =
                    std::fs::read_to_string(&full).map_err(|source| HashError::DockerfileRead {
                        path: full.clone(),
                        source,
                    })?;
                let bases = dockerfile::base_images(&text, spec.args).map_err(|source| {
                    HashError::Dockerfile {
                        path: full.clone(),
                        source,
                    }
                })?;
                (name, bases, context)
            }
            None => (
                String::new(),
                Vec::new(),
                Context::read_dir(spec.dir, &[DOCKERIGNORE])?,
            ),
        };
        let mut inputs = Vec::new();
        for input in spec.inputs {
            let path = spec.dir.join(input);
            let tar = Context::read_input(&path)
                .and_then(|c| {
                    c.to_tar().map_err(|source| ContextError::Io {
                        path: path.clone(),
                        source,
                    })
                })
                .map_err(|source| HashError::Input {
                    path: input.clone(),
                    source,
                })?;
            inputs.push((
                input.to_string_lossy().into_owned(),
                Sha256::digest(&tar).into(),
            ));
        }
        let context_tar = context.to_tar().map_err(|source| ContextError::Io {
            path: spec.dir.to_path_buf(),
            source,
        })?;
        Ok(GatheredInputs {
            context,
            context_tar,
            inputs,
            args: spec.args.clone(),
            dockerfile,
            bases,
        })
    }

    /// Count something the host adds to the build, by the digest of what defines it.
    pub fn add_generated(&mut self, name: &str, digest: [u8; 32]) {
        self.inputs.push((format!("generated:{name}"), digest));
    }

    /// What the hash covers, for people: the context, the Dockerfile, each extra input
    /// (and generated file, such as skillhost's init), each build arg, each base image.
    pub fn covers(&self) -> Vec<String> {
        let mut covers = vec!["context: the skill directory, .dockerignore honoured".to_string()];
        if !self.dockerfile.is_empty() {
            covers.push("dockerfile".into());
        }
        covers.extend(self.inputs.iter().map(|(path, _)| format!("input: {path}")));
        covers.extend(self.args.keys().map(|key| format!("build arg: {key}")));
        covers.extend(
            self.bases
                .iter()
                .map(|b| format!("base image: {} (by ID)", b.reference)),
        );
        covers
    }

    /// What the hash is made of, one named part at a time (`file src/main.py`,
    /// `dockerfile`, `input ../shared/lib.py`, `build arg VERSION`, `base image
    /// debian:12`), each with a short digest (a base image with its ID): a lock keeps
    /// them, so a check names what moved. Build arg values are digested, never shown.
    pub fn digests(&self, base_ids: &[String]) -> BTreeMap<String, String> {
        let short = |digest: &[u8]| hex::encode(&digest[..8]);
        let mut parts = BTreeMap::new();
        for (path, digest) in self.context.digests() {
            parts.insert(format!("file {path}"), short(&digest));
        }
        if !self.dockerfile.is_empty() {
            parts.insert(
                "dockerfile".to_string(),
                short(&Sha256::digest(self.dockerfile.as_bytes())),
            );
        }
        for (path, digest) in &self.inputs {
            parts.insert(format!("input {path}"), short(digest));
        }
        for (key, value) in &self.args {
            parts.insert(
                format!("build arg {key}"),
                short(&Sha256::digest(value.as_bytes())),
            );
        }
        for (base, id) in self.bases.iter().zip(base_ids) {
            parts.insert(format!("base image {}", base.reference), id.clone());
        }
        parts
    }

    /// The hash, given the local ID of each entry of [`Self::bases`], in order.
    pub fn hash(&self, base_ids: &[String]) -> ContentHash {
        assert_eq!(base_ids.len(), self.bases.len(), "one ID per base image");
        let mut h = Sha256::new();
        let mut field = |tag: &str, bytes: &[u8]| {
            h.update(tag.as_bytes());
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field("scheme", SCHEME.as_bytes());
        field("context", &Sha256::digest(&self.context_tar));
        field("dockerfile", self.dockerfile.as_bytes());
        for (path, digest) in &self.inputs {
            field("input", path.as_bytes());
            field("input-digest", digest);
        }
        for (key, value) in &self.args {
            field("arg", key.as_bytes());
            field("arg-value", value.as_bytes());
        }
        for (base, id) in self.bases.iter().zip(base_ids) {
            field("base", base.reference.as_bytes());
            field("base-id", id.as_bytes());
        }
        ContentHash(hex::encode(h.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    /// A skill-like directory with an extra input beside it.
    fn fixture() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let skill = root.path().join("skill");
        fs::create_dir_all(skill.join("src")).unwrap();
        fs::write(skill.join("Dockerfile"), "FROM base/img\nCOPY . /app\n").unwrap();
        fs::write(skill.join("src/main.py"), "print('hi')\n").unwrap();
        fs::write(skill.join(".dockerignore"), "*.log\n").unwrap();
        fs::create_dir_all(root.path().join("shared")).unwrap();
        fs::write(root.path().join("shared/lib.py"), "X = 1\n").unwrap();
        root
    }

    fn hash_of(root: &Path, args: &[(&str, &str)], base_id: &str) -> ContentHash {
        let args = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let inputs = vec![PathBuf::from("../shared")];
        let spec = BuildSpec {
            dir: &root.join("skill"),
            dockerfile: Some(Path::new("Dockerfile")),
            args: &args,
            inputs: &inputs,
        };
        GatheredInputs::gather(&spec)
            .unwrap()
            .hash(&[base_id.to_string()])
    }

    #[test]
    fn hashing_is_deterministic() {
        let root = fixture();
        let a = hash_of(root.path(), &[], "sha256:1");
        assert_eq!(a, hash_of(root.path(), &[], "sha256:1"));
        assert_eq!(a.0.len(), 64);
        assert_eq!(a.tag().len(), TAG_LEN);
    }

    #[test]
    fn copying_elsewhere_keeps_the_hash() {
        let root = fixture();
        let before = hash_of(root.path(), &[], "sha256:1");
        let other = tempfile::tempdir().unwrap();
        let copy = other.path().join("deeper/place");
        fs::create_dir_all(&copy).unwrap();
        let status = std::process::Command::new("cp")
            .args(["-r", "--no-preserve=timestamps"])
            .arg(root.path().join("skill"))
            .arg(root.path().join("shared"))
            .arg(&copy)
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(hash_of(&copy, &[], "sha256:1"), before);
    }

    #[test]
    fn touching_mtimes_keeps_the_hash() {
        let root = fixture();
        let before = hash_of(root.path(), &[], "sha256:1");
        let file = fs::File::options()
            .write(true)
            .open(root.path().join("skill/src/main.py"))
            .unwrap();
        file.set_modified(
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(12345),
        )
        .unwrap();
        assert_eq!(hash_of(root.path(), &[], "sha256:1"), before);
    }

    #[test]
    fn ignored_files_do_not_count() {
        let root = fixture();
        let before = hash_of(root.path(), &[], "sha256:1");
        fs::write(root.path().join("skill/debug.log"), "noise").unwrap();
        assert_eq!(hash_of(root.path(), &[], "sha256:1"), before);
    }

    #[test]
    fn one_byte_changes_the_hash_and_reverting_restores_it() {
        let root = fixture();
        let before = hash_of(root.path(), &[], "sha256:1");
        let file = root.path().join("skill/src/main.py");
        fs::write(&file, "print('hI')\n").unwrap();
        assert_ne!(hash_of(root.path(), &[], "sha256:1"), before);
        fs::write(&file, "print('hi')\n").unwrap();
        assert_eq!(hash_of(root.path(), &[], "sha256:1"), before);
    }

    #[test]
    fn a_mode_bit_changes_the_hash() {
        let root = fixture();
        let before = hash_of(root.path(), &[], "sha256:1");
        let file = root.path().join("skill/src/main.py");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
        assert_ne!(hash_of(root.path(), &[], "sha256:1"), before);
    }

    #[test]
    fn a_build_arg_changes_the_hash() {
        let root = fixture();
        let a = hash_of(root.path(), &[("MODE", "a")], "sha256:1");
        assert_ne!(a, hash_of(root.path(), &[("MODE", "b")], "sha256:1"));
        assert_ne!(a, hash_of(root.path(), &[], "sha256:1"));
    }

    #[test]
    fn a_base_image_changes_the_hash() {
        let root = fixture();
        assert_ne!(
            hash_of(root.path(), &[], "sha256:1"),
            hash_of(root.path(), &[], "sha256:2")
        );
    }

    #[test]
    fn an_extra_input_changes_the_hash() {
        let root = fixture();
        let before = hash_of(root.path(), &[], "sha256:1");
        fs::write(root.path().join("shared/lib.py"), "X = 2\n").unwrap();
        assert_ne!(hash_of(root.path(), &[], "sha256:1"), before);
    }

    #[test]
    fn a_new_empty_directory_changes_the_hash() {
        let root = fixture();
        let before = hash_of(root.path(), &[], "sha256:1");
        fs::create_dir(root.path().join("skill/data")).unwrap();
        assert_ne!(hash_of(root.path(), &[], "sha256:1"), before);
    }

    #[test]
    fn a_missing_input_is_named() {
        let root = fixture();
        fs::remove_dir_all(root.path().join("shared")).unwrap();
        let inputs = vec![PathBuf::from("../shared")];
        let spec = BuildSpec {
            dir: &root.path().join("skill"),
            dockerfile: Some(Path::new("Dockerfile")),
            args: &BTreeMap::new(),
            inputs: &inputs,
        };
        let err = GatheredInputs::gather(&spec).unwrap_err().to_string();
        assert!(
            err.starts_with("build input ../shared:") && err.contains("does not exist"),
            "{err}"
        );
    }
}
