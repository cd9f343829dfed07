//! A swarm manager's records: its nodes, the skillhost service and its tasks, and the
//! health of task containers on this engine. The records are the Engine API's own
//! (re-exported here as [`models`]), read and never written: `skillhost cluster status`
//! judges them.

use std::collections::HashMap;

use bollard::models::HealthStatusEnum;
use bollard::query_parameters::{
    InspectContainerOptions, InspectServiceOptions, ListNodesOptions, ListServicesOptions,
    ListTasksOptions,
};

use super::{api_err, Engine, EngineError};

/// The Engine API's swarm records, as the manager returns them.
pub(crate) mod models {
    #[cfg(test)]
    pub(crate) use bollard::models::{
        ContainerStatus, ManagerStatus, NodeDescription, NodeSpec, NodeSpecAvailabilityEnum,
        NodeSpecRoleEnum, NodeState, NodeStatus, ObjectVersion, TaskStatus,
    };
    pub(crate) use bollard::models::{
        EndpointPortConfigPublishModeEnum, Node, Service, Task, TaskState,
    };
}

use models::{Node, Service, Task};

/// A task container's health check, as this engine last ran it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerHealth {
    /// Whether the engine calls it healthy.
    pub(crate) healthy: bool,
    /// The last check's output.
    pub(crate) output: String,
}

impl Engine {
    /// The swarm's nodes. An engine that is no manager answers 503 (the error's status).
    pub(crate) async fn swarm_nodes(&self) -> Result<Vec<Node>, EngineError> {
        self.docker
            .list_nodes(None::<ListNodesOptions>)
            .await
            .map_err(api_err("listing the swarm's nodes"))
    }

    /// The service named `name`, or `None` when the swarm has none.
    pub(crate) async fn swarm_service(&self, name: &str) -> Result<Option<Service>, EngineError> {
        match self
            .docker
            .inspect_service(name, None::<InspectServiceOptions>)
            .await
        {
            Ok(service) => Ok(Some(service)),
            Err(e) if super::docker::is_not_found(&e) => Ok(None),
            Err(e) => Err(api_err(format!("inspecting the service {name}"))(e)),
        }
    }

    /// The names of the services matching the engine's filter `key=value`.
    pub(crate) async fn swarm_services(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<String>, EngineError> {
        let services = self
            .docker
            .list_services(Some(ListServicesOptions {
                filters: Some(HashMap::from([(key.to_string(), vec![value.to_string()])])),
                status: None,
            }))
            .await
            .map_err(api_err("listing the swarm's services"))?;
        Ok(services
            .into_iter()
            .filter_map(|s| s.spec.and_then(|spec| spec.name))
            .collect())
    }

    /// Every task of `service`.
    pub(crate) async fn swarm_tasks(&self, service: &str) -> Result<Vec<Task>, EngineError> {
        self.docker
            .list_tasks(Some(ListTasksOptions {
                filters: Some(HashMap::from([(
                    "service".into(),
                    vec![service.to_string()],
                )])),
            }))
            .await
            .map_err(api_err(format!("listing the tasks of {service}")))
    }

    /// The health of container `id` when it runs on this engine and has a check.
    pub(crate) async fn container_health(&self, id: &str) -> Option<ContainerHealth> {
        let inspected = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .ok()?;
        let health = inspected.state?.health?;
        let output = health
            .log
            .and_then(|log| log.last().and_then(|l| l.output.clone()))
            .unwrap_or_default();
        Some(ContainerHealth {
            healthy: health.status == Some(HealthStatusEnum::HEALTHY),
            output,
        })
    }
}
