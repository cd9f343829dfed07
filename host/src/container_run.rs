//! One container, start to finish: create, attach before start, write the request and
//! half-close stdin, read stdout and stderr concurrently with the writer, enforce the
//! deadline and the output limit by killing, learn how it ended, and remove it on every
//! path, including errors and a dropped future.

use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, KillContainerOptions, RemoveContainerOptions,
    WaitContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::frame_reader::{Decoded, FrameReader};
use crate::invocation::ProgressCallback;

/// After the container exits, how long to wait for the attach stream to end: it may
/// never end on its own (bollard #251), and all its data is already in transit.
const DRAIN_BOUND: Duration = Duration::from_millis(300);
/// After a kill, how long the engine has to report the exit before we stop waiting.
const KILL_GRACE: Duration = Duration::from_millis(800);

/// What to run.
pub struct RunRequest {
    pub name: String,
    pub body: ContainerCreateBody,
    /// The request line, written to stdin before it is closed.
    pub stdin: Vec<u8>,
    pub request_id: String,
    pub timeout: Duration,
    pub output_limit: u64,
    pub log_limit: usize,
    pub on_progress: Option<ProgressCallback>,
}

/// Why the host killed the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKill {
    Timeout,
    OutputLimit,
}

/// What was observed of a container that ran.
#[derive(Debug)]
pub struct RunOutcome {
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub host_kill: Option<HostKill>,
    pub decoded: Decoded,
    pub logs: Vec<u8>,
    pub logs_truncated: bool,
    pub stderr_bytes: u64,
    pub startup: Duration,
}

/// The engine failed; the container, if any, is removed already.
#[derive(Debug, thiserror::Error)]
#[error("{action}: {source}")]
pub struct RunError {
    pub action: &'static str,
    #[source]
    pub source: bollard::errors::Error,
}

fn err(action: &'static str) -> impl FnOnce(bollard::errors::Error) -> RunError {
    move |source| RunError { action, source }
}

/// Run `request` in a fresh container and remove it afterwards, whatever happens.
pub async fn run_container(docker: &Docker, request: RunRequest) -> Result<RunOutcome, RunError> {
    let started = Instant::now();
    let options = CreateContainerOptions {
        name: Some(request.name.clone()),
        ..Default::default()
    };
    // Guarded by name before it exists: a future dropped while the create is in flight
    // must not leave an unguarded container behind.
    let guard = ContainerGuard::new(docker.clone(), request.name.clone());
    let created = docker
        .create_container(Some(options), request.body.clone())
        .await
        .map_err(err("creating the container"))?;
    let result = drive(docker, &created.id, request, started).await;
    let removed = guard.remove().await;
    let outcome = result?;
    removed.map_err(err("removing the container"))?;
    Ok(outcome)
}

