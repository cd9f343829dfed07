//! The Docker adapter: [`ContainerEngine`] against a real engine, through bollard. Every
//! quirk of the engine the host has met is handled here, once:
//!
//! - **Exit records lag, and a forced removal can leave a ghost.** Docker 20.10 handles an
//!   exit that arrives after a forced removal by writing the removed container back into
//!   its list, where it stays "Removal In Progress" until dockerd restarts. So
//!   [`ContainerEngine::remove`] kills first and waits (boundedly) until the exit is
//!   recorded, then removes.
//! - **A kill is answered only once the container stopped**, and a container stops only
//!   once its attached output is drained: callers send kills from a task of their own
//!   while they read (see `run::container`).
//! - **An inspect can wait on an open attach.** On dockerd 20.10 the exit handler holds the
//!   container's lock until every attached client has taken the output: an inspect sent
//!   while the caller's attach stays open and unread waits on itself. Callers close the
//!   attach before [`ContainerEngine::exit_state`], which is also bounded here; addresses
//!   are read from the network's inspect, which takes no container's lock.
//! - **The attach stream may never end after the exit** (bollard #251): callers bound the
//!   drain after the engine reports the exit.
//! - **The wait endpoint answers a non-zero exit as an error** (bollard's
//!   `DockerContainerWaitError`): here that is a stopped container like any other.
//! - 404 and 409 on kill and remove mean "already gone / already stopped".

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::VolumeCreateRequest;
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountBindOptions,
    MountBindOptionsPropagationEnum, MountType, NetworkConnectRequest, NetworkCreateRequest,
    ResourcesUlimits,
};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, InspectContainerOptions, InspectNetworkOptions,
    KillContainerOptions, ListContainersOptions, ListNetworksOptions, ListVolumesOptions,
    LogsOptions, RemoveContainerOptions, RemoveVolumeOptions, StartContainerOptions,
    WaitContainerOptions,
};
use bollard::Docker;
use futures_util::{FutureExt, StreamExt, TryStreamExt};

use super::containers::{
    Attachment, Call, CallError, Chunk, ContainerEngine, ExitState, Failure, Labelled, Leftovers,
    Output, Resource,
};
use super::spec::{ContainerSpec, LogKeeping, NetworkMode, TmpfsVolume};
use super::thread;

/// Keeps Docker from giving the host an address on an internal network, through which a
/// container could reach every service the host listens with.
const NO_HOST_ADDRESS: &str = "com.docker.network.bridge.inhibit_ipv4";
/// How long the engine may take to describe a finished container; an engine that is
/// wedged on it must not hold the call for ever.
const INSPECT_BOUND: Duration = Duration::from_secs(10);
/// How long a removal waits for the engine to record the exit of a container it killed.
const EXIT_RECORDED: Duration = Duration::from_secs(30);
/// How often a container expected to appear is looked for again.
const LOOK_AGAIN: Duration = Duration::from_millis(50);

/// A real engine's containers, networks and logs.
#[derive(Debug, Clone)]
pub(crate) struct DockerContainers {
    docker: Docker,
}

impl DockerContainers {
    pub(crate) fn new(docker: Docker) -> Self {
        DockerContainers { docker }
    }
}

/// bollard's error in skillhost's terms.
pub(crate) fn call_error(e: BollardError) -> CallError {
    let failure = match &e {
        _ if is_not_found(&e) => Failure::NotFound,
        BollardError::RequestTimeoutError => Failure::Timeout,
        _ => Failure::Other,
    };
    let words = match &e {
        BollardError::DockerStreamError { error } => error.clone(),
        BollardError::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    };
    CallError {
        failure,
        status: status(&e),
        message: e.to_string(),
        words,
    }
}

/// Whether the engine answered that it does not know what was named (404).
pub(crate) fn is_not_found(e: &BollardError) -> bool {
    status(e) == Some(404)
}

