//! `skillhost cluster status`: what Swarm knows of the skillhost service, node by node,
//! read from a manager's engine API. Swarm does the scheduling, membership and routing;
//! this only joins its node list, the service's tasks and, for the tasks on the engine it
//! is asked, their health check's last words (`skillhost ready`'s problems). In host
//! mode each node's own service can also be asked over HTTP ([`probe`]).

mod probe;

use std::collections::HashMap;

use serde::Serialize;

pub use probe::{endpoint as probe_endpoint, Load, Pool, Probe};

use crate::engine::swarm::models::{
    EndpointPortConfigPublishModeEnum, Node, Service, Task, TaskState,
};
pub(crate) use crate::engine::swarm::ContainerHealth as Health;
use crate::engine::{Engine, EngineError};

/// The service label `deploy/swarm/skillhost.yml` sets on the skillhost service.
pub const ROLE_LABEL: &str = "io.skillhost.role=serve";

/// Why the status could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The engine is not a manager of a swarm (a worker, or no swarm at all).
    #[error(
        "the engine at {endpoint} is not a swarm manager ({message}): run this on a manager node"
    )]
    NotManager {
        /// The engine's address.
        endpoint: String,
        /// What the engine said.
        message: String,
    },
    /// No service to report on.
    #[error("{0}")]
    NoService(String),
    /// The engine failed otherwise.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The service, node by node.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// The skillhost service's name.
    pub service: String,
    /// The ports it publishes, and how.
    pub published: Vec<Published>,
    /// Every node of the swarm, sorted by hostname.
    pub nodes: Vec<NodeReport>,
}

/// A port the service publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    /// The port callers connect to.
    pub port: u16,
    /// How a node's port reaches the tasks.
    pub mode: PublishMode,
}

/// How a published port reaches the service's tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PublishMode {
    /// The routing mesh: any node's port reaches any task.
    Ingress,
    /// A node's port reaches that node's task.
    Host,
}

impl std::fmt::Display for PublishMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PublishMode::Ingress => "ingress",
            PublishMode::Host => "host",
        })
    }
}

/// One node and its skillhost task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeReport {
    /// The node's hostname.
    pub node: String,
    /// The node's ID in the swarm (hostnames need not be unique).
    pub id: String,
    /// `manager` or `worker`.
    pub role: String,
    /// `active`, `pause` or `drain`.
    pub availability: String,
    /// `ready`, `down`, `disconnected` or `unknown`: the node, not skillhost.
    pub state: String,
    /// The node's address.
    pub address: String,
    /// Whether this node's skillhost takes calls, and if not, why.
    pub readiness: Readiness,
    /// The task's state as Swarm reports it (`running`, `starting`, `failed`, ...).
    pub task_state: Option<String>,
    /// Why the task is not ready, in Swarm's or the health check's words.
    pub problems: Vec<String>,
    /// What the node's own service answered (`--probe`, host mode).
    pub probe: Option<Probe>,
}

/// A node's skillhost, as far as Swarm can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// Its task runs and passed its health check (Swarm holds a task in `starting` until
    /// then).
    Ready,
    /// Its task is being made, pulling, or waiting for its first passing health check.
    Starting,
    /// Its task failed, or its health check fails.
    NotReady,
    /// The node is drained or paused: Swarm runs no task of the service there.
    Drained,
    /// The node is down or unreachable.
    Down,
    /// No task of the service is meant to run there (placement).
    NoTask,
}

/// Read the status of `service` (default: the one service labelled [`ROLE_LABEL`]).
pub async fn status(engine: &Engine, service: Option<&str>) -> Result<ClusterStatus, ClusterError> {
    let nodes = engine
        .swarm_nodes()
        .await
        .map_err(|e| not_manager(engine, e))?;
    let service = match service {
        Some(name) => name.to_string(),
        None => the_service(engine).await?,
    };
    let Some(inspected) = engine.swarm_service(&service).await? else {
        return Err(ClusterError::NoService(format!(
            "no service {service:?} in this swarm (docker service ls lists them)"
        )));
    };
    let published = published(&inspected);
    let tasks = engine.swarm_tasks(&service).await?;
    let mut health = HashMap::new();
    for task in &tasks {
        let container = task
            .status
            .as_ref()
            .and_then(|s| s.container_status.as_ref())
            .and_then(|c| c.container_id.clone());
        // Only containers on this engine can be inspected; others are judged by Swarm.
        if let Some(id) = container {
            if let Some(h) = engine.container_health(&id).await {
                health.insert(id, h);
            }
        }
    }
    Ok(ClusterStatus {
        service,
        published,
        nodes: report(&nodes, &tasks, &health),
    })
}

/// The TCP ports `service` publishes (the endpoint's, else its spec's).
fn published(service: &Service) -> Vec<Published> {
    let ports = service
        .endpoint
        .as_ref()
        .and_then(|e| e.ports.clone())
        .or_else(|| {
            service
                .spec
                .as_ref()
                .and_then(|s| s.endpoint_spec.as_ref())
                .and_then(|e| e.ports.clone())
        })
        .unwrap_or_default();
    ports
        .into_iter()
        .filter_map(|port| {
            Some(Published {
                port: u16::try_from(port.published_port?).ok()?,
                mode: match port.publish_mode {
                    Some(EndpointPortConfigPublishModeEnum::HOST) => PublishMode::Host,
                    _ => PublishMode::Ingress,
                },
            })
        })
        .collect()
}

