//! Invoking actions in hardened containers, on the real engine.

use crate::common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use bollard::query_parameters::EventsOptions;
use common::probe::{assert_gone, assert_status, containers_with_label, Probe};
use common::{copy_fixture, skillhost, unique_name, ImageCleanup};
use futures_util::StreamExt;
use serde_json::{json, Value};
use skillhost::engine::Engine;
use skillhost::{Host, HostConfig, InvokeOptions, Status};

#[tokio::test]
async fn success_delivers_progress_and_output() {
    let probe = Probe::acquire();
    let host = probe.host().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let options = InvokeOptions::default().on_progress(Arc::new(move |p| {
        sink.lock().unwrap().push(p.message.clone())
    }));
    let result = host
        .invoke_with(&probe.name, "ok", json!({}), options)
        .await;
    assert_status(&result, Status::Ok);
    assert_eq!(result.output, Some(json!({"pong": true})));
    assert_eq!((result.exit_code, result.oom_killed), (Some(0), false));
    assert_eq!(*seen.lock().unwrap(), ["halfway"]);
    assert_eq!(result.stats.progress_frames, 1);
    let peak = result
        .stats
        .peak_memory_bytes
        .expect("reported by skillhost's init");
    assert!(peak > 0 && peak <= 64 << 20, "within the 64m limit: {peak}");
    assert!(result
        .image
        .as_deref()
        .unwrap()
        .starts_with(&format!("skill-{}:", probe.name)));
    assert_gone(&result).await;
}

#[tokio::test]
async fn a_skill_reported_error_is_skill_error() {
    let probe = Probe::acquire();
    let result = probe
        .host()
        .await
        .invoke(&probe.name, "fail", json!({}))
        .await;
    assert_status(&result, Status::SkillError);
    let error = result.error.as_ref().unwrap();
    assert_eq!(
        (error.code.as_str(), error.message.as_str()),
        ("probe_failed", "asked to fail")
    );
    assert_gone(&result).await;
}

#[tokio::test]
async fn a_sleeper_is_killed_at_the_deadline() {
    let probe = Probe::acquire();
    let host = probe.host().await;
    // The image is resolved first so the deadline measures the run alone.
    assert_status(&host.invoke(&probe.name, "ok", json!({})).await, Status::Ok);
    let options = InvokeOptions::default().timeout(Duration::from_secs(2));
    let started = Instant::now();
    let result = host
        .invoke_with(&probe.name, "sleep", json!({"seconds": 100}), options)
        .await;
    let elapsed = started.elapsed();
    assert_status(&result, Status::Timeout);
    assert!(elapsed < Duration::from_secs(3), "timeout took {elapsed:?}");
    assert!(
        elapsed >= Duration::from_secs(2),
        "killed early: {elapsed:?}"
    );
    assert_gone(&result).await;
}

#[tokio::test]
async fn a_memory_hog_is_memory_limit_and_the_next_call_succeeds() {
    let probe = Probe::acquire();
    let host = probe.host().await;
    let result = host.invoke(&probe.name, "alloc", json!({"mb": 512})).await;
    assert_status(&result, Status::MemoryLimit);
    assert!(result.oom_killed);
    assert_eq!(result.exit_code, Some(137));
    assert_gone(&result).await;
    let next = host.invoke(&probe.name, "ok", json!({})).await;
    assert_status(&next, Status::Ok);
}

#[tokio::test]
async fn an_output_flood_is_output_limit() {
    let probe = Probe::acquire();
    let result = probe
        .host()
        .await
        .invoke(&probe.name, "flood", json!({}))
        .await;
    assert_status(&result, Status::OutputLimit);
    assert!(result.stats.stdout_bytes > 2 * 1024 * 1024);
    // Killed promptly: far below what the 10 s deadline would allow to pile up.
    assert!(
        result.stats.stdout_bytes < 64 * 1024 * 1024,
        "{}",
        result.stats.stdout_bytes
    );
    assert_gone(&result).await;
}

#[tokio::test]
async fn an_output_that_breaks_its_declared_schema_is_protocol_error() {
    let probe = Probe::acquire();
    let host = probe.host().await;
    let kept = host.invoke(&probe.name, "contract", json!({"n": 3})).await;
    assert_status(&kept, Status::Ok);
    assert_eq!(kept.output, Some(json!({"n": 3})));
    let broken = host
        .invoke(&probe.name, "contract", json!({"n": "three"}))
        .await;
    assert_status(&broken, Status::ProtocolError);
    assert_eq!(broken.output, None);
    let error = broken.error.unwrap();
    assert_eq!(error.code, skillhost::api::codes::OUTPUT_SCHEMA);
    assert!(error.message.contains("/n: "), "{}", error.message);
    let details = error.details.unwrap();
    assert_eq!(details["problems"][0]["path"], "/n");
    assert_eq!(details["output"], json!({"n": "three"}));
}

