//! `skillhost lock --manifest FILE`: build or reuse the deployment's images and pin them
//! in `FILE` with the extension `.lock`; `--check` only tells whether the sources still
//! give what the lock says (for CI), building nothing.

use std::path::{Path, PathBuf};

use skillhost::api::exit_code;
use skillhost::build::ImageBuilder;
use skillhost::catalog::{Catalog, Deployment};
use skillhost::engine::Engine;
use skillhost::lock::{compare, lock_egress_proxy, lock_skill, source_state, LockFile};
use skillhost::Error;

use super::progress::Progress;
use super::{output, Format};

#[derive(Debug, clap::Args)]
pub(crate) struct LockCli {
    /// The deployment manifest whose skills are locked.
    #[arg(long)]
    manifest: PathBuf,
    /// The lock file [default: the manifest's path with the extension .lock].
    #[arg(long, short = 'o')]
    lock: Option<PathBuf>,
    /// Change nothing: exit 2, naming each skill and what moved, when the lock no longer
    /// matches the sources.
    #[arg(long)]
    check: bool,
}

pub(super) async fn run(roots: &[PathBuf], cli: LockCli, format: Format) -> Result<i32, Error> {
    let catalog = Catalog::discover(roots)?;
    let skills = Deployment::load(&cli.manifest)?.resolve(&cli.manifest, &catalog)?;
    let path = cli
        .lock
        .clone()
        .unwrap_or_else(|| cli.manifest.with_extension("lock"));
    let progress = Progress::new();
    let builder = ImageBuilder::new(Engine::connect().await?, progress.observer());
    if cli.check {
        return check(&builder, &skills, &path, format).await;
    }
    let previous = path.exists().then(|| LockFile::load(&path)).transpose()?;
    let mut entries = Vec::new();
    let egress = skills.iter().any(|s| s.manifest.run.network.is_egress());
    for skill in skills {
        let before = previous.as_ref().and_then(|p| p.get(skill.name()));
        let entry = lock_skill(&builder, skill, before).await;
        progress.finish(skill.name());
        entries.push(entry?);
    }
    let mut lock = LockFile::new(entries);
    if egress {
        let before = previous.as_ref().and_then(|p| p.egress_proxy.as_ref());
        lock.egress_proxy = Some(lock_egress_proxy(builder.engine(), before).await?);
    }
    lock.save(&path)?;
    match format {
        Format::Json => {
            output::json(&serde_json::json!({"lock": path, "skills": lock.skills.len()}))
        }
        Format::Human => {
            print_locked(&lock);
            outln!("wrote {}", path.display());
        }
    }
    Ok(exit_code::OK)
}

async fn check(
    builder: &ImageBuilder,
    skills: &[&skillhost::catalog::Skill],
    path: &Path,
    format: Format,
) -> Result<i32, Error> {
    let lock = LockFile::load(path)?;
    let mut current = Vec::new();
    for skill in skills {
        current.push(source_state(builder, skill).await?);
    }
    let drift = compare(&lock, &current);
    let lines: Vec<String> = drift.iter().map(ToString::to_string).collect();
    match format {
        Format::Json => output::json(&serde_json::json!({"lock": path, "drift": lines})),
        Format::Human if lines.is_empty() => outln!("{} matches the sources", path.display()),
        Format::Human => {
            for line in &lines {
                errln!("{line}");
            }
            errln!(
                "{} no longer matches the sources; run `skillhost lock --manifest ...` and review the change",
                path.display()
            );
        }
    }
    Ok(if drift.is_empty() {
        exit_code::OK
    } else {
        exit_code::USAGE
    })
}

/// One line per locked image, for people: the skill's name and version (or the egress
/// proxy), image and image ID.
pub(super) fn print_locked(lock: &LockFile) {
    for skill in &lock.skills {
        outln!(
            "{} {}  {}  {}",
            skill.name,
            skill.version,
            skill.image,
            skill.image_id
        );
    }
    if let Some(proxy) = &lock.egress_proxy {
        outln!("(egress proxy)  {}  {}", proxy.image, proxy.image_id);
    }
}
