//! `skillhost cluster status`: the skillhost service of a swarm, node by node, from a
//! manager's engine API (see `skillhost::cluster`).

use clap::Subcommand;
use skillhost::api::exit_code;
use skillhost::cluster::{self, Readiness};
use skillhost::engine::Engine;
use skillhost::Error;

use super::{output, Format};

#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Each node of the swarm: its availability, its skillhost task and whether that task
    /// is ready, and why not. Exits 0 when every active node is ready, 3 otherwise.
    Status {
        /// The skillhost service [default: the one labelled io.skillhost.role=serve].
        #[arg(long)]
        service: Option<String>,
    },
}

pub(super) async fn run(command: ClusterCommand, format: Format) -> Result<i32, Error> {
    let ClusterCommand::Status { service } = command;
    let engine = Engine::connect().await?;
    let status = cluster::status(&engine, service.as_deref()).await?;
    match format {
        Format::Json => output::json(&status),
        Format::Human => {
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
            }
        }
    }
    let all_ready = status
        .nodes
        .iter()
        .filter(|n| n.availability == "active" && n.readiness != Readiness::NoTask)
        .all(|n| n.readiness == Readiness::Ready);
    Ok(if all_ready {
        exit_code::OK
    } else {
        exit_code::INFRASTRUCTURE
    })
}
