//! `skillhost gc`: leftover containers of dead hosts, and all but the newest image of
//! each skill.

use skillhost::api::exit_code;
use skillhost::engine::Engine;
use skillhost::{lifecycle, Error};

use super::{output, Format};

pub(super) async fn run(format: Format) -> Result<i32, Error> {
    let engine = Engine::connect().await?;
    let report = lifecycle::gc(engine.docker()).await?;
    match format {
        Format::Json => output::json(&report),
        Format::Human => {
            outln!(
                "removed {} leftover containers",
                report.containers_removed.len()
            );
            for tag in &report.images_removed {
                outln!("removed image {tag}");
            }
            for tag in &report.images_kept {
                outln!("kept image {tag} (in use)");
            }
        }
    }
    Ok(exit_code::OK)
}
