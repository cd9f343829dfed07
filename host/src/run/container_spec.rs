//! The container configuration for one invocation: the hardening defaults of DESIGN.md
//! plus the manifest's limits. A pure function, so every property is unit-tested.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::egress::{Gateway, DNS_OPTIONS};
use crate::engine::spec::{
    BindMount, Confinement, ContainerSpec, Limits, LogKeeping, NetworkMode, Resolver, VolumeMount,
};
use crate::manifest::units::ByteSize;
use crate::manifest::{Manifest, Network, WorkspaceMode};
use crate::run::run_as::RunAs;
use crate::run::seccomp_profile::SECURITY_OPT;
use crate::vocab::INIT_PATH;

/// Where a caller's workspace directory appears inside the container.
pub const WORKSPACE_TARGET: &str = "/workspace";
/// `/dev/shm` is a tmpfs of its own; a skill gets a token amount.
pub const SHM_BYTES: i64 = 1024 * 1024;

/// Everything the configuration depends on besides the manifest.
#[derive(Debug, Clone)]
pub struct ContainerInputs<'a> {
    /// The skill's manifest: user, limits, network, runtime.
    pub manifest: &'a Manifest,
    /// `skill-<name>:<hash>`.
    pub image: &'a str,
    /// The manifest's `run.user` as numbers, resolved against the image: never 0.
    pub run_as: RunAs,
    /// Every label the container carries.
    pub labels: HashMap<String, String>,
    /// Already checked against the manifest's `run.env`.
    pub env: &'a BTreeMap<String, String>,
    /// What appears at `/workspace`, if anything.
    pub workspace: Option<Workspace<'a>>,
    /// The image's command, to run under skillhost's init (which the image has); `None`
    /// runs the image's own command under the engine's init.
    pub init_command: Option<&'a [String]>,
    /// For a skill with an egress allowlist: its network and proxy. Without one, such a
    /// skill gets no network at all.
    pub egress: Option<&'a Gateway>,
    /// A network holder on the gateway's network whose namespace the container joins,
    /// with its resolver settings, instead of getting an endpoint of its own.
    pub holder: Option<&'a str>,
}

