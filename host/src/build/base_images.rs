//! Base images built locally from Debian packages, since no registry can be pulled from.
//!
//! `images/<name>/image.yaml` describes one image, tagged `skillhost/<name>:<hash>` and
//! `skillhost/<name>:latest`. Either it has a `debootstrap` recipe (a root filesystem made
//! by debootstrap and imported), or the directory holds a Dockerfile built like a skill's.
//! Hashing is the same as for skills, so an unchanged recipe is a no-op and a rebuilt base
//! changes the hash of everything built on it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::build::builder::{BuildError, BuildReport, ImageBuilder, ImageTarget, Plan};
use crate::lifecycle::labels;

/// Where base images are tagged: `skillhost/<name>`.
pub const REPOSITORY_PREFIX: &str = "skillhost/";
pub const IMAGE_FILE: &str = "image.yaml";

/// `image.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageManifest {
    /// The image is `skillhost/<name>`.
    pub name: String,
    /// Recorded in the `io.skillhost.version` label; `1` when absent.
    #[serde(default = "default_version")]
    pub version: String,
    /// What the image is for.
    #[serde(default)]
    pub description: String,
    /// Docker build args, for images built from a Dockerfile.
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// Make the root filesystem with debootstrap instead of building a Dockerfile.
    #[serde(default)]
    pub debootstrap: Option<Debootstrap>,
    /// Put the running skillhost executable into the build context under this name (the
    /// skillhost image); the hash covers its bytes.
    #[serde(default)]
    pub executable: Option<PathBuf>,
}

fn default_version() -> String {
    "1".into()
}

/// What debootstrap is asked for. All of it feeds the hash.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Debootstrap {
    /// The Debian suite, e.g. `bookworm`.
    pub suite: String,
    /// debootstrap's `--variant`; `minbase` when absent.
    #[serde(default = "default_variant")]
    pub variant: String,
    /// The mirror to fetch packages from, e.g. `http://deb.debian.org/debian`.
    pub mirror: String,
    /// Packages to add (`--include`).
    #[serde(default)]
    pub include: Vec<String>,
    /// `docker import --change` instructions, such as `ENV LANG=C.UTF-8`.
    #[serde(default)]
    pub changes: Vec<String>,
}

fn default_variant() -> String {
    "minbase".into()
}

/// Why base images could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BaseImageError {
    /// The images directory or an `image.yaml` cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// What could not be read.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An `image.yaml` is invalid.
    #[error("{}: {message}", path.display())]
    Manifest {
        /// The `image.yaml`.
        path: PathBuf,
        /// What is wrong, with its position.
        message: String,
    },
    /// A debootstrap image is built by a user other than root.
    #[error("{name}: debootstrap needs root; run `skillhost images build` as root (or with sudo)")]
    NotRoot {
        /// The image.
        name: String,
    },
    /// debootstrap or tar failed, or could not be started.
    #[error("{name}: {what} failed ({status}){}", if stderr.is_empty() { String::new() } else { format!(":\n{stderr}") })]
    Tool {
        /// The image.
        name: String,
        /// The tool's command line, shortened.
        what: String,
        /// Its exit status, or why it did not start.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// The images of one directory build on each other in a cycle.
    #[error("{name} depends on {missing}, which is never ready: the FROM lines of the images form a cycle")]
    Dependency {
        /// The image.
        name: String,
        /// The image it names.
        missing: String,
    },
    /// A Dockerfile-based image failed to build.
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// One base image definition found under `images/`.
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// Its `image.yaml`.
    pub manifest: ImageManifest,
    /// Its directory.
    pub dir: PathBuf,
}

impl BaseImage {
    /// `skillhost/<name>`.
    pub fn repository(&self) -> String {
        format!("{REPOSITORY_PREFIX}{}", self.manifest.name)
    }