fn not_manager(engine: &Engine, e: EngineError) -> ClusterError {
    match e {
        EngineError::Api { source, .. } if source.status() == Some(503) => {
            ClusterError::NotManager {
                endpoint: engine.endpoint().to_string(),
                message: source.words().to_string(),
            }
        }
        other => other.into(),
    }
}

async fn services(engine: &Engine, filter: (&str, String)) -> Result<Vec<String>, ClusterError> {
    Ok(engine.swarm_services(filter.0, &filter.1).await?)
}

async fn the_service(engine: &Engine) -> Result<String, ClusterError> {
    let mut found = services(engine, ("label", ROLE_LABEL.to_string())).await?;
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(ClusterError::NoService(format!(
            "no service labelled {ROLE_LABEL} in this swarm: deploy deploy/swarm/skillhost.yml, or name the service with --service"
        ))),
        _ => Err(ClusterError::NoService(format!(
            "several services are labelled {ROLE_LABEL} ({}): name one with --service",
            found.join(", ")
        ))),
    }
}

/// Node by node: its current task (the one Swarm wants running, else the newest) and
/// what that says of readiness. Pure, so every case is unit-tested.
pub(crate) fn report(
    nodes: &[Node],
    tasks: &[Task],
    health: &HashMap<String, Health>,
) -> Vec<NodeReport> {
    let mut reports: Vec<NodeReport> = nodes
        .iter()
        .map(|node| {
            let id = node.id.clone().unwrap_or_default();
            let spec = node.spec.as_ref();
            let status = node.status.as_ref();
            let state = status
                .and_then(|s| s.state)
                .map_or("unknown".into(), |s| s.to_string());
            let availability = spec
                .and_then(|s| s.availability)
                .map_or("active".into(), |a| a.to_string());
            let task = current_task(tasks, &id);
            let (readiness, problems) = judge(&state, &availability, task, health);
            NodeReport {
                node: node
                    .description
                    .as_ref()
                    .and_then(|d| d.hostname.clone())
                    .unwrap_or_else(|| id.clone()),
                id,
                role: spec
                    .and_then(|s| s.role)
                    .map_or("worker".into(), |r| r.to_string()),
                availability,
                state,
                address: address(node),
                readiness,
                task_state: task
                    .and_then(|t| t.status.as_ref())
                    .and_then(|s| s.state)
                    .map(|s| s.to_string()),
                problems,
                probe: None,
            }
        })
        .collect();
    reports.sort_by(|a, b| (&a.node, &a.id).cmp(&(&b.node, &b.id)));
    reports
}

/// The node's address. A manager may report `0.0.0.0` (it listens on every address); its
/// manager status holds the address it advertises.
fn address(node: &Node) -> String {
    let reported = node.status.as_ref().and_then(|s| s.addr.as_deref());
    match reported {
        Some(addr) if !addr.is_empty() && addr != "0.0.0.0" => addr.to_string(),
        _ => node
            .manager_status
            .as_ref()
            .and_then(|m| m.addr.as_deref())
            .and_then(|a| a.rsplit_once(':').map(|(host, _)| host.to_string()))
            .unwrap_or_default(),
    }
}

fn current_task<'t>(tasks: &'t [Task], node: &str) -> Option<&'t Task> {
    let version = |t: &Task| t.version.as_ref().and_then(|v| v.index).unwrap_or(0);
    tasks
        .iter()
        .filter(|t| t.node_id.as_deref() == Some(node))
        .max_by_key(|t| (t.desired_state == Some(TaskState::RUNNING), version(t)))
}

