//! One container, start to finish: create, attach before start, write the request and
//! half-close stdin, read stdout and stderr concurrently with the writer, enforce the
//! deadline and the output limit by killing, learn how it ended, and remove it on every
//! path, including errors and a dropped future.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::container::{AttachContainerResults, LogOutput};
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, KillContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use skillhost_api::Denial;
use tokio::io::AsyncWriteExt;

use crate::egress::Gateway;
use crate::invoke::ProgressCallback;
use crate::lifecycle::guard::ContainerGuard;
use crate::lifecycle::reaper::Reaper;
use crate::run::exit_trailer::{key_line, ExitReport, TrailerScanner};
use crate::run::frame_reader::{Decoded, FrameReader};

/// After the container exits, how long to wait for the attach stream to end: it may
/// never end on its own (bollard #251), and all its data is already in transit.
const DRAIN_BOUND: Duration = Duration::from_millis(300);
/// How long the engine may take to describe a finished container; an engine that is
/// wedged on it must not hold the call for ever.
const INSPECT_BOUND: Duration = Duration::from_secs(10);
/// After a kill, how long the engine has to report the exit before we stop waiting.
const KILL_GRACE: Duration = Duration::from_millis(800);

/// What to run in a container.
pub struct RunRequest {
    /// The request line, written to stdin before it is closed.
    pub stdin: Vec<u8>,
    /// The request's id, which every frame must carry.
    pub request_id: String,
    /// When the container is killed if it has not answered.
    pub timeout: Duration,
    /// Most stdout read before the container is killed.
    pub output_limit: u64,
    /// Most stderr kept as logs; the rest is counted and dropped.
    pub log_limit: usize,
    /// Called with each progress frame as it arrives.
    pub on_progress: Option<ProgressCallback>,
    /// The key of the init's exit trailer, when the container runs skillhost's init.
    pub trailer_key: Option<String>,
    /// The gateway of a skill with an egress allowlist: the container's address on its
    /// network is learnt before the request is written, to find the proxy's refusals.
    pub egress: Option<Arc<Gateway>>,
    /// That address when it is known ahead (a network holder's), so none is looked up.
    pub egress_client: Option<IpAddr>,
}

impl std::fmt::Debug for RunRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The request itself and the trailer key stay out of logs.
        f.debug_struct("RunRequest")
            .field("request_id", &self.request_id)
            .field("timeout", &self.timeout)
            .field("limits", &(self.output_limit, self.log_limit))
            .finish_non_exhaustive()
    }
}

/// A container created and attached to, not yet started: everything before the start is
/// done, so a prewarmed one answers as soon as it starts.
pub(crate) struct Attached {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) io: AttachContainerResults,
    /// Started already: its init waits for the key line before it starts the skill.
    pub(crate) started: bool,
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attached")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

/// Why the host killed the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKill {
    /// The deadline passed.
    Timeout,
    /// stdout went over the output limit.
    OutputLimit,
}

/// What was observed of a container that ran.
#[derive(Debug)]
pub struct RunOutcome {
    /// The skill's exit code, when known.
    pub exit_code: Option<i64>,
    /// Whether the kernel killed a process of the container for memory.
    pub oom_killed: bool,
    /// Why the host killed the container, if it did.
    pub host_kill: Option<HostKill>,
    /// stdout, decoded into frames.
    pub decoded: Decoded,
    /// stderr, up to the log limit.
    pub logs: Vec<u8>,
    /// Whether stderr went past the log limit.
    pub logs_truncated: bool,
    /// All the bytes the skill wrote to stderr.
    pub stderr_bytes: u64,
    /// From the request to a started container (or a free worker).
    pub startup: Duration,
    /// What skillhost's init reported; when present, `exit_code` and `oom_killed` are
    /// its, not the engine's.
    pub init_report: Option<ExitReport>,
    /// What the egress proxy saw of a skill with an allowlist.
    pub egress: EgressSeen,
}

/// A container's traffic through its egress proxy on one call.
#[derive(Debug, Default)]
pub struct EgressSeen {
    /// The container's address on the allowlist network, as the proxy knows it.
    pub client: Option<IpAddr>,
    /// What the proxy refused it during the call.
    pub denied: Vec<Denial>,
}

impl RunOutcome {
    /// The container's peak memory, as skillhost's init read it when the skill ended.
    pub fn peak_memory_bytes(&self) -> Option<u64> {
        self.init_report.and_then(|r| r.peak_memory_bytes)
    }

