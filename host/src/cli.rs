//! Argument parsing and the subcommands. Each command returns its exit code; errors are
//! printed once, here, to stderr.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;
use serde_json::json;

use skillhost::base_images;
use skillhost::deployment::Deployment;
use skillhost::discovery::{Catalog, Skill};
use skillhost::engine::Engine;
use skillhost::exit_code;
use skillhost::image_build::{self, BuildReport, CacheOutcome, ImageBuilder, ImageTarget};
use skillhost::Error;

use crate::progress::Progress;

#[derive(Debug, Parser)]
#[command(
    name = "skillhost",
    version,
    about = "Run untrusted skills in hardened Docker containers"
)]
pub struct Args {
    /// A directory of skills; repeat for several. Default: ./skills
    #[arg(
        long = "skills-dir",
        global = true,
        env = "SKILLHOST_SKILLS",
        value_delimiter = ':'
    )]
    skills_dirs: Vec<PathBuf>,
    /// Output for people, or JSON for programs (nothing but the result on stdout).
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    format: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the skills found: version, content hash, whether the image is present.
    List,
    /// Build or reuse the images of skills.
    Build {
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
    },
    /// Base images built locally from Debian packages.
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ImagesCommand {
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

pub async fn run(args: Args) -> i32 {
    let format = args.format;
    let result = match args.command {
        Command::List => list(&roots(args.skills_dirs), format).await,
        Command::Build {
            skills,
            all,
            manifest,
            force,
        } => {
            build(
                &roots(args.skills_dirs),
                &skills,
                all,
                manifest.as_deref(),
                force,
                format,
            )
            .await
        }
        Command::Images {
            command: ImagesCommand::Build { images_dir, force },
        } => build_base_images(&images_dir, force, format).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            report_error(&e, format);
            e.exit_code()
        }
    }
}

fn roots(dirs: Vec<PathBuf>) -> Vec<PathBuf> {
    if dirs.is_empty() {
        vec![PathBuf::from("skills")]
    } else {
        dirs
    }
}

fn report_error(e: &Error, format: Format) {
    if format == Format::Json {
        let body = json!({"error": {"message": e.to_string(), "exit_code": e.exit_code()}});
        println!("{body}");
    }
    eprintln!("error: {e}");
}

fn print_json(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("results serialize")
    );
}

#[derive(Serialize)]
struct ListedSkill {
    name: String,
    version: String,
    description: String,
    dir: String,
    actions: Vec<String>,
    hash: Option<String>,
    image: Option<String>,
    present: Option<bool>,
    problem: Option<String>,
}

async fn list(roots: &[PathBuf], format: Format) -> Result<i32, Error> {
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
        let mut entry = ListedSkill {
            name: m.name.clone(),
            version: m.version.to_string(),
            description: m.description.clone(),
            dir: skill.relative_dir.display().to_string(),
            actions: m.actions.keys().cloned().collect(),
            hash: None,
            image: None,
            present: None,
            problem: None,
        };
        match image_build::plan(engine.as_ref(), &ImageTarget::for_skill(skill)).await {
            Ok(plan) => {
                entry.image = Some(plan.image());
                entry.hash = Some(plan.hash.0.clone());
                if let Some(builder) = &builder {
                    entry.present = Some(builder.cached(&plan).await?.is_some());
                }
            }
            Err(e) => entry.problem = Some(e.to_string()),
        }
        listed.push(entry);
    }
    let broken: Vec<_> = catalog
        .broken
        .iter()
        .map(|e| json!({"error": e.to_string(), "problems": e.problems().iter().map(|p| json!({
            "field": p.field, "line": p.position.map(|p| p.0), "column": p.position.map(|p| p.1), "message": p.message,
        })).collect::<Vec<_>>()}))
        .collect();
    match format {
        Format::Json => print_json(&json!({"skills": listed, "broken": broken})),
        Format::Human => print_list(&listed, &catalog),
    }
    Ok(if catalog.broken.is_empty() {
        exit_code::OK
    } else {
        exit_code::USAGE
    })
}

fn print_list(listed: &[ListedSkill], catalog: &Catalog) {
    if listed.is_empty() && catalog.broken.is_empty() {
        println!("no skills found");
    }
    let width = listed
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    if !listed.is_empty() {
        println!(
            "{:width$}  {:10}  {:36}  PRESENT  DIR",
            "NAME", "VERSION", "IMAGE"
        );
    }
    for s in listed {
        let present = match s.present {
            Some(true) => "yes",
            Some(false) => "no",
            None => "?",
        };
        let image = s.image.as_deref().unwrap_or("-");
        println!(
            "{:width$}  {:10}  {:36}  {present:7}  {}",
            s.name, s.version, image, s.dir
        );
        if let Some(problem) = &s.problem {
            println!("{:width$}  ! {problem}", "");
        }
    }
    for e in &catalog.broken {
        eprintln!("error: {e}");
    }
}

fn select<'c>(
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
            return Err(Error::Usage(format!(
                "cannot build --all while a manifest is broken:\n{broken}"
            )));
        }
        return Ok(catalog.skills.values().collect());
    }
    if names.is_empty() {
        return Err(Error::Usage(
            "name the skills to build, or pass --all or --manifest FILE".into(),
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
                Error::Usage(message)
            })
        })
        .collect()
}

async fn build(
    roots: &[PathBuf],
    names: &[String],
    all: bool,
    manifest: Option<&Path>,
    force: bool,
    format: Format,
) -> Result<i32, Error> {
    let catalog = Catalog::discover(roots)?;
    let skills = select(&catalog, names, all, manifest)?;
    let progress = Progress::new();
    let builder = ImageBuilder::new(Engine::connect().await?, progress.observer());
    let mut reports = Vec::new();
    for skill in skills {
        let report = builder.ensure(&ImageTarget::for_skill(skill), force).await;
        progress.finish(skill.name());
        let report = report?;
        if format == Format::Human {
            print_report(&report);
        }
        reports.push(report);
    }
    if format == Format::Json {
        print_json(&reports);
    }
    Ok(exit_code::OK)
}

async fn build_base_images(images_dir: &Path, force: bool, format: Format) -> Result<i32, Error> {
    let images = base_images::discover(images_dir)?;
    if images.is_empty() {
        return Err(Error::Usage(format!(
            "no image.yaml under {}",
            images_dir.display()
        )));
    }
    let progress = Progress::new();
    let builder = ImageBuilder::new(Engine::connect().await?, progress.observer());
    let reports = base_images::build_all(&builder, &images, force).await;
    for image in &images {
        progress.finish(&image.manifest.name);
    }
    let reports = reports?;
    match format {
        Format::Json => print_json(&reports),
        Format::Human => reports.iter().for_each(print_report),
    }
    Ok(exit_code::OK)
}

fn print_report(report: &BuildReport) {
    let what = match report.cache {
        CacheOutcome::Hit => "reused (cache hit)".to_string(),
        CacheOutcome::Built => format!("built in {:.1}s", report.duration_ms as f64 / 1000.0),
    };
    println!(
        "{} {}  {}  {what}",
        report.name, report.version, report.image
    );
}
