//! The seam between skillhost and the engine's containers, networks and logs: every such
//! call of the host goes through [`ContainerEngine`]. The Docker adapter
//! ([`super::docker::DockerContainers`]) implements it against a real engine, with the
//! engine's quirks handled there once; an in-memory double (`super::double`) implements it
//! for unit tests of the pools, the router and the reaper.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::Stream;
use tokio::io::AsyncWrite;

use super::spec::{ContainerSpec, TmpfsVolume};

/// The engine, as the host's lifecycles use it. Shared by every part of a host.
pub(crate) type Containers = Arc<dyn ContainerEngine>;

/// One engine call's answer.
pub(crate) type Call<'a, T> = BoxFuture<'a, Result<T, CallError>>;

/// A container's attached output: its stdout and stderr, chunk by chunk, until it ends.
pub(crate) type Output = Pin<Box<dyn Stream<Item = Result<Chunk, CallError>> + Send>>;

/// A container's attached stdin.
pub(crate) type Input = Pin<Box<dyn AsyncWrite + Send>>;

/// Containers, networks and logs. Every method names what it acts on by ID or name, and
/// what is already gone is not an error where the method says so.
pub(crate) trait ContainerEngine: Send + Sync + std::fmt::Debug {
    /// Create a container named `name`; its ID. An absent image is [`Failure::NotFound`].
    fn create<'a>(&'a self, name: &'a str, spec: &'a ContainerSpec) -> Call<'a, String>;

    /// Attach to the stdio of a container not yet started, so no output is lost.
    fn attach<'a>(&'a self, id: &'a str) -> Call<'a, Attachment>;

    /// Start a created container.
    fn start<'a>(&'a self, id: &'a str) -> Call<'a, ()>;

    /// Resolves once the container is not running (at once when it never ran or is gone).
    fn stopped(&self, id: &str) -> Call<'static, ()>;

    /// SIGKILL the container; one already stopped or gone is not an error.
    fn kill<'a>(&'a self, id: &'a str) -> Call<'a, ()>;

    /// How a stopped container ended.
    fn exit_state<'a>(&'a self, id: &'a str) -> Call<'a, ExitState>;

    /// Whether the container runs; one the engine does not know does not.
    fn running<'a>(&'a self, id: &'a str) -> Call<'a, bool>;

    /// Stop and remove a container and its anonymous volumes; one already gone is not an
    /// error.
    fn remove<'a>(&'a self, id: &'a str) -> Call<'a, ()>;

    /// Remove containers, then networks and volumes, from a thread of the adapter's own,
    /// and block until that is done: for `Drop`, which may run while the caller's runtime
    /// stops. A container missing is looked for again while `patience` lasts (its create
    /// may still be in flight). True when everything went.
    fn remove_blocking(&self, leftovers: Leftovers, patience: Duration) -> bool;

    /// Every container (running or not) or network with `label=value`.
    fn list<'a>(
        &'a self,
        kind: Resource,
        label: &'a str,
        value: &'a str,
    ) -> Call<'a, Vec<Labelled>>;

    /// Create an internal bridge network that gives the host no address on it; its subnet.
    fn create_internal_network<'a>(
        &'a self,
        name: &'a str,
        labels: HashMap<String, String>,
    ) -> Call<'a, String>;

    /// Connect a created container to another network as well.
    fn connect<'a>(&'a self, network: &'a str, container: &'a str) -> Call<'a, ()>;

    /// The address of container `container` on `network`, read from the network (whose
    /// inspect takes no lock of the container); `None` when it has none there.
    fn address_on<'a>(&'a self, network: &'a str, container: &'a str) -> Call<'a, Option<IpAddr>>;

    /// Remove a network; one already gone is not an error.
    fn remove_network<'a>(&'a self, name: &'a str) -> Call<'a, ()>;

    /// What a container with [`super::spec::LogKeeping::Bounded`] logged between two
    /// instants (whole seconds, each line stamped).
    fn logs<'a>(
        &'a self,
        container: &'a str,
        since: SystemTime,
        until: SystemTime,
    ) -> Call<'a, String>;

    /// Follow a container's logs until a line holds `ready` (true) or they end (false),
    /// with everything seen.
    fn await_log<'a>(&'a self, container: &'a str, ready: &'a str) -> Call<'a, (bool, String)>;

    /// Create a named tmpfs volume with `labels`.
    fn create_volume<'a>(
        &'a self,
        name: &'a str,
        volume: TmpfsVolume,
        labels: HashMap<String, String>,
    ) -> Call<'a, ()>;

    /// Remove a volume; one already gone is not an error, one still in use is.
    fn remove_volume<'a>(&'a self, name: &'a str) -> Call<'a, ()>;

    /// Run `command` in the running container `container` as `user` (`uid:gid`), with its
    /// stdin, stdout and stderr attached; its stdin closes once the writer half-closes it.
    /// The process has the container's confinement.
    fn exec<'a>(
        &'a self,
        container: &'a str,
        command: &'a [String],
        user: &'a str,
    ) -> Call<'a, Attachment>;
}

/// What [`ContainerEngine::remove_blocking`] removes, by name or ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Leftovers {
    pub(crate) containers: Vec<String>,
    pub(crate) networks: Vec<String>,
    pub(crate) volumes: Vec<String>,
}

/// A container or a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resource {
    /// Containers, running or not.
    Container,
    /// Networks.
    Network,
    /// Volumes.
    Volume,
}

/// A listed container or network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Labelled {
    /// Its ID.
    pub(crate) id: String,
    /// Its name, without the leading `/` the engine gives container names.
    pub(crate) name: String,
    /// Its labels.
    pub(crate) labels: HashMap<String, String>,
}

/// A container's stdio, attached before it starts.
pub(crate) struct Attachment {
    /// Its stdin.
    pub(crate) input: Input,
    /// Its stdout and stderr.
    pub(crate) output: Output,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment").finish_non_exhaustive()
    }
}

/// A piece of a container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// From stdout.
    Stdout(Bytes),
    /// From stderr.
    Stderr(Bytes),
}

/// How a container ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ExitState {
    /// Its exit code, when the engine knows one.
    pub(crate) code: Option<i64>,
    /// Whether the kernel killed a process of it for memory.
    pub(crate) oom_killed: bool,
}

/// What kind of failure an engine call met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The engine does not know what was named (a container, a network, an image).
    NotFound,
    /// The engine did not answer in time.
    Timeout,
    /// Anything else: refused, unreachable, garbled.
    Other,
}

/// A failed engine call: what the engine (or the way to it) said.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    pub(crate) failure: Failure,
    /// The HTTP status the engine answered with, when it answered.
    pub(crate) status: Option<u16>,
    /// The whole message, e.g. `Docker responded with status code 404: no such image`.
    pub(crate) message: String,
    /// The engine's or the registry's own words alone, e.g. `no such image`.
    pub(crate) words: String,
}

impl CallError {
    pub(crate) fn new(failure: Failure, message: impl Into<String>) -> Self {
        let message = message.into();
        CallError {
            failure,
            status: None,
            words: message.clone(),
            message,
        }
    }

    /// The engine's or the registry's own words, without what bollard adds.
    pub fn words(&self) -> &str {
        &self.words
    }

    /// The HTTP status the engine answered with, when it answered.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// Whether the engine did not know what was named.
    pub(crate) fn is_not_found(&self) -> bool {
        self.failure == Failure::NotFound
    }
}
