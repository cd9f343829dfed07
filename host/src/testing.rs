//! Internals for skillhost's own integration tests and benchmarks, behind the `testing`
//! feature, which only this crate's dev-dependency on itself turns on. Not a stable API:
//! nothing outside this repository should use it.

use std::collections::HashMap;
use std::future::Future;

use bollard::Docker;

pub use crate::build::context::Context;
pub use crate::build::init_image::init_command;
pub use crate::engine::docker::create_body;
pub use crate::engine::spec::{ContainerSpec, NetworkMode};
pub use crate::engine::BuildRequest;
pub use crate::invoke::workspace_mount::can_make_views as can_make_workspace_views;
pub use crate::lifecycle::guard::ContainerGuard;
pub use crate::run::container::{RunError, RunOutcome, RunRequest};
pub use crate::run::container_spec::{container_spec, ContainerInputs, Workspace};
pub use crate::run::run_as::RunAs;

use crate::engine::Engine;
pub use crate::run::exit_trailer::{new_key, ExitReport};
pub use crate::run::frame_reader::Decoded;
pub use crate::run::seccomp_profile::PROFILE_JSON;

use crate::lifecycle::instance::Instance;
use crate::lifecycle::labels::{self, Role};
use crate::lifecycle::reaper::Reaper;
use crate::run::container::run_container;

/// The labels a cold call's container of `skill` for `invocation` gets from this process.
pub fn container_labels(skill: &str, invocation: &str) -> HashMap<String, String> {
    labels::for_container(skill, Role::Invocation(invocation), &Instance::current())
}

/// Run `request` in a fresh container made from `spec` and named `name`, as a cold call
/// does, and return once the container is removed.
pub async fn run_once(
    engine: &Engine,
    name: &str,
    spec: &ContainerSpec,
    request: RunRequest,
) -> Result<RunOutcome, RunError> {
    let containers = engine.containers();
    let reaper = Reaper::new(containers.clone());
    let outcome = run_container(&containers, &reaper, name, spec, request).await;
    reaper.settled().await;
    outcome
}

/// The engine's raw client, for tests that look at or arrange the engine's state
/// themselves; the library reaches the engine only through its engine module.
pub fn docker(engine: &Engine) -> &Docker {
    engine.client()
}

/// A guard that removes container `id` when dropped, even when the test fails first.
pub fn guard_container(engine: &Engine, id: String) -> ContainerGuard {
    ContainerGuard::for_existing(id, engine.containers())
}

/// Run engine work to its end from anywhere, `Drop` included, on the process-wide removal
/// thread (its own runtime and connection); `None` when that thread cannot be had.
pub fn on_engine_thread<T, F, Fut>(work: F) -> Option<T>
where
    F: FnOnce(Docker) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    crate::engine::thread::run_blocking(work)
}

/// This process's instance id, as every container and network it makes is labelled.
pub fn instance_id() -> String {
    Instance::current().id
}
