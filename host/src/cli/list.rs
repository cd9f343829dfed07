//! `skillhost list`: the skills found, their versions and images, and whether each image
//! is present; broken manifests too. With `--locked FILE`: the skills a lock pins, as a
//! locked host sees them (read from the images, each checked against the lock).

use std::path::PathBuf;

use skillhost::api::{exit_code, BrokenSkill, ListReport, ListedSkill, ProblemReport};
use skillhost::build::{plan, ImageBuilder, ImageTarget};
use skillhost::catalog::Catalog;
use skillhost::engine::Engine;
use skillhost::lock::{verify, LockFile};
use skillhost::manifest::ManifestError;
use skillhost::Error;

use super::progress::Progress;
use super::{output, Format};

#[derive(Debug, clap::Args)]
pub(crate) struct ListCli {
    /// List the skills this lock pins instead, as `serve --locked` would run them: read
    /// from their images (no source is searched), each checked against the lock.
    #[arg(long, value_name = "FILE")]
    locked: Option<PathBuf>,
}

pub(super) async fn run(roots: &[PathBuf], cli: ListCli, format: Format) -> Result<i32, Error> {
    if let Some(path) = &cli.locked {
        return run_locked(path, format).await;
    }
    let catalog = Catalog::discover(roots)?;
    let engine = match Engine::connect().await {
        Ok(engine) => Some(engine),
        Err(e) => {
            tracing::warn!("{e}; image presence is unknown");
            None
        }
    };
    let builder = engine
        .clone()
        .map(|e| ImageBuilder::new(e, Progress::new().observer()));
    let mut listed = Vec::new();
    for skill in catalog.skills.values() {
        let m = &skill.manifest;
        let mut entry = ListedSkill::new(
            &m.name,
            m.version.to_string(),
            &m.description,
            skill.relative_dir.display().to_string(),
            m.actions.keys().cloned().collect(),
        );
        match plan(engine.as_ref(), &ImageTarget::for_skill(skill)).await {
            Ok(plan) => {
                entry.image = Some(plan.image());
                entry.hash = Some(plan.hash().0.clone());
                if let Some(builder) = &builder {
                    entry.present = Some(builder.cached(&plan).await?.is_some());
                }
            }
            Err(e) => entry.problem = Some(e.to_string()),
        }
        listed.push(entry);
    }
    let broken = catalog.broken.iter().map(broken_report).collect();
    let report = ListReport::new(listed, broken);
    match format {
        Format::Json => output::json(&report),
        Format::Human => print(&report),
    }
    Ok(if catalog.broken.is_empty() {
        exit_code::OK
    } else {
        exit_code::USAGE
    })
}

/// `list --locked FILE`: each locked skill from its image; one whose image is missing or
/// not the locked one is listed with the problem, and the exit code says so.
async fn run_locked(path: &std::path::Path, format: Format) -> Result<i32, Error> {
    let lock = LockFile::load(path)?;
    let engine = Engine::connect().await?;
    let verification = verify(&engine, &lock).await?;
    let mut listed = Vec::new();
    for entry in &lock.skills {
        let verified = verification
            .verified
            .iter()
            .find(|v| v.entry.name == entry.name);
        let mut skill = match verified {
            Some(v) => ListedSkill::new(
                &entry.name,
                v.manifest.version.to_string(),
                &v.manifest.description,
                String::new(),
                v.manifest.actions.keys().cloned().collect(),
            ),
            None => ListedSkill::new(
                &entry.name,
                entry.version.clone(),
                "",
                String::new(),
                Vec::new(),
            ),
        };
        skill.image = Some(entry.image.clone());
        skill.hash = Some(entry.hash.clone());
        skill.present = Some(verified.is_some());
        skill.problem = verification
            .problems
            .iter()
            .find(|p| p.skill() == Some(entry.name.as_str()))
            .map(ToString::to_string);
        listed.push(skill);
    }
    let report = ListReport::new(listed, Vec::new());
    match format {
        Format::Json => output::json(&report),
        Format::Human => print(&report),
    }
    Ok(if verification.problems.is_empty() {
        exit_code::OK
    } else {
        exit_code::INFRASTRUCTURE
    })
}

/// A manifest that failed to load, as reports show it.
pub(super) fn broken_report(error: &ManifestError) -> BrokenSkill {
    let problems = error
        .problems()
        .into_iter()
        .map(|p| ProblemReport::new(p.field, p.position, p.message))
        .collect();
    BrokenSkill::new(error.to_string(), problems)
}

fn print(report: &ListReport) {
    if report.skills.is_empty() && report.broken.is_empty() {
        outln!("no skills found");
    }
    let width = report
        .skills
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    if !report.skills.is_empty() {
        outln!(
            "{:width$}  {:10}  {:36}  PRESENT  DIR",
            "NAME",
            "VERSION",
            "IMAGE"
        );
    }
    for s in &report.skills {
        let present = match s.present {
            Some(true) => "yes",
            Some(false) => "no",
            None => "?",
        };
        let image = s.image.as_deref().unwrap_or("-");
        outln!(
            "{:width$}  {:10}  {:36}  {present:7}  {}",
            s.name,
            s.version,
            image,
            s.dir
        );
        if let Some(problem) = &s.problem {
            outln!("{:width$}  ! {problem}", "");
        }
    }
    for broken in &report.broken {
        errln!("error: {}", broken.error);
    }
}
