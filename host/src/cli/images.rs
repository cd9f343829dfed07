//! `skillhost images build`: the base images defined under `images/`.

use std::path::PathBuf;

use clap::Subcommand;
use skillhost::api::exit_code;
use skillhost::build::{build_base_images, discover_base_images, ImageBuilder};
use skillhost::engine::Engine;
use skillhost::Error;

use super::build::print_report;
use super::progress::Progress;
use super::{output, usage, Format};

#[derive(Debug, Subcommand)]
pub(crate) enum ImagesCommand {
    /// Build or reuse every image defined under the images directory.
    Build {
        /// Where base image definitions live.
        #[arg(long, default_value = "images")]
        images_dir: PathBuf,
        /// Rebuild even when the image for the hash is present.
        #[arg(long)]
        force: bool,
    },
}

pub(super) async fn run(command: ImagesCommand, format: Format) -> Result<i32, Error> {
    let ImagesCommand::Build { images_dir, force } = command;
    let images = discover_base_images(&images_dir)?;
    if images.is_empty() {
        return Err(usage(format!(
            "no image.yaml under {}",
            images_dir.display()
        )));
    }
    let progress = Progress::new();
    let builder = ImageBuilder::new(Engine::connect().await?, progress.observer());
    let reports = build_base_images(&builder, &images, force).await;
    for image in &images {
        progress.finish(&image.manifest.name);
    }
    let reports = reports?;
    match format {
        Format::Json => output::json(&reports),
        Format::Human => reports.iter().for_each(print_report),
    }
    Ok(exit_code::OK)
}