    fn target(&self) -> Result<ImageTarget, BaseImageError> {
        let m = &self.manifest;
        let mut outputs = BTreeMap::new();
        if let Some(name) = &m.executable {
            let running = std::env::current_exe().map_err(|source| BaseImageError::Read {
                path: PathBuf::from("/proc/self/exe"),
                source,
            })?;
            outputs.insert(name.clone(), running);
        }
        Ok(ImageTarget {
            name: m.name.clone(),
            version: m.version.clone(),
            repository: self.repository(),
            dir: self.dir.clone(),
            dockerfile: m.debootstrap.is_none().then(|| PathBuf::from("Dockerfile")),
            args: m.args.clone(),
            inputs: Vec::new(),
            command: None,
            command_env: BTreeMap::new(),
            outputs,
            labels: HashMap::from([(labels::BASE.to_string(), m.name.clone())]),
            // A base image runs nothing of its own; the skill images built on it get it.
            init: false,
        })
    }
}

/// Every `images/<name>/image.yaml`, sorted by name.
pub fn discover(images_dir: &Path) -> Result<Vec<BaseImage>, BaseImageError> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BaseImageError::Read { path, source }
    };
    let mut images = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(images_dir)
        .map_err(read_err(images_dir))?
        .collect::<Result<_, _>>()
        .map_err(read_err(images_dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path().join(IMAGE_FILE);
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(read_err(&path))?;
        let manifest: ImageManifest =
            serde_yaml::from_str(&text).map_err(|e| BaseImageError::Manifest {
                path: path.clone(),
                message: e.to_string(),
            })?;
        if !crate::manifest::is_valid_name(&manifest.name) {
            return Err(BaseImageError::Manifest {
                path,
                message: format!("{:?} is not a valid image name", manifest.name),
            });
        }
        images.push(BaseImage {
            manifest,
            dir: entry
                .path()
                .canonicalize()
                .map_err(read_err(&entry.path()))?,
        });
    }
    Ok(images)
}

/// Build every base image in dependency order, reusing those whose hash is unchanged.
pub async fn build_all(
    builder: &ImageBuilder,
    images: &[BaseImage],
    force: bool,
) -> Result<Vec<BuildReport>, BaseImageError> {
    let mut remaining: Vec<&BaseImage> = images.iter().collect();
    let mut reports = Vec::new();
    while !remaining.is_empty() {
        // Ready: every skillhost/ base it names that this directory defines is built
        // already. One defined elsewhere (deploy/images builds on images/) must be on the
        // engine, which planning checks.
        let defined: Vec<String> = images.iter().map(BaseImage::repository).collect();
        let position = remaining.iter().position(|image| {
            local_deps(image)
                .iter()
                .filter(|d| defined.contains(d))
                .all(|d| {
                    reports
                        .iter()
                        .any(|r: &BuildReport| r.image.starts_with(&format!("{d}:")))
                })
        });
        let Some(position) = position else {
            let image = remaining[0];
            let missing = local_deps(image)
                .into_iter()
                .find(|d| defined.contains(d))
                .unwrap_or_default();
            return Err(BaseImageError::Dependency {
                name: image.manifest.name.clone(),
                missing,
            });
        };
        let image = remaining.remove(position);
        reports.push(build_one(builder, image, force).await?);
    }
    Ok(reports)
}

/// The `skillhost/` images a Dockerfile-based image names in `FROM`.
fn local_deps(image: &BaseImage) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(image.dir.join("Dockerfile")) else {
        return Vec::new();
    };
    crate::build::dockerfile::base_images(&text, &image.manifest.args)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|b| {
            let repo = b
                .reference
                .rsplit_once(':')
                .map_or(b.reference.as_str(), |(r, _)| r)
                .to_string();
            repo.starts_with(REPOSITORY_PREFIX).then_some(repo)
        })
        .collect()
}

async fn build_one(
    builder: &ImageBuilder,
    image: &BaseImage,
    force: bool,
) -> Result<BuildReport, BaseImageError> {
    let target = image.target()?;
    let plan = builder.plan(&target).await?;
    let report = match &image.manifest.debootstrap {
        None => builder.ensure_plan(&plan, force).await?,
        Some(recipe) => {
            let result = builder
                .ensure_planned(&plan, force, |plan| async move {
                    debootstrap_import(builder, plan, recipe)
                        .await
                        .map_err(|e| match e {
                            BaseImageError::Build(b) => b,
                            other => BuildError::Failed {
                                name: plan.target.name.clone(),
                                dockerfile: None,
                                failure: Box::new(crate::engine::BuildFailure {
                                    step: Some("debootstrap".into()),
                                    message: other.to_string(),
                                    output: Vec::new(),
                                }),
                            },
                        })
                })
                .await;
            result?
        }
    };
    // `latest` is what Dockerfiles name; point it at the image for this hash.
    builder
        .engine()
        .tag_image(&report.image_id, &image.repository(), "latest")
        .await
        .map_err(BuildError::from)?;
    Ok(report)
}