#[tokio::test]
async fn garbage_on_stdout_is_protocol_error() {
    let probe = Probe::acquire();
    let host = probe.host().await;
    let result = host.invoke(&probe.name, "garbage", json!({})).await;
    assert_status(&result, Status::ProtocolError);
    let message = &result.error.as_ref().unwrap().message;
    assert!(
        message.starts_with("stdout line 1 is not a protocol frame: expected"),
        "{message}"
    );
    assert!(message.contains("this is not a frame"), "{message}");
    let silent = host.invoke(&probe.name, "exit_silently", json!({})).await;
    assert_status(&silent, Status::ProtocolError);
    assert!(silent
        .error
        .unwrap()
        .message
        .contains("without writing a result"));
}

#[tokio::test]
async fn a_fork_bomb_is_contained_and_still_answers() {
    let probe = Probe::acquire();
    let result = probe
        .host()
        .await
        .invoke(&probe.name, "forkbomb", json!({}))
        .await;
    assert_status(&result, Status::Ok);
    let output = result.output.as_ref().unwrap();
    let forks = output["forks"].as_u64().unwrap();
    assert!(forks < 64, "the pids limit of 64 held: {forks} forks");
    assert!(
        output["error"]
            .as_str()
            .unwrap()
            .contains("Resource temporarily unavailable"),
        "{output}"
    );
    assert_gone(&result).await;
}

