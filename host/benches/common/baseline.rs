//! What both benchmarks share: the hardened `docker run --rm -i` baseline and the
//! statistics.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The `p`th percentile of `samples`.
pub fn percentile(samples: &[Duration], p: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// Milliseconds, as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One `docker run --rm -i` of `image` with skillhost's hardening, fed `request`; how
/// long the whole process took.
pub fn docker_run(image: &str, seccomp: &Path, request: &[u8]) -> Duration {
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
        .arg("--security-opt")
        .arg(format!("seccomp={}", seccomp.display()))
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
        ])
        .args([
            "--log-driver",
            "none",
            "--label",
            "io.skillhost.managed=true",
            image,
        ])
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
