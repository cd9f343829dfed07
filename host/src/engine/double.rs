//! An in-memory [`ContainerEngine`] for unit tests: containers that run a script instead
//! of a process, networks that hold addresses, and a record of every call, so the pools,
//! the router, the reaper and the leftover sweep are tested without an engine.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::FutureExt;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};

use super::containers::{
    Attachment, Call, CallError, Chunk, ContainerEngine, ExitState, Failure, Labelled, Leftovers,
    Resource,
};
use super::spec::{ContainerSpec, TmpfsVolume};
use crate::sync::lock;

/// What a container does once started: read stdin to its end, write this, then exit.
#[derive(Debug, Clone, Default)]
pub(crate) struct Script {
    /// Written to stdout after stdin closed.
    pub(crate) stdout: Vec<u8>,
    /// Written to stderr after stdin closed.
    pub(crate) stderr: Vec<u8>,
    /// The exit code.
    pub(crate) exit: i64,
    /// Never exits on its own: only a kill ends it.
    pub(crate) hang: bool,
}

/// How a serve-mode worker is told so (`SKILLHOST_MODE=serve`).
const SERVE_MODE: &str = "SKILLHOST_MODE=serve";
/// How a recycled container's init is told so: it too reads a line at a time here (the
/// call's header, then the request).
const RECYCLE_MODE: &str = "SKILLHOST_INIT_RECYCLE=1";

/// Decides each container's script from its spec and the stdin it read (a serve-mode
/// worker's: one line).
type Scripter = dyn Fn(&ContainerSpec, &[u8]) -> Script + Send + Sync;

/// The double. Containers are known by name and by ID (`id-<name>`).
pub(crate) struct FakeEngine {
    state: Mutex<State>,
    scripter: Arc<Scripter>,
}

impl std::fmt::Debug for FakeEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeEngine").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    containers: HashMap<String, FakeContainer>,
    networks: HashMap<String, HashMap<String, String>>,
    volumes: HashMap<String, HashMap<String, String>>,
    calls: Vec<String>,
    /// Calls (by their first word, e.g. `remove`) that fail this many more times.
    failing: HashMap<String, usize>,
    /// Images the engine does not have.
    absent: Vec<String>,
}

struct FakeContainer {
    spec: ContainerSpec,
    exited: watch::Sender<Option<i64>>,
    stdin: Option<tokio::io::DuplexStream>,
    output: Option<mpsc::UnboundedSender<Chunk>>,
}

impl FakeEngine {
    /// Every container runs what `scripter` says.
    pub(crate) fn new(
        scripter: impl Fn(&ContainerSpec, &[u8]) -> Script + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(FakeEngine {
            state: Mutex::default(),
            scripter: Arc::new(scripter),
        })
    }

    /// Every call so far, e.g. `create skillhost-echo-1`, `remove id-skillhost-echo-1`.
    pub(crate) fn calls(&self) -> Vec<String> {
        lock(&self.state).calls.clone()
    }

    /// The names of the containers that exist now.
    pub(crate) fn containers(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.state).containers.keys().cloned().collect();
        names.sort();
        names
    }

    /// The spec a container was created with.
    pub(crate) fn spec(&self, name: &str) -> Option<ContainerSpec> {
        lock(&self.state)
            .containers
            .get(name)
            .map(|c| c.spec.clone())
    }

    /// Make the next `times` calls of `call` (`create`, `remove`, ...) fail.
    pub(crate) fn fail(&self, call: &str, times: usize) {
        lock(&self.state).failing.insert(call.to_string(), times);
    }

    /// Make creating a container of `image` fail as the engine does for an absent image.
    pub(crate) fn lacks_image(&self, image: &str) {
        lock(&self.state).absent.push(image.to_string());
    }

    /// Add a container made by someone else, e.g. a dead host's leftover.
    pub(crate) fn add_stopped(&self, name: &str, labels: HashMap<String, String>) {
        let spec = ContainerSpec {
            labels,
            ..Default::default()
        };
        let (exited, _) = watch::channel(Some(0));
        lock(&self.state).containers.insert(
            name.to_string(),
            FakeContainer {
                spec,
                exited,
                stdin: None,
                output: None,
            },
        );
    }

    /// Record `call` and fail it if asked to.
    fn record(&self, call: &str, target: &str) -> Result<(), CallError> {
        let mut state = lock(&self.state);
        state.calls.push(format!("{call} {target}"));
        match state.failing.get_mut(call) {
            Some(left) if *left > 0 => {
                *left -= 1;
                Err(CallError::new(
                    Failure::Other,
                    format!("{call} failed (double)"),
                ))
            }
            _ => Ok(()),
        }
    }

    fn name_of(id: &str) -> &str {
        id.strip_prefix("id-").unwrap_or(id)
    }

    fn not_found(id: &str) -> CallError {
        CallError::new(Failure::NotFound, format!("no such container: {id}"))
    }

    fn exited_of(&self, id: &str) -> Option<watch::Receiver<Option<i64>>> {
        lock(&self.state)
            .containers
            .get(Self::name_of(id))
            .map(|c| c.exited.subscribe())
    }
}