async fn debootstrap_import(
    builder: &ImageBuilder,
    plan: &Plan,
    recipe: &Debootstrap,
) -> Result<String, BaseImageError> {
    let name = plan.target.name.clone();
    if !is_root() {
        return Err(BaseImageError::NotRoot { name });
    }
    let scratch = tempfile::tempdir().map_err(|source| BaseImageError::Read {
        path: std::env::temp_dir(),
        source,
    })?;
    let rootfs = scratch.path().join("rootfs");
    let mut args = vec![format!("--variant={}", recipe.variant)];
    if !recipe.include.is_empty() {
        args.push(format!("--include={}", recipe.include.join(",")));
    }
    args.extend([
        recipe.suite.clone(),
        rootfs.display().to_string(),
        recipe.mirror.clone(),
    ]);
    tracing::info!(image = %name, "running debootstrap {}", args.join(" "));
    run_tool(&name, "debootstrap", &args).await?;
    // Package caches would only make the image larger.
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let _ = clear_files(&rootfs.join(dir));
    }
    let tarball = scratch.path().join("rootfs.tar");
    run_tool(
        &name,
        "tar",
        &[
            "--numeric-owner".into(),
            "-C".into(),
            rootfs.display().to_string(),
            "-cf".into(),
            tarball.display().to_string(),
            ".".into(),
        ],
    )
    .await?;
    let bytes = std::fs::read(&tarball).map_err(|source| BaseImageError::Read {
        path: tarball,
        source,
    })?;
    let mut changes = plan.label_changes();
    changes.extend(recipe.changes.iter().cloned());
    let id = builder
        .engine()
        .import_image(bytes, &plan.target.repository, plan.hash.tag(), changes)
        .await
        .map_err(BuildError::from)?;
    Ok(id)
}

async fn run_tool(name: &str, program: &str, args: &[String]) -> Result<(), BaseImageError> {
    let output = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| BaseImageError::Tool {
            name: name.into(),
            what: program.into(),
            status: format!("cannot start it: {e}"),
            stderr: String::new(),
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let tail: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
    Err(BaseImageError::Tool {
        name: name.into(),
        what: program.into(),
        status: output.status.to_string(),
        stderr: tail[tail.len().saturating_sub(20)..].join("\n"),
    })
}

fn clear_files(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovers_recipes_and_refuses_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("debian")).unwrap();
        std::fs::write(
            dir.path().join("debian").join(IMAGE_FILE),
            "name: debian\ndebootstrap: {suite: bookworm, mirror: 'http://deb.debian.org/debian'}\n",
        )
        .unwrap();
        let images = discover(dir.path()).unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].repository(), "skillhost/debian");
        assert_eq!(
            images[0].manifest.debootstrap.as_ref().unwrap().variant,
            "minbase"
        );

        std::fs::write(
            dir.path().join("debian").join(IMAGE_FILE),
            "name: debian\nsuite: x\n",
        )
        .unwrap();
        let err = discover(dir.path()).unwrap_err().to_string();
        assert!(err.contains("unknown field `suite`"), "{err}");
    }

    #[test]
    fn an_image_may_carry_the_running_executable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("skillhost")).unwrap();
        std::fs::write(
            dir.path().join("skillhost").join(IMAGE_FILE),
            "name: skillhost\nexecutable: skillhost\n",
        )
        .unwrap();
        let images = discover(dir.path()).unwrap();
        let target = images[0].target().unwrap();
        assert_eq!(
            target.outputs.get(Path::new("skillhost")),
            Some(&std::env::current_exe().unwrap()),
            "staged into the context as `skillhost`"
        );
        assert!(target.command.is_none(), "so the hash covers its bytes");
    }
}