fn judge(
    node_state: &str,
    availability: &str,
    task: Option<&Task>,
    health: &HashMap<String, Health>,
) -> (Readiness, Vec<String>) {
    if node_state != "ready" {
        return (Readiness::Down, vec![format!("the node is {node_state}")]);
    }
    if availability != "active" {
        return (
            Readiness::Drained,
            vec![format!("the node's availability is {availability}")],
        );
    }
    let Some(task) = task else {
        return (Readiness::NoTask, Vec::new());
    };
    let status = task.status.as_ref();
    let state = status.and_then(|s| s.state);
    let container = status
        .and_then(|s| s.container_status.as_ref())
        .and_then(|c| c.container_id.as_deref());
    let checked = container.and_then(|id| health.get(id));
    let mut problems: Vec<String> = status.and_then(|s| s.err.clone()).into_iter().collect();
    if let Some(Health {
        healthy: false,
        output,
    }) = checked
    {
        problems.extend(
            output
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
    }
    let readiness = match state {
        Some(TaskState::RUNNING) if checked.is_none_or(|h| h.healthy) => Readiness::Ready,
        Some(TaskState::RUNNING) => Readiness::NotReady,
        Some(TaskState::FAILED | TaskState::REJECTED | TaskState::ORPHANED) => Readiness::NotReady,
        Some(TaskState::SHUTDOWN | TaskState::COMPLETE | TaskState::REMOVE) => {
            if problems.is_empty() {
                problems.push("its task has stopped".into());
            }
            Readiness::NotReady
        }
        _ => Readiness::Starting,
    };
    (readiness, problems)
}

#[cfg(test)]
mod tests {
    use crate::engine::swarm::models::{
        ContainerStatus, ManagerStatus, NodeDescription, NodeSpec, NodeSpecAvailabilityEnum,
        NodeSpecRoleEnum, NodeState, NodeStatus, ObjectVersion, TaskStatus,
    };

    use super::*;

    fn node(id: &str, state: NodeState, availability: NodeSpecAvailabilityEnum) -> Node {
        Node {
            id: Some(id.into()),
            spec: Some(NodeSpec {
                role: Some(NodeSpecRoleEnum::WORKER),
                availability: Some(availability),
                ..Default::default()
            }),
            description: Some(NodeDescription {
                hostname: Some(format!("host-{id}")),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                state: Some(state),
                addr: Some("10.0.0.1".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn task(
        node: &str,
        version: u64,
        desired: TaskState,
        state: TaskState,
        container: &str,
    ) -> Task {
        Task {
            node_id: Some(node.into()),
            version: Some(ObjectVersion {
                index: Some(version),
            }),
            desired_state: Some(desired),
            status: Some(TaskStatus {
                state: Some(state),
                err: (state == TaskState::FAILED).then(|| "task: non-zero exit (137)".into()),
                container_status: Some(ContainerStatus {
                    container_id: Some(container.into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    use NodeSpecAvailabilityEnum::{ACTIVE, DRAIN};
    use TaskState::{FAILED, RUNNING, SHUTDOWN, STARTING};

    #[test]
    fn each_node_is_judged_by_its_current_task() {
        let nodes = [
            node("a", NodeState::READY, ACTIVE),
            node("b", NodeState::READY, ACTIVE),
            node("c", NodeState::READY, DRAIN),
            node("d", NodeState::DOWN, ACTIVE),
            node("e", NodeState::READY, ACTIVE),
        ];
        let tasks = [
            // a: the killed task failed; its replacement runs.
            task("a", 5, SHUTDOWN, FAILED, "a1"),
            task("a", 9, RUNNING, RUNNING, "a2"),
            // b: starting (pulling, or its health check has not passed yet).
            task("b", 3, RUNNING, STARTING, "b1"),
            task("c", 4, SHUTDOWN, SHUTDOWN, "c1"),
        ];
        let report = report(&nodes, &tasks, &HashMap::new());
        let by_node: Vec<(&str, Readiness)> = report
            .iter()
            .map(|r| (r.node.as_str(), r.readiness))
            .collect();
        assert_eq!(
            by_node,
            [
                ("host-a", Readiness::Ready),
                ("host-b", Readiness::Starting),
                ("host-c", Readiness::Drained),
                ("host-d", Readiness::Down),
                ("host-e", Readiness::NoTask),
            ]
        );
        assert_eq!(report[0].task_state.as_deref(), Some("running"));
        assert!(report[0].problems.is_empty(), "the failed task is history");
        assert_eq!(report[2].problems, ["the node's availability is drain"]);
        assert_eq!(report[3].problems, ["the node is down"]);
    }

    #[test]
    fn a_manager_reporting_every_address_is_known_by_the_one_it_advertises() {
        let mut manager = node("m", NodeState::READY, ACTIVE);
        manager.status.as_mut().unwrap().addr = Some("0.0.0.0".into());
        manager.manager_status = Some(ManagerStatus {
            addr: Some("10.231.0.1:2377".into()),
            ..Default::default()
        });
        assert_eq!(address(&manager), "10.231.0.1");
        assert_eq!(
            address(&node("w", NodeState::READY, ACTIVE)),
            "10.0.0.1",
            "a worker's own"
        );
    }

    #[test]
    fn a_failed_task_and_a_failing_health_check_say_why() {
        let nodes = [
            node("a", NodeState::READY, ACTIVE),
            node("b", NodeState::READY, ACTIVE),
        ];
        let tasks = [
            task("a", 2, RUNNING, FAILED, "a1"),
            task("b", 2, RUNNING, RUNNING, "b1"),
        ];
        let health = HashMap::from([(
            "b1".to_string(),
            Health {
                healthy: false,
                output:
                    "unix:/tmp/skillhost/skillhost.sock: not ready\n  skill echo: integrity_error\n"
                        .into(),
            },
        )]);
        let report = report(&nodes, &tasks, &health);
        assert_eq!(report[0].readiness, Readiness::NotReady);
        assert_eq!(report[0].problems, ["task: non-zero exit (137)"]);
        assert_eq!(report[1].readiness, Readiness::NotReady);
        assert_eq!(
            report[1].problems,
            [
                "unix:/tmp/skillhost/skillhost.sock: not ready",
                "skill echo: integrity_error"
            ]
        );
    }
}
