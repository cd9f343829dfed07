//! The container configuration for one invocation: the hardening defaults of DESIGN.md
//! plus the manifest's limits. A pure function, so every property is unit-tested.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountBindOptions,
    MountBindOptionsPropagationEnum, MountType, ResourcesUlimits,
};

use crate::egress::{Gateway, DNS_OPTIONS};
use crate::invoke::run_as::RunAs;
use crate::manifest::units::ByteSize;
use crate::manifest::{Manifest, Network, WorkspaceMode};
use crate::run::exit_trailer::INIT_PATH;
use crate::run::seccomp_profile::SECURITY_OPT;

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
    /// Canonical host directory, already checked, and its mode.
    pub workspace: Option<(&'a Path, WorkspaceMode)>,
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

/// The workspace's bind mount at `/workspace`, private to this container.
fn workspace_mount(dir: &Path, mode: WorkspaceMode) -> Mount {
    Mount {
        target: Some(WORKSPACE_TARGET.into()),
        source: Some(dir.display().to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(mode != WorkspaceMode::Rw),
        bind_options: Some(MountBindOptions {
            propagation: Some(MountBindOptionsPropagationEnum::RPRIVATE),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The hardened configuration of one container.
pub fn container_body(inputs: &ContainerInputs<'_>) -> ContainerCreateBody {
    let run = &inputs.manifest.run;
    let egress = match run.network {
        Network::Egress(_) => inputs.egress,
        _ => None,
    };
    // The engine refuses resolver settings for a container that joins another's network.
    let holder = egress.and(inputs.holder);
    let own_endpoint = egress.filter(|_| holder.is_none());
    let network_disabled = match run.network {
        Network::None => true,
        Network::Bridge => false,
        Network::Egress(_) => egress.is_none(),
    };
    let limits = &run.limits;
    let memory = limits.memory.0 as i64;
    let host_config = HostConfig {
        // Identity and privilege.
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges:true".into(), SECURITY_OPT.clone()]),
        privileged: Some(false),
        readonly_rootfs: Some(true),
        // Resources: memory+swap equal means no swap at all.
        memory: Some(memory),
        memory_swap: Some(memory),
        nano_cpus: Some(limits.cpus.nano()),
        pids_limit: Some(limits.pids),
        ulimits: Some(vec![ResourcesUlimits {
            name: Some("nofile".into()),
            soft: Some(limits.nofile),
            hard: Some(limits.nofile),
        }]),
        tmpfs: Some(tmpfs(&limits.tmpfs)),
        shm_size: Some(SHM_BYTES),
        // Isolation from the host and from each other.
        network_mode: Some(match (&run.network, egress, holder) {
            (Network::Bridge, _, _) => "bridge".into(),
            (Network::Egress(_), Some(_), Some(holder)) => format!("container:{holder}"),
            (Network::Egress(_), Some(gateway), None) => gateway.network.clone(),
            // Fails closed: an allowlist without its gateway is no network.
            (Network::None, _, _) | (Network::Egress(_), None, _) => "none".into(),
        }),
        dns: own_endpoint.map(|gateway| vec![gateway.proxy_ip.clone()]),
        dns_options: own_endpoint.map(|_| DNS_OPTIONS.map(String::from).to_vec()),
        ipc_mode: Some("private".into()),
        // PID 1 reaps and passes signals on: skillhost's init where there is one.
        init: Some(inputs.init_command.is_none()),
        mounts: inputs
            .workspace
            .map(|(dir, mode)| vec![workspace_mount(dir, mode)]),
        // Output is read over attach and capped there; the daemon keeps no copy.
        log_config: Some(HostConfigLogConfig {
            typ: Some("none".into()),
            config: None,
        }),
        auto_remove: Some(false),
        runtime: run.runtime.clone(),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(inputs.image.into()),
        entrypoint: inputs.init_command.map(|_| vec![INIT_PATH.to_string()]),
        cmd: inputs.init_command.map(<[String]>::to_vec),
        // Two numbers: the engine then reads no name from the image's files and adds no
        // supplementary group.
        user: Some(inputs.run_as.to_string()),
        env: Some(env(inputs)),
        labels: Some(inputs.labels.clone()),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        // Half-closing stdin reaches the skill only with these three.
        open_stdin: Some(true),
        stdin_once: Some(true),
        tty: Some(false),
        network_disabled: Some(network_disabled),
        working_dir: Some(
            if inputs.workspace.is_some() {
                WORKSPACE_TARGET
            } else {
                "/"
            }
            .into(),
        ),
        host_config: Some(host_config),
        ..Default::default()
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

    fn body(m: &Manifest, workspace: Option<(&Path, WorkspaceMode)>) -> ContainerCreateBody {
        let env = BTreeMap::from([("LANG".to_string(), "C".to_string())]);
        container_body(&ContainerInputs {
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
    fn body_with_init(m: &Manifest, command: &[String]) -> ContainerCreateBody {
        container_body(&ContainerInputs {
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
        assert_eq!(with_init.env, Some(vec![format!("{PRESTART_ENV}=1")]));
        assert_eq!(body(&m, None).env, Some(vec!["LANG=C".to_string()]));
    }

    #[test]
    fn skillhost_init_runs_the_image_command_in_place_of_the_engine_init() {
        let m = manifest("");
        let command = vec!["/skill".to_string(), "--flag".to_string()];
        let b = body_with_init(&m, &command);
        assert_eq!(b.entrypoint, Some(vec![INIT_PATH.to_string()]));
        assert_eq!(b.cmd, Some(command));
        assert_eq!(b.host_config.unwrap().init, Some(false));
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
        let h = b.host_config.as_ref().unwrap();
        assert_eq!(b.user.as_deref(), Some("10001:10001"));
        assert_eq!(h.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(h.cap_add, None);
        assert_eq!(
            h.security_opt,
            Some(vec![
                "no-new-privileges:true".to_string(),
                SECURITY_OPT.clone()
            ])
        );
        assert_eq!(h.privileged, Some(false));
        assert_eq!(h.readonly_rootfs, Some(true));
        assert_eq!((h.memory, h.memory_swap), (Some(64 << 20), Some(64 << 20)));
        assert_eq!(h.nano_cpus, Some(500_000_000));
        assert_eq!(h.pids_limit, Some(32));
        assert_eq!(h.ulimits.as_ref().unwrap()[0].hard, Some(256));
        assert_eq!(
            h.tmpfs.as_ref().unwrap()["/tmp"],
            "rw,noexec,nosuid,nodev,size=8388608"
        );
        assert_eq!(h.network_mode.as_deref(), Some("none"));
        assert_eq!(b.network_disabled, Some(true));
        assert_eq!(h.init, Some(true));
        assert_eq!(h.log_config.as_ref().unwrap().typ.as_deref(), Some("none"));
        assert_eq!(
            (h.binds.as_ref(), h.mounts.as_ref()),
            (None, None),
            "no bind mounts unless declared"
        );
        assert_eq!(h.auto_remove, Some(false), "removal is explicit");
        assert_eq!(h.pid_mode, None);
        assert_eq!(h.ipc_mode.as_deref(), Some("private"));
        assert_eq!(h.devices, None, "no host devices");
        assert_eq!(
            (h.port_bindings.as_ref(), h.publish_all_ports),
            (None, None),
            "no published ports"
        );
        assert_eq!(h.runtime, None, "the engine's default runtime unless asked");
        assert_eq!(h.userns_mode, None);
        assert!(h
            .security_opt
            .as_ref()
            .unwrap()
            .iter()
            .all(|o| !o.contains("unconfined")));
        assert_eq!(
            (b.open_stdin, b.stdin_once, b.tty),
            (Some(true), Some(true), Some(false))
        );
        assert_eq!(b.env, Some(vec!["LANG=C".to_string()]));
    }

    #[test]
    fn a_declared_runtime_reaches_the_engine() {
        let m = manifest("  runtime: runsc\n");
        assert_eq!(
            body(&m, None).host_config.unwrap().runtime.as_deref(),
            Some("runsc")
        );
    }

    #[test]
    fn bridge_network_only_when_declared() {
        let m = manifest("  network: bridge\n");
        let b = body(&m, None);
        assert_eq!(
            b.host_config.unwrap().network_mode.as_deref(),
            Some("bridge")
        );
        assert_eq!(b.network_disabled, Some(false));
    }

    /// The body of `m` given an egress gateway (and a holder, if any), whether its
    /// manifest has an allowlist or not.
    fn body_behind_gateway(m: &Manifest, holder: Option<&str>) -> ContainerCreateBody {
        let gateway = Gateway {
            network: "skillhost-egress-k".into(),
            proxy_ip: "172.30.0.2".into(),
        };
        container_body(&ContainerInputs {
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
        let h = b.host_config.unwrap();
        assert_eq!(h.network_mode.as_deref(), Some("skillhost-egress-k"));
        assert_eq!(h.dns, Some(vec!["172.30.0.2".to_string()]));
        assert_eq!(
            h.dns_options,
            Some(vec!["timeout:1".to_string(), "attempts:1".to_string()])
        );
        assert_eq!(b.network_disabled, Some(false));
        let env = b.env.unwrap();
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            assert!(
                env.contains(&format!("{name}=http://172.30.0.2:8888")),
                "{env:?}"
            );
        }

        // Without its gateway, an allowlisted skill gets no network at all.
        let b = body(&m, None);
        assert_eq!(b.host_config.unwrap().network_mode.as_deref(), Some("none"));
        assert_eq!(b.network_disabled, Some(true));
        assert_eq!(b.env, Some(vec!["LANG=C".to_string()]));
    }

    #[test]
    fn with_a_holder_an_allowlist_joins_the_holders_namespace_and_its_resolver() {
        let m = manifest("  network: {egress: [api.example.com:443]}\n");
        let b = body_behind_gateway(&m, Some("skillhost-egress-k-h-1"));
        let h = b.host_config.unwrap();
        assert_eq!(
            h.network_mode.as_deref(),
            Some("container:skillhost-egress-k-h-1")
        );
        // The holder has them; the engine refuses them on a container that joins it.
        assert_eq!((h.dns, h.dns_options), (None, None));
        assert_eq!(b.network_disabled, Some(false));
        assert!(b
            .env
            .unwrap()
            .contains(&"HTTPS_PROXY=http://172.30.0.2:8888".to_string()));
    }

    #[test]
    fn a_gateway_and_a_holder_are_ignored_by_a_skill_without_an_allowlist() {
        let b = body_behind_gateway(&manifest(""), Some("skillhost-egress-k-h-1"));
        let h = b.host_config.unwrap();
        assert_eq!(h.network_mode.as_deref(), Some("none"));
        assert_eq!(h.dns, None);
    }

    #[test]
    fn a_workspace_is_the_only_bind_and_read_only_unless_rw() {
        let m = manifest("  workspace: rw\n");
        for (mode, read_only) in [(WorkspaceMode::Ro, true), (WorkspaceMode::Rw, false)] {
            let b = body(&m, Some((Path::new("/srv/work"), mode)));
            let mounts = b.host_config.unwrap().mounts.unwrap();
            assert_eq!(mounts.len(), 1);
            assert_eq!(mounts[0].source.as_deref(), Some("/srv/work"));
            assert_eq!(mounts[0].target.as_deref(), Some(WORKSPACE_TARGET));
            assert_eq!(mounts[0].read_only, Some(read_only));
            assert_eq!(b.working_dir.as_deref(), Some(WORKSPACE_TARGET));
        }
    }
}
