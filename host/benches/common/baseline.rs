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

/// The limits a baseline container runs with, as the skill's manifest sets them.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory: &'static str,
    pub cpus: &'static str,
    pub pids: &'static str,
    pub tmpfs: &'static str,
}

/// The echo skill's limits.
pub const ECHO: Limits = Limits {
    memory: "32m",
    cpus: "0.5",
    pids: "16",
    tmpfs: "1m",
};

/// One `docker run --rm -i` of `image` with skillhost's hardening and echo's limits, fed
/// `request`; how long the whole process took.
pub fn docker_run(image: &str, seccomp: &Path, request: &[u8]) -> Duration {
    docker_run_with(image, seccomp, request, ECHO)
}

/// [`docker_run`] with a skill's own limits.
pub fn docker_run_with(image: &str, seccomp: &Path, request: &[u8], limits: Limits) -> Duration {
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
            limits.memory,
            "--memory-swap",
            limits.memory,
            "--cpus",
            limits.cpus,
            "--pids-limit",
            limits.pids,
        ])
        .args(["--ulimit", "nofile=1024:1024", "--tmpfs"])
        .arg(format!("/tmp:rw,noexec,nosuid,nodev,size={}", limits.tmpfs))
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
    // The result frame is the last line: it must say the action succeeded.
    let answered = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .any(|frame| frame["type"] == "result" && frame["ok"] == true);
    assert!(answered, "{out:?}");
    elapsed
}