#[tokio::test]
async fn network_none_blocks_a_tcp_connect_that_bridge_allows() {
    let probe = Probe::acquire();
    let engine = Engine::connect().await.unwrap();
    let bridge = skillhost::testing::docker(&engine)
        .inspect_network(
            "bridge",
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .unwrap();
    let ipam = bridge.ipam.unwrap().config.unwrap().remove(0);
    // Older engines list only the subnet; the gateway (docker0) is its first address.
    let gateway = ipam.gateway.unwrap_or_else(|| {
        let subnet = ipam.subnet.unwrap();
        let network: std::net::Ipv4Addr = subnet.split('/').next().unwrap().parse().unwrap();
        std::net::Ipv4Addr::from(u32::from(network) + 1).to_string()
    });
    // A listener of our own on this machine, reachable from the bridge network.
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accept = tokio::spawn(async move { listener.accept().await.is_ok() });
    let args = json!({"host": gateway, "port": port});

    let isolated = probe
        .host()
        .await
        .invoke(&probe.name, "connect", args.clone())
        .await;
    assert_status(&isolated, Status::Ok);
    let output = isolated.output.as_ref().unwrap();
    assert!(
        output["error"]
            .as_str()
            .unwrap()
            .contains("Network is unreachable"),
        "{output}"
    );
    assert_eq!(output["interfaces"], json!(["lo"]));

    // The same probe with network: bridge does connect, so the refusal above is the
    // network mode, not a broken test.
    let cleanup = ImageCleanup::default();
    let name = unique_name("bridged");
    let dir = copy_fixture("probe", &name);
    let manifest = dir.path().join(&name).join("skill.yaml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("network: none", "network: bridge");
    std::fs::write(&manifest, text).unwrap();
    let host = Host::new(HostConfig::new(vec![dir.path().to_path_buf()]))
        .await
        .unwrap();
    let bridged = host.invoke(&name, "connect", args).await;
    cleanup.add(bridged.image.clone().unwrap());
    assert_status(&bridged, Status::Ok);
    assert_eq!(
        bridged.output.as_ref().unwrap()["error"],
        Value::Null,
        "{bridged:?}"
    );
    assert!(accept.await.unwrap());
}

#[tokio::test]
async fn the_root_filesystem_is_read_only_and_tmp_is_writable() {
    let probe = Probe::acquire();
    let output = probe.ok("fs", json!({})).await;
    assert!(
        output["root_error"]
            .as_str()
            .unwrap()
            .contains("Read-only file system"),
        "{output}"
    );
    assert!(output["etc_error"].as_str().is_some(), "{output}");
    assert_eq!(output["tmp_error"], Value::Null, "{output}");
}

#[tokio::test]
async fn the_uid_is_the_manifests_even_when_the_image_says_root() {
    let probe = Probe::acquire();
    let result = probe
        .host()
        .await
        .invoke(&probe.name, "whoami", json!({}))
        .await;
    assert_status(&result, Status::Ok);
    assert_eq!(
        result.output,
        Some(json!({"uid": 10001, "gid": 10001, "euid": 10001}))
    );
}

#[tokio::test]
async fn only_allowlisted_env_reaches_the_skill() {
    let probe = Probe::acquire();
    let host = probe.host().await;
    let options =
        InvokeOptions::default().env([("PROBE_GREETING".to_string(), "hello".to_string())].into());
    let result = host
        .invoke_with(&probe.name, "env", json!({}), options)
        .await;
    assert_status(&result, Status::Ok);
    let env = result.output.unwrap()["env"].as_object().unwrap().clone();
    assert_eq!(env["PROBE_GREETING"], "hello");
    // Besides the allowlisted name: the image's own ENV and what the engine always sets.
    let engine = Engine::connect().await.unwrap();
    let image = skillhost::testing::docker(&engine)
        .inspect_image(result.image.as_deref().unwrap())
        .await
        .unwrap();
    let mut expected: Vec<String> = image.config.unwrap().env.unwrap_or_default();
    expected
        .iter_mut()
        .for_each(|e| *e = e.split('=').next().unwrap().to_string());
    expected.extend(["HOSTNAME", "HOME", "PROBE_GREETING"].map(String::from));
    for name in env.keys() {
        assert!(
            expected.contains(name),
            "{name} reached the container from elsewhere"
        );
    }
    let options = InvokeOptions::default().env([("SECRET".to_string(), "x".to_string())].into());
    let refused = host
        .invoke_with(&probe.name, "env", json!({}), options)
        .await;
    assert_status(&refused, Status::Rejected);
    assert!(refused
        .error
        .unwrap()
        .message
        .contains("SECRET is not in the manifest's run.env allowlist"));
}

#[tokio::test]
async fn large_input_and_large_output_at_once_complete() {
    let probe = Probe::acquire();
    let data = "x".repeat(900 * 1024);
    let output = probe.ok("echo", json!({"data": data})).await;
    assert_eq!(output["len"], 900 * 1024);
    assert_eq!(output["data"].as_str().unwrap().len(), 900 * 1024);
}

#[tokio::test]
async fn rejections_happen_before_any_container_exists() {
    let probe = Probe::acquire();
    let host = probe.host().await;
    let engine = Engine::connect().await.unwrap();
    let since = chrono_seconds();
    let cases = [
        ("sleep", json!({"seconds": "long"}), "invalid_args"),
        ("sleep", json!({}), "invalid_args"),
        ("nosuch", json!({}), "unknown_action"),
        (
            "echo",
            json!({"data": "x".repeat(2 * 1024 * 1024)}),
            "input_too_large",
        ),
    ];
    let mut rejected = Vec::new();
    for (action, args, code) in cases {
        let result = host.invoke(&probe.name, action, args).await;
        rejected.push(result.id.clone());
        assert_status(&result, Status::Rejected);
        assert_eq!(result.error.as_ref().unwrap().code, code);
        assert_eq!(
            result.image, None,
            "rejected before even resolving the image"
        );
    }
    let too_long = InvokeOptions::default().timeout(Duration::from_secs(11));
    let result = host
        .invoke_with(&probe.name, "ok", json!({}), too_long)
        .await;
    assert_status(&result, Status::Rejected);
    rejected.push(result.id);
    let unknown = host.invoke("no-such-skill", "ok", json!({})).await;
    assert_status(&unknown, Status::Rejected);

    // The engine's own record: no container of this skill was created meanwhile by us.
    let options = EventsOptions {
        since: Some(since.to_string()),
        until: Some((chrono_seconds() + 1).to_string()),
        filters: Some(HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("event".to_string(), vec!["create".to_string()]),
            (
                "label".to_string(),
                vec![
                    format!("io.skillhost.instance={}", host.instance_id()),
                    format!("io.skillhost.skill={}", probe.name),
                ],
            ),
        ])),
    };
    let created: Vec<_> = skillhost::testing::docker(&engine)
        .events(Some(options))
        .collect()
        .await;
    let ids: Vec<String> = created
        .into_iter()
        .filter_map(|e| {
            e.ok()?
                .actor?
                .attributes?
                .get("io.skillhost.invocation")
                .cloned()
        })
        .collect();
    assert!(
        rejected.iter().all(|id| !ids.contains(id)),
        "created for a rejected call: {ids:?}"
    );
}