fn status(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

impl ContainerEngine for DockerContainers {
    fn create<'a>(&'a self, name: &'a str, spec: &'a ContainerSpec) -> Call<'a, String> {
        async move {
            let options = CreateContainerOptions {
                name: Some(name.to_string()),
                ..Default::default()
            };
            let created = self
                .docker
                .create_container(Some(options), create_body(spec))
                .await
                .map_err(call_error)?;
            Ok(created.id)
        }
        .boxed()
    }

    fn attach<'a>(&'a self, id: &'a str) -> Call<'a, Attachment> {
        async move {
            let options = AttachContainerOptions {
                stdin: true,
                stdout: true,
                stderr: true,
                stream: true,
                logs: false,
                ..Default::default()
            };
            let io = self
                .docker
                .attach_container(id, Some(options))
                .await
                .map_err(call_error)?;
            Ok(Attachment {
                input: io.input,
                output: chunks(io.output),
            })
        }
        .boxed()
    }

    fn start<'a>(&'a self, id: &'a str) -> Call<'a, ()> {
        async move {
            self.docker
                .start_container(id, None::<StartContainerOptions>)
                .await
                .map_err(call_error)
        }
        .boxed()
    }

    fn stopped(&self, id: &str) -> Call<'static, ()> {
        let (docker, id) = (self.docker.clone(), id.to_string());
        async move {
            let condition = WaitContainerOptions {
                condition: "not-running".into(),
            };
            let mut wait = docker.wait_container(&id, Some(condition));
            match wait.next().await {
                Some(Ok(_) | Err(BollardError::DockerContainerWaitError { .. })) | None => Ok(()),
                Some(Err(e)) if is_not_found(&e) => Ok(()),
                Some(Err(e)) => Err(call_error(e)),
            }
        }
        .boxed()
    }

    fn kill<'a>(&'a self, id: &'a str) -> Call<'a, ()> {
        async move {
            let options = KillContainerOptions {
                signal: "KILL".into(),
            };
            match self.docker.kill_container(id, Some(options)).await {
                Err(e) if matches!(status(&e), Some(404 | 409)) => Ok(()),
                other => other.map_err(call_error),
            }
        }
        .boxed()
    }

    fn exit_state<'a>(&'a self, id: &'a str) -> Call<'a, ExitState> {
        async move {
            let inspect = self
                .docker
                .inspect_container(id, None::<InspectContainerOptions>);
            let state = tokio::time::timeout(INSPECT_BOUND, inspect)
                .await
                .map_err(|_| {
                    CallError::new(
                        Failure::Timeout,
                        format!("no answer within {}s", INSPECT_BOUND.as_secs()),
                    )
                })?
                .map_err(call_error)?
                .state
                .unwrap_or_default();
            Ok(ExitState {
                code: state.exit_code,
                oom_killed: state.oom_killed.unwrap_or(false),
            })
        }
        .boxed()
    }

    fn running<'a>(&'a self, id: &'a str) -> Call<'a, bool> {
        async move {
            match self
                .docker
                .inspect_container(id, None::<InspectContainerOptions>)
                .await
            {
                Ok(container) => Ok(container.state.is_some_and(|state| {
                    state.running == Some(true) || state.restarting == Some(true)
                })),
                Err(e) if is_not_found(&e) => Ok(false),
                Err(e) => Err(call_error(e)),
            }
        }
        .boxed()
    }

    fn remove<'a>(&'a self, id: &'a str) -> Call<'a, ()> {
        remove(&self.docker, id).boxed()
    }

    fn remove_blocking(&self, leftovers: Leftovers, patience: Duration) -> bool {
        thread::run_blocking(move |docker| async move {
            let removals = leftovers
                .containers
                .iter()
                .map(|id| remove_once_present(&docker, id, patience));
            let removed = futures_util::future::join_all(removals).await;
            let mut all = removed.iter().all(Result::is_ok);
            for name in &leftovers.networks {
                all &= remove_network(&docker, name).await.is_ok();
            }
            for name in &leftovers.volumes {
                all &= match docker
                    .remove_volume(name, None::<RemoveVolumeOptions>)
                    .await
                {
                    Err(e) => is_not_found(&e),
                    Ok(()) => true,
                };
            }
            all
        })
        .unwrap_or(false)
    }

    fn list<'a>(
        &'a self,
        kind: Resource,
        label: &'a str,
        value: &'a str,
    ) -> Call<'a, Vec<Labelled>> {
        async move {
            let filters = Some(HashMap::from([(
                "label".to_string(),
                vec![format!("{label}={value}")],
            )]));
            match kind {
                Resource::Container => {
                    let options = ListContainersOptions {
                        all: true,
                        filters,
                        ..Default::default()
                    };
                    let listed = self
                        .docker
                        .list_containers(Some(options))
                        .await
                        .map_err(call_error)?;
                    Ok(listed
                        .into_iter()
                        .map(|c| Labelled {
                            id: c.id.unwrap_or_default(),
                            name: c
                                .names
                                .and_then(|n| n.into_iter().next())
                                .map(|n| n.trim_start_matches('/').to_string())
                                .unwrap_or_default(),
                            labels: c.labels.unwrap_or_default(),
                        })
                        .collect())
                }
                Resource::Volume => {
                    let options = ListVolumesOptions { filters };
                    let listed = self
                        .docker
                        .list_volumes(Some(options))
                        .await
                        .map_err(call_error)?;
                    Ok(listed
                        .volumes
                        .unwrap_or_default()
                        .into_iter()
                        .map(|v| Labelled {
                            id: v.name.clone(),
                            name: v.name,
                            labels: v.labels,
                        })
                        .collect())
                }
                Resource::Network => {
                    let options = ListNetworksOptions { filters };
                    let listed = self
                        .docker
                        .list_networks(Some(options))
                        .await
                        .map_err(call_error)?;
                    Ok(listed
                        .into_iter()
                        .map(|n| Labelled {
                            id: n.id.unwrap_or_default(),
                            name: n.name.unwrap_or_default(),
                            labels: n.labels.unwrap_or_default(),
                        })
                        .collect())
                }
            }
        }
        .boxed()
    }

    fn create_internal_network<'a>(
        &'a self,
        name: &'a str,
        labels: HashMap<String, String>,
    ) -> Call<'a, String> {
        async move {
            let request = NetworkCreateRequest {
                name: name.to_string(),
                driver: Some("bridge".into()),
                internal: Some(true),
                options: Some(HashMap::from([(
                    NO_HOST_ADDRESS.to_string(),
                    "true".to_string(),
                )])),
                labels: Some(labels),
                ..Default::default()
            };
            self.docker
                .create_network(request)
                .await
                .map_err(call_error)?;
            let inspected = self
                .docker
                .inspect_network(name, None::<InspectNetworkOptions>)
                .await
                .map_err(call_error)?;
            inspected
                .ipam
                .and_then(|ipam| ipam.config)
                .and_then(|configs| configs.into_iter().find_map(|c| c.subnet))
                .ok_or_else(|| CallError::new(Failure::Other, "the engine gave it no subnet"))
        }
        .boxed()
    }

    fn connect<'a>(&'a self, network: &'a str, container: &'a str) -> Call<'a, ()> {
        async move {
            let connect = NetworkConnectRequest {
                container: container.to_string(),
                endpoint_config: None,
            };
            self.docker
                .connect_network(network, connect)
                .await
                .map_err(call_error)
        }
        .boxed()
    }

    fn address_on<'a>(&'a self, network: &'a str, container: &'a str) -> Call<'a, Option<IpAddr>> {
        async move {
            let options = InspectNetworkOptions {
                verbose: false,
                scope: None,
            };
            let inspected = self
                .docker
                .inspect_network(network, Some(options))
                .await
                .map_err(call_error)?;
            // Keyed by container ID; a name is matched against the endpoint's name.
            let endpoint = inspected.containers.and_then(|endpoints| {
                endpoints.into_iter().find_map(|(id, endpoint)| {
                    (id == container || endpoint.name.as_deref() == Some(container))
                        .then_some(endpoint)
                })
            });
            Ok(endpoint
                .and_then(|e| e.ipv4_address)
                .and_then(|cidr| cidr.split('/').next()?.parse().ok()))
        }
        .boxed()
    }

    fn remove_network<'a>(&'a self, name: &'a str) -> Call<'a, ()> {
        remove_network(&self.docker, name).boxed()
    }

    fn logs<'a>(
        &'a self,
        container: &'a str,
        since: SystemTime,
        until: SystemTime,
    ) -> Call<'a, String> {
        async move {
            let seconds = |at: SystemTime| {
                at.duration_since(UNIX_EPOCH)
                    .map_or(0, |d| i32::try_from(d.as_secs()).unwrap_or(i32::MAX))
            };
            let options = LogsOptions {
                stdout: true,
                stderr: true,
                timestamps: true,
                since: seconds(since),
                until: seconds(until).saturating_add(1),
                ..Default::default()
            };
            let chunks: Vec<LogOutput> = self
                .docker
                .logs(container, Some(options))
                .try_collect()
                .await
                .map_err(call_error)?;
            Ok(chunks
                .into_iter()
                .map(|c| String::from_utf8_lossy(&c.into_bytes()).into_owned())
                .collect())
        }
        .boxed()
    }

    fn await_log<'a>(&'a self, container: &'a str, ready: &'a str) -> Call<'a, (bool, String)> {
        async move {
            let options = LogsOptions {
                follow: true,
                stdout: true,
                stderr: true,
                ..Default::default()
            };
            let mut logs = self.docker.logs(container, Some(options));
            let mut seen = String::new();
            while let Some(chunk) = logs.next().await {
                let chunk = chunk.map_err(call_error)?;
                seen.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
                if seen.contains(ready) {
                    return Ok((true, seen));
                }
            }
            Ok((false, seen))
        }
        .boxed()
    }

    fn create_volume<'a>(
        &'a self,
        name: &'a str,
        volume: TmpfsVolume,
        labels: HashMap<String, String>,
    ) -> Call<'a, ()> {
        async move {
            let request = VolumeCreateRequest {
                name: Some(name.to_string()),
                driver: Some("local".into()),
                driver_opts: Some(HashMap::from([
                    ("type".to_string(), "tmpfs".to_string()),
                    ("device".to_string(), "tmpfs".to_string()),
                    ("o".to_string(), volume.options()),
                ])),
                labels: Some(labels),
                ..Default::default()
            };
            self.docker
                .create_volume(request)
                .await
                .map(drop)
                .map_err(call_error)
        }
        .boxed()
    }

    fn remove_volume<'a>(&'a self, name: &'a str) -> Call<'a, ()> {
        async move {
            let options = RemoveVolumeOptions { force: false };
            match self.docker.remove_volume(name, Some(options)).await {
                Err(e) if is_not_found(&e) => Ok(()),
                other => other.map_err(call_error),
            }
        }
        .boxed()
    }

    fn exec<'a>(
        &'a self,
        container: &'a str,
        command: &'a [String],
        user: &'a str,
    ) -> Call<'a, Attachment> {
        async move {
            let options = CreateExecOptions {
                attach_stdin: Some(true),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(false),
                cmd: Some(command.to_vec()),
                user: Some(user.to_string()),
                privileged: Some(false),
                ..Default::default()
            };
            let created = self
                .docker
                .create_exec(container, options)
                .await
                .map_err(call_error)?;
            match self
                .docker
                .start_exec(&created.id, None)
                .await
                .map_err(call_error)?
            {
                StartExecResults::Attached { output, input } => Ok(Attachment {
                    input,
                    output: chunks(output),
                }),
                StartExecResults::Detached => Err(CallError::new(
                    Failure::Other,
                    "the engine started the process detached",
                )),
            }
        }
        .boxed()
    }
}