    /// The signal the engine stopped the container with, as skillhost's init saw it.
    pub fn stopped_by_engine(&self) -> Option<i32> {
        self.init_report.and_then(|r| r.outside_signal)
    }
}

/// The engine failed; the container, if any, is removed already.
#[derive(Debug, thiserror::Error)]
#[error("{action}: {source}")]
pub struct RunError {
    /// What was being done, e.g. `starting the container`.
    pub action: &'static str,
    /// The engine's answer.
    #[source]
    pub source: bollard::errors::Error,
}

pub(crate) fn err(action: &'static str) -> impl FnOnce(bollard::errors::Error) -> RunError {
    move |source| RunError { action, source }
}

/// Run `request` in a fresh container named `name`; the reaper removes it afterwards, and
/// the guard does if this future is dropped first.
pub async fn run_container(
    docker: &Docker,
    reaper: &Reaper,
    name: &str,
    body: ContainerCreateBody,
    request: RunRequest,
) -> Result<RunOutcome, RunError> {
    let started = Instant::now();
    // Guarded by name before it exists: a future dropped while the create is in flight
    // must not leave an unguarded container behind.
    let mut guard = ContainerGuard::new(name.to_string());
    let attached = create_attached(docker, name, body).await?;
    guard.created();
    run_attached(docker, reaper, guard, attached, request, started).await
}

/// Start an attached container, drive it to the end, and hand it to the reaper.
pub async fn run_attached(
    docker: &Docker,
    reaper: &Reaper,
    guard: ContainerGuard,
    attached: Attached,
    request: RunRequest,
    started: Instant,
) -> Result<RunOutcome, RunError> {
    let result = drive(docker, attached, request, started).await;
    guard.release(reaper);
    result
}

