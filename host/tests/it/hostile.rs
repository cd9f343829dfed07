//! A skill that attacks its sandbox, on the real engine: each attempt has an exact
//! expected outcome, and nothing may be left behind.

use crate::common;

use std::time::{Duration, Instant};

use common::probe::{assert_gone, assert_status, containers_with_label, Probe};
use common::{copy_dir, copy_fixture, ensure_base_images, host_for, skillhost, unique_name};
use serde_json::json;
use skillhost::{InvokeOptions, Status};

fn short(seconds: u64) -> InvokeOptions {
    InvokeOptions::default().timeout(Duration::from_secs(seconds))
}

#[tokio::test]
async fn the_posture_read_from_inside_is_the_hardened_one() {
    let probe = Probe::acquire();
    let p = probe.ok("posture", json!({})).await;
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(p["caps"][set], "0000000000000000", "{set} in {p}");
    }
    assert_eq!(p["no_new_privs"], "1");
    assert_eq!(p["seccomp"], "2", "a seccomp filter is in force");
    assert_eq!(
        (p["uid"].as_u64(), p["gid"].as_u64()),
        (Some(10001), Some(10001))
    );
    assert_eq!(p["groups"], json!([10001]), "no supplementary groups: {p}");
    let options = |path: &str| -> Vec<String> {
        serde_json::from_value(p["mounts"][path].clone())
            .unwrap_or_else(|_| panic!("no mount {path}: {p}"))
    };
    assert!(
        options("/").contains(&"ro".to_string()),
        "{:?}",
        options("/")
    );
    let tmp = options("/tmp");
    for flag in ["rw", "noexec", "nosuid", "nodev", "size=16384k"] {
        assert!(
            tmp.contains(&flag.to_string()),
            "/tmp lacks {flag}: {tmp:?}"
        );
    }
    assert_eq!(p["tmp_bytes"], 16 * 1024 * 1024);
    assert!(p["shm_bytes"].as_u64().unwrap() <= 1024 * 1024, "{p}");
    assert_eq!(p["interfaces"], json!(["lo"]));
    assert_eq!(p["docker_socket"], json!([]));
    assert_eq!(p["nofile"], json!([256, 256]));
}

#[tokio::test]
async fn privilege_escalation_attempts_fail() {
    let probe = Probe::acquire();
    let e = probe.ok("escape", json!({})).await;
    assert_eq!(
        e["suid_euid"], "10001",
        "a setuid-root binary must not give euid 0: {e}"
    );
    for attempt in [
        "unshare",
        "unshare_mount",
        "mount",
        "keyctl",
        "ptrace_child",
        "ptrace_init",
        "process_vm_readv",
        "clone_newuser",
        "io_uring",
    ] {
        assert_eq!(e[attempt], "Operation not permitted", "{attempt}: {e}");
    }
    assert_eq!(
        e["proc_sys"],
        "[Errno 30] Read-only file system: '/proc/sys/kernel/hostname'"
    );
}

#[tokio::test]
async fn filling_tmp_stops_at_its_size() {
    let probe = Probe::acquire();
    let out = probe.ok("tmpfill", json!({})).await;
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "{out}"
    );
    assert!(
        out["written"].as_u64().unwrap() <= 16 * 1024 * 1024,
        "{out}"
    );
}

#[tokio::test]
async fn opening_files_stops_at_the_nofile_limit() {
    let probe = Probe::acquire();
    let out = probe.ok("nofile", json!({})).await;
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .contains("Too many open files"),
        "{out}"
    );
    assert!(out["opened"].as_u64().unwrap() < 256, "{out}");
}

#[tokio::test]
async fn orphaned_grandchildren_are_reaped_by_init() {
    let probe = Probe::acquire();
    let result = probe
        .host()
        .await
        .invoke(&probe.name, "zombies", json!({}))
        .await;
    assert_status(&result, Status::Ok);
    assert_eq!(
        result.output.unwrap(),
        json!({"zombies": 0, "can_fork": true})
    );
}

#[tokio::test]
async fn a_background_process_holding_stdout_does_not_hang_the_invocation() {
    let probe = Probe::acquire();
    let host = probe.host().await;
    assert_status(&host.invoke(&probe.name, "ok", json!({})).await, Status::Ok);
    let started = Instant::now();
    let result = host.invoke(&probe.name, "background", json!({})).await;
    assert_status(&result, Status::Ok);
    // Far below the 10 s deadline the sleeper would otherwise hold it to.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited for the sleeper: {:?}",
        started.elapsed()
    );
    assert_gone(&result).await;
}

#[tokio::test]
async fn a_process_ignoring_sigterm_is_killed_at_the_deadline() {
    let probe = Probe::acquire();
    let host = probe.host().await;
    assert_status(&host.invoke(&probe.name, "ok", json!({})).await, Status::Ok);
    let started = Instant::now();
    let result = host
        .invoke_with(&probe.name, "ignore_term", json!({}), short(2))
        .await;
    assert_status(&result, Status::Timeout);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_gone(&result).await;
}

