//! Argument parsing and the subcommands. Each command returns its exit code; errors are
//! printed once, here, to stderr.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;
use serde_json::{json, Value};

use skillhost::base_images;
use skillhost::deployment::Deployment;
use skillhost::discovery::{Catalog, Skill};
use skillhost::engine::Engine;
use skillhost::exit_code;
use skillhost::image_build::{self, BuildReport, CacheOutcome, ImageBuilder, ImageTarget};
use skillhost::invocation::ProgressCallback;
use skillhost::leftovers;
use skillhost::manifest::units::HumanDuration;
use skillhost::{Error, Host, HostConfig, InvocationResult, InvokeOptions, Status};

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
    /// Run one action of a skill in a fresh hardened container.
    Invoke(InvokeCli),
    /// Remove leftover containers and all but the newest image of each skill.
    Gc,
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
        Command::Invoke(request) => invoke(roots(args.skills_dirs), request, format).await,
        Command::Gc => gc(format).await,
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

#[derive(Debug, clap::Args)]
struct InvokeCli {
    skill: String,
    action: String,
    /// The arguments, as JSON.
    #[arg(long = "args", value_name = "ARGS", conflicts_with = "args_file")]
    inline: Option<String>,
    /// Read the arguments from a JSON file (`-` for stdin).
    #[arg(long)]
    args_file: Option<PathBuf>,
    /// A deadline shorter than the manifest's timeout, e.g. 2s or 500ms.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// NAME=VALUE, or NAME to pass this process's value; the manifest's run.env
    /// must allow the name.
    #[arg(long = "env", value_name = "NAME[=VALUE]")]
    env: Vec<String>,
    /// A host directory mounted at /workspace (the skill must declare run.workspace).
    #[arg(long)]
    workspace: Option<PathBuf>,
    /// Never build: fail when the image is not prebuilt.
    #[arg(long)]
    no_build: bool,
    /// Run the skill's native library inside this process: NO SANDBOX. Also needs
    /// SKILLHOST_ALLOW_NATIVE=1 in the environment, for trusted skills only.
    #[arg(long)]
    native: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    HumanDuration::parse(text).map(|d| d.0)
}

fn read_args(inline: Option<&str>, file: Option<&Path>) -> Result<Value, Error> {
    let (text, source) = match (inline, file) {
        (Some(text), _) => (text.to_string(), "--args".to_string()),
        (None, Some(path)) if path == Path::new("-") => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| Error::Usage(format!("cannot read the arguments from stdin: {e}")))?;
            (text, "stdin".to_string())
        }
        (None, Some(path)) => (
            std::fs::read_to_string(path).map_err(|e| {
                Error::Usage(format!(
                    "cannot read the arguments from {}: {e}",
                    path.display()
                ))
            })?,
            path.display().to_string(),
        ),
        (None, None) => return Ok(json!({})),
    };
    serde_json::from_str(&text)
        .map_err(|e| Error::Usage(format!("the arguments in {source} are not JSON: {e}")))
}

fn parse_env(pairs: &[String]) -> Result<BTreeMap<String, String>, Error> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => Ok((name.to_string(), value.to_string())),
            None => std::env::var(pair)
                .map(|value| (pair.clone(), value))
                .map_err(|_| {
                    Error::Usage(format!(
                        "--env {pair}: no such variable in this environment; give {pair}=VALUE"
                    ))
                }),
        })
        .collect()
}

async fn invoke(skill_roots: Vec<PathBuf>, cli: InvokeCli, format: Format) -> Result<i32, Error> {
    // Installed first, so a signal that arrives while the host starts is not fatal.
    let mut interrupts = Interrupts::install()?;
    let args = read_args(cli.inline.as_deref(), cli.args_file.as_deref())?;
    let env = parse_env(&cli.env)?;
    let config = HostConfig {
        skill_roots,
        build_images: !cli.no_build,
        allow_native: std::env::var("SKILLHOST_ALLOW_NATIVE").as_deref() == Ok("1"),
        ..HostConfig::default()
    };
    let host = Host::new(config).await?;
    let on_progress: ProgressCallback = Arc::new(|p: &skill_sdk::Progress| match p.fraction {
        Some(f) => eprintln!("progress {:>3.0}% {}", f * 100.0, p.message),
        None => eprintln!("progress {}", p.message),
    });
    let options = InvokeOptions {
        timeout: cli.timeout,
        env,
        workspace: cli.workspace,
        on_progress: Some(on_progress),
        native: cli.native,
    };
    // An interrupted invoke drops the invocation, whose guard removes the container
    // before we exit.
    let result = tokio::select! {
        result = host.invoke_with(&cli.skill, &cli.action, args, options) => result,
        signal = interrupts.recv() => {
            host.shutdown().await;
            eprintln!("error: interrupted by {signal}; the container was removed");
            return Ok(128 + if signal == "SIGTERM" { 15 } else { 2 });
        }
    };
    // The result is known; removing its container must still finish before we exit.
    host.shutdown().await;
    match format {
        Format::Json => print_json(&result),
        Format::Human => print_result(&result),
    }
    Ok(result.status.exit_code())
}

/// SIGTERM and SIGINT, caught instead of ending the process, so cleanup can run.
struct Interrupts {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Interrupts {
    fn install() -> Result<Interrupts, Error> {
        use tokio::signal::unix::{signal, SignalKind};
        let failed =
            |e: std::io::Error| Error::Usage(format!("cannot install signal handlers: {e}"));
        Ok(Interrupts {
            term: signal(SignalKind::terminate()).map_err(failed)?,
            int: signal(SignalKind::interrupt()).map_err(failed)?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// The output for people: a process-like result (`stdout`/`stderr` fields) as its text,
/// a string as itself, anything else as JSON. Failures go to stderr with the logs.
fn print_result(result: &InvocationResult) {
    if let Some(output) = &result.output {
        match output {
            Value::String(text) => println!("{text}"),
            Value::Object(fields) if fields.get("stdout").is_some_and(Value::is_string) => {
                print!("{}", fields["stdout"].as_str().unwrap_or_default());
                if let Some(stderr) = fields.get("stderr").and_then(Value::as_str) {
                    eprint!("{stderr}");
                }
            }
            other => println!(
                "{}",
                serde_json::to_string_pretty(other).expect("JSON values serialize")
            ),
        }
    }
    if result.oom_killed && result.status == Status::Ok {
        eprintln!("warning: a process of the skill was killed for memory");
    }
    if let Some(error) = &result.error {
        let status = serde_json::to_value(result.status).unwrap_or_default();
        eprintln!(
            "error: {}: {} ({})",
            status.as_str().unwrap_or_default(),
            error.message,
            error.code
        );
        if !result.logs.is_empty() {
            eprintln!(
                "--- skill stderr{} ---",
                if result.logs_truncated {
                    " (truncated)"
                } else {
                    ""
                }
            );
            eprint!("{}", result.logs);
        }
    }
}

async fn gc(format: Format) -> Result<i32, Error> {
    let engine = Engine::connect().await?;
    let report = leftovers::gc(engine.docker()).await?;
    match format {
        Format::Json => print_json(&report),
        Format::Human => {
            println!(
                "removed {} leftover containers",
                report.containers_removed.len()
            );
            for tag in &report.images_removed {
                println!("removed image {tag}");
            }
            for tag in &report.images_kept {
                println!("kept image {tag} (in use)");
            }
        }
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