/// Create a container and attach to its stdio. Attaching before the start is what keeps
/// the first bytes of output from being lost.
pub async fn create_attached(
    docker: &Docker,
    name: &str,
    body: ContainerCreateBody,
) -> Result<Attached, RunError> {
    let options = CreateContainerOptions {
        name: Some(name.to_string()),
        ..Default::default()
    };
    let created = docker
        .create_container(Some(options), body)
        .await
        .map_err(err("creating the container"))?;
    let io = docker
        .attach_container(
            &created.id,
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
    Ok(Attached {
        id: created.id,
        name: name.to_string(),
        io,
        started: false,
    })
}

pub(crate) async fn start_container(docker: &Docker, id: &str) -> Result<(), RunError> {
    docker
        .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
        .await
        .map_err(err("starting the container"))
}

async fn drive(
    docker: &Docker,
    attached: Attached,
    request: RunRequest,
    started: Instant,
) -> Result<RunOutcome, RunError> {
    let (id, attach) = (attached.id.as_str(), attached.io);
    if !attached.started {
        start_container(docker, id).await?;
    }
    let startup = started.elapsed();
    let deadline = tokio::time::Instant::now() + request.timeout;
    let (writer, lookup) = spawn_writer(docker, id, attach.input, &request);
    let mut output = attach.output;
    let mut streams = Streams::new(&request);
    let watched = watch(docker, id, &mut output, &mut streams, deadline).await?;
    writer.abort();
    let Watched {
        reported,
        mut host_kill,
        output_open,
    } = watched;
    let (exit_code, oom_killed) = match reported {
        Some(report) => (
            Some(report.code),
            report.oom_kills.is_some_and(|kills| kills > 0),
        ),
        None => {
            let drained = Drained {
                output,
                output_open,
                writer,
            };
            settle_exit(docker, id, drained, &mut streams, &mut host_kill).await?
        }
    };
    let mut outcome = streams.into_outcome(exit_code, oom_killed, host_kill, startup);
    outcome.init_report = reported;
    outcome.egress.client = request.egress_client;
    if let Some(lookup) = lookup {
        // Done long ago unless the engine is wedged; a network's inspect takes no
        // container's lock, so it cannot wait on this call's own exit.
        outcome.egress.client = tokio::time::timeout(INSPECT_BOUND, lookup)
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
    }
    Ok(outcome)
}

/// The container's output, as attach gives it.
type Output = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
>;

/// Write the key line and the request to stdin and close it, from a task of its own, so a
/// skill that answers before reading all its input, or writes a lot while we write a lot,
/// cannot deadlock the exchange. With an allowlist the writer waits until the container's
/// egress address is known (the second task): a skill that reads its request before it
/// connects cannot be refused before the host knows whose refusal it is.
fn spawn_writer(
    docker: &Docker,
    id: &str,
    mut input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    request: &RunRequest,
) -> (
    tokio::task::JoinHandle<()>,
    Option<tokio::task::JoinHandle<Option<IpAddr>>>,
) {
    let mut stdin = request
        .trailer_key
        .as_deref()
        .map(key_line)
        .unwrap_or_default();
    stdin.extend_from_slice(&request.stdin);
    let (looked_up, written_after) = tokio::sync::oneshot::channel::<()>();
    let lookup = match request
        .egress
        .clone()
        .filter(|_| request.egress_client.is_none())
    {
        Some(gateway) => {
            let (docker, id) = (docker.clone(), id.to_string());
            Some(tokio::spawn(async move {
                let client = gateway.address_of(&docker, &id).await;
                let _ = looked_up.send(());
                client
            }))
        }
        None => {
            // Without a lookup to wait for, the writer goes at once.
            drop(looked_up);
            None
        }
    };
    let writer = tokio::spawn(async move {
        let _ = written_after.await;
        let _ = input.write_all(&stdin).await;
        let _ = input.shutdown().await;
    });
    (writer, lookup)
}

/// How the read loop ended.
struct Watched {
    /// The init's report, when it came first.
    reported: Option<ExitReport>,
    /// Why the host killed the container, if it did.
    host_kill: Option<HostKill>,
    /// Whether stdout was still open.
    output_open: bool,
}

/// Read stdout until the init reports the exit or the engine does, killing the container
/// at the deadline or at the output limit.
async fn watch(
    docker: &Docker,
    id: &str,
    output: &mut Output,
    streams: &mut Streams<'_>,
    deadline: tokio::time::Instant,
) -> Result<Watched, RunError> {
    let mut wait = Box::pin(docker.wait_container(
        id,
        Some(WaitContainerOptions {
            condition: "not-running".into(),
        }),
    ));
    let mut host_kill = None;
    let mut kill_sent_at: Option<tokio::time::Instant> = None;
    let mut output_open = true;
    loop {
        // The init's report is as good as the engine's, and tens of milliseconds sooner.
        if host_kill.is_none() {
            if let Some(report) = streams.exit_report() {
                return Ok(Watched {
                    reported: Some(report),
                    host_kill,
                    output_open,
                });
            }
        }
        let kill_grace_over = async {
            match kill_sent_at {
                Some(at) => tokio::time::sleep_until(at + KILL_GRACE).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            chunk = output.next(), if output_open => match chunk {
                Some(Ok(chunk)) => {
                    if streams.take(chunk) && host_kill.is_none() {
                        host_kill = Some(HostKill::OutputLimit);
                        kill_sent_at = Some(send_kill(docker, id));
                    }
                }
                Some(Err(e)) => return Err(err("reading the container's output")(e)),
                None => output_open = false,
            },
            status = wait.next() => match status {
                Some(Ok(_)) | Some(Err(bollard::errors::Error::DockerContainerWaitError { .. })) | None => break,
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
    Ok(Watched {
        reported: None,
        host_kill,
        output_open,
    })
}

/// What is left of the exchange when the engine, not the init, reported the exit.
struct Drained {
    output: Output,
    output_open: bool,
    writer: tokio::task::JoinHandle<()>,
}

/// The exit code and OOM flag from the engine, once the output still in flight is read
/// and the attach connection closed.
async fn settle_exit(
    docker: &Docker,
    id: &str,
    mut drained: Drained,
    streams: &mut Streams<'_>,
    host_kill: &mut Option<HostKill>,
) -> Result<(Option<i64>, bool), RunError> {
    // Whatever stdout is still in flight belongs to the answer.
    if drained.output_open {
        let _ = tokio::time::timeout(DRAIN_BOUND, async {
            while let Some(Ok(chunk)) = drained.output.next().await {
                if streams.take(chunk) && host_kill.is_none() {
                    *host_kill = Some(HostKill::OutputLimit);
                    break;
                }
            }
        })
        .await;
    }
    // Close the attach connection before asking the engine anything more. On dockerd
    // 20.10 the exit handler waits, holding the container's lock, until every attached
    // client has taken the output; an inspect sent while this connection stays open and
    // unread would wait on itself for ever.
    let _ = drained.writer.await;
    drop(drained.output);
    streams.release_held();
    exit_state(docker, id).await
}

/// What the container wrote: stdout decoded into frames, stderr kept up to the log
/// limit, and both scanned for the init's trailer when it has one. A serve-mode worker's
/// exchange uses it too, without a trailer.
pub(crate) struct Streams<'a> {
    pub(crate) reader: FrameReader,
    logs: Vec<u8>,
    log_limit: usize,
    stderr_bytes: u64,
    on_progress: Option<&'a ProgressCallback>,
    /// stdout's and stderr's.
    trailers: Option<[TrailerScanner; 2]>,
}

impl<'a> Streams<'a> {
    pub(crate) fn new(request: &'a RunRequest) -> Self {
        Streams {
            reader: FrameReader::new(&request.request_id, request.output_limit),
            logs: Vec::new(),
            log_limit: request.log_limit,
            stderr_bytes: 0,
            on_progress: request.on_progress.as_ref(),
            trailers: request
                .trailer_key
                .as_deref()
                .map(|key| [TrailerScanner::new(key), TrailerScanner::new(key)]),
        }
    }

    /// Take one chunk; true when stdout went over the output limit.
    pub(crate) fn take(&mut self, chunk: LogOutput) -> bool {
        match chunk {
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                match self.trailers.as_mut() {
                    Some([stdout, _]) => {
                        let bytes = stdout.push(&message);
                        self.stdout(&bytes)
                    }
                    None => self.stdout(&message),
                }
            }
            LogOutput::StdErr { message } => {
                match self.trailers.as_mut() {
                    Some([_, stderr]) => {
                        let bytes = stderr.push(&message);
                        self.stderr(&bytes)
                    }
                    None => self.stderr(&message),
                }
                false
            }
            LogOutput::StdIn { .. } => false,
        }
    }

    fn stdout(&mut self, bytes: &[u8]) -> bool {
        let pushed = self.reader.push(bytes);
        if let Some(callback) = self.on_progress {
            pushed.progress.iter().for_each(|p| callback(p));
        }
        pushed.over_limit
    }

    fn stderr(&mut self, bytes: &[u8]) {
        self.stderr_bytes += bytes.len() as u64;
        let room = self.log_limit.saturating_sub(self.logs.len());
        self.logs.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// The init's report, once both streams carried it whole: by then all of the skill's
    /// output is in. One without an OOM count is not enough to tell a memory kill.
    fn exit_report(&self) -> Option<ExitReport> {
        let [stdout, stderr] = self.trailers.as_ref()?;
        let report = stdout.report()?;
        stderr.report()?;
        report.oom_kills.map(|_| report)
    }

    /// The streams ended without a trailer: what was held back was output after all.
    fn release_held(&mut self) {
        if let Some([stdout, stderr]) = self.trailers.as_mut() {
            let (out, err) = (stdout.finish(), stderr.finish());
            self.stdout(&out);
            self.stderr(&err);
        }
    }

    pub(crate) fn into_outcome(
        self,
        exit_code: Option<i64>,
        oom_killed: bool,
        host_kill: Option<HostKill>,
        startup: Duration,
    ) -> RunOutcome {
        RunOutcome {
            exit_code,
            oom_killed,
            host_kill,
            logs_truncated: self.stderr_bytes > self.logs.len() as u64,
            decoded: self.reader.finish(),
            logs: self.logs,
            stderr_bytes: self.stderr_bytes,
            startup,
            init_report: None,
            egress: EgressSeen::default(),
        }
    }
}

/// How a stopped container ended: its exit code and whether the kernel killed a process
/// of it for memory.
pub(crate) async fn exit_state(docker: &Docker, id: &str) -> Result<(Option<i64>, bool), RunError> {
    let inspect = docker.inspect_container(
        id,
        None::<bollard::query_parameters::InspectContainerOptions>,
    );
    let state = tokio::time::timeout(INSPECT_BOUND, inspect)
        .await
        .map_err(|_| RunError {
            action: "inspecting the container (the engine did not answer in time)",
            source: bollard::errors::Error::RequestTimeoutError,
        })?
        .map_err(err("inspecting the container"))?
        .state
        .unwrap_or_default();
    Ok((state.exit_code, state.oom_killed.unwrap_or(false)))
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
