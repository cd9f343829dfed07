//! skillhost's init on the real engine: the exit and OOM kill it reports match what the
//! engine would say, a skill cannot forge its report, and images without it still run.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use skillhost::catalog::Skill;
use skillhost::engine::Engine;
use skillhost::testing::{
    container_labels, container_spec, init_command, new_key, run_once, ContainerInputs, RunAs,
    RunOutcome, RunRequest,
};
use skillhost::Status;

use common::probe::{assert_status, containers_with_label, Probe};

/// Run `action` of the probe in a container of our own making, under skillhost's init
/// (with a trailer key) or under the engine's.
async fn run(
    probe: &Probe,
    image: &str,
    action: &str,
    args: serde_json::Value,
    with_init: bool,
) -> RunOutcome {
    let engine = Engine::connect().await.unwrap();
    let skill = Skill::load(&probe.root.join(&probe.name)).unwrap();
    let inspected = engine.inspect_image(image).await.unwrap().unwrap();
    let command = init_command(&inspected).expect("skillhost's images have the init");
    let invocation = new_key();
    // Labelled as a live host's, or a host starting meanwhile reaps it as a dead one's.
    let labels = container_labels(&probe.name, &invocation);
    let spec = container_spec(&ContainerInputs {
        manifest: &skill.manifest,
        image,
        labels,
        run_as: RunAs {
            uid: 10001,
            gid: 10001,
        },
        env: &BTreeMap::new(),
        workspace: None,
        init_command: with_init.then_some(command.as_slice()),
        egress: None,
        holder: None,
    });
    let request = skill_sdk::Request::new("r-1".to_string(), action, args);
    let name = format!("{}-{}", probe.name, &new_key()[..8]);
    let outcome = run_once(
        &engine,
        &name,
        &spec,
        RunRequest {
            stdin: request.to_line().into_bytes(),
            request_id: "r-1".into(),
            timeout: Duration::from_secs(20),
            output_limit: 1 << 20,
            log_limit: 1 << 16,
            on_progress: None,
            trailer_key: with_init.then(new_key),
            egress: None,
            egress_client: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        containers_with_label("io.skillhost.invocation", &invocation).await,
        0,
        "{action}: removed"
    );
    outcome
}

async fn probe_image(probe: &Probe) -> String {
    let result = probe
        .host()
        .await
        .invoke(&probe.name, "ok", json!({}))
        .await;
    assert_status(&result, Status::Ok);
    result.image.unwrap()
}

#[tokio::test]
async fn the_init_reports_exits_and_memory_kills_as_the_engine_does() {
    let probe = Probe::acquire();
    let image = probe_image(&probe).await;
    let cases = [
        ("ok", json!({})),
        ("exit_silently", json!({})),
        ("alloc", json!({"mb": 512})),
        ("child_alloc", json!({"mb": 512})),
    ];
    for (action, args) in cases {
        let by_init = run(&probe, &image, action, args.clone(), true).await;
        let by_engine = run(&probe, &image, action, args, false).await;
        assert!(by_init.init_report.is_some(), "{action}: the init reported");
        assert!(by_engine.init_report.is_none(), "{action}");
        assert_eq!(
            (by_init.exit_code, by_init.oom_killed),
            (by_engine.exit_code, by_engine.oom_killed),
            "{action}: init and engine agree"
        );
        assert_eq!(
            by_init.decoded.result.is_some(),
            by_engine.decoded.result.is_some(),
            "{action}"
        );
    }
    // The cases above cover both ends: a clean exit and a kill for memory.
    let oom = run(&probe, &image, "alloc", json!({"mb": 512}), true).await;
    assert_eq!((oom.exit_code, oom.oom_killed), (Some(137), true));
}

#[tokio::test]
async fn the_init_reports_the_peak_memory_the_skill_reached() {
    let probe = Probe::acquire();
    let image = probe_image(&probe).await;
    const MIB: u64 = 1 << 20;
    let small = run(&probe, &image, "ok", json!({}), true).await;
    let big = run(&probe, &image, "alloc", json!({"mb": 40}), true).await;
    let (small, big) = (
        small.peak_memory_bytes().unwrap(),
        big.peak_memory_bytes().unwrap(),
    );
    // The interpreter alone takes some MiB; 40 MiB touched page by page come on top
    // (page cache charged to the cgroup varies a little between runs), and the 64m
    // limit caps it all.
    assert!(small > MIB && small < 40 * MIB, "{small}");
    assert!((40 * MIB..=64 * MIB).contains(&big), "{big}");
    assert!(big > small + 32 * MIB, "{big} after {small}");
    let by_engine = run(&probe, &image, "ok", json!({}), false).await;
    assert_eq!(
        by_engine.peak_memory_bytes(),
        None,
        "only the init knows it"
    );
}

#[tokio::test]
async fn a_skill_cannot_forge_the_init_report() {
    let probe = Probe::acquire();
    let image = probe_image(&probe).await;
    let outcome = run(&probe, &image, "forge_trailer", json!({}), true).await;
    // The forged line (wrong key) is the skill's own output, and the real exit stands.
    assert!(outcome.init_report.is_some());
    assert_eq!(outcome.exit_code, Some(3));
    assert!(
        String::from_utf8_lossy(&outcome.logs).contains("skillhost-exit:ffff"),
        "the forgery stays in the logs: {:?}",
        String::from_utf8_lossy(&outcome.logs)
    );
    assert!(outcome.decoded.protocol_error.is_some());
}

#[tokio::test]
async fn the_skill_reads_exactly_its_request_after_the_key() {
    let probe = Probe::acquire();
    let image = probe_image(&probe).await;
    let data = "x".repeat(100_000);
    let outcome = run(&probe, &image, "echo", json!({"data": data}), true).await;
    assert!(outcome.init_report.is_some());
    let output = outcome
        .decoded
        .result
        .unwrap()
        .outcome()
        .unwrap()
        .unwrap()
        .clone();
    assert_eq!(output["data"], json!(data));
}
