//! The four ways an invocation is served (cold, prewarmed, warm, native) give the same
//! results, say which path served them, and leave no container behind.

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use skillhost::{Host, HostConfig, InvocationPath, InvokeOptions, Status};

use common::probe::{assert_status, containers_with_labels};
use common::{
    copy_fixture, ensure_base_images, host_for, unique_name, workspace_root, ImageCleanup,
};

fn skills_dir() -> PathBuf {
    workspace_root().join("skills")
}

/// Containers of a skill, whatever their role, made by this process's hosts (the CLI
/// tests of other modules, which run beside these, call the bundled skills too).
async fn held_for(skill: &str) -> usize {
    containers_with_labels(&[
        format!("io.skillhost.skill={skill}"),
        format!(
            "io.skillhost.instance={}",
            skillhost::testing::instance_id()
        ),
    ])
    .await
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not happen in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn prewarmed_containers_serve_once_each_and_are_replenished() {
    // Created-only containers: the path images without skillhost's init take. Recycling
    // off: echo's plain calls would be recycled.
    let config = HostConfig::new(vec![skills_dir()])
        .prewarm(BTreeMap::from([("echo".to_string(), 2)]))
        .prewarm_started(false)
        .recycle(skillhost::RecyclePolicy::Off);
    let host = Host::new(config).await.unwrap();
    host.prewarm("echo").await.unwrap();
    wait_until("prewarming 2", || host.prewarmed_ready("echo") == 2).await;
    for text in ["one", "two", "three"] {
        let result = host.invoke("echo", "say", json!({"text": text})).await;
        assert_status(&result, Status::Ok);
        assert_eq!(result.output, Some(json!({"text": text})));
        assert_eq!(result.path, InvocationPath::Prewarmed, "{text}");
        wait_until("replenishing", || host.prewarmed_ready("echo") == 2).await;
    }
    // Calls that bring configuration of their own cannot use a prewarmed container.
    let options = InvokeOptions::default().timeout(Duration::from_secs(2));
    let result = host
        .invoke_with("echo", "say", json!({"text": "t"}), options)
        .await;
    assert_eq!(
        (result.status, result.path),
        (Status::Ok, InvocationPath::Prewarmed)
    );
    host.settled().await;
    wait_until("replenishing", || host.prewarmed_ready("echo") == 2).await;
    assert_eq!(held_for("echo").await, 2, "only the two prewarmed remain");
    host.shutdown().await;
    assert_eq!(held_for("echo").await, 0);
}

/// Running containers of `skill` made as prewarmed, with the processes in each.
async fn prewarmed_processes(skill: &str) -> Vec<(String, Vec<String>)> {
    let engine = skillhost::engine::Engine::connect().await.unwrap();
    let filters = std::collections::HashMap::from([(
        "label".to_string(),
        vec![
            format!("io.skillhost.skill={skill}"),
            "io.skillhost.invocation=prewarmed".to_string(),
        ],
    )]);
    let filters = filters
        .into_iter()
        .chain([("status".to_string(), vec!["running".to_string()])])
        .collect();
    let options = bollard::query_parameters::ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    let mut found = Vec::new();
    for container in skillhost::testing::docker(&engine)
        .list_containers(Some(options))
        .await
        .unwrap()
    {
        let id = container.id.unwrap();
        let top = skillhost::testing::docker(&engine)
            .top_processes(&id, None::<bollard::query_parameters::TopOptions>)
            .await
            .unwrap();
        let column = top.titles.unwrap().iter().position(|t| t == "CMD").unwrap();
        let commands = top
            .processes
            .unwrap_or_default()
            .into_iter()
            .map(|row| row[column].clone())
            .collect();
        found.push((id, commands));
    }
    found
}

#[tokio::test]
async fn started_prewarmed_containers_run_only_the_init_until_their_request() {
    ensure_base_images();
    let cleanup = ImageCleanup::default();
    let name = unique_name("started");
    let dir = copy_fixture("probe", &name);
    let config = HostConfig::new(vec![dir.path().to_path_buf()])
        .prewarm(BTreeMap::from([(name.clone(), 2)]))
        .prewarm_started(true);
    let host = Host::new(config).await.unwrap();
    host.prewarm(&name).await.unwrap();
    wait_until("prewarming 2", || host.prewarmed_ready(&name) == 2).await;
    // Running, but nothing of the skill yet: only the init, waiting for its key.
    let waiting = prewarmed_processes(&name).await;
    assert_eq!(waiting.len(), 2);
    for (_, commands) in &waiting {
        assert_eq!(commands.len(), 1, "{commands:?}");
        assert!(commands[0].starts_with("/.skillhost-init "), "{commands:?}");
    }
    // Each call gets a fresh process: the in-memory counter never passes 1.
    for _ in 0..3 {
        let result = host.invoke(&name, "counter", json!({})).await;
        cleanup.add(result.image.clone().unwrap());
        assert_status(&result, Status::Ok);
        assert_eq!(result.path, InvocationPath::Prewarmed);
        assert_eq!(result.output, Some(json!({"count": 1})));
        assert_eq!(result.exit_code, Some(0));
        wait_until("replenishing", || host.prewarmed_ready(&name) == 2).await;
    }
    // Limits hold as on every path.
    let result = host.invoke(&name, "alloc", json!({"mb": 512})).await;
    assert_eq!(
        (result.status, result.path),
        (Status::MemoryLimit, InvocationPath::Prewarmed)
    );
    wait_until("replenishing", || host.prewarmed_ready(&name) == 2).await;

    // A waiting container that died is not handed out: the call is still served.
    host.settled().await;
    let (dead, _) = &prewarmed_processes(&name).await[0];
    let engine = skillhost::engine::Engine::connect().await.unwrap();
    skillhost::testing::docker(&engine)
        .kill_container(
            dead,
            None::<bollard::query_parameters::KillContainerOptions>,
        )
        .await
        .unwrap();
    // Once the engine reports the exit, it has ended the attach stream too.
    let _ = skillhost::testing::docker(&engine)
        .wait_container(
            dead,
            None::<bollard::query_parameters::WaitContainerOptions>,
        )
        .next()
        .await;
    for _ in 0..2 {
        let result = host.invoke(&name, "counter", json!({})).await;
        assert_status(&result, Status::Ok);
        assert_eq!(result.output, Some(json!({"count": 1})));
    }
    host.shutdown().await;
    assert_eq!(held_for(&name).await, 0);
}

#[tokio::test]
async fn a_prestarting_skill_runs_before_its_request_and_still_serves_one_call_per_container() {
    ensure_base_images();
    let cleanup = ImageCleanup::default();
    let name = unique_name("prestart");
    let dir = copy_fixture("probe", &name);
    let manifest = dir.path().join(&name).join("skill.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("  network: none\n", "  network: none\n  prestart: true\n"),
    )
    .unwrap();
    let config = HostConfig::new(vec![dir.path().to_path_buf()])
        .prewarm(BTreeMap::from([(name.clone(), 2)]));
    let host = Host::new(config).await.unwrap();
    host.prewarm(&name).await.unwrap();
    wait_until("prewarming 2", || host.prewarmed_ready(&name) == 2).await;
    // The skill's own process is up before any request: the init and the probe.
    let waiting = prewarmed_processes(&name).await;
    assert_eq!(waiting.len(), 2);
    for (_, commands) in &waiting {
        assert_eq!(commands.len(), 2, "{commands:?}");
        assert!(
            commands.iter().any(|c| c.contains("probe.py")),
            "{commands:?}"
        );
    }
    for _ in 0..3 {
        let result = host.invoke(&name, "counter", json!({})).await;
        cleanup.add(result.image.clone().unwrap());
        assert_status(&result, Status::Ok);
        assert_eq!(result.path, InvocationPath::Prewarmed);
        assert_eq!(
            result.output,
            Some(json!({"count": 1})),
            "no request entered it before"
        );
        wait_until("replenishing", || host.prewarmed_ready(&name) == 2).await;
    }
    let env = host.invoke(&name, "env", json!({})).await;
    assert_status(&env, Status::Ok);
    assert!(
        env.output.unwrap()["env"]
            .get("SKILLHOST_INIT_PRESTART")
            .is_none(),
        "the init's switch does not reach the skill"
    );
    // A cold call of the same skill works the same way.
    let cold = host
        .invoke_with(
            &name,
            "env",
            json!({}),
            InvokeOptions::default().env(BTreeMap::from([(
                "PROBE_GREETING".to_string(),
                "hi".to_string(),
            )])),
        )
        .await;
    assert_status(&cold, Status::Ok);
    assert_eq!(cold.path, InvocationPath::Cold);
    assert_eq!(cold.output.unwrap()["env"]["PROBE_GREETING"], "hi");
    host.shutdown().await;
    assert_eq!(held_for(&name).await, 0);
}

fn serve_probe(name: &str) -> tempfile::TempDir {
    let dir = copy_fixture("probe", name);
    let manifest = dir.path().join(name).join("skill.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let text = text.replace(
        "  network: none\n",
        "  network: none\n  mode: serve\n  serve: {workers: 1, max_requests: 4}\n",
    );
    std::fs::write(&manifest, text).unwrap();
    dir
}

/// A host with a serve-mode probe of its own (one worker, four requests each), named
/// after `prefix`; the directory must live as long as the host.
async fn serve_host(prefix: &str) -> (Host, String, tempfile::TempDir) {
    ensure_base_images();
    let name = unique_name(prefix);
    let dir = serve_probe(&name);
    (host_for(dir.path()).await, name, dir)
}

#[tokio::test]
async fn warm_workers_carry_state_until_retired_and_failures_discard_them() {
    let cleanup = ImageCleanup::default();
    let (host, name, _dir) = serve_host("serve").await;
    let count = |result: &skillhost::InvocationResult| {
        assert_eq!(result.path, InvocationPath::Warm);
        assert_status(result, Status::Ok);
        result.output.as_ref().unwrap()["count"].as_u64().unwrap()
    };
    let mut counts = Vec::new();
    for _ in 0..5 {
        let result = host.invoke(&name, "counter", json!({})).await;
        cleanup.add(result.image.clone().unwrap());
        counts.push(count(&result));
    }
    assert_eq!(
        counts,
        [1, 2, 3, 4, 1],
        "one worker, retired after 4 requests"
    );

    // Each failure discards the worker: the next request meets a fresh one.
    let quick = InvokeOptions::default().timeout(Duration::from_secs(1));
    let failures = [
        ("sleep", json!({"seconds": 30}), Status::Timeout),
        ("garbage", json!({}), Status::ProtocolError),
        ("exit_silently", json!({}), Status::ProtocolError),
        ("alloc", json!({"mb": 200}), Status::MemoryLimit),
        ("flood", json!({}), Status::OutputLimit),
    ];
    for (action, args, status) in failures {
        assert_eq!(count(&host.invoke(&name, "counter", json!({})).await), 2);
        let result = host.invoke_with(&name, action, args, quick.clone()).await;
        assert_eq!(
            (result.status, result.path),
            (status, InvocationPath::Warm),
            "{action}: {result:?}"
        );
        assert_eq!(
            count(&host.invoke(&name, "counter", json!({})).await),
            1,
            "after {action}"
        );
    }
    host.shutdown().await;
    assert_eq!(held_for(&name).await, 0);
}

#[tokio::test]
async fn a_call_waiting_for_a_worker_when_the_host_shuts_down_is_refused() {
    let cleanup = ImageCleanup::default();
    let (host, name, _dir) = serve_host("serve-shutdown").await;
    // The image and the one worker exist before the calls that matter.
    let first = host.invoke(&name, "counter", json!({})).await;
    cleanup.add(first.image.clone().unwrap());
    assert_status(&first, Status::Ok);

    // One call holds the only worker; a second waits for it; the host shuts down.
    let busy = host.invoke(&name, "sleep", json!({"seconds": 8}));
    let waiting = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        host.invoke(&name, "counter", json!({})).await
    };
    let shutdown = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        host.shutdown().await;
    };
    let (busy, waiting, ()) = tokio::join!(busy, waiting, shutdown);
    assert_status(&waiting, Status::InfrastructureError);
    assert_eq!(waiting.error.unwrap().code, "host_shutting_down");
    assert_ne!(busy.status, Status::Ok, "its worker was removed under it");
    // Closed for good: a call after the shutdown starts no worker.
    let after = host.invoke(&name, "counter", json!({})).await;
    assert_eq!(after.error.unwrap().code, "host_shutting_down");
    host.settled().await;
    assert_eq!(held_for(&name).await, 0);
}

