//! One container, start to finish: create, attach before start, write the request and
//! half-close stdin, read stdout and stderr concurrently with the writer, enforce the
//! deadline and the output limit by killing, learn how it ended, and remove it on every
//! path, including errors and a dropped future.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use skillhost_api::Denial;
use tokio::io::AsyncWriteExt;

use crate::egress::Gateway;
use crate::engine::containers::{Attachment, CallError, Chunk, Output};
use crate::engine::spec::ContainerSpec;
use crate::engine::Containers;
use crate::lifecycle::guard::ContainerGuard;
use crate::lifecycle::reaper::Reaper;
use crate::run::exit_trailer::{key_line, ExitReport, TrailerScanner};
use crate::run::frame_reader::{Decoded, FrameReader};
use crate::vocab::ProgressCallback;

/// After the container exits, how long to wait for the attach stream to end: it may
/// never end on its own (see the engine adapter's notes), and all its data is already in
/// transit.
const DRAIN_BOUND: Duration = Duration::from_millis(300);
/// How long the egress address lookup may still take once the call is over.
const LOOKUP_BOUND: Duration = Duration::from_secs(10);
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

#[cfg(test)]
impl RunRequest {
    /// A request for the unit tests: `stdin` as the request line of id `request_id`, 30 s
    /// to answer, 1 MiB of output, 1 KiB of logs, nothing else.
    pub(crate) fn for_test(request_id: &str, stdin: Vec<u8>) -> Self {
        RunRequest {
            stdin,
            request_id: request_id.into(),
            timeout: Duration::from_secs(30),
            output_limit: 1 << 20,
            log_limit: 1024,
            on_progress: None,
            trailer_key: None,
            egress: None,
            egress_client: None,
        }
    }
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
    pub(crate) io: Attachment,
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
    pub source: CallError,
}

pub(crate) fn err(action: &'static str) -> impl FnOnce(CallError) -> RunError {
    move |source| RunError { action, source }
}

/// Run `request` in a fresh container named `name`; the reaper removes it afterwards, and
/// the guard does if this future is dropped first.
pub(crate) async fn run_container(
    engine: &Containers,
    reaper: &Reaper,
    name: &str,
    spec: &ContainerSpec,
    request: RunRequest,
) -> Result<RunOutcome, RunError> {
    let started = Instant::now();
    // Guarded by name before it exists: a future dropped while the create is in flight
    // must not leave an unguarded container behind.
    let mut guard = ContainerGuard::new(name.to_string(), engine.clone());
    let attached = create_attached(engine, name, spec).await?;
    guard.created();
    run_attached(engine, reaper, guard, attached, request, started).await
}

/// Start an attached container, drive it to the end, and hand it to the reaper.
pub(crate) async fn run_attached(
    engine: &Containers,
    reaper: &Reaper,
    guard: ContainerGuard,
    attached: Attached,
    request: RunRequest,
    started: Instant,
) -> Result<RunOutcome, RunError> {
    let result = drive(engine, attached, request, started).await;
    guard.release(reaper);
    result
}

/// Create a container and attach to its stdio. Attaching before the start is what keeps
/// the first bytes of output from being lost.
pub(crate) async fn create_attached(
    engine: &Containers,
    name: &str,
    spec: &ContainerSpec,
) -> Result<Attached, RunError> {
    let id = engine
        .create(name, spec)
        .await
        .map_err(err("creating the container"))?;
    let io = engine
        .attach(&id)
        .await
        .map_err(err("attaching to the container"))?;
    Ok(Attached {
        id,
        name: name.to_string(),
        io,
        started: false,
    })
}

pub(crate) async fn start_container(engine: &Containers, id: &str) -> Result<(), RunError> {
    engine
        .start(id)
        .await
        .map_err(err("starting the container"))
}

