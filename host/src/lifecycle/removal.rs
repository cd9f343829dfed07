//! Removing containers, and the one process-wide thread that does engine work for places
//! that cannot await: `Drop` of a [`super::guard::ContainerGuard`] or of the reaper, which
//! may run while the caller's runtime is shutting down. The thread has its own runtime and
//! its own engine connection, made on first use and kept for the life of the process.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bollard::query_parameters::{
    InspectContainerOptions, KillContainerOptions, RemoveContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::mpsc::UnboundedSender;

/// How often a container expected to appear is looked for again.
const LOOK_AGAIN: Duration = Duration::from_millis(50);

/// How long a removal waits for the engine to record the exit of a container it killed.
const EXIT_RECORDED: Duration = Duration::from_secs(30);

/// Remove a container and its anonymous volumes; one already gone is not an error.
pub(crate) async fn remove(docker: &Docker, id: &str) -> Result<(), bollard::errors::Error> {
    await_exit_recorded(docker, id).await;
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    match docker.remove_container(id, Some(options)).await {
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        other => other,
    }
}

/// Stop the container if it still runs, and wait (boundedly) until the engine has recorded
/// its exit. Docker 20.10 handles an exit that arrives after a forced removal by writing the
/// removed container back into its list, where it stays "Removal In Progress", a ghost that
/// no call can remove until dockerd restarts; the engine's exit records lag by seconds under
/// load. A container that never ran or has exited costs two quick answers (409, then the
/// wait returns at once).
async fn await_exit_recorded(docker: &Docker, id: &str) {
    let kill = KillContainerOptions {
        signal: "KILL".into(),
    };
    if let Err(bollard::errors::Error::DockerResponseServerError {
        status_code: 404, ..
    }) = docker.kill_container(id, Some(kill)).await
    {
        return;
    }
    let condition = WaitContainerOptions {
        condition: "not-running".into(),
    };
    let mut wait = docker.wait_container(id, Some(condition));
    if tokio::time::timeout(EXIT_RECORDED, wait.next())
        .await
        .is_err()
    {
        tracing::warn!(
            container = id,
            "the engine has not recorded the container's exit; removing it anyway"
        );
    }
}

/// Remove `id`; while `patience` lasts, a missing container is looked for again (one
/// whose create is still in flight appears only when the engine has made it).
async fn remove_once_present(
    docker: &Docker,
    id: &str,
    patience: Duration,
) -> Result<(), bollard::errors::Error> {
    let until = Instant::now() + patience;
    while Instant::now() < until {
        match docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => tokio::time::sleep(LOOK_AGAIN).await,
            _ => break,
        }
    }
    remove(docker, id).await
}

/// Remove containers from the engine thread and wait for it; a missing container counts
/// as gone only after `patience`. True when every one went.
pub(crate) fn remove_blocking(ids: Vec<String>, patience: Duration) -> bool {
    run_blocking(move |docker| async move {
        let removals = ids
            .iter()
            .map(|id| remove_once_present(&docker, id, patience));
        let all = futures_util::future::join_all(removals).await;
        all.iter().all(Result::is_ok)
    })
    .unwrap_or(false)
}

type Job = Box<dyn FnOnce(Docker) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Run `work` with the engine thread's connection and block until it is done. `None`
/// when the thread or its connection could not be made. Never call it from the work of
/// another such call.
pub(crate) fn run_blocking<T, F, Fut>(work: F) -> Option<T>
where
    F: FnOnce(Docker) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (done, result) = std::sync::mpsc::sync_channel(1);
    let job: Job = Box::new(move |docker| {
        Box::pin(async move {
            let _ = done.send(work(docker).await);
        })
    });
    engine_thread()?.send(job).ok()?;
    result.recv().ok()
}

/// The engine thread's queue, started on first use.
fn engine_thread() -> Option<&'static UnboundedSender<Job>> {
    static QUEUE: OnceLock<Option<UnboundedSender<Job>>> = OnceLock::new();
    QUEUE.get_or_init(start).as_ref()
}

fn start() -> Option<UnboundedSender<Job>> {
    let docker = match Docker::connect_with_defaults() {
        Ok(docker) => docker,
        Err(e) => {
            tracing::error!("the removal thread cannot reach the engine: {e}");
            return None;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("the removal thread cannot start its runtime: {e}");
            return None;
        }
    };
    let (queue, mut jobs) = tokio::sync::mpsc::unbounded_channel::<Job>();
    let spawned = std::thread::Builder::new()
        .name("skillhost-removal".into())
        .spawn(move || {
            runtime.block_on(async move {
                // Each job runs as its own task, so a slow removal holds up no other.
                while let Some(job) = jobs.recv().await {
                    tokio::spawn(job(docker.clone()));
                }
            })
        });
    match spawned {
        Ok(_) => Some(queue),
        Err(e) => {
            tracing::error!("cannot start the removal thread: {e}");
            None
        }
    }
}
