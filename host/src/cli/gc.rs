//! `skillhost gc`: leftover containers of dead hosts, and the image tags of the skills in
//! scope that neither their current sources nor a given lock need.

use std::collections::BTreeSet;
use std::path::PathBuf;

use skillhost::api::exit_code;
use skillhost::build::{plan, ImageTarget};
use skillhost::catalog::Catalog;
use skillhost::engine::Engine;
use skillhost::lifecycle::{self, GcScope};
use skillhost::lock::LockFile;
use skillhost::Error;

use super::{output, Format};

#[derive(Debug, clap::Args)]
pub(crate) struct GcCli {
    /// List what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// A lock whose images are kept, and whose skills are in scope too (repeatable).
    /// With locks and no --skills-dir, only the locks' skills are in scope.
    #[arg(long = "lock", value_name = "FILE")]
    locks: Vec<PathBuf>,
}

pub(super) async fn run(
    roots: &[PathBuf],
    roots_given: bool,
    cli: GcCli,
    format: Format,
) -> Result<i32, Error> {
    let engine = Engine::connect().await?;
    let mut scope = GcScope::default();
    scope.dry_run = cli.dry_run;
    for path in &cli.locks {
        let lock = LockFile::load(path)?;
        for pin in lock.pins() {
            if let Some(skill) = pin.skill {
                scope.repositories.insert(format!("skill-{}", skill.name));
            }
            scope.keep_tags.insert(pin.image.to_string());
            scope.keep_ids.insert(pin.image_id.to_string());
        }
    }
    if roots_given || cli.locks.is_empty() {
        let catalog = Catalog::discover(roots)?;
        let mut unplanned = BTreeSet::new();
        for skill in catalog.skills.values() {
            let repository = skill.manifest.repository();
            match plan(Some(&engine), &ImageTarget::for_skill(skill)).await {
                Ok(plan) => {
                    let image = plan.image();
                    if let Some(found) = engine.inspect_image(&image).await? {
                        scope.keep_ids.insert(found.id);
                    }
                    scope.keep_tags.insert(image);
                    scope.repositories.insert(repository);
                }
                Err(e) => {
                    // Its current image is unknown, so none of its images may go.
                    tracing::warn!(skill = skill.name(), "leaving its images alone: {e}");
                    unplanned.insert(repository);
                }
            }
        }
        scope.repositories.retain(|repo| !unplanned.contains(repo));
    }
    let report = lifecycle::gc(&engine, &scope).await?;
    match format {
        Format::Json => output::json(&report),
        Format::Human => {
            let verb = if report.dry_run {
                "would remove"
            } else {
                "removed"
            };
            outln!(
                "{verb} {} leftover containers",
                report.containers_removed.len()
            );
            for tag in &report.images_removed {
                outln!("{verb} image {tag}");
            }
            for tag in &report.images_kept {
                outln!("kept image {tag} (in use)");
            }
        }
    }
    Ok(exit_code::OK)
}