#[tokio::test]
async fn native_mode_needs_the_host_and_the_caller_to_ask() {
    let built = std::process::Command::new(env!("CARGO"))
        .args(["build", "--release", "--lib", "-p", "skill-echo"])
        .current_dir(workspace_root())
        .status()
        .unwrap();
    assert!(built.success());
    let native = InvokeOptions::default().native(true);
    let refusing = Host::new(HostConfig::new(vec![skills_dir()]))
        .await
        .unwrap();
    let result = refusing
        .invoke_with("echo", "say", json!({"text": "x"}), native.clone())
        .await;
    assert_eq!(result.status, Status::Rejected);
    assert!(result.error.unwrap().message.contains("allow_native"));

    let trusting = Host::new(HostConfig::new(vec![skills_dir()]).allow_native(true))
        .await
        .unwrap();
    let result = trusting
        .invoke_with("echo", "say", json!({"text": "in process"}), native.clone())
        .await;
    assert_eq!(
        (result.status, result.path),
        (Status::Ok, InvocationPath::Native)
    );
    assert_eq!(result.output, Some(json!({"text": "in process"})));
    assert_eq!(result.image, None, "no container, no image");
    // The same validation as every path: bad arguments never reach the library.
    let result = trusting
        .invoke_with("echo", "say", json!({"txt": 1}), native.clone())
        .await;
    assert_eq!(result.status, Status::Rejected);
    // A skill without a library is refused with the manifest key named.
    let result = trusting
        .invoke_with("python", "run", json!({"code": "1"}), native)
        .await;
    assert_eq!(result.status, Status::Rejected);
    assert!(result.error.unwrap().message.contains("native.library"));
}

#[tokio::test]
async fn echo_in_serve_mode_answers_from_one_worker() {
    let cleanup = ImageCleanup::default();
    let config = HostConfig::new(vec![workspace_root().join("host/benches/skills")]);
    let host = Host::new(config).await.unwrap();
    for i in 0..20 {
        let text = format!("warm {i}");
        let result = host
            .invoke("echo-serve", "say", json!({"text": text}))
            .await;
        cleanup.add(result.image.clone().unwrap_or_default());
        assert_eq!(
            (result.status, result.path),
            (Status::Ok, InvocationPath::Warm),
            "{result:?}"
        );
        assert_eq!(result.output, Some(json!({"text": text})));
    }
    assert_eq!(host.idle_workers("echo-serve"), 1);
    assert_eq!(held_for("echo-serve").await, 1, "one worker");
    host.shutdown().await;
    assert_eq!(held_for("echo-serve").await, 0);
}
