//! A cold echo invocation through skillhost against `docker run --rm -i` of the same image
//! with the same hardening flags, interleaved in one run:
//! `cargo bench -p skillhost --bench invoke_latency`.
//!
//! The docker CLI appears here only as the baseline being compared against.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use skillhost::{Host, HostConfig, Status};

const ROUNDS: usize = 30;

fn percentile(samples: &[Duration], p: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn docker_run(image: &str, request: &[u8]) -> Duration {
    let started = Instant::now();
    let mut child = Command::new("docker")
        .args([
            "run",
            "--rm",
            "-i",
            "--user",
            "10001:10001",
            "--cap-drop",
            "ALL",
        ])
        .args(["--security-opt", "no-new-privileges:true", "--read-only"])
        .args([
            "--memory",
            "32m",
            "--memory-swap",
            "32m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "16",
        ])
        .args([
            "--ulimit",
            "nofile=1024:1024",
            "--tmpfs",
            "/tmp:rw,noexec,nosuid,nodev,size=1m",
        ])
        .args([
            "--shm-size",
            "1m",
            "--network",
            "none",
            "--ipc",
            "private",
            "--init",
            "--log-driver",
            "none",
        ])
        .args(["--label", "io.skillhost.managed=true", image])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the docker CLI, for the baseline");
    child.stdin.take().unwrap().write_all(request).unwrap();
    let out = child.wait_with_output().unwrap();
    let elapsed = started.elapsed();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"ok\":true"),
        "{out:?}"
    );
    elapsed
}

#[tokio::main]
async fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let config = HostConfig {
        skill_roots: vec![root.join("skills")],
        ..HostConfig::default()
    };
    let host = Host::new(config).await.expect("a Docker Engine");
    let warm = host.invoke("echo", "say", json!({"text": "hi"})).await;
    assert_eq!(warm.status, Status::Ok, "{warm:?}");
    let image = warm.image.unwrap();
    let request = skill_sdk::Request::new("bench", "say", json!({"text": "hi"})).to_line();

    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let result = host.invoke("echo", "say", json!({"text": "hi"})).await;
        ours.push(started.elapsed());
        assert_eq!(result.status, Status::Ok);
        theirs.push(docker_run(&image, request.as_bytes()));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("rounds: {ROUNDS}, interleaved");
    for (label, samples) in [
        ("skillhost invoke (cold container)", &ours),
        ("docker run --rm -i, same flags", &theirs),
    ] {
        println!(
            "{label:36} median {:>7.1} ms  p95 {:>7.1} ms",
            ms(percentile(samples, 50)),
            ms(percentile(samples, 95))
        );
    }
    println!(
        "ratio: skillhost median is {:.2}x the docker run median",
        percentile(&ours, 50).as_secs_f64() / percentile(&theirs, 50).as_secs_f64()
    );
}
