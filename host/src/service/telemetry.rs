//! `/metrics` in Prometheus' text format. The host counts invocations and builds through
//! the `metrics` facade as they happen; the gauges (in flight, queued, pools, workers,
//! asynchronous invocations) are read when scraped.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::AppState;

/// Buckets for every `_seconds` histogram: a warm call (sub-millisecond) to a slow build.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// The process's Prometheus recorder, installed on first use. `None` when the embedding
/// program installed a recorder of its own first.
pub(crate) fn recorder() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!("/metrics is unavailable: {e}");
                    None
                }
            }
        })
        .clone()
}

fn describe() {
    use crate::invoke::telemetry::{DURATION, ENGINE_ERRORS, INVOCATIONS, REJECTED};
    metrics::describe_counter!(
        INVOCATIONS,
        "Invocations, by skill, action, status and path."
    );
    metrics::describe_histogram!(
        DURATION,
        metrics::Unit::Seconds,
        "Seconds from a call to its result."
    );
    metrics::describe_counter!(REJECTED, "Calls refused before any container, by code.");
    metrics::describe_counter!(ENGINE_ERRORS, "Calls that failed for the engine, by code.");
    metrics::describe_counter!(OVERLOADED, "Calls refused for load (HTTP 429), by reason.");
    metrics::describe_counter!("skillhost_builds_total", "Image builds, by outcome.");
    metrics::describe_histogram!(
        "skillhost_build_duration_seconds",
        metrics::Unit::Seconds,
        "Seconds an image build took."
    );
    metrics::describe_gauge!(IN_FLIGHT, "Calls running now.");
    metrics::describe_gauge!(QUEUED, "Calls waiting for a free slot now.");
    metrics::describe_gauge!(PREWARM_READY, "Prewarmed containers ready, by skill.");
    metrics::describe_gauge!(WARM_WORKERS, "Idle warm workers, by skill.");
    metrics::describe_gauge!(
        RECYCLED_IDLE,
        "Idle recycled containers any caller may take, by skill."
    );
    metrics::describe_counter!(
        "skillhost_recycled_retired_total",
        "Recycled containers retired after a call, by skill and the reset's verdict."
    );
    metrics::describe_gauge!(ASYNC, "Asynchronous invocations remembered, by state.");
    metrics::describe_gauge!(SPARES, "Spare sessions ready to open, by skill.");
    metrics::describe_gauge!(crate::session::OPEN, "Open sessions, by skill.");
    metrics::describe_counter!(
        crate::session::ENDED,
        "Sessions ended, by skill and why: closed, idle, lifetime, shutdown, lost."
    );
    metrics::describe_counter!(
        crate::session::RESETS,
        "Process sessions whose process was lost and restarted, by skill."
    );
}

/// Calls refused for load, by reason.
pub(crate) const OVERLOADED: &str = "skillhost_overloaded_total";
const IN_FLIGHT: &str = "skillhost_in_flight";
const QUEUED: &str = "skillhost_queued";
const PREWARM_READY: &str = "skillhost_prewarm_ready";
const WARM_WORKERS: &str = "skillhost_warm_workers";
const RECYCLED_IDLE: &str = "skillhost_recycled_idle";
const ASYNC: &str = "skillhost_async_invocations";
const SPARES: &str = "skillhost_session_spares_ready";

/// The metrics as Prometheus text, the gauges read now.
pub(crate) fn render(state: &AppState) -> Option<String> {
    let handle = state.metrics.as_ref()?;
    metrics::gauge!(IN_FLIGHT).set(state.gate.in_flight() as f64);
    metrics::gauge!(QUEUED).set(state.gate.queued() as f64);
    for name in state.host.catalog().skills.keys() {
        metrics::gauge!(PREWARM_READY, "skill" => name.clone())
            .set(state.host.prewarmed_ready(name) as f64);
        metrics::gauge!(WARM_WORKERS, "skill" => name.clone())
            .set(state.host.idle_workers(name) as f64);
        metrics::gauge!(RECYCLED_IDLE, "skill" => name.clone())
            .set(state.host.idle_recycled(name) as f64);
        metrics::gauge!(SPARES, "skill" => name.clone())
            .set(state.host.spare_sessions_ready(name) as f64);
    }
    let (running, finished) = state.invocations.counts();
    metrics::gauge!(ASYNC, "state" => "running").set(running as f64);
    metrics::gauge!(ASYNC, "state" => "finished").set(finished as f64);
    Some(handle.render())
}
