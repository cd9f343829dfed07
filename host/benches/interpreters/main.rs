//! The code interpreters benchmark, every figure from one run on one machine:
//! `cargo bench -p skillhost --bench interpreters` (add `-- --quick` for fewer rounds).
//!
//! For each bundled code runner, one small program run in a prewarmed container (started
//! up to the init, its runner waiting: python-data's with the scientific stack imported)
//! through a `Host`, against a hardened `docker run --rm -i` of the same request on the
//! same image with the skill's limits, in the same run:
//!
//! - python-data: `import pandas, matplotlib; print(1)`;
//! - node: `console.log(1+1)`;
//! - python: `print(1+1)`.
//!
//! Prints a Markdown table; leaves no container behind.

#[path = "../common/baseline.rs"]
mod baseline;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use baseline::{docker_run_with, ms, percentile, Limits};
use serde_json::json;
use skillhost::{Host, HostConfig, InvocationPath, Status};

/// A runner, its program, and the limits of its manifest (for the baseline).
struct Case {
    skill: &'static str,
    code: &'static str,
    limits: Limits,
    /// How long a new container's runner takes to be ready beyond its start (imports).
    settle: Duration,
}

const POOL: u32 = 2;

/// The limits of the python and node manifests.
const RUNNER: Limits = Limits {
    memory: "256m",
    cpus: "1",
    pids: "64",
    tmpfs: "64m",
};

async fn pool_full(host: &Host, skill: &str, settle: Duration) {
    host.settled().await;
    while host.prewarmed_ready(skill) < POOL as usize {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(settle).await;
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 5 } else { 15 };
    let cases = [
        Case {
            skill: "python-data",
            code: "import pandas, matplotlib; print(1)",
            limits: Limits {
                memory: "1g",
                cpus: "1",
                pids: "64",
                tmpfs: "256m",
            },
            settle: Duration::from_secs(4),
        },
        Case {
            skill: "node",
            code: "console.log(1+1)",
            limits: RUNNER,
            settle: Duration::from_millis(500),
        },
        Case {
            skill: "python",
            code: "print(1+1)",
            limits: RUNNER,
            settle: Duration::from_millis(500),
        },
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let prewarm: BTreeMap<String, u32> =
        cases.iter().map(|c| (c.skill.to_string(), POOL)).collect();
    // Recycling off: a prewarmed call is the one measured here.
    let config = HostConfig::new(vec![root.join("skills")])
        .prewarm(prewarm)
        .recycle(skillhost::RecyclePolicy::Off);
    let host = Host::new(config)
        .await
        .expect("a Docker Engine, and the base images (skillhost images build)");
    let seccomp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(seccomp.path(), skillhost::testing::PROFILE_JSON.as_bytes()).unwrap();

    println!("\n## Code interpreters: a prewarmed call against docker run\n");
    println!("Rounds: {rounds}. Through the library, a pool of {POOL} containers started up to the init.\n");
    println!("| skill | code | prewarmed median ms | p95 ms | docker run median ms | p95 ms | median / docker run |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for case in &cases {
        let args = json!({ "code": case.code });
        // The first call builds the image; the pool fills after it.
        let first = host.invoke(case.skill, "run", args.clone()).await;
        assert_eq!(first.status, Status::Ok, "{first:?}");
        let image = first.image.clone().unwrap();
        host.prewarm(case.skill).await.unwrap();
        let request = skill_sdk::Request::new("bench", "run", args.clone()).to_line();
        let (mut ours, mut docker) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            pool_full(&host, case.skill, case.settle).await;
            let started = Instant::now();
            let result = host.invoke(case.skill, "run", args.clone()).await;
            ours.push(started.elapsed());
            assert_eq!(result.status, Status::Ok, "{result:?}");
            assert_eq!(result.path, InvocationPath::Prewarmed, "{result:?}");
            docker.push(docker_run_with(
                &image,
                seccomp.path(),
                request.as_bytes(),
                case.limits,
            ));
        }
        let (median, base) = (percentile(&ours, 50), percentile(&docker, 50));
        println!(
            "| {} | `{}` | {:.1} | {:.1} | {:.1} | {:.1} | {:.3}x |",
            case.skill,
            case.code,
            ms(median),
            ms(percentile(&ours, 95)),
            ms(base),
            ms(percentile(&docker, 95)),
            ms(median) / ms(base)
        );
    }
    host.shutdown().await;
}
