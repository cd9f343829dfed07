//! `skillhost push --lock FILE --registry HOST:PORT` and `skillhost pull --lock FILE`:
//! move a lock's images through a registry. A push records each image's registry and
//! digest in the lock as soon as it is pushed; a pull takes each by that digest and checks
//! it against the lock's image ID. `skillhost export` and `import` move them as one file.

use std::path::PathBuf;
use std::time::Instant;

use skillhost::api::exit_code;
use skillhost::engine::Engine;
use skillhost::lock::{LockFile, Pin, PinId};
use skillhost::ship::{export, import, pull, push};
use skillhost::Error;

use super::lock::print_locked;
use super::progress::Progress;
use super::{output, usage, Format};

#[derive(Debug, clap::Args)]
pub(crate) struct PushCli {
    /// The lock file whose images are pushed; each one's registry and digest are written
    /// back into it.
    #[arg(long)]
    lock: PathBuf,
    /// The registry, HOST:PORT (the engine must trust it: TLS, or listed under
    /// insecure-registries; 127.0.0.0/8 is by default).
    #[arg(long)]
    registry: String,
    /// Push only these skills' images (`egress-proxy`: the egress proxy's) [default: all
    /// of the lock's].
    skills: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct PullCli {
    /// The lock file whose images are pulled, each by its recorded digest.
    #[arg(long)]
    lock: PathBuf,
    /// Pull from this registry, HOST:PORT (a mirror), instead of the one each entry
    /// records; the digests are the same. `serve --pull --mirror` is the same choice.
    /// (`--registry` is the old name, still accepted.)
    #[arg(long, alias = "registry")]
    mirror: Option<String>,
    /// Pull only these skills' images (`egress-proxy`: the egress proxy's) [default: all
    /// of the lock's].
    skills: Vec<String>,
}

/// The lock's images named by `wanted` (all when empty), or the names it does not hold.
fn selected(lock: &LockFile, wanted: &[String]) -> Result<Vec<PinId>, Error> {
    let pins = lock.pins();
    if let Some(unknown) = wanted
        .iter()
        .find(|name| !pins.iter().any(|p| p.name() == name.as_str()))
    {
        let known: Vec<&str> = pins.iter().map(|p| p.name()).collect();
        let proxy = if lock.egress_proxy.is_some() {
            ""
        } else {
            "; it pins no egress proxy"
        };
        return Err(usage(format!(
            "the lock names no skill {unknown:?} (it has: {}{proxy})",
            known.join(", ")
        )));
    }
    Ok(pins
        .iter()
        .filter(|p| wanted.is_empty() || wanted.iter().any(|w| w == p.name()))
        .map(|p| p.id)
        .collect())
}

/// The pin `id` of `lock`; the ids come from [`selected`] on the same lock.
fn pin_of(lock: &LockFile, id: PinId) -> Result<Pin<'_>, Error> {
    lock.pins()
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| usage(format!("the lock changed under this command ({id:?})")))
}

/// `registry`, given as `flag`, is a registry's address alone.
pub(super) fn check_registry(flag: &str, registry: &str) -> Result<(), Error> {
    let plausible = !registry.is_empty()
        && !registry.contains("://")
        && !registry.contains('/')
        && !registry.contains('@');
    if plausible {
        return Ok(());
    }
    Err(usage(format!(
        "{flag} {registry:?}: give HOST:PORT (or HOST), without a scheme or a path"
    )))
}

