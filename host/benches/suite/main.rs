//! The benchmark suite, every figure from one run on one machine:
//! `cargo bench -p skillhost --bench suite` (add `-- --quick` for fewer rounds).
//!
//! - one echo invocation per path (cold, prewarmed as created and as started to the
//!   init, warm, native) against `docker run --rm -i` of the same image with the same
//!   hardening flags, interleaved, and a cold call of echo with an egress allowlist;
//! - the cache-hit check against a `docker build` of the unchanged context;
//! - throughput at concurrency 1, 4, 8 and 16 (cold and warm);
//! - latency against payload size (1 KB, 100 KB, 1 MB);
//! - the host's peak memory with 64 invocations in flight.
//!
//! The docker CLI appears only as the baseline. Prints a Markdown table.

// A scenario or a benchmark reads best top to bottom, as one function; the 100-line
// bound is for the library (Cargo.toml, [workspace.lints.clippy]).
#![allow(clippy::too_many_lines)]

#[path = "../common/baseline.rs"]
mod baseline;
mod cache_hit;

use baseline::{docker_run, ms, percentile};

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use skillhost::{Host, HostConfig, InvocationPath, InvokeOptions, Status};

struct Rounds {
    latency: usize,
    fast: usize,
    per_level: usize,
    fast_per_level: usize,
}

async fn timed(
    host: &Host,
    skill: &str,
    text: &str,
    options: InvokeOptions,
    path: InvocationPath,
) -> Duration {
    let started = Instant::now();
    let result = host
        .invoke_with(skill, "say", json!({"text": text}), options)
        .await;
    let elapsed = started.elapsed();
    assert_eq!(
        (result.status, result.path),
        (Status::Ok, path),
        "{:?}",
        result.error
    );
    assert_eq!(
        result.output.unwrap()["text"].as_str().unwrap().len(),
        text.len()
    );
    elapsed
}

/// One cold call of `skill`, then the engine's teardown of it waited for, so that none
/// overlaps the next measurement.
async fn cold_then_settled(host: &Host, skill: &str) -> Duration {
    let took = timed(
        host,
        skill,
        "hi",
        InvokeOptions::default(),
        InvocationPath::Cold,
    )
    .await;
    host.settled().await;
    took
}