#[tokio::test]
async fn closing_stdout_early_is_protocol_error_or_timeout() {
    let probe = Probe::acquire();
    let host = probe.host().await;
    let exits = host
        .invoke(&probe.name, "close_stdout", json!({"seconds": 1}))
        .await;
    assert_status(&exits, Status::ProtocolError);
    assert!(exits.output.is_none());
    let sleeps = host
        .invoke_with(
            &probe.name,
            "close_stdout",
            json!({"seconds": 100}),
            short(2),
        )
        .await;
    assert_status(&sleeps, Status::Timeout);
    assert_gone(&sleeps).await;
}

#[tokio::test]
async fn binary_stderr_is_kept_lossily() {
    let probe = Probe::acquire();
    let result = probe
        .host()
        .await
        .invoke(&probe.name, "stderr_binary", json!({}))
        .await;
    assert_status(&result, Status::Ok);
    assert_eq!(result.logs, "before \u{fffd}\u{fffd} after\n");
}

#[tokio::test]
async fn a_child_killed_for_memory_is_reported_beside_an_ok_result() {
    let probe = Probe::acquire();
    let result = probe
        .host()
        .await
        .invoke(&probe.name, "child_alloc", json!({"mb": 512}))
        .await;
    assert_status(&result, Status::Ok);
    assert!(result.oom_killed, "{result:?}");
    assert_eq!(result.output.unwrap()["child_exit"], -9);
}

