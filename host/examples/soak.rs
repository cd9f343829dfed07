//! Soak: many invocations at once, mixing a healthy action with ones that time out, run
//! out of memory and flood stdout, then checks that every one came back exactly once with
//! the right status and that no container is left.
//!
//!     cargo run --release -p skillhost --example soak -- [COUNT] [CONCURRENCY]
//!
//! Defaults: 500 invocations at concurrency 16. Uses the probe skill of host/tests.

// A scenario or a benchmark reads best top to bottom, as one function; the 100-line
// bound is for the library (Cargo.toml, [workspace.lints.clippy]).
#![allow(clippy::too_many_lines)]

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::query_parameters::{ListContainersOptions, ListImagesOptions, RemoveImageOptions};
use futures_util::stream::{self, StreamExt};
use serde_json::json;
use skillhost::{Host, HostConfig, InvokeOptions, Status};

const SKILL: &str = "soak-probe";

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmHWM:")
                    .map(|v| v.trim().trim_end_matches(" kB").parse().unwrap_or(0))
            })
        })
        .unwrap_or(0)
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut argv = std::env::args().skip(1);
    let count: usize = argv.next().map(|a| a.parse()).transpose()?.unwrap_or(500);
    let concurrency: usize = argv.next().map(|a| a.parse()).transpose()?.unwrap_or(16);

    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/probe");
    let root = tempfile::tempdir()?;
    copy_dir(&fixture, &root.path().join(SKILL))?;
    let manifest = root.path().join(SKILL).join("skill.yaml");
    std::fs::write(
        &manifest,
        std::fs::read_to_string(&manifest)?.replace("name: FIXTURE", &format!("name: {SKILL}")),
    )?;
    let host = Arc::new(Host::new(HostConfig::new(vec![root.path().to_path_buf()])).await?);
    let warm = host.invoke(SKILL, "ok", json!({})).await;
    assert_eq!(warm.status, Status::Ok, "{warm:?}");

    // One in ten each times out, runs out of memory, floods; the rest are healthy.
    let plan = |i: usize| match i % 10 {
        7 => (
            "sleep",
            json!({"seconds": 30}),
            Some(Duration::from_secs(1)),
            Status::Timeout,
        ),
        8 => ("alloc", json!({"mb": 256}), None, Status::MemoryLimit),
        9 => ("flood", json!({}), None, Status::OutputLimit),
        _ => (
            "echo",
            json!({"data": format!("call {i}")}),
            None,
            Status::Ok,
        ),
    };
    let wrong = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let results: Vec<_> = stream::iter(0..count)
        .map(|i| {
            let (host, wrong) = (host.clone(), wrong.clone());
            async move {
                let (action, args, timeout, expected) = plan(i);
                let options = InvokeOptions::default().timeout(timeout);
                let result = host.invoke_with(SKILL, action, args, options).await;
                if result.status != expected
                    || (expected == Status::Ok
                        && result.output.as_ref().unwrap()["data"] != format!("call {i}"))
                {
                    wrong.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "call {i} ({action}): expected {expected:?}, got {:?}: {:?}",
                        result.status, result.error
                    );
                }
                result
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();

    let ids: HashSet<&str> = results.iter().map(|r| r.id.as_str()).collect();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for r in &results {
        *by_status
            .entry(
                serde_json::to_value(r.status)?
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
            .or_default() += 1;
    }
    // Results do not wait for their container's removal; the count does.
    host.settled().await;
    let docker = bollard::Docker::connect_with_defaults()?;
    let label = |l: &str| {
        Some(std::collections::HashMap::from([(
            "label".to_string(),
            vec![l.to_string()],
        )]))
    };
    let left = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: label(&format!("io.skillhost.skill={SKILL}")),
            ..Default::default()
        }))
        .await?
        .len();
    for image in docker
        .list_images(Some(ListImagesOptions {
            filters: label(&format!("io.skillhost.skill={SKILL}")),
            ..Default::default()
        }))
        .await?
    {
        let _ = docker
            .remove_image(
                &image.id,
                Some(RemoveImageOptions {
                    force: true,
                    ..Default::default()
                }),
                None,
            )
            .await;
    }

    println!(
        "invocations: {count} at concurrency {concurrency} in {:.1} s ({:.1}/s)",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64()
    );
    println!("results: {} ({} distinct ids)", results.len(), ids.len());
    println!("by status: {by_status:?}");
    println!("wrong status or output: {}", wrong.load(Ordering::Relaxed));
    println!("containers left: {left}");
    println!("host peak RSS: {} MiB", peak_rss_kib() / 1024);
    let healthy = results.len() == count
        && ids.len() == count
        && wrong.load(Ordering::Relaxed) == 0
        && left == 0;
    if !healthy {
        return Err("the soak failed; see above".into());
    }
    Ok(())
}
