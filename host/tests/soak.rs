//! A soak through the API: 300 mixed calls (healthy ones, timeouts, memory bombs, stdout
//! floods) at concurrency 64 against one `skillhost serve`, each checked for its status;
//! then no container of the service's host is left, and its memory has not grown with
//! the calls.
//!
//! A test binary of its own, apart from `it`: a load test whose load must be its own, not
//! shared with whatever other test the harness runs beside it.

#[path = "it/common/mod.rs"]
#[allow(dead_code)] // The soak uses a few of the helpers the other tests share.
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::probe::Probe;
use common::service::Daemon;
use futures_util::stream::{self, StreamExt};
use hyper::StatusCode;
use serde_json::json;

// 300 in `cargo test` and `.ci/run`; the long soak (`SKILLHOST_SOAK_CALLS=2000`) runs
// with the benchmarks (docs/benchmarks.md).
const DEFAULT_CALLS: usize = 300;
const CONCURRENCY: usize = 64;

fn calls() -> usize {
    std::env::var("SKILLHOST_SOAK_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_CALLS)
}
/// The daemon's resident set, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn mixed_calls_get_exactly_their_answers_and_leave_nothing() {
    let calls = calls();
    let probe = Probe::acquire();
    // Every call is admitted (64 callers, 16 running, 64 queued): the soak checks the
    // answers, not the refusals, which `serve.rs` covers.
    let daemon = Arc::new(Daemon::start(
        &probe.root,
        &[
            "--max-in-flight",
            "16",
            "--queue",
            "64",
            "--queue-wait",
            "10m",
        ],
    ));
    let plan = |i: usize| match i % 10 {
        7 => (
            "sleep",
            json!({"args": {"seconds": 30}, "timeout_ms": 300}),
            "timeout",
        ),
        8 => ("alloc", json!({"args": {"mb": 256}}), "memory_limit"),
        9 => ("flood", json!({}), "output_limit"),
        _ => ("echo", json!({"args": {"data": format!("call {i}")}}), "ok"),
    };
    // Warm up, so the first samples of memory are not the image build's.
    for i in 0..CONCURRENCY {
        let (action, body, _) = plan(i);
        daemon.invoke(&probe.name, action, body).await;
    }
    let pid = daemon.pid();
    let rss_before = rss_kib(pid);
    let answers: Vec<(usize, StatusCode, skillhost::InvocationResult)> = stream::iter(0..calls)
        .map(|i| {
            let daemon = daemon.clone();
            let name = probe.name.clone();
            async move {
                let (action, body, _) = plan(i);
                let reply = daemon.invoke(&name, action, body).await;
                (i, reply.status, reply.result())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let rss_after = rss_kib(pid);

    assert_eq!(answers.len(), calls, "exactly one answer per call");
    let mut wrong = Vec::new();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for (i, http, result) in &answers {
        let (_, _, expected) = plan(*i);
        *by_status.entry(result.status.to_string()).or_default() += 1;
        let right_output = expected != "ok"
            || result.output.as_ref().map(|o| o["data"].clone())
                == Some(json!(format!("call {i}")));
        if *http != StatusCode::OK || result.status.as_str() != expected || !right_output {
            wrong.push(format!(
                "call {i}: HTTP {http}, {} {:?}",
                result.status, result.error
            ));
        }
    }
    let ids: std::collections::HashSet<&str> =
        answers.iter().map(|(_, _, r)| r.id.as_str()).collect();
    assert_eq!(ids.len(), calls, "every answer is its own call's");
    assert!(
        wrong.is_empty(),
        "{} wrong of {calls} ({by_status:?}):\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(
        daemon.settle(Duration::from_secs(60)).await,
        0,
        "no container is left"
    );
    // Flat: the calls' results are not kept. Allocator slack and the runtime's worker
    // stacks may move it a little, so the bound is loose, never tight.
    assert!(
        rss_after < rss_before + 32 * 1024,
        "the daemon grew from {rss_before} KiB to {rss_after} KiB over {calls} calls"
    );
    eprintln!("soak: {by_status:?}; daemon RSS {rss_before} KiB before, {rss_after} KiB after");
}
