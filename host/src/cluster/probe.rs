//! `skillhost cluster status --probe`: what each node's skillhost says of itself over
//! HTTP, where Swarm cannot tell: its `/readyz` and, with a token, its load and pools
//! from `/metrics`. Only in host mode does a node's address reach that node's task (the
//! routing mesh balances `node:port` over every task), so only then is it probed.

use std::collections::BTreeMap;

use serde::Serialize;
use skillhost_api::Readiness as Ready;

use super::{NodeReport, PublishMode, Published, Readiness};

/// What one node's skillhost answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Probe {
    /// Where it was asked: `HOST:PORT`.
    pub endpoint: String,
    /// Its `/readyz`, when that could be read.
    pub readiness: Option<Ready>,
    /// Its load and pools, from `/metrics` (which needs a token on TCP).
    pub load: Option<Load>,
    /// What could not be read, and why.
    pub errors: Vec<String>,
}

impl Probe {
    /// A node whose service answered ready, with nothing left unread but the load.
    pub fn is_ready(&self) -> bool {
        self.readiness.as_ref().is_some_and(|r| r.ready)
    }
}

/// A node's calls and pools at the moment it was probed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Load {
    /// Calls running.
    pub in_flight: u64,
    /// Calls waiting for a slot.
    pub queued: u64,
    /// Per skill.
    pub pools: BTreeMap<String, Pool>,
}

/// One skill's ready containers on a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pool {
    /// Prewarmed containers ready.
    pub prewarmed: u64,
    /// Idle warm workers.
    pub warm_workers: u64,
}

/// Where `node`'s own task answers, when the service publishes its port in host mode and
/// the node runs a task; None otherwise.
pub fn endpoint(node: &NodeReport, published: &[Published]) -> Option<String> {
    let port = published.iter().find(|p| p.mode == PublishMode::Host)?.port;
    let has_task = matches!(
        node.readiness,
        Readiness::Ready | Readiness::Starting | Readiness::NotReady
    );
    (has_task && !node.address.is_empty()).then(|| format!("{}:{port}", node.address))
}

impl Load {
    /// The load in a `/metrics` text (Prometheus' exposition format, as skillhost writes
    /// it); a line it does not know is skipped.
    pub fn from_metrics(text: &str) -> Load {
        let mut load = Load::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.trim().rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            // Gauges of counts: whole and not negative.
            let count = value.max(0.0) as u64;
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let skill = || label(labels, "skill").map(str::to_string);
            match name {
                "skillhost_in_flight" => load.in_flight = count,
                "skillhost_queued" => load.queued = count,
                "skillhost_prewarm_ready" => {
                    if let Some(skill) = skill() {
                        load.pools.entry(skill).or_default().prewarmed = count;
                    }
                }
                "skillhost_warm_workers" => {
                    if let Some(skill) = skill() {
                        load.pools.entry(skill).or_default().warm_workers = count;
                    }
                }
                _ => {}
            }
        }
        load
    }
}

/// The value of label `key` in `a="x",b="y"` (skill names need no escapes).
fn label<'t>(labels: &'t str, key: &str) -> Option<&'t str> {
    labels.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = r#"# HELP skillhost_in_flight Calls running now.
# TYPE skillhost_in_flight gauge
skillhost_in_flight 2
# TYPE skillhost_queued gauge
skillhost_queued 0
# TYPE skillhost_prewarm_ready gauge
skillhost_prewarm_ready{skill="python"} 2
skillhost_prewarm_ready{skill="echo"} 0
# TYPE skillhost_warm_workers gauge
skillhost_warm_workers{skill="echo-serve"} 1
skillhost_warm_workers{skill="python"} 0
skillhost_invocations_total{skill="echo",action="say",status="ok",path="cold"} 7
skillhost_invocation_duration_seconds_bucket{skill="echo",action="say",path="cold",le="+Inf"} 7
"#;

    #[test]
    fn the_load_is_read_from_the_gauges_and_nothing_else() {
        let load = Load::from_metrics(METRICS);
        assert_eq!(load.in_flight, 2);
        assert_eq!(load.queued, 0);
        let pools: Vec<(&str, u64, u64)> = load
            .pools
            .iter()
            .map(|(skill, p)| (skill.as_str(), p.prewarmed, p.warm_workers))
            .collect();
        assert_eq!(
            pools,
            [("echo", 0, 0), ("echo-serve", 0, 1), ("python", 2, 0)]
        );
        assert_eq!(
            Load::from_metrics("garbage\nskillhost_in_flight x\n"),
            Load::default()
        );
    }

    fn node(readiness: Readiness, address: &str) -> NodeReport {
        NodeReport {
            node: "n".into(),
            id: "i".into(),
            role: "worker".into(),
            availability: "active".into(),
            state: "ready".into(),
            address: address.into(),
            readiness,
            task_state: None,
            problems: Vec::new(),
            probe: None,
        }
    }

    #[test]
    fn only_a_task_published_in_host_mode_is_probed_at_its_nodes_address() {
        let host = [Published {
            port: 8080,
            mode: PublishMode::Host,
        }];
        let mesh = [Published {
            port: 8080,
            mode: PublishMode::Ingress,
        }];
        let ready = node(Readiness::Ready, "10.0.0.2");
        assert_eq!(endpoint(&ready, &host).as_deref(), Some("10.0.0.2:8080"));
        assert_eq!(endpoint(&ready, &mesh), None, "the mesh picks any task");
        assert_eq!(endpoint(&node(Readiness::Drained, "10.0.0.2"), &host), None);
        assert_eq!(endpoint(&node(Readiness::Ready, ""), &host), None);
    }
}
