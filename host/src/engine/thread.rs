//! The one process-wide thread that does engine work for places that cannot await: `Drop`
//! of a container guard, of the reaper or of the egress gateways, which may run while the
//! caller's runtime is shutting down. The thread has its own runtime and its own engine
//! connection, made on first use and kept for the life of the process.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;

use bollard::Docker;
use tokio::sync::mpsc::UnboundedSender;

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