/// The engine's multiplexed output as chunks of stdout and stderr.
fn chunks(
    output: impl futures_util::Stream<Item = Result<LogOutput, BollardError>> + Send + 'static,
) -> Output {
    Box::pin(output.filter_map(|item| async move {
        match item {
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                Some(Ok(Chunk::Stdout(message)))
            }
            Ok(LogOutput::StdErr { message }) => Some(Ok(Chunk::Stderr(message))),
            Ok(LogOutput::StdIn { .. }) => None,
            Err(e) => Some(Err(call_error(e))),
        }
    }))
}

/// Remove a container and its anonymous volumes, once its exit is recorded; one already
/// gone is not an error.
async fn remove(docker: &Docker, id: &str) -> Result<(), CallError> {
    await_exit_recorded(docker, id).await;
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    match docker.remove_container(id, Some(options)).await {
        Err(e) if is_not_found(&e) => Ok(()),
        other => other.map_err(call_error),
    }
}

/// Stop the container if it still runs, and wait (boundedly) until the engine has recorded
/// its exit (see the module's notes). A container that never ran or has exited costs two
/// quick answers (409, then the wait returns at once).
async fn await_exit_recorded(docker: &Docker, id: &str) {
    let kill = KillContainerOptions {
        signal: "KILL".into(),
    };
    if let Err(e) = docker.kill_container(id, Some(kill)).await {
        if is_not_found(&e) {
            return;
        }
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
) -> Result<(), CallError> {
    let until = Instant::now() + patience;
    while Instant::now() < until {
        match docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Err(e) if is_not_found(&e) => tokio::time::sleep(LOOK_AGAIN).await,
            _ => break,
        }
    }
    remove(docker, id).await
}