impl ContainerEngine for FakeEngine {
    fn create<'a>(&'a self, name: &'a str, spec: &'a ContainerSpec) -> Call<'a, String> {
        async move {
            self.record("create", name)?;
            let mut state = lock(&self.state);
            if state.absent.contains(&spec.image) {
                return Err(CallError::new(
                    Failure::NotFound,
                    format!("No such image: {}", spec.image),
                ));
            }
            if state.containers.contains_key(name) {
                return Err(CallError::new(
                    Failure::Other,
                    format!("name {name} in use"),
                ));
            }
            let (exited, _) = watch::channel(None);
            state.containers.insert(
                name.to_string(),
                FakeContainer {
                    spec: spec.clone(),
                    exited,
                    stdin: None,
                    output: None,
                },
            );
            Ok(format!("id-{name}"))
        }
        .boxed()
    }

    fn attach<'a>(&'a self, id: &'a str) -> Call<'a, Attachment> {
        async move {
            self.record("attach", id)?;
            let mut state = lock(&self.state);
            let container = state
                .containers
                .get_mut(Self::name_of(id))
                .ok_or_else(|| Self::not_found(id))?;
            let (ours, theirs) = tokio::io::duplex(1 << 16);
            let (sender, receiver) = mpsc::unbounded_channel();
            container.stdin = Some(theirs);
            container.output = Some(sender);
            let output = tokio_stream_of(receiver);
            Ok(Attachment {
                input: Box::pin(ours),
                output,
            })
        }
        .boxed()
    }

    fn start<'a>(&'a self, id: &'a str) -> Call<'a, ()> {
        async move {
            self.record("start", id)?;
            let (spec, stdin, output, exited) = {
                let mut state = lock(&self.state);
                let container = state
                    .containers
                    .get_mut(Self::name_of(id))
                    .ok_or_else(|| Self::not_found(id))?;
                (
                    container.spec.clone(),
                    container.stdin.take(),
                    container.output.take(),
                    container.exited.clone(),
                )
            };
            match stdin {
                Some(stdin)
                    if spec
                        .env
                        .iter()
                        .any(|e| e == SERVE_MODE || e == RECYCLE_MODE) =>
                {
                    let scripter = self.scripter.clone();
                    tokio::spawn(serve_lines(scripter, spec, stdin, output, exited));
                }
                Some(stdin) => {
                    let scripter = self.scripter.clone();
                    tokio::spawn(run_script(scripter, spec, stdin, output, exited));
                }
                None => {
                    let script = (self.scripter)(&spec, &[]);
                    if !script.hang {
                        exited.send_replace(Some(script.exit));
                    }
                }
            }
            Ok(())
        }
        .boxed()
    }

    fn stopped(&self, id: &str) -> Call<'static, ()> {
        let exited = self.exited_of(id);
        async move {
            if let Some(mut exited) = exited {
                let _ = exited.wait_for(Option::is_some).await;
            }
            Ok(())
        }
        .boxed()
    }

    fn kill<'a>(&'a self, id: &'a str) -> Call<'a, ()> {
        async move {
            self.record("kill", id)?;
            if let Some(c) = lock(&self.state).containers.get(Self::name_of(id)) {
                c.exited.send_if_modified(|code| {
                    let running = code.is_none();
                    if running {
                        *code = Some(137);
                    }
                    running
                });
            }
            Ok(())
        }
        .boxed()
    }

    fn exit_state<'a>(&'a self, id: &'a str) -> Call<'a, ExitState> {
        async move {
            self.record("inspect", id)?;
            let state = lock(&self.state);
            let c = state
                .containers
                .get(Self::name_of(id))
                .ok_or_else(|| Self::not_found(id))?;
            let code = *c.exited.borrow();
            Ok(ExitState {
                code,
                oom_killed: false,
            })
        }
        .boxed()
    }

    fn running<'a>(&'a self, id: &'a str) -> Call<'a, bool> {
        async move {
            self.record("inspect", id)?;
            Ok(lock(&self.state)
                .containers
                .get(Self::name_of(id))
                .is_some_and(|c| c.exited.borrow().is_none()))
        }
        .boxed()
    }

    fn remove<'a>(&'a self, id: &'a str) -> Call<'a, ()> {
        async move {
            self.record("remove", id)?;
            if let Some(c) = lock(&self.state).containers.remove(Self::name_of(id)) {
                c.exited
                    .send_if_modified(|code| code.replace(137).is_none());
            }
            Ok(())
        }
        .boxed()
    }

    fn remove_blocking(&self, leftovers: Leftovers, _patience: Duration) -> bool {
        let Leftovers {
            containers,
            networks,
            volumes,
        } = leftovers;
        let mut all = true;
        for name in volumes {
            lock(&self.state).volumes.remove(&name);
        }
        for id in containers {
            all &= self.record("remove", &id).is_ok();
            lock(&self.state).containers.remove(Self::name_of(&id));
        }
        for name in networks {
            all &= self.record("remove_network", &name).is_ok();
            lock(&self.state).networks.remove(&name);
        }
        all
    }

    fn list<'a>(
        &'a self,
        kind: Resource,
        label: &'a str,
        value: &'a str,
    ) -> Call<'a, Vec<Labelled>> {
        async move {
            self.record("list", label)?;
            let state = lock(&self.state);
            let labelled = |(name, labels): (&String, &HashMap<String, String>)| {
                (labels.get(label).map(String::as_str) == Some(value)).then(|| Labelled {
                    id: format!("id-{name}"),
                    name: name.clone(),
                    labels: labels.clone(),
                })
            };
            let mut listed: Vec<Labelled> = match kind {
                Resource::Container => state
                    .containers
                    .iter()
                    .filter_map(|(name, c)| labelled((name, &c.spec.labels)))
                    .collect(),
                Resource::Network => state.networks.iter().filter_map(labelled).collect(),
                Resource::Volume => state.volumes.iter().filter_map(labelled).collect(),
            };
            listed.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(listed)
        }
        .boxed()
    }

    fn create_internal_network<'a>(
        &'a self,
        name: &'a str,
        labels: HashMap<String, String>,
    ) -> Call<'a, String> {
        async move {
            self.record("create_network", name)?;
            lock(&self.state).networks.insert(name.to_string(), labels);
            Ok("172.30.0.0/16".to_string())
        }
        .boxed()
    }

    fn connect<'a>(&'a self, network: &'a str, container: &'a str) -> Call<'a, ()> {
        async move { self.record("connect", &format!("{network} {container}")) }.boxed()
    }

    fn address_on<'a>(&'a self, network: &'a str, container: &'a str) -> Call<'a, Option<IpAddr>> {
        async move {
            self.record("address", &format!("{network} {container}"))?;
            let known = lock(&self.state)
                .containers
                .contains_key(Self::name_of(container));
            Ok(known.then_some(IpAddr::V4(Ipv4Addr::new(172, 30, 0, 9))))
        }
        .boxed()
    }

    fn remove_network<'a>(&'a self, name: &'a str) -> Call<'a, ()> {
        async move {
            self.record("remove_network", name)?;
            lock(&self.state).networks.remove(name);
            Ok(())
        }
        .boxed()
    }

    fn logs<'a>(
        &'a self,
        container: &'a str,
        _since: SystemTime,
        _until: SystemTime,
    ) -> Call<'a, String> {
        async move {
            self.record("logs", container)?;
            Ok(String::new())
        }
        .boxed()
    }

    fn await_log<'a>(&'a self, container: &'a str, ready: &'a str) -> Call<'a, (bool, String)> {
        async move {
            self.record("await_log", container)?;
            Ok((true, ready.to_string()))
        }
        .boxed()
    }

    fn create_volume<'a>(
        &'a self,
        name: &'a str,
        _volume: TmpfsVolume,
        labels: HashMap<String, String>,
    ) -> Call<'a, ()> {
        async move {
            self.record("create_volume", name)?;
            lock(&self.state).volumes.insert(name.to_string(), labels);
            Ok(())
        }
        .boxed()
    }

    fn remove_volume<'a>(&'a self, name: &'a str) -> Call<'a, ()> {
        async move {
            self.record("remove_volume", name)?;
            let mut state = lock(&self.state);
            let in_use = state
                .containers
                .values()
                .any(|c| c.spec.volumes.iter().any(|v| v.name == name));
            if in_use {
                return Err(CallError::new(
                    Failure::Other,
                    format!("volume {name} is in use"),
                ));
            }
            state.volumes.remove(name);
            Ok(())
        }
        .boxed()
    }

    /// Runs the scripter on a copy of the container's spec whose command is `command`.
    fn exec<'a>(
        &'a self,
        container: &'a str,
        command: &'a [String],
        _user: &'a str,
    ) -> Call<'a, Attachment> {
        async move {
            self.record("exec", &format!("{container} {}", command.join(" ")))?;
            let mut spec = lock(&self.state)
                .containers
                .get(Self::name_of(container))
                .map(|c| c.spec.clone())
                .ok_or_else(|| Self::not_found(container))?;
            spec.cmd = Some(command.to_vec());
            spec.env.retain(|e| e != SERVE_MODE);
            let (ours, theirs) = tokio::io::duplex(1 << 16);
            let (sender, receiver) = mpsc::unbounded_channel();
            let (exited, _) = watch::channel(None);
            tokio::spawn(run_script(
                self.scripter.clone(),
                spec,
                theirs,
                Some(sender),
                exited,
            ));
            Ok(Attachment {
                input: Box::pin(ours),
                output: tokio_stream_of(receiver),
            })
        }
        .boxed()
    }
}