async fn drive(
    engine: &Containers,
    attached: Attached,
    request: RunRequest,
    started: Instant,
) -> Result<RunOutcome, RunError> {
    let (id, attach) = (attached.id.as_str(), attached.io);
    if !attached.started {
        start_container(engine, id).await?;
    }
    let startup = started.elapsed();
    let deadline = tokio::time::Instant::now() + request.timeout;
    let (writer, lookup) = spawn_writer(engine, id, attach.input, &request);
    let mut output = attach.output;
    let mut streams = Streams::new(&request);
    let watched = watch(engine, id, &mut output, &mut streams, deadline).await?;
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
            settle_exit(engine, id, drained, &mut streams, &mut host_kill).await?
        }
    };
    let mut outcome = streams.into_outcome(exit_code, oom_killed, host_kill, startup);
    outcome.init_report = reported;
    outcome.egress.client = request.egress_client;
    if let Some(lookup) = lookup {
        // Done long ago unless the engine is wedged; a network's inspect takes no
        // container's lock, so it cannot wait on this call's own exit.
        outcome.egress.client = tokio::time::timeout(LOOKUP_BOUND, lookup)
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
    }
    Ok(outcome)
}

/// Write the key line and the request to stdin and close it, from a task of its own, so a
/// skill that answers before reading all its input, or writes a lot while we write a lot,
/// cannot deadlock the exchange. With an allowlist the writer waits until the container's
/// egress address is known (the second task): a skill that reads its request before it
/// connects cannot be refused before the host knows whose refusal it is.
fn spawn_writer(
    engine: &Containers,
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
            let (engine, id) = (engine.clone(), id.to_string());
            Some(tokio::spawn(async move {
                let client = gateway.address_of(engine.as_ref(), &id).await;
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
    engine: &Containers,
    id: &str,
    output: &mut Output,
    streams: &mut Streams<'_>,
    deadline: tokio::time::Instant,
) -> Result<Watched, RunError> {
    let mut stopped = engine.stopped(id);
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
                        kill_sent_at = Some(send_kill(engine, id));
                    }
                }
                Some(Err(e)) => return Err(err("reading the container's output")(e)),
                None => output_open = false,
            },
            status = &mut stopped => match status {
                Ok(()) => break,
                Err(e) => return Err(err("waiting for the container")(e)),
            },
            _ = tokio::time::sleep_until(deadline), if host_kill.is_none() => {
                host_kill = Some(HostKill::Timeout);
                kill_sent_at = Some(send_kill(engine, id));
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
    engine: &Containers,
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
    // Close the attach connection before asking the engine anything more: an inspect
    // can wait on an open, unread attach (see the engine adapter's notes).
    let _ = drained.writer.await;
    drop(drained.output);
    streams.release_held();
    exit_state(engine, id).await
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
    pub(crate) fn take(&mut self, chunk: Chunk) -> bool {
        match chunk {
            Chunk::Stdout(message) => match self.trailers.as_mut() {
                Some([stdout, _]) => {
                    let bytes = stdout.push(&message);
                    self.stdout(&bytes)
                }
                None => self.stdout(&message),
            },
            Chunk::Stderr(message) => {
                match self.trailers.as_mut() {
                    Some([_, stderr]) => {
                        let bytes = stderr.push(&message);
                        self.stderr(&bytes)
                    }
                    None => self.stderr(&message),
                }
                false
            }
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
        self.reported()
            .and_then(|report| report.oom_kills.map(|_| report))
    }

    /// The init's report, once both streams carried it whole, whatever it could count.
    pub(crate) fn reported(&self) -> Option<ExitReport> {
        let [stdout, stderr] = self.trailers.as_ref()?;
        stderr.report()?;
        stdout.report()
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
pub(crate) async fn exit_state(
    engine: &Containers,
    id: &str,
) -> Result<(Option<i64>, bool), RunError> {
    let state = engine
        .exit_state(id)
        .await
        .map_err(err("inspecting the container"))?;
    Ok((state.code, state.oom_killed))
}

/// SIGKILL the container from a task of its own. The engine answers a kill only once the
/// container has stopped, and it stops only once its output is drained, so awaiting the
/// kill while not reading the output would deadlock against a flooding skill.
fn send_kill(engine: &Containers, id: &str) -> tokio::time::Instant {
    let (engine, id) = (engine.clone(), id.to_string());
    tokio::spawn(async move {
        if let Err(e) = engine.kill(&id).await {
            tracing::warn!(container = %id, "kill failed: {e}");
        }
    });
    tokio::time::Instant::now()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::double::{FakeEngine, Script};

    const REQUEST: &[u8] = b"{\"id\":\"r-1\"}\n";
    const RESULT: &[u8] =
        b"{\"type\":\"result\",\"id\":\"r-1\",\"ok\":true,\"output\":{\"n\":1}}\n";

    /// An engine whose containers run `script`, with a reaper on it.
    fn engine(script: Script) -> (Arc<FakeEngine>, Containers, Reaper) {
        let fake = FakeEngine::new(move |_, stdin| {
            assert_eq!(stdin, REQUEST, "the request reaches stdin whole");
            script.clone()
        });
        let containers: Containers = fake.clone();
        let reaper = Reaper::new(containers.clone());
        (fake, containers, reaper)
    }

    /// Run the request in a container named `name` with these bounds.
    async fn run(
        (containers, reaper): (&Containers, &Reaper),
        name: &str,
        timeout: Duration,
        output_limit: u64,
    ) -> Result<RunOutcome, RunError> {
        let request = RunRequest {
            timeout,
            output_limit,
            ..RunRequest::for_test("r-1", REQUEST.to_vec())
        };
        let spec = ContainerSpec::default();
        run_container(containers, reaper, name, &spec, request).await
    }

    #[tokio::test]
    async fn an_answer_is_read_to_its_result_and_the_container_removed() {
        let (fake, containers, reaper) = engine(Script {
            stdout: RESULT.to_vec(),
            stderr: b"a log line\n".to_vec(),
            ..Default::default()
        });
        let outcome = run(
            (&containers, &reaper),
            "c-1",
            Duration::from_secs(30),
            1 << 20,
        )
        .await
        .unwrap();
        assert_eq!(outcome.exit_code, Some(0));
        assert_eq!(outcome.host_kill, None);
        assert!(outcome.decoded.result.is_some());
        assert_eq!(outcome.logs, b"a log line\n");
        reaper.settled().await;
        assert!(fake.containers().is_empty());
        let calls = fake.calls();
        let first: Vec<&str> = calls.iter().take(3).map(String::as_str).collect();
        assert_eq!(first, ["create c-1", "attach id-c-1", "start id-c-1"]);
        assert!(calls.contains(&"remove c-1".to_string()), "{calls:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_container_past_its_deadline_is_killed_and_removed() {
        let (fake, containers, reaper) = engine(Script {
            hang: true,
            ..Default::default()
        });
        let outcome = run(
            (&containers, &reaper),
            "c-2",
            Duration::from_secs(5),
            1 << 20,
        )
        .await
        .unwrap();
        assert_eq!(outcome.host_kill, Some(HostKill::Timeout));
        assert_eq!(outcome.exit_code, Some(137));
        assert!(fake.calls().contains(&"kill id-c-2".to_string()));
        reaper.settled().await;
        assert!(fake.containers().is_empty());
    }

    #[tokio::test]
    async fn output_past_the_limit_kills_the_container() {
        let (fake, containers, reaper) = engine(Script {
            stdout: vec![b'x'; 4096],
            hang: true,
            ..Default::default()
        });
        let outcome = run((&containers, &reaper), "c-3", Duration::from_secs(30), 100)
            .await
            .unwrap();
        assert_eq!(outcome.host_kill, Some(HostKill::OutputLimit));
        assert!(fake.calls().contains(&"kill id-c-3".to_string()));
    }

    #[tokio::test]
    async fn a_failed_create_is_an_engine_error_and_leaves_nothing() {
        let (fake, containers, reaper) = engine(Script::default());
        fake.fail("create", 1);
        let err = run(
            (&containers, &reaper),
            "c-4",
            Duration::from_secs(30),
            1 << 20,
        )
        .await
        .unwrap_err();
        assert_eq!(err.action, "creating the container");
        assert!(fake.containers().is_empty());
    }

    #[tokio::test]
    async fn a_dropped_call_takes_its_container_with_it() {
        let (fake, containers, reaper) = engine(Script {
            hang: true,
            ..Default::default()
        });
        let call = run(
            (&containers, &reaper),
            "c-5",
            Duration::from_secs(60),
            1 << 20,
        );
        // The caller gives up while the skill still runs.
        assert!(tokio::time::timeout(Duration::from_millis(50), call)
            .await
            .is_err());
        assert!(fake.containers().is_empty(), "{:?}", fake.containers());
    }
}
