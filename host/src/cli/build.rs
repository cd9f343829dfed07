//! `skillhost build`: build or reuse the images of skills, by name, all of them, or
//! exactly those a deployment manifest lists.

use std::path::{Path, PathBuf};

use skillhost::api::exit_code;
use skillhost::build::{BuildReport, CacheOutcome, ImageBuilder, ImageTarget};
use skillhost::catalog::{Catalog, Deployment, Skill};
use skillhost::engine::Engine;
use skillhost::Error;

use super::progress::Progress;
use super::{output, usage, Format};

#[derive(Debug, clap::Args)]
pub(crate) struct BuildCli {
    /// Skills to build.
    skills: Vec<String>,
    /// Build every skill found.
    #[arg(long, conflicts_with_all = ["skills", "manifest"])]
    all: bool,
    /// Build exactly the skills a deployment manifest lists, checking their versions.
    #[arg(long, conflicts_with = "skills")]
    manifest: Option<PathBuf>,
    /// Build even when the image for the hash is present.
    #[arg(long)]
    force: bool,
}

pub(super) async fn run(roots: &[PathBuf], cli: BuildCli, format: Format) -> Result<i32, Error> {
    let catalog = Catalog::discover(roots)?;
    let skills = select(&catalog, &cli.skills, cli.all, cli.manifest.as_deref())?;
    let progress = Progress::new();
    let builder = ImageBuilder::new(Engine::connect().await?, progress.observer());
    let mut reports = Vec::new();
    for skill in skills {
        let report = builder
            .ensure(&ImageTarget::for_skill(skill), cli.force)
            .await;
        progress.finish(skill.name());
        let report = report?;
        if format == Format::Human {
            print_report(&report);
        }
        reports.push(report);
    }
    if format == Format::Json {
        output::json(&reports);
    }
    Ok(exit_code::OK)
}

pub(super) fn select<'c>(
    catalog: &'c Catalog,
    names: &[String],
    all: bool,
    manifest: Option<&Path>,
) -> Result<Vec<&'c Skill>, Error> {
    if let Some(path) = manifest {
        return Ok(Deployment::load(path)?.resolve(path, catalog)?);
    }
    if all {
        if let Some(broken) = catalog.broken.first() {
            return Err(usage(format!(
                "cannot build --all while a manifest is broken:\n{broken}"
            )));
        }
        return Ok(catalog.skills.values().collect());
    }
    if names.is_empty() {
        return Err(usage(
            "name the skills to build, or pass --all or --manifest FILE",
        ));
    }
    names
        .iter()
        .map(|name| {
            catalog.get(name).ok_or_else(|| {
                let known: Vec<&str> = catalog.skills.keys().map(String::as_str).collect();
                let mut message = format!("no skill named {name:?}; found: {}", known.join(", "));
                for broken in &catalog.broken {
                    message.push_str(&format!("\n(a manifest failed to load: {broken})"));
                }
                usage(message)
            })
        })
        .collect()
}

/// One line per image: reused or built, and how long it took.
pub(super) fn print_report(report: &BuildReport) {
    let what = match report.cache {
        CacheOutcome::Hit => "reused (cache hit)".to_string(),
        CacheOutcome::Built => format!("built in {:.1}s", report.duration_ms as f64 / 1000.0),
    };
    outln!(
        "{} {}  {}  {what}",
        report.name,
        report.version,
        report.image
    );
}