impl FakeEngine {
    /// The volumes that exist.
    pub(crate) fn volumes(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.state).volumes.keys().cloned().collect();
        names.sort();
        names
    }
}

/// A serve-mode worker (`SKILLHOST_MODE=serve` in its environment) or a recycled
/// container: a script per line of stdin, each line's stdout and stderr written at once;
/// it exits when a script exits non-zero or stdin ends, and hangs when a script hangs.
async fn serve_lines(
    scripter: Arc<Scripter>,
    spec: ContainerSpec,
    stdin: tokio::io::DuplexStream,
    output: Option<mpsc::UnboundedSender<Chunk>>,
    exited: watch::Sender<Option<i64>>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stdin).lines();
    let mut killed = exited.subscribe();
    let code = loop {
        let line = tokio::select! {
            line = lines.next_line() => line,
            _ = killed.wait_for(Option::is_some) => return,
        };
        let Ok(Some(line)) = line else { break 0 };
        let script = scripter(&spec, line.as_bytes());
        if let Some(output) = &output {
            if !script.stdout.is_empty() {
                let _ = output.send(Chunk::Stdout(Bytes::from(script.stdout)));
            }
            if !script.stderr.is_empty() {
                let _ = output.send(Chunk::Stderr(Bytes::from(script.stderr)));
            }
        }
        if script.hang {
            let _ = killed.wait_for(Option::is_some).await;
            return;
        }
        if script.exit != 0 {
            break script.exit;
        }
    };
    exited.send_if_modified(|exit| exit.replace(code).is_none());
    drop(output);
}