/// Invocations per second with `concurrency` callers sharing `total` invocations.
async fn throughput(
    host: &Arc<Host>,
    skill: &'static str,
    path: InvocationPath,
    concurrency: usize,
    total: usize,
) -> f64 {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let callers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (host, next) = (host.clone(), next.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::SeqCst) < total as u64 {
                    timed(&host, skill, "hi", InvokeOptions::default(), path).await;
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    // Sustained means the engine has also removed what the calls left to the reaper.
    host.settled().await;
    total as f64 / started.elapsed().as_secs_f64()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// (baseline, peak) resident memory of this host process, in KiB, while 64 cold
/// invocations are in flight.
async fn peak_memory_with_64_in_flight(host: &Arc<Host>) -> (u64, u64) {
    let baseline = rss_kib();
    let sampling = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let (sampling, peak) = (sampling.clone(), peak.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::SeqCst) {
                peak.fetch_max(rss_kib(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let calls: Vec<_> = (0..64)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move {
                timed(
                    &host,
                    "echo",
                    "hi",
                    InvokeOptions::default(),
                    InvocationPath::Cold,
                )
                .await
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    sampling.store(false, Ordering::SeqCst);
    sampler.await.unwrap();
    (baseline, peak.load(Ordering::SeqCst))
}

/// Wait until `skill`'s pool holds all 4 again, removals done: nothing of the engine's
/// background work may overlap the next measurement.
async fn pool_full(host: &Host, skill: &str) {
    host.settled().await;
    while host.prewarmed_ready(skill) < 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn host(roots: &[&Path], tweak: impl FnOnce(&mut HostConfig)) -> HostConfig {
    // Recycling off: these rows measure one container per call (the service bench's
    // `--sustained` part measures recycled containers).
    let mut config = HostConfig::new(roots.iter().map(|r| r.to_path_buf()).collect())
        .recycle(skillhost::RecyclePolicy::Off);
    tweak(&mut config);
    config
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick {
        Rounds {
            latency: 8,
            fast: 200,
            per_level: 8,
            fast_per_level: 500,
        }
    } else {
        Rounds {
            latency: 30,
            fast: 2000,
            per_level: 32,
            fast_per_level: 4000,
        }
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let skills = root.join("skills");
    let bench_skills = root.join("host/benches/skills");
    let built = Command::new(env!("CARGO"))
        .args(["build", "--release", "--lib", "-p", "skill-echo"])
        .current_dir(root)
        .status()
        .unwrap();
    assert!(built.success(), "building echo's native library");

    let cold = Arc::new(
        Host::new(host(&[&skills], |_| {}))
            .await
            .expect("a Docker Engine"),
    );
    let prewarmed = Host::new(host(&[&skills], |c| {
        c.prewarm = BTreeMap::from([("echo".into(), 4)]);
        c.prewarm_started = false;
    }))
    .await
    .unwrap();
    let started = Host::new(host(&[&skills], |c| {
        c.prewarm = BTreeMap::from([("echo".into(), 4)]);
        c.prewarm_started = true;
    }))
    .await
    .unwrap();
    let warm = Arc::new(Host::new(host(&[&bench_skills], |_| {})).await.unwrap());
    // An allowlisted skill's containers made ahead, network and all.
    let egress_started = Host::new(host(&[&bench_skills], |c| {
        c.prewarm = BTreeMap::from([("echo-egress".into(), 4)]);
        c.prewarm_started = true;
    }))
    .await
    .unwrap();
    let native = Host::new(host(&[&skills], |c| c.allow_native = true))
        .await
        .unwrap();
    let native_options = InvokeOptions::default().native(true);

    // The egress proxy's image, a base image like the others (debootstrap needs root).
    let images = skillhost::build::discover_base_images(&root.join("images")).unwrap();
    let base_builder = skillhost::build::ImageBuilder::new(
        skillhost::engine::Engine::connect().await.unwrap(),
        Arc::new(|_: &str, _| {}),
    );
    skillhost::build::build_base_images(&base_builder, &images, false)
        .await
        .expect("the base images, egress-proxy among them");

    // First use builds the images, starts the workers and makes the egress gateway.
    let first = cold.invoke("echo", "say", json!({"text": "hi"})).await;
    assert_eq!(first.status, Status::Ok, "{first:?}");
    let image = first.image.unwrap();
    for _ in 0..4 {
        timed(
            &warm,
            "echo-serve",
            "hi",
            InvokeOptions::default(),
            InvocationPath::Warm,
        )
        .await;
    }
    cold_then_settled(&warm, "echo-egress").await;
    for (host, skill) in [
        (&prewarmed, "echo"),
        (&started, "echo"),
        (&egress_started, "echo-egress"),
    ] {
        host.prewarm(skill).await.unwrap();
        pool_full(host, skill).await;
    }
    let seccomp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(seccomp.path(), skillhost::testing::PROFILE_JSON.as_bytes()).unwrap();
    let request = skill_sdk::Request::new("bench", "say", json!({"text": "hi"})).to_line();

    let (mut docker, mut ours, mut egress) = (Vec::new(), Vec::new(), Vec::new());
    let (mut pre, mut pre_started, mut egress_pre) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds.latency {
        docker.push(docker_run(&image, seccomp.path(), request.as_bytes()));
        ours.push(cold_then_settled(&cold, "echo").await);
        egress.push(cold_then_settled(&warm, "echo-egress").await);
        for (host, skill, samples) in [
            (&prewarmed, "echo", &mut pre),
            (&started, "echo", &mut pre_started),
            (&egress_started, "echo-egress", &mut egress_pre),
        ] {
            let options = InvokeOptions::default();
            samples.push(timed(host, skill, "hi", options, InvocationPath::Prewarmed).await);
            // The pool refills between calls, as it would between an agent's; no refill
            // may overlap the next measurement, the docker run baseline's least of all.
            pool_full(host, skill).await;
        }
    }
    let (mut warm_lat, mut native_lat) = (Vec::new(), Vec::new());
    for _ in 0..rounds.fast {
        warm_lat.push(
            timed(
                &warm,
                "echo-serve",
                "hi",
                InvokeOptions::default(),
                InvocationPath::Warm,
            )
            .await,
        );
        native_lat.push(
            timed(
                &native,
                "echo",
                "hi",
                native_options.clone(),
                InvocationPath::Native,
            )
            .await,
        );
    }
    let base = percentile(&docker, 50);
    println!(
        "## Latency of one echo invocation ({} rounds; warm and native {})\n",
        rounds.latency, rounds.fast
    );
    println!("| path | median ms | p95 ms | ratio to docker run |");
    println!("|---|---:|---:|---:|");
    for (label, samples) in [
        ("docker run --rm -i, same flags", &docker),
        ("skillhost cold", &ours),
        ("skillhost cold, egress allowlist", &egress),
        ("skillhost prewarmed (created)", &pre),
        ("skillhost prewarmed (started to the init)", &pre_started),
        (
            "skillhost prewarmed (started), egress allowlist",
            &egress_pre,
        ),
        ("skillhost warm (serve mode)", &warm_lat),
        ("skillhost native (in process)", &native_lat),
    ] {
        let median = percentile(samples, 50);
        println!(
            "| {label} | {:.2} | {:.2} | {:.3}x |",
            ms(median),
            ms(percentile(samples, 95)),
            median.as_secs_f64() / base.as_secs_f64()
        );
    }
    let extra = ms(percentile(&egress, 50)) - ms(percentile(&ours, 50));
    let extra_pre = ms(percentile(&egress_pre, 50)) - ms(percentile(&pre_started, 50));
    println!(
        "\nan egress allowlist adds {extra:.1} ms to a cold call's median over `network: none`, \
         and {extra_pre:.1} ms to a prewarmed (started) one's"
    );

    println!("\n## Throughput, invocations per second\n");
    println!("| concurrency | cold | warm (4 workers) |");
    println!("|---:|---:|---:|");
    for concurrency in [1, 4, 8, 16] {
        let cold_rate = throughput(
            &cold,
            "echo",
            InvocationPath::Cold,
            concurrency,
            rounds.per_level.max(concurrency),
        )
        .await;
        cold.settled().await;
        let warm_rate = throughput(
            &warm,
            "echo-serve",
            InvocationPath::Warm,
            concurrency,
            rounds.fast_per_level,
        )
        .await;
        println!("| {concurrency} | {cold_rate:.1} | {warm_rate:.0} |");
    }

    println!(
        "\n## Latency against payload size (echoed back; {} rounds)\n",
        rounds.latency.min(10)
    );
    println!("| payload | cold median ms | warm median ms | native median ms |");
    println!("|---:|---:|---:|---:|");
    for (label, size) in [("1 KB", 1_000), ("100 KB", 100_000), ("1 MB", 1_000_000)] {
        let text = "x".repeat(size);
        let (mut c, mut w, mut n) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds.latency.min(10) {
            c.push(
                timed(
                    &cold,
                    "echo",
                    &text,
                    InvokeOptions::default(),
                    InvocationPath::Cold,
                )
                .await,
            );
            // The engine's teardown of the cold container must not land on the others.
            cold.settled().await;
            w.push(
                timed(
                    &warm,
                    "echo-serve",
                    &text,
                    InvokeOptions::default(),
                    InvocationPath::Warm,
                )
                .await,
            );
            n.push(
                timed(
                    &native,
                    "echo",
                    &text,
                    native_options.clone(),
                    InvocationPath::Native,
                )
                .await,
            );
        }
        println!(
            "| {label} | {:.1} | {:.2} | {:.2} |",
            ms(percentile(&c, 50)),
            ms(percentile(&w, 50)),
            ms(percentile(&n, 50))
        );
    }

    let (baseline, peak) = peak_memory_with_64_in_flight(&cold).await;
    println!("\n## Host memory with 64 cold invocations in flight\n");
    println!(
        "resident before {:.1} MiB, peak {:.1} MiB",
        baseline as f64 / 1024.0,
        peak as f64 / 1024.0
    );

    let (hits, builds) = cache_hit::measure(rounds.latency).await;
    println!(
        "\n## Cache-hit check against docker build of the unchanged context ({} rounds)\n",
        rounds.latency
    );
    println!("| | median ms | p95 ms |");
    println!("|---|---:|---:|");
    println!(
        "| skillhost cache-hit check | {:.2} | {:.2} |",
        ms(percentile(&hits, 50)),
        ms(percentile(&hits, 95))
    );
    println!(
        "| docker build (layer cache) | {:.2} | {:.2} |",
        ms(percentile(&builds, 50)),
        ms(percentile(&builds, 95))
    );
    println!(
        "\nthe cache-hit check is {:.1}x faster",
        percentile(&builds, 50).as_secs_f64() / percentile(&hits, 50).as_secs_f64()
    );

    for host in [
        &*cold,
        &prewarmed,
        &started,
        &*warm,
        &native,
        &egress_started,
    ] {
        host.shutdown().await;
    }
}