async fn remove_network(docker: &Docker, name: &str) -> Result<(), CallError> {
    match docker.remove_network(name).await {
        Err(e) if is_not_found(&e) => Ok(()),
        other => other.map_err(call_error),
    }
}

/// The Engine API's create body for `spec`. Every container skillhost makes is
/// unprivileged and removed by skillhost, never by the engine.
pub fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let interactive = Some(spec.interactive);
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: spec.entrypoint.clone(),
        cmd: spec.cmd.clone(),
        user: spec.user.clone(),
        env: Some(spec.env.clone()),
        labels: Some(spec.labels.clone()),
        working_dir: spec.working_dir.clone(),
        attach_stdin: interactive,
        attach_stdout: interactive,
        attach_stderr: interactive,
        // Half-closing stdin reaches the process only with these.
        open_stdin: interactive,
        stdin_once: interactive,
        tty: Some(false),
        network_disabled: Some(spec.network == NetworkMode::None),
        host_config: Some(host_config(spec)),
        ..Default::default()
    }
}

fn host_config(spec: &ContainerSpec) -> HostConfig {
    let (confinement, limits) = (&spec.confinement, &spec.limits);
    HostConfig {
        cap_drop: confinement
            .drop_all_capabilities
            .then(|| vec!["ALL".to_string()]),
        security_opt: Some(confinement.security_opt.clone()).filter(|o| !o.is_empty()),
        privileged: Some(false),
        readonly_rootfs: Some(confinement.read_only_root),
        ipc_mode: confinement.private_ipc.then(|| "private".to_string()),
        // Memory and memory+swap equal: no swap at all.
        memory: limits.memory,
        memory_swap: limits.memory,
        nano_cpus: limits.nano_cpus,
        pids_limit: limits.pids,
        ulimits: limits.nofile.map(|n| {
            vec![ResourcesUlimits {
                name: Some("nofile".into()),
                soft: Some(n),
                hard: Some(n),
            }]
        }),
        shm_size: limits.shm,
        tmpfs: Some(spec.tmpfs.clone()).filter(|t| !t.is_empty()),
        network_mode: Some(match &spec.network {
            NetworkMode::None => "none".to_string(),
            NetworkMode::Bridge => "bridge".to_string(),
            NetworkMode::Network(name) => name.clone(),
            NetworkMode::Container(name) => format!("container:{name}"),
        }),
        dns: spec.dns.as_ref().map(|r| r.servers.clone()),
        dns_options: spec.dns.as_ref().map(|r| r.options.clone()),
        init: Some(spec.engine_init),
        mounts: Some(
            spec.binds
                .iter()
                .map(bind_mount)
                .chain(spec.volumes.iter().map(volume_mount))
                .collect(),
        )
        .filter(|m: &Vec<_>| !m.is_empty()),
        log_config: match spec.log {
            LogKeeping::Default => None,
            LogKeeping::Nothing => Some(HostConfigLogConfig {
                typ: Some("none".into()),
                config: None,
            }),
            LogKeeping::Bounded(bytes) => Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([
                    ("max-size".to_string(), bytes.to_string()),
                    ("max-file".to_string(), "1".to_string()),
                ])),
            }),
        },
        auto_remove: Some(false),
        runtime: spec.runtime.clone(),
        ..Default::default()
    }
}