async fn drive(
    docker: &Docker,
    id: &str,
    request: RunRequest,
    started: Instant,
) -> Result<RunOutcome, RunError> {
    let attach = docker
        .attach_container(
            id,
            Some(AttachContainerOptions {
                stdin: true,
                stdout: true,
                stderr: true,
                stream: true,
                logs: false,
                ..Default::default()
            }),
        )
        .await
        .map_err(err("attaching to the container"))?;
    docker
        .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
        .await
        .map_err(err("starting the container"))?;
    let startup = started.elapsed();
    let deadline = tokio::time::Instant::now() + request.timeout;

    // The writer runs on its own so a skill that answers before reading all its input,
    // or writes a lot while we write a lot, cannot deadlock the exchange.
    let mut input = attach.input;
    let stdin = request.stdin;
    let writer = tokio::spawn(async move {
        let _ = input.write_all(&stdin).await;
        let _ = input.shutdown().await;
    });

    let mut output = attach.output;
    let mut wait = Box::pin(docker.wait_container(
        id,
        Some(WaitContainerOptions {
            condition: "not-running".into(),
        }),
    ));
    let mut reader = FrameReader::new(&request.request_id, request.output_limit);
    let mut logs = Vec::new();
    let mut stderr_bytes = 0u64;
    let mut host_kill = None;
    let mut kill_sent_at: Option<tokio::time::Instant> = None;
    let mut output_open = true;
    let mut exited = false;

    let mut on_chunk = |chunk: LogOutput, host_kill: &mut Option<HostKill>| -> bool {
        match chunk {
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                let pushed = reader.push(&message);
                if let Some(callback) = &request.on_progress {
                    pushed.progress.iter().for_each(|p| callback(p));
                }
                if pushed.over_limit && host_kill.is_none() {
                    *host_kill = Some(HostKill::OutputLimit);
                    return true;
                }
            }
            LogOutput::StdErr { message } => {
                stderr_bytes += message.len() as u64;
                let room = request.log_limit.saturating_sub(logs.len());
                logs.extend_from_slice(&message[..message.len().min(room)]);
            }
            LogOutput::StdIn { .. } => {}
        }
        false
    };

    while !exited {
        let kill_grace_over = async {
            match kill_sent_at {
                Some(at) => tokio::time::sleep_until(at + KILL_GRACE).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            chunk = output.next(), if output_open => match chunk {
                Some(Ok(chunk)) => {
                    if on_chunk(chunk, &mut host_kill) {
                        kill_sent_at = Some(send_kill(docker, id));
                    }
                }
                Some(Err(e)) => return Err(err("reading the container's output")(e)),
                None => output_open = false,
            },
            status = wait.next() => match status {
                Some(Ok(_)) | Some(Err(bollard::errors::Error::DockerContainerWaitError { .. })) | None => exited = true,
                Some(Err(e)) => return Err(err("waiting for the container")(e)),
            },
            _ = tokio::time::sleep_until(deadline), if host_kill.is_none() => {
                host_kill = Some(HostKill::Timeout);
                kill_sent_at = Some(send_kill(docker, id));
            },
            _ = kill_grace_over => {
                tracing::warn!(container = id, "the engine did not report the exit of a killed container in time");
                break;
            }
        }
    }
    // Whatever stdout is still in flight belongs to the answer.
    if output_open {
        let _ = tokio::time::timeout(DRAIN_BOUND, async {
            while let Some(Ok(chunk)) = output.next().await {
                if on_chunk(chunk, &mut host_kill) {
                    break;
                }
            }
        })
        .await;
    }
    writer.abort();
    let state = docker
        .inspect_container(
            id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .map_err(err("inspecting the container"))?
        .state
        .unwrap_or_default();
    let logs_truncated = stderr_bytes > logs.len() as u64;
    Ok(RunOutcome {
        exit_code: state.exit_code,
        oom_killed: state.oom_killed.unwrap_or(false),
        host_kill,
        decoded: reader.finish(),
        logs,
        logs_truncated,
        stderr_bytes,
        startup,
    })
}

/// SIGKILL the container from a task of its own. The engine answers a kill only once the
/// container has stopped, and it stops only once its output is drained, so awaiting the
/// kill while not reading the output would deadlock against a flooding skill.
fn send_kill(docker: &Docker, id: &str) -> tokio::time::Instant {
    let (docker, id) = (docker.clone(), id.to_string());
    tokio::spawn(async move {
        let options = KillContainerOptions {
            signal: "KILL".into(),
        };
        match docker.kill_container(&id, Some(options)).await {
            // 409: it exited on its own between our decision and the kill.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            })
            | Ok(()) => {}
            Err(e) => tracing::warn!(container = %id, "kill failed: {e}"),
        }
    });
    tokio::time::Instant::now()
}

/// Removes its container when dropped unless [`ContainerGuard::remove`] ran: a dropped
/// invocation future, a panic or an early return must not leak a container.
pub struct ContainerGuard {
    docker: Docker,
    id: String,
    armed: bool,
}

impl ContainerGuard {
    pub fn new(docker: Docker, id: String) -> Self {
        ContainerGuard {
            docker,
            id,
            armed: true,
        }
    }

    pub async fn remove(mut self) -> Result<(), bollard::errors::Error> {
        self.armed = false;
        remove(&self.docker, &self.id).await
    }
}

pub async fn remove(docker: &Docker, id: &str) -> Result<(), bollard::errors::Error> {
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

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Drop cannot await, and the runtime may be shutting down: remove it from a
        // thread with its own runtime and connection, and wait so it really happens.
        let id = std::mem::take(&mut self.id);
        let joined = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let docker = Docker::connect_with_defaults().ok()?;
                remove(&docker, &id).await.ok()
            })
        })
        .join();
        if !matches!(joined, Ok(Some(()))) {
            tracing::error!("could not remove an abandoned container; `skillhost gc` will");
        }
    }
}
