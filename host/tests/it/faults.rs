//! Host faults on the real engine: a host process killed with SIGKILL mid-flight.

use crate::common;

use std::time::{Duration, Instant};

use common::probe::containers_with_label;
use serde_json::json;
use skillhost::{Host, HostConfig, InvokeOptions};

const HELPER_ROOT: &str = "SKILLHOST_TEST_HELPER_ROOT";
const HELPER_SKILL: &str = "SKILLHOST_TEST_HELPER_SKILL";

/// Run by `a_host_killed_mid_flight_...` in a child process of this test binary: a host
/// with 8 invocations in flight, waiting to be killed.
#[tokio::test]
#[ignore = "a helper process, started by a_host_killed_mid_flight_leaves_containers_the_next_host_removes"]
async fn helper_host_with_eight_invocations_in_flight() {
    let root = std::env::var(HELPER_ROOT).expect("started by the fault test");
    let skill = std::env::var(HELPER_SKILL).expect("started by the fault test");
    let host = Host::new(HostConfig::new(vec![root.into()])).await.unwrap();
    let calls = (0..8).map(|_| {
        let options = InvokeOptions::default();
        host.invoke_with(&skill, "sleep", json!({"seconds": 9}), options)
    });
    futures_util::future::join_all(calls).await;
    panic!("the helper should have been killed before its invocations ended");
}

#[tokio::test]
async fn a_host_killed_mid_flight_leaves_containers_the_next_host_removes() {
    common::ensure_base_images();
    let cleanup = common::ImageCleanup::default();
    let name = common::unique_name("crash");
    let dir = common::copy_fixture("probe", &name);
    let config = HostConfig::new(vec![dir.path().to_path_buf()]);
    // Build the image here, so the helper only invokes. Its call's container must be gone
    // before the helper's are counted: one still being removed would pass for the
    // helper's eighth, and vanish.
    let builder = Host::new(config.clone()).await.unwrap();
    let warm = builder.invoke(&name, "ok", json!({})).await;
    cleanup.add(warm.image.clone().unwrap());
    builder.shutdown().await;
    assert_eq!(containers_with_label("io.skillhost.skill", &name).await, 0);

    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "faults::helper_host_with_eight_invocations_in_flight",
        ])
        .env(HELPER_ROOT, dir.path())
        .env(HELPER_SKILL, &name)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while containers_with_label("io.skillhost.skill", &name).await < 8 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the helper never had 8 containers"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    helper.kill().unwrap(); // SIGKILL: no destructor, no guard runs
    helper.wait().unwrap();
    assert_eq!(
        containers_with_label("io.skillhost.skill", &name).await,
        8,
        "left behind, as a crash would"
    );

    let restarted = Instant::now();
    let _next = Host::new(config).await.unwrap();
    let took = restarted.elapsed();
    assert_eq!(containers_with_label("io.skillhost.skill", &name).await, 0);
    assert!(
        took < Duration::from_secs(5),
        "the next host start took {took:?} to clean up"
    );
}

/// Whether container `id` runs the probe's own process (beside its init).
async fn runs_the_skill(engine: &skillhost::engine::Engine, id: &str) -> bool {
    let Ok(top) = skillhost::testing::docker(engine)
        .top_processes(id, None::<bollard::query_parameters::TopOptions>)
        .await
    else {
        return false;
    };
    let Some(column) = top
        .titles
        .unwrap_or_default()
        .iter()
        .position(|t| t == "CMD")
    else {
        return false;
    };
    top.processes
        .unwrap_or_default()
        .iter()
        .any(|row| row.get(column).is_some_and(|cmd| cmd.contains("probe.py")))
}

/// The engine stopping a container mid-call (`docker stop`, as it does to every container
/// when it shuts down) is the engine's failure: `infrastructure_error`, never the skill's
/// crash and never `ok`. A skill signalling its own PID 1 stays the skill's crash.
#[tokio::test]
async fn an_engine_stop_mid_call_is_infrastructure_error_not_a_crash() {
    let probe = common::probe::Probe::acquire();
    let host = std::sync::Arc::new(probe.host().await);
    let name = probe.name.clone();
    // Named ahead, so its container is told from other tests' calls of the shared probe.
    let invocation = common::unique_name("engine-stop");
    let call = {
        let (host, name) = (host.clone(), name.clone());
        let options = skillhost::InvokeOptions::default().id(invocation.clone());
        tokio::spawn(async move {
            host.invoke_with(&name, "sleep", json!({"seconds": 30}), options)
                .await
        })
    };
    let engine = skillhost::engine::Engine::connect().await.unwrap();
    let options = bollard::query_parameters::ListContainersOptions {
        filters: Some(std::collections::HashMap::from([
            (
                "label".to_string(),
                vec![format!("io.skillhost.invocation={invocation}")],
            ),
            ("status".to_string(), vec!["running".to_string()]),
        ])),
        ..Default::default()
    };
    let started = Instant::now();
    // Stopped only once the skill's own process runs: the init installs its signal
    // forwarding before it starts the skill, and a SIGTERM that reaches a PID 1 without a
    // handler is dropped by the kernel (the call would then end in its timeout).
    let id = loop {
        let running = skillhost::testing::docker(&engine)
            .list_containers(Some(options.clone()))
            .await
            .unwrap();
        if let Some(id) = running.into_iter().find_map(|c| c.id) {
            if runs_the_skill(&engine, &id).await {
                break id;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no container ran the skill"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    skillhost::testing::docker(&engine)
        .stop_container(&id, None::<bollard::query_parameters::StopContainerOptions>)
        .await
        .unwrap();
    let result = call.await.unwrap();
    assert_eq!(
        result.status,
        skillhost::Status::InfrastructureError,
        "{result:?}"
    );
    assert_eq!(result.error.as_ref().unwrap().code, "engine_stopped");
    assert_eq!(result.exit_code, Some(143));

    let own = host.invoke(&name, "term_pid1", json!({})).await;
    assert_eq!(own.status, skillhost::Status::Crashed, "{own:?}");
    assert_eq!(own.exit_code, Some(143));
    // A signal queued with a forged sender (si_pid 0) is still the skill's own doing.
    let forged = host.invoke(&name, "queue_term_pid1", json!({})).await;
    assert_eq!(forged.status, skillhost::Status::Crashed, "{forged:?}");
    assert_eq!(forged.exit_code, Some(143));
    host.shutdown().await;
    common::probe::assert_gone(&result).await;
    common::probe::assert_gone(&own).await;
    common::probe::assert_gone(&forged).await;
}