/// A bind mount private to the container: nothing mounted under it later propagates.
fn bind_mount(bind: &super::spec::BindMount) -> Mount {
    Mount {
        target: Some(bind.target.clone()),
        source: Some(bind.source.clone()),
        typ: Some(MountType::BIND),
        read_only: Some(bind.read_only),
        bind_options: Some(MountBindOptions {
            propagation: Some(MountBindOptionsPropagationEnum::RPRIVATE),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A named volume, read-write; the engine copies nothing of the image into it.
fn volume_mount(volume: &super::spec::VolumeMount) -> Mount {
    Mount {
        target: Some(volume.target.clone()),
        source: Some(volume.name.clone()),
        typ: Some(MountType::VOLUME),
        read_only: Some(false),
        volume_options: Some(bollard::models::MountVolumeOptions {
            no_copy: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::spec::{BindMount, Confinement, Limits, Resolver};
    use super::*;

    #[test]
    fn a_spec_reaches_the_engine_field_for_field_and_nothing_more() {
        let spec = ContainerSpec {
            image: "skill-t:abc".into(),
            entrypoint: Some(vec!["/init".into()]),
            cmd: Some(vec!["/skill".into()]),
            user: Some("10001:10001".into()),
            env: vec!["A=b".into()],
            labels: HashMap::from([("k".into(), "v".into())]),
            working_dir: Some("/workspace".into()),
            interactive: true,
            network: NetworkMode::Network("net".into()),
            dns: Some(Resolver {
                servers: vec!["172.30.0.2".into()],
                options: vec!["timeout:1".into()],
            }),
            confinement: Confinement {
                drop_all_capabilities: true,
                security_opt: vec!["no-new-privileges:true".into()],
                read_only_root: true,
                private_ipc: true,
            },
            limits: Limits {
                memory: Some(64 << 20),
                nano_cpus: Some(500_000_000),
                pids: Some(32),
                nofile: Some(256),
                shm: Some(1 << 20),
            },
            tmpfs: HashMap::from([("/tmp".into(), "rw,noexec".into())]),
            binds: vec![BindMount {
                source: "/srv/w".into(),
                target: "/workspace".into(),
                read_only: true,
            }],
            volumes: vec![super::super::spec::VolumeMount {
                name: "skillhost-session-s1".into(),
                target: "/workspace".into(),
            }],
            engine_init: false,
            log: LogKeeping::Nothing,
            runtime: Some("runsc".into()),
        };
        let body = create_body(&spec);
        assert_eq!(body.user.as_deref(), Some("10001:10001"));
        assert_eq!(
            (body.open_stdin, body.stdin_once, body.tty),
            (Some(true), Some(true), Some(false))
        );
        assert_eq!(body.network_disabled, Some(false));
        let h = body.host_config.unwrap();
        assert_eq!(h.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!((h.cap_add, h.privileged), (None, Some(false)));
        assert_eq!((h.memory, h.memory_swap), (Some(64 << 20), Some(64 << 20)));
        assert_eq!(h.ulimits.unwrap()[0].hard, Some(256));
        assert_eq!(h.network_mode.as_deref(), Some("net"));
        assert_eq!(h.dns, Some(vec!["172.30.0.2".to_string()]));
        assert_eq!(h.ipc_mode.as_deref(), Some("private"));
        assert_eq!(h.init, Some(false));
        assert_eq!(h.auto_remove, Some(false));
        let mounts = h.mounts.unwrap();
        assert_eq!(mounts[0].read_only, Some(true));
        assert_eq!(mounts[1].typ, Some(MountType::VOLUME));
        assert_eq!(mounts[1].source.as_deref(), Some("skillhost-session-s1"));
        assert_eq!(
            mounts[1].volume_options.as_ref().unwrap().no_copy,
            Some(true)
        );
        assert_eq!(
            mounts[0].bind_options.as_ref().unwrap().propagation,
            Some(MountBindOptionsPropagationEnum::RPRIVATE)
        );
        assert_eq!(h.log_config.unwrap().typ.as_deref(), Some("none"));
        assert_eq!(h.runtime.as_deref(), Some("runsc"));
        for absent in [&h.binds, &h.devices.as_ref().map(|_| vec![]), &h.group_add] {
            assert_eq!(absent, &None);
        }
        assert_eq!(
            (h.pid_mode, h.userns_mode, h.publish_all_ports),
            (None, None, None)
        );
    }

    #[test]
    fn a_session_volume_is_a_sized_tmpfs_no_one_else_enters_and_nothing_runs_set_id_from() {
        let options = TmpfsVolume {
            bytes: 1 << 20,
            inodes: 1024,
            uid: 10001,
            gid: 10002,
        }
        .options();
        assert_eq!(
            options,
            "size=1048576,nr_inodes=1024,uid=10001,gid=10002,mode=0700,nosuid,nodev"
        );
    }

    #[test]
    fn no_network_is_disabled_and_a_namespace_is_joined_by_name() {
        let none = create_body(&ContainerSpec::default());
        assert_eq!(none.network_disabled, Some(true));
        assert_eq!(
            none.host_config.unwrap().network_mode.as_deref(),
            Some("none")
        );
        let joined = create_body(&ContainerSpec {
            network: NetworkMode::Container("holder".into()),
            ..Default::default()
        });
        assert_eq!(
            joined.host_config.unwrap().network_mode.as_deref(),
            Some("container:holder")
        );
    }
}