/// What a container gets at `/workspace`.
#[derive(Debug, Clone, Copy)]
pub enum Workspace<'a> {
    /// A caller's canonical host directory, already checked, in the manifest's mode.
    Dir(&'a Path, WorkspaceMode),
    /// A session's volume, read-write.
    Volume(&'a str),
}

/// The variables that send HTTP clients through the egress proxy, in both spellings.
fn proxy_env(gateway: &Gateway) -> Vec<String> {
    let url = gateway.proxy_url();
    ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"]
        .iter()
        .map(|name| format!("{name}={url}"))
        .collect()
}

/// Tells skillhost's init to start the skill before its request (`run.prestart`).
pub(crate) const PRESTART_ENV: &str = "SKILLHOST_INIT_PRESTART";
/// Set on a recycled container: its init serves many calls, resetting between them.
pub(crate) const RECYCLE_ENV: &str = "SKILLHOST_INIT_RECYCLE";

/// The container's environment: the caller's variables, and the init's prestart switch
/// (which the init removes before the skill starts).
fn env(inputs: &ContainerInputs<'_>) -> Vec<String> {
    let mut env: Vec<String> = inputs.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if inputs.manifest.run.prestart && inputs.init_command.is_some() {
        env.push(format!("{PRESTART_ENV}=1"));
    }
    if let (Network::Egress(_), Some(gateway)) = (&inputs.manifest.run.network, inputs.egress) {
        env.extend(proxy_env(gateway));
    }
    env
}

/// The manifest's tmpfs mounts, each size-limited, and never executable, set-id or a device.
fn tmpfs(mounts: &BTreeMap<String, ByteSize>) -> HashMap<String, String> {
    mounts
        .iter()
        .map(|(path, size)| {
            (
                path.clone(),
                format!("rw,noexec,nosuid,nodev,size={}", size.0),
            )
        })
        .collect()
}

/// The workspace's bind mount at `/workspace`.
fn workspace_mount(dir: &Path, mode: WorkspaceMode) -> BindMount {
    BindMount {
        source: dir.display().to_string(),
        target: WORKSPACE_TARGET.into(),
        read_only: mode != WorkspaceMode::Rw,
    }
}

/// Where the container's network comes from, and its resolver when it has an endpoint of
/// its own on an egress network.
fn network(inputs: &ContainerInputs<'_>) -> (NetworkMode, Option<Resolver>) {
    let run = &inputs.manifest.run;
    match (&run.network, inputs.egress, inputs.holder) {
        (Network::Bridge, _, _) => (NetworkMode::Bridge, None),
        // The engine refuses resolver settings for a container that joins another's
        // network: the holder has them.
        (Network::Egress(_), Some(_), Some(holder)) => {
            (NetworkMode::Container(holder.to_string()), None)
        }
        (Network::Egress(_), Some(gateway), None) => (
            NetworkMode::Network(gateway.network.clone()),
            Some(Resolver {
                servers: vec![gateway.proxy_ip.clone()],
                options: DNS_OPTIONS.map(String::from).to_vec(),
            }),
        ),
        // Fails closed: an allowlist without its gateway is no network.
        (Network::None, _, _) | (Network::Egress(_), None, _) => (NetworkMode::None, None),
    }
}

/// The hardened configuration of one container.
pub fn container_spec(inputs: &ContainerInputs<'_>) -> ContainerSpec {
    let run = &inputs.manifest.run;
    let limits = &run.limits;
    let (network, dns) = network(inputs);
    ContainerSpec {
        image: inputs.image.into(),
        entrypoint: inputs.init_command.map(|_| vec![INIT_PATH.to_string()]),
        cmd: inputs.init_command.map(<[String]>::to_vec),
        // Two numbers: the engine then reads no name from the image's files and adds no
        // supplementary group.
        user: Some(inputs.run_as.to_string()),
        env: env(inputs),
        labels: inputs.labels.clone(),
        working_dir: Some(
            if inputs.workspace.is_some() {
                WORKSPACE_TARGET
            } else {
                "/"
            }
            .into(),
        ),
        interactive: true,
        network,
        dns,
        confinement: Confinement {
            drop_all_capabilities: true,
            security_opt: vec!["no-new-privileges:true".into(), SECURITY_OPT.clone()],
            read_only_root: true,
            private_ipc: true,
        },
        limits: Limits {
            memory: Some(limits.memory.0 as i64),
            nano_cpus: Some(limits.cpus.nano()),
            pids: Some(limits.pids),
            nofile: Some(limits.nofile),
            shm: Some(SHM_BYTES),
        },
        tmpfs: tmpfs(&limits.tmpfs),
        binds: match inputs.workspace {
            Some(Workspace::Dir(dir, mode)) => vec![workspace_mount(dir, mode)],
            _ => Vec::new(),
        },
        volumes: match inputs.workspace {
            Some(Workspace::Volume(name)) => vec![VolumeMount {
                name: name.to_string(),
                target: WORKSPACE_TARGET.into(),
            }],
            _ => Vec::new(),
        },
        // PID 1 reaps and passes signals on: skillhost's init where there is one.
        engine_init: inputs.init_command.is_none(),
        // Output is read over attach and capped there; the engine keeps no copy.
        log: LogKeeping::Nothing,
        runtime: run.runtime.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(extra_run: &str) -> Manifest {
        let text = format!(
            "name: t\nversion: 1.0.0\nprotocol: '^1'\nrun:\n  user: '10001:10001'\n  limits: {{cpus: 0.5, memory: 64m, pids: 32, nofile: 256, tmpfs: {{/tmp: 8m}}}}\n{extra_run}actions: {{a: {{}}}}\n"
        );
        Manifest::parse(&text).unwrap()
    }

    fn body(m: &Manifest, workspace: Option<Workspace<'_>>) -> ContainerSpec {
        let env = BTreeMap::from([("LANG".to_string(), "C".to_string())]);
        container_spec(&ContainerInputs {
            manifest: m,
            image: "skill-t:abc",
            run_as: RunAs {
                uid: 10001,
                gid: 10001,
            },
            labels: HashMap::from([("io.skillhost.managed".into(), "true".into())]),
            env: &env,
            workspace,
            init_command: None,
            egress: None,
            holder: None,
        })
    }

    /// The body of an image that has skillhost's init, running `command`.
    fn body_with_init(m: &Manifest, command: &[String]) -> ContainerSpec {
        container_spec(&ContainerInputs {
            manifest: m,
            image: "skill-t:abc",
            run_as: RunAs {
                uid: 10001,
                gid: 10001,
            },
            labels: HashMap::new(),
            env: &BTreeMap::new(),
            workspace: None,
            init_command: Some(command),
            egress: None,
            holder: None,
        })
    }

    #[test]
    fn a_prestarting_skill_tells_its_init_and_only_when_the_image_has_one() {
        let m = manifest("  prestart: true\n");
        let with_init = body_with_init(&m, &["/skill".to_string()]);
        assert_eq!(with_init.env, vec![format!("{PRESTART_ENV}=1")]);
        assert_eq!(body(&m, None).env, vec!["LANG=C".to_string()]);
    }

    #[test]
    fn skillhost_init_runs_the_image_command_in_place_of_the_engine_init() {
        let m = manifest("");
        let command = vec!["/skill".to_string(), "--flag".to_string()];
        let b = body_with_init(&m, &command);
        assert_eq!(b.entrypoint, Some(vec![INIT_PATH.to_string()]));
        assert_eq!(b.cmd, Some(command));
        assert!(!b.engine_init);
        let plain = body(&m, None);
        assert_eq!(
            (plain.entrypoint, plain.cmd),
            (None, None),
            "the image's own"
        );
    }

    #[test]
    fn every_hardening_default_is_set() {
        let m = manifest("");
        let b = body(&m, None);
        assert_eq!(b.user.as_deref(), Some("10001:10001"));
        assert_eq!(
            b.confinement,
            Confinement {
                drop_all_capabilities: true,
                security_opt: vec!["no-new-privileges:true".to_string(), SECURITY_OPT.clone()],
                read_only_root: true,
                private_ipc: true,
            }
        );
        assert_eq!(
            b.limits,
            Limits {
                memory: Some(64 << 20),
                nano_cpus: Some(500_000_000),
                pids: Some(32),
                nofile: Some(256),
                shm: Some(SHM_BYTES),
            }
        );
        assert_eq!(b.tmpfs["/tmp"], "rw,noexec,nosuid,nodev,size=8388608");
        assert_eq!(b.network, NetworkMode::None);
        assert!(b.engine_init);
        assert_eq!(b.log, LogKeeping::Nothing);
        assert!(b.binds.is_empty(), "no bind mounts unless declared");
        assert_eq!(b.runtime, None, "the engine's default runtime unless asked");
        assert!(b
            .confinement
            .security_opt
            .iter()
            .all(|o| !o.contains("unconfined")));
        assert!(b.interactive);
        assert_eq!(b.env, vec!["LANG=C".to_string()]);
    }

    #[test]
    fn a_declared_runtime_reaches_the_engine() {
        let m = manifest("  runtime: runsc\n");
        assert_eq!(body(&m, None).runtime.as_deref(), Some("runsc"));
    }

    #[test]
    fn bridge_network_only_when_declared() {
        let m = manifest("  network: bridge\n");
        assert_eq!(body(&m, None).network, NetworkMode::Bridge);
    }

    /// The body of `m` given an egress gateway (and a holder, if any), whether its
    /// manifest has an allowlist or not.
    fn body_behind_gateway(m: &Manifest, holder: Option<&str>) -> ContainerSpec {
        let gateway = Gateway {
            network: "skillhost-egress-k".into(),
            proxy_ip: "172.30.0.2".into(),
        };
        container_spec(&ContainerInputs {
            manifest: m,
            image: "skill-t:abc",
            run_as: RunAs {
                uid: 10001,
                gid: 10001,
            },
            labels: HashMap::new(),
            env: &BTreeMap::new(),
            workspace: None,
            init_command: None,
            egress: Some(&gateway),
            holder,
        })
    }

    #[test]
    fn an_allowlist_joins_its_network_with_the_proxy_and_no_resolver_of_the_host() {
        let m = manifest("  network: {egress: [api.example.com:443]}\n");
        let b = body_behind_gateway(&m, None);
        assert_eq!(b.network, NetworkMode::Network("skillhost-egress-k".into()));
        assert_eq!(
            b.dns,
            Some(Resolver {
                servers: vec!["172.30.0.2".to_string()],
                options: vec!["timeout:1".to_string(), "attempts:1".to_string()],
            })
        );
        let env = b.env;
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            assert!(
                env.contains(&format!("{name}=http://172.30.0.2:8888")),
                "{env:?}"
            );
        }

        // Without its gateway, an allowlisted skill gets no network at all.
        let b = body(&m, None);
        assert_eq!(b.network, NetworkMode::None);
        assert_eq!(b.env, vec!["LANG=C".to_string()]);
    }

    #[test]
    fn with_a_holder_an_allowlist_joins_the_holders_namespace_and_its_resolver() {
        let m = manifest("  network: {egress: [api.example.com:443]}\n");
        let b = body_behind_gateway(&m, Some("skillhost-egress-k-h-1"));
        assert_eq!(
            b.network,
            NetworkMode::Container("skillhost-egress-k-h-1".into())
        );
        // The holder has them; the engine refuses them on a container that joins it.
        assert_eq!(b.dns, None);
        assert!(b
            .env
            .contains(&"HTTPS_PROXY=http://172.30.0.2:8888".to_string()));
    }

    #[test]
    fn a_gateway_and_a_holder_are_ignored_by_a_skill_without_an_allowlist() {
        let b = body_behind_gateway(&manifest(""), Some("skillhost-egress-k-h-1"));
        assert_eq!(b.network, NetworkMode::None);
        assert_eq!(b.dns, None);
    }

    #[test]
    fn a_workspace_is_the_only_bind_and_read_only_unless_rw() {
        let m = manifest("  workspace: rw\n");
        for (mode, read_only) in [(WorkspaceMode::Ro, true), (WorkspaceMode::Rw, false)] {
            let b = body(&m, Some(Workspace::Dir(Path::new("/srv/work"), mode)));
            assert_eq!(
                b.binds,
                vec![BindMount {
                    source: "/srv/work".into(),
                    target: WORKSPACE_TARGET.into(),
                    read_only,
                }]
            );
            assert_eq!(b.working_dir.as_deref(), Some(WORKSPACE_TARGET));
            assert!(b.volumes.is_empty());
        }
    }

    #[test]
    fn a_session_volume_is_mounted_read_write_and_binds_nothing() {
        let m = manifest("  session: {mode: files}\n");
        let b = body(&m, Some(Workspace::Volume("skillhost-session-abc")));
        assert!(b.binds.is_empty());
        assert_eq!(
            b.volumes,
            vec![VolumeMount {
                name: "skillhost-session-abc".into(),
                target: WORKSPACE_TARGET.into(),
            }]
        );
        assert_eq!(b.working_dir.as_deref(), Some(WORKSPACE_TARGET));
        assert!(b.confinement.read_only_root && b.confinement.drop_all_capabilities);
    }
}
