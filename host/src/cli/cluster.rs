//! `skillhost cluster status`: the skillhost service of a swarm, node by node, from a
//! manager's engine API (see `skillhost::cluster`), and with `--probe` from each node's
//! own service.

use std::time::Duration;

use clap::Subcommand;
use skillhost::api::exit_code;
use skillhost::cluster::{self, ClusterStatus, Load, Probe, PublishMode, Readiness};
use skillhost::engine::Engine;
use skillhost::Error;

use super::remote::{self, Server};
use super::{output, Format};

/// How long one node's service may take to answer a probe: a node the manager cannot
/// reach must not hold up the report of the others.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Each node of the swarm: its availability, its skillhost task and whether that task
    /// is ready, and why not. Exits 0 when every active node is ready, 3 otherwise.
    Status {
        /// The skillhost service [default: the one labelled io.skillhost.role=serve].
        #[arg(long)]
        service: Option<String>,
        /// Also ask each node's service at the node's address and the published port:
        /// its /readyz and, with SKILLHOST_TOKEN, its calls in flight and pools from
        /// /metrics. Host mode only: the routing mesh balances a node's port over every
        /// task.
        #[arg(long)]
        probe: bool,
    },
}

pub(super) async fn run(command: ClusterCommand, format: Format) -> Result<i32, Error> {
    let ClusterCommand::Status { service, probe } = command;
    let engine = Engine::connect().await?;
    let mut status = cluster::status(&engine, service.as_deref()).await?;
    if probe {
        if !status.published.iter().any(|p| p.mode == PublishMode::Host) {
            errln!(
                "skillhost cluster status: --probe needs the service's port published in host mode; {} publishes {}",
                status.service,
                published_words(&status)
            );
            return Ok(exit_code::USAGE);
        }
        probe_nodes(&mut status).await;
    }
    match format {
        Format::Json => output::json(&status),
        Format::Human => print(&status),
    }
    let all_ready = status
        .nodes
        .iter()
        .filter(|n| n.availability == "active" && n.readiness != Readiness::NoTask)
        .all(|n| n.readiness == Readiness::Ready && n.probe.as_ref().is_none_or(Probe::is_ready));
    Ok(if all_ready {
        exit_code::OK
    } else {
        exit_code::INFRASTRUCTURE
    })
}

fn published_words(status: &ClusterStatus) -> String {
    if status.published.is_empty() {
        return "no port".into();
    }
    status
        .published
        .iter()
        .map(|p| format!("{} ({})", p.port, p.mode))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every node with a task, at once.
async fn probe_nodes(status: &mut ClusterStatus) {
    let token = std::env::var("SKILLHOST_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let published = status.published.clone();
    let probes = status.nodes.iter().map(|node| {
        let endpoint = cluster::probe_endpoint(node, &published);
        let token = token.as_deref();
        async move {
            match endpoint {
                Some(endpoint) => Some(probe_one(endpoint, token).await),
                None => None,
            }
        }
    });
    let probes = futures_util::future::join_all(probes).await;
    for (node, probe) in status.nodes.iter_mut().zip(probes) {
        node.probe = probe;
    }
}

async fn probe_one(endpoint: String, token: Option<&str>) -> Probe {
    let server = Server::Tcp(endpoint.clone());
    let mut probe = Probe {
        endpoint,
        ..Probe::default()
    };
    match tokio::time::timeout(PROBE_TIMEOUT, remote::ready(&server)).await {
        Ok(Ok(readiness)) => probe.readiness = Some(readiness),
        Ok(Err(e)) => probe.errors.push(format!("readiness: {e}")),
        Err(_) => probe.errors.push(format!(
            "readiness: {server} did not answer within {PROBE_TIMEOUT:?}"
        )),
    }
    if probe.readiness.is_none() {
        return probe;
    }
    let Some(token) = token else {
        probe
            .errors
            .push("load: set SKILLHOST_TOKEN to read /metrics".into());
        return probe;
    };
    match tokio::time::timeout(PROBE_TIMEOUT, remote::metrics(&server, Some(token))).await {
        Ok(Ok(text)) => probe.load = Some(Load::from_metrics(&text)),
        Ok(Err(e)) => probe.errors.push(format!("load: {e}")),
        Err(_) => probe.errors.push(format!(
            "load: {server} did not answer within {PROBE_TIMEOUT:?}"
        )),
    }
    probe
}

fn print(status: &ClusterStatus) {
    outln!("service {}", status.service);
    outln!(
        "{:<20} {:<8} {:<8} {:<13} {:<10} READINESS",
        "NODE",
        "ROLE",
        "STATE",
        "AVAILABILITY",
        "TASK"
    );
    for node in &status.nodes {
        outln!(
            "{:<20} {:<8} {:<8} {:<13} {:<10} {}",
            node.node,
            node.role,
            node.state,
            node.availability,
            node.task_state.as_deref().unwrap_or("-"),
            serde_json::to_value(node.readiness)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        );
        for problem in &node.problems {
            outln!("    {problem}");
        }
        for line in node.probe.iter().flat_map(probe_lines) {
            outln!("    {line}");
        }
    }
}

/// A probe's lines under its node in the table.
fn probe_lines(probe: &Probe) -> Vec<String> {
    let said = match &probe.readiness {
        Some(r) if r.ready => "ready".to_string(),
        Some(r) => format!("not ready: {}", r.problems.join("; ")),
        None => "no answer".to_string(),
    };
    let mut lines = vec![format!("{} says {said}", probe.endpoint)];
    if let Some(load) = &probe.load {
        let pools: Vec<String> = load
            .pools
            .iter()
            .filter(|(_, p)| p.prewarmed > 0 || p.warm_workers > 0)
            .map(|(skill, p)| format!("{skill} {} prewarmed, {} warm", p.prewarmed, p.warm_workers))
            .collect();
        lines.push(format!(
            "{} in flight, {} queued; pools: {}",
            load.in_flight,
            load.queued,
            if pools.is_empty() {
                "none ready".into()
            } else {
                pools.join(", ")
            }
        ));
    }
    lines.extend(probe.errors.iter().cloned());
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use skillhost::cluster::Pool;

    #[test]
    fn a_probe_reads_as_its_readiness_load_and_what_could_not_be_read() {
        let mut load = Load {
            in_flight: 1,
            ..Load::default()
        };
        load.pools.insert(
            "python".into(),
            Pool {
                prewarmed: 2,
                warm_workers: 0,
            },
        );
        load.pools.insert("echo".into(), Pool::default());
        let probe = Probe {
            endpoint: "10.0.0.2:8080".into(),
            readiness: serde_json::from_str(r#"{"ready": true, "problems": []}"#).ok(),
            load: Some(load),
            errors: Vec::new(),
        };
        assert_eq!(
            probe_lines(&probe),
            [
                "10.0.0.2:8080 says ready",
                "1 in flight, 0 queued; pools: python 2 prewarmed, 0 warm"
            ]
        );
        let unread = Probe {
            endpoint: "10.0.0.3:8080".into(),
            errors: vec!["readiness: cannot reach the service".into()],
            ..Probe::default()
        };
        assert_eq!(
            probe_lines(&unread),
            [
                "10.0.0.3:8080 says no answer",
                "readiness: cannot reach the service"
            ]
        );
    }
}