/// Read stdin to its end, write the script's output, and exit (unless it hangs).
async fn run_script(
    scripter: Arc<Scripter>,
    spec: ContainerSpec,
    mut stdin: tokio::io::DuplexStream,
    output: Option<mpsc::UnboundedSender<Chunk>>,
    exited: watch::Sender<Option<i64>>,
) {
    let mut killed = exited.subscribe();
    let mut read = Vec::new();
    tokio::select! {
        _ = stdin.read_to_end(&mut read) => {}
        _ = killed.wait_for(Option::is_some) => return,
    }
    let script = scripter(&spec, &read);
    if let Some(output) = &output {
        if !script.stdout.is_empty() {
            let _ = output.send(Chunk::Stdout(Bytes::from(script.stdout)));
        }
        if !script.stderr.is_empty() {
            let _ = output.send(Chunk::Stderr(Bytes::from(script.stderr)));
        }
    }
    if !script.hang {
        exited.send_if_modified(|code| code.replace(script.exit).is_none());
    }
    // The output ends when the container does.
    let _ = killed.wait_for(Option::is_some).await;
    drop(output);
}

/// A receiver as the attach output stream.
fn tokio_stream_of(receiver: mpsc::UnboundedReceiver<Chunk>) -> super::containers::Output {
    Box::pin(futures_util::stream::unfold(receiver, |mut r| async move {
        r.recv().await.map(|chunk| (Ok(chunk), r))
    }))
}