#[test]
fn sigterm_and_sigint_to_the_cli_remove_its_container() {
    // A skill of its own: the shared probe's containers from other tests would blur the count.
    let cleanup = common::ImageCleanup::default();
    let name = common::unique_name("signal");
    let dir = common::copy_fixture("probe", &name);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let count = || {
        runtime.block_on(common::probe::containers_with_label(
            "io.skillhost.skill",
            &name,
        ))
    };
    // Built first, so the signal lands during the invocation, not the image build.
    runtime.block_on(async {
        let config = skillhost::HostConfig::new(vec![dir.path().to_path_buf()]);
        let host = skillhost::Host::new(config).await.unwrap();
        let warm = host.invoke(&name, "ok", json!({})).await;
        // Registered before the assertion, which shows the whole result when it fails.
        if let Some(image) = &warm.image {
            cleanup.add(image.clone());
        }
        assert_status(&warm, Status::Ok);
        // Its container must be gone, or the wait below mistakes it for the CLI's.
        host.shutdown().await;
    });
    assert_eq!(count(), 0);
    for (signal, code) in [("-TERM", 143), ("-INT", 130)] {
        let child = skillhost()
            .arg("--skills-dir")
            .arg(dir.path())
            .args(["invoke", &name, "sleep", "--args", r#"{"seconds": 60}"#])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while count() == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the invocation never started a container"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("interrupted"), "{signal}: {stderr}");
        assert_eq!(out.status.code(), Some(code));
        assert_eq!(count(), 0, "{signal} left the container behind");
    }
}

#[tokio::test]
async fn a_runsc_skill_runs_under_gvisor_or_is_refused_clearly() {
    let cleanup = common::ImageCleanup::default();
    common::ensure_base_images();
    let name = common::unique_name("gvisor");
    let dir = common::copy_fixture("probe", &name);
    let manifest = dir.path().join(&name).join("skill.yaml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("  network: none\n", "  network: none\n  runtime: runsc\n");
    std::fs::write(&manifest, text).unwrap();
    let engine = skillhost::engine::Engine::connect().await.unwrap();
    let has_runsc = engine
        .runtimes()
        .await
        .unwrap()
        .iter()
        .any(|r| r == "runsc");
    let config = skillhost::HostConfig::new(vec![dir.path().to_path_buf()]);
    let host = skillhost::Host::new(config).await.unwrap();
    let result = host.invoke(&name, "whoami", json!({})).await;
    if let Some(image) = &result.image {
        cleanup.add(image);
    }
    if has_runsc {
        assert_status(&result, Status::Ok);
        assert_eq!(result.output.unwrap()["uid"], 10001);
    } else {
        assert_status(&result, Status::InfrastructureError);
        let error = result.error.unwrap();
        assert_eq!(error.code, "runtime_unavailable");
        assert!(
            error
                .message
                .contains("asks for the runsc runtime, which the engine"),
            "{}",
            error.message
        );
        assert!(
            error.message.contains("runc"),
            "names what the engine has: {}",
            error.message
        );
    }
}

/// A root of skills made from the users fixture, one per `run.user`, named `<base>-<i>`;
/// their images are removed when the probe-style guard drops.
fn users_skills(specs: &[&str]) -> (tempfile::TempDir, Vec<String>) {
    ensure_base_images();
    let base = unique_name("users");
    let dir = copy_fixture("users", &base);
    std::fs::remove_dir_all(dir.path().join(&base)).unwrap();
    let mut names = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let name = format!("{base}-{i}");
        let skill = dir.path().join(&name);
        copy_dir(&common::fixture("users"), &skill);
        let manifest = skill.join("skill.yaml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let text = text
            .replace("name: FIXTURE", &format!("name: {name}"))
            .replace("user: \"USER\"", &format!("user: \"{spec}\""));
        std::fs::write(&manifest, text).unwrap();
        names.push(name);
    }
    (dir, names)
}

/// Removes the users skills' images and containers, even when the test failed.
struct RemoveImagesOf(Vec<String>);

impl Drop for RemoveImagesOf {
    fn drop(&mut self) {
        for name in &self.0 {
            common::probe::remove_images_of(name);
        }
    }
}

#[tokio::test]
async fn no_image_file_makes_the_skill_root_or_group_0() {
    let specs = ["evil:evilg", "10002", "gz", "app", "app:10003", "10004"];
    let (dir, names) = users_skills(&specs);
    let _cleanup = RemoveImagesOf(names.clone());
    let host = host_for(dir.path()).await;
    // Names the image maps to uid 0 or gid 0, and a uid whose passwd entry has group 0.
    for (spec, name) in specs.iter().zip(&names).take(3) {
        let result = host.invoke(name, "whoami", json!({})).await;
        assert_status(&result, Status::Rejected);
        let error = result.error.as_ref().unwrap();
        assert_eq!(error.code, "invalid_user", "{spec}: {error:?}");
        assert!(
            error
                .message
                .contains(&format!("{name}/skill.yaml:6:9: run.user")),
            "{spec}: the manifest's position is named: {}",
            error.message
        );
        assert!(
            error.message.contains(" 0 in the image"),
            "{}",
            error.message
        );
        assert_eq!(
            containers_with_label("io.skillhost.skill", name).await,
            0,
            "{spec}: the lookup leaves nothing"
        );
    }
    // A name, and a uid with an image entry, run as their numbers with no other group:
    // root's group lists `app` as a member, which the engine would have added.
    for (spec, name, expected) in [
        ("app", &names[3], (10003, 10003)),
        ("app:10003", &names[4], (10003, 10003)),
        ("10004", &names[5], (10004, 10004)),
    ] {
        let result = host.invoke(name, "whoami", json!({})).await;
        assert_status(&result, Status::Ok);
        let out = result.output.as_ref().unwrap();
        assert_eq!(
            (out["uid"].as_u64().unwrap(), out["gid"].as_u64().unwrap()),
            expected,
            "{spec}: {out}"
        );
        assert_eq!(
            out["groups"],
            expected.1.to_string(),
            "{spec}: no group 0 or other: {out}"
        );
        assert_gone(&result).await;
    }
    host.shutdown().await;
}

#[tokio::test]
async fn a_skill_cannot_leave_a_setuid_or_setgid_file_in_its_workspace() {
    use std::os::unix::fs::MetadataExt;
    let probe = Probe::acquire();
    let (dir, options) = common::writable_workspace();
    let result = probe
        .host()
        .await
        .invoke_with(&probe.name, "setuid_copy", json!({}), options)
        .await;
    assert_status(&result, Status::Ok);
    let out = result.output.clone().unwrap();
    for attempt in ["chmod", "fchmod", "creat", "openat", "mknod"] {
        assert!(
            out[attempt]
                .as_str()
                .is_some_and(|e| e.starts_with("[Errno 1] Operation not permitted")),
            "{attempt}: {out}"
        );
    }
    assert_eq!(
        out["plain_chmod"],
        json!(null),
        "a mode without set-id bits is fine: {out}"
    );
    // What the host finds: no file with a set-id bit, no device.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let meta = entry.as_ref().unwrap().metadata().unwrap();
        assert_eq!(
            meta.mode() & 0o6000,
            0,
            "{:?} {:o}",
            entry.unwrap().path(),
            meta.mode()
        );
        assert!(meta.is_file(), "{:?} is no device", entry.unwrap().path());
    }
    assert_eq!(out["modes"], json!({"rootsh": "0o755"}), "{out}");
    if skillhost::testing::can_make_workspace_views() {
        let options = out["mount"][0].as_array().unwrap();
        for flag in ["nosuid", "nodev", "rw"] {
            assert!(
                options.contains(&json!(flag)),
                "/workspace lacks {flag}: {out}"
            );
        }
    } else {
        eprintln!("not root in the engine's mount namespace: /workspace is a plain bind here");
    }
    assert_gone(&result).await;
}
