//! What a container is made of, in skillhost's words. The layers above build a
//! [`ContainerSpec`]; only the engine adapter turns it into the Engine API's create body.
//! Whatever the spec cannot say, no container gets: there is no field for added
//! capabilities, host devices, published ports, another PID namespace or extra groups,
//! and the adapter makes every container unprivileged and never auto-removed.

use std::collections::HashMap;

/// One container's configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerSpec {
    /// The image reference or ID.
    pub image: String,
    /// Replaces the image's `ENTRYPOINT` when set.
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's `CMD` when set.
    pub cmd: Option<Vec<String>>,
    /// `uid:gid`, or a name the engine resolves in the image.
    pub user: Option<String>,
    /// `NAME=value` lines.
    pub env: Vec<String>,
    /// Every label the container carries.
    pub labels: HashMap<String, String>,
    /// The working directory; the image's when unset.
    pub working_dir: Option<String>,
    /// stdin, stdout and stderr are attached, stdin is open and closes once the writer
    /// half-closes it: how a request reaches a skill.
    pub interactive: bool,
    /// Where the container's network namespace comes from.
    pub network: NetworkMode,
    /// Resolvers and resolver options for a container with its own endpoint.
    pub dns: Option<Resolver>,
    /// Privileges and confinement.
    pub confinement: Confinement,
    /// Memory, CPU, processes, files.
    pub limits: Limits,
    /// tmpfs mounts: path to mount options.
    pub tmpfs: HashMap<String, String>,
    /// Bind mounts, each private to the container.
    pub binds: Vec<BindMount>,
    /// Named volumes the engine made ([`crate::engine::containers::ContainerEngine::create_volume`]).
    pub volumes: Vec<VolumeMount>,
    /// The engine's init as PID 1 (reaping, signals) when the image brings none.
    pub engine_init: bool,
    /// What the engine keeps of the container's output.
    pub log: LogKeeping,
    /// The OCI runtime, when not the engine's default.
    pub runtime: Option<String>,
}

/// Where a container's network namespace comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetworkMode {
    /// No network at all: only a loopback device.
    #[default]
    None,
    /// The engine's default bridge.
    Bridge,
    /// An endpoint of its own on the named network.
    Network(String),
    /// The namespace of the named running container.
    Container(String),
}

/// Name resolution for a container with an endpoint of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolver {
    /// Resolver addresses.
    pub servers: Vec<String>,
    /// `resolv.conf` options, e.g. `timeout:1`.
    pub options: Vec<String>,
}

/// Privileges and confinement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confinement {
    /// Drop every capability.
    pub drop_all_capabilities: bool,
    /// `security_opt` entries: `no-new-privileges`, a seccomp profile.
    pub security_opt: Vec<String>,
    /// A read-only root filesystem.
    pub read_only_root: bool,
    /// An IPC namespace of its own.
    pub private_ipc: bool,
}

/// Resource limits; `None` leaves the engine's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of memory, swap included: the container gets no swap.
    pub memory: Option<i64>,
    /// CPUs, in billionths.
    pub nano_cpus: Option<i64>,
    /// Most processes and threads.
    pub pids: Option<i64>,
    /// Most open files, soft and hard.
    pub nofile: Option<i64>,
    /// Bytes of `/dev/shm`.
    pub shm: Option<i64>,
}

/// A host directory bound into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// The host path.
    pub source: String,
    /// Where it appears in the container.
    pub target: String,
    /// Whether the container may only read it.
    pub read_only: bool,
}

/// A named volume mounted into the container, read-write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// The volume's name.
    pub name: String,
    /// Where it appears in the container.
    pub target: String,
}

/// A volume of memory the kernel sizes: a tmpfs that the engine mounts while a container
/// uses it, with writes past `bytes` or `inodes` refused (`ENOSPC`) inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TmpfsVolume {
    /// Its size.
    pub bytes: u64,
    /// Most files and directories.
    pub inodes: u64,
    /// The owner of its root directory, which no one else may enter (mode 0700).
    pub uid: u32,
    /// The group of its root directory.
    pub gid: u32,
}

impl TmpfsVolume {
    /// The mount options: sized, owned, and never set-id or a device.
    pub fn options(&self) -> String {
        let TmpfsVolume {
            bytes,
            inodes,
            uid,
            gid,
        } = self;
        format!("size={bytes},nr_inodes={inodes},uid={uid},gid={gid},mode=0700,nosuid,nodev")
    }
}

/// What the engine keeps of a container's output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LogKeeping {
    /// The engine's default driver.
    #[default]
    Default,
    /// Nothing: output is read over attach only.
    Nothing,
    /// A JSON file of at most this many bytes (one file), readable as its logs.
    Bounded(u64),
}