pub(super) async fn run_push(cli: PushCli, format: Format) -> Result<i32, Error> {
    check_registry("--registry", &cli.registry)?;
    let mut lock = LockFile::load(&cli.lock)?;
    let chosen = selected(&lock, &cli.skills)?;
    let engine = Engine::connect().await?;
    let progress = Progress::new();
    let observer = progress.ship_observer();
    let mut report = Vec::new();
    for id in chosen {
        let started = Instant::now();
        let pin = pin_of(&lock, id)?;
        let name = pin.name().to_string();
        let pushed = push(&engine, &pin, &cli.registry, &observer).await;
        progress.finish(&name);
        let pushed = pushed?;
        lock.record_push(id, &cli.registry, &pushed.digest);
        // Saved after each image, so a failure later loses no digest already given.
        lock.save(&cli.lock)?;
        let seconds = started.elapsed().as_secs_f64();
        if format == Format::Human {
            outln!(
                "{name} {}@{}  ({seconds:.2} s)",
                pushed.reference,
                pushed.digest
            );
        }
        report.push(serde_json::json!({
            "skill": name, "reference": pushed.reference, "digest": pushed.digest,
            "seconds": seconds,
        }));
    }
    match format {
        Format::Json => output::json(&serde_json::json!({"lock": cli.lock, "pushed": report})),
        Format::Human => outln!("recorded the digests in {}", cli.lock.display()),
    }
    Ok(exit_code::OK)
}

pub(super) async fn run_pull(cli: PullCli, format: Format) -> Result<i32, Error> {
    if let Some(mirror) = &cli.mirror {
        check_registry("--mirror", mirror)?;
    }
    let lock = LockFile::load(&cli.lock)?;
    let chosen = selected(&lock, &cli.skills)?;
    let engine = Engine::connect().await?;
    let progress = Progress::new();
    let observer = progress.ship_observer();
    let mut report = Vec::new();
    for id in chosen {
        let entry = pin_of(&lock, id)?;
        let started = Instant::now();
        let pulled = pull(&engine, &entry, cli.mirror.as_deref(), &observer).await;
        progress.finish(entry.name());
        let what = pulled?.as_str();
        let seconds = started.elapsed().as_secs_f64();
        if format == Format::Human {
            outln!(
                "{} {}  {what}, {}  ({seconds:.2} s)",
                entry.name(),
                entry.image,
                entry.image_id
            );
        }
        report.push(serde_json::json!({
            "skill": entry.name(), "image": entry.image, "image_id": entry.image_id,
            "outcome": what, "seconds": seconds,
        }));
    }
    if format == Format::Json {
        output::json(&serde_json::json!({"lock": cli.lock, "pulled": report}));
    }
    Ok(exit_code::OK)
}

#[derive(Debug, clap::Args)]
pub(crate) struct ExportCli {
    /// The lock file whose images are exported; the bundle carries it too.
    #[arg(long)]
    lock: PathBuf,
    /// The bundle to write (a tar).
    #[arg(long, short = 'o')]
    output: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ImportCli {
    /// The bundle `skillhost export` wrote.
    bundle: PathBuf,
    /// Also write the bundle's lock here, for `--locked`.
    #[arg(long = "lock-out", value_name = "FILE")]
    lock_out: Option<PathBuf>,
}

pub(super) async fn run_export(cli: ExportCli, format: Format) -> Result<i32, Error> {
    let lock = LockFile::load(&cli.lock)?;
    let engine = Engine::connect().await?;
    let started = Instant::now();
    let exported = export(&engine, &lock, &cli.output).await?;
    let seconds = started.elapsed().as_secs_f64();
    match format {
        Format::Json => output::json(&serde_json::json!({
            "bundle": exported.path, "bytes": exported.bytes, "images": lock.pins().len(),
            "seconds": seconds,
        })),
        Format::Human => outln!(
            "wrote {} ({:.1} MB, {} images, {seconds:.2} s)",
            exported.path.display(),
            exported.bytes as f64 / 1e6,
            lock.pins().len()
        ),
    }
    Ok(exit_code::OK)
}

pub(super) async fn run_import(cli: ImportCli, format: Format) -> Result<i32, Error> {
    let engine = Engine::connect().await?;
    let started = Instant::now();
    let lock = import(&engine, &cli.bundle).await?;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(path) = &cli.lock_out {
        lock.save(path)?;
    }
    match format {
        Format::Json => output::json(&serde_json::json!({
            "bundle": cli.bundle, "lock": cli.lock_out, "seconds": seconds,
            "images": lock.pins().iter().map(|p| p.image).collect::<Vec<_>>(),
        })),
        Format::Human => {
            print_locked(&lock);
            outln!(
                "imported {} images, each checked against the bundle's lock ({seconds:.2} s)",
                lock.pins().len()
            );
        }
    }
    Ok(exit_code::OK)
}