fn chrono_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn eight_concurrent_invocations_each_get_their_own_tmp() {
    let probe = Probe::acquire();
    let host = probe.host().await;
    let calls =
        (0..8).map(|i| host.invoke(&probe.name, "tmpfile", json!({"tag": format!("call-{i}")})));
    let results = futures_util::future::join_all(calls).await;
    let mut ids = std::collections::HashSet::new();
    for (i, result) in results.iter().enumerate() {
        assert_status(result, Status::Ok);
        let output = result.output.as_ref().unwrap();
        assert_eq!(
            output["previous"],
            Value::Null,
            "call {i} saw another's /tmp"
        );
        assert_eq!(output["readback"], format!("call-{i}"));
        assert!(ids.insert(result.id.clone()));
        assert_gone(result).await;
    }
}

#[tokio::test]
async fn workspace_files_round_trip() {
    let probe = Probe::acquire();
    let (dir, options) = common::writable_workspace();
    std::fs::write(dir.path().join("in.txt"), "from the caller").unwrap();
    let result = probe
        .host()
        .await
        .invoke_with(&probe.name, "workspace", json!({}), options)
        .await;
    assert_status(&result, Status::Ok);
    assert_eq!(result.output.unwrap()["read"], "from the caller");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.txt")).unwrap(),
        "FROM THE CALLER"
    );
}

#[tokio::test]
async fn a_dropped_invocation_removes_its_container() {
    let cleanup = ImageCleanup::default();
    let name = unique_name("dropped");
    let dir = copy_fixture("probe", &name);
    let host = Host::new(HostConfig::new(vec![dir.path().to_path_buf()]))
        .await
        .unwrap();
    let warm = host.invoke(&name, "ok", json!({})).await;
    cleanup.add(warm.image.clone().unwrap());
    let abandoned = tokio::time::timeout(
        Duration::from_secs(2),
        host.invoke(&name, "sleep", json!({"seconds": 30})),
    )
    .await;
    assert!(
        abandoned.is_err(),
        "the invocation should still have been running"
    );
    assert_eq!(containers_with_label("io.skillhost.skill", &name).await, 0);
}

#[tokio::test]
async fn containers_of_dead_host_instances_are_removed_at_start() {
    let cleanup = ImageCleanup::default();
    let name = unique_name("leftover");
    let dir = copy_fixture("probe", &name);
    let config = HostConfig::new(vec![dir.path().to_path_buf()]);
    let host = Host::new(config.clone()).await.unwrap();
    let image = host.invoke(&name, "ok", json!({})).await.image.unwrap();
    cleanup.add(&image);
    // The result did not wait for its container's removal; the count below does.
    host.settled().await;
    // A container as a host that died would have left it: same machine, a pid that is gone.
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let engine = Engine::connect().await.unwrap();
    let labels = HashMap::from([
        ("io.skillhost.managed".to_string(), "true".to_string()),
        ("io.skillhost.skill".to_string(), name.clone()),
        (
            "io.skillhost.instance".to_string(),
            format!("{}:999999999:1", hostname.trim()),
        ),
    ]);
    let body = bollard::models::ContainerCreateBody {
        image: Some(image),
        labels: Some(labels),
        ..Default::default()
    };
    let created = skillhost::testing::docker(&engine)
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            body,
        )
        .await
        .unwrap();
    // Removes it even when an assertion below fails.
    let _guard = skillhost::testing::guard_container(&engine, created.id);
    assert_eq!(containers_with_label("io.skillhost.skill", &name).await, 1);
    let _fresh = Host::new(config).await.unwrap();
    assert_eq!(containers_with_label("io.skillhost.skill", &name).await, 0);
}

#[test]
fn the_cli_invokes_echo_as_the_readme_says() {
    let _cleanup = common::cleanup_if_built_now("echo");
    let out = common::run_ok(&[
        "invoke",
        "echo",
        "say",
        "--args",
        r#"{"text":"hi"}"#,
        "--format",
        "json",
    ]);
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["status"], "ok");
    assert_eq!(result["output"], json!({"text": "hi"}));

    let out = skillhost()
        .args(["invoke", "echo", "say", "--args", "{not json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the arguments in --args are not JSON"));
}

#[test]
fn the_cli_runs_python_code() {
    let _cleanup = common::cleanup_if_built_now("python");
    let out = common::run_ok(&[
        "invoke",
        "python",
        "run",
        "--args",
        r#"{"code":"print(1+1)"}"#,
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2\n");
}

#[test]
fn a_closed_stdout_ends_the_cli_quietly() {
    // The reader goes away before the result is written, as `| head -c 10` does.
    let mut child = skillhost()
        .args(["invoke", "echo", "say", "--args", r#"{"text":"hi"}"#])
        .args(["--format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "the call's own exit code: {stderr}"
    );
}
