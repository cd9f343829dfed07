//! Property tests (no engine): hostile text never panics the parsers, and every manifest
//! that passes validation yields a hardened container configuration.
//!
//! Scale up locally with `PROPTEST_CASES=100000 cargo test -p skillhost --test properties`;
//! failures found are kept in proptest-regressions/ and replayed first on every run.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use proptest::prelude::*;
use skill_sdk::Frame;
use skillhost::manifest::{Manifest, WorkspaceMode};
use skillhost::testing::{container_spec, create_body, ContainerInputs, RunAs, Workspace};

/// A manifest from the whole space of valid values, in a random order of keys.
fn manifest_text() -> impl Strategy<Value = String> {
    (
        (1u32..=800, 6u64..=4096, 1i64..=4096, 1u64..=86_400_000),
        (1u64..=1_048_576, 16i64..=65_536, 1u32..=65_535, 1u32..=65_535),
        (prop::bool::ANY, 0usize..3, prop::sample::select(vec!["/tmp", "/var/tmp", "/scratch/a"]), 1u64..=6),
        prop::collection::vec("[A-Z][A-Z0-9_]{0,8}", 0..4),
    )
        .prop_map(|((cpus, mem, pids, timeout), (output, nofile, uid, gid), (bridge, ws, tmp, tmp_mib), env)| {
            let workspace = ["none", "ro", "rw"][ws];
            let network = if bridge { "bridge" } else { "none" };
            format!(
                "name: prop\nversion: 1.0.0\nprotocol: '^1'\nrun:\n  user: '{uid}:{gid}'\n  network: {network}\n  workspace: {workspace}\n  env: {env:?}\n  limits: {{cpus: {}, memory: {mem}m, pids: {pids}, timeout: {timeout}ms, output: {output}k, nofile: {nofile}, tmpfs: {{{tmp}: {tmp_mib}m}}}}\nactions: {{go: {{}}}}\n",
                cpus as f64 / 100.0
            )
        })
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics_the_manifest_parser(text in ".{0,400}") {
        let _ = Manifest::parse(&text);
    }

    #[test]
    fn yaml_shaped_noise_never_panics_the_manifest_parser(
        text in "(name|version|protocol|run|limits|user|actions|memory|tmpfs|[a-z]{1,6})(: |:\n  |- )([{}\\[\\],:'\"&*!|>a-z0-9 -]{0,12}\n){0,12}"
    ) {
        let _ = Manifest::parse(&text);
    }

    #[test]
    fn arbitrary_text_never_panics_the_frame_parser(line in "\\PC{0,300}") {
        let _ = Frame::parse_line(&line);
    }

    #[test]
    fn mutated_frames_never_panic_and_valid_ones_round_trip(
        cut in 0usize..120, insert in "[{}\\[\\]\":,0-9a-z\\\\]{0,4}",
    ) {
        let valid = "{\"type\":\"result\",\"id\":\"abc\",\"ok\":true,\"output\":{\"k\":[1,2.5,\"x\",null,true]}}";
        let at = cut.min(valid.len());
        let mutated = format!("{}{}{}", &valid[..at], insert, &valid[at..]);
        if let Ok(frame) = Frame::parse_line(&mutated) {
            prop_assert_eq!(Frame::parse_line(frame.to_line().trim_end()).unwrap(), frame);
        }
    }

    #[test]
    fn every_valid_manifest_yields_a_hardened_container(text in manifest_text()) {
        let manifest = Manifest::parse(&text).map_err(|p| TestCaseError::fail(format!("{p:?}\n{text}")))?;
        let workspace = (manifest.run.workspace != WorkspaceMode::None)
            .then_some(Workspace::Dir(Path::new("/srv/work"), manifest.run.workspace));
        // What reaches the engine: the spec, through the engine adapter.
        let body = create_body(&container_spec(&ContainerInputs {
            manifest: &manifest,
            image: "skill-prop:0",
            labels: HashMap::new(),
            run_as: RunAs { uid: 10001, gid: 10001 },
            env: &BTreeMap::new(),
            workspace,
            init_command: None,
            egress: None,
            holder: None,
        }));
        let h = body.host_config.unwrap();
        prop_assert_eq!(h.cap_drop, Some(vec!["ALL".to_string()]));
        prop_assert_eq!(h.cap_add, None);
        prop_assert_eq!(h.privileged, Some(false));
        prop_assert_eq!(h.readonly_rootfs, Some(true));
        prop_assert!(h.security_opt.unwrap().contains(&"no-new-privileges:true".to_string()));
        prop_assert!(h.pids_limit.is_some_and(|p| p > 0));
        prop_assert_eq!(h.memory, h.memory_swap);
        prop_assert!(h.memory.unwrap() >= 6 * 1024 * 1024);
        prop_assert_eq!(h.binds, None);
        let mounts = h.mounts.unwrap_or_default();
        prop_assert!(mounts.len() <= 1);
        for m in &mounts {
            prop_assert_eq!(m.target.as_deref(), Some("/workspace"));
            prop_assert_eq!(m.read_only, Some(manifest.run.workspace == WorkspaceMode::Ro));
        }
        prop_assert!(h.network_mode.as_deref() == Some("none") || h.network_mode.as_deref() == Some("bridge"));
        prop_assert_eq!(h.pid_mode, None);
        prop_assert_eq!(h.ipc_mode.as_deref(), Some("private"));
        prop_assert_eq!(body.user.as_deref(), Some("10001:10001"), "the resolved ids, never a name");
        prop_assert_eq!(h.group_add, None);
        for options in h.tmpfs.unwrap().values() {
            prop_assert!(options.contains("noexec") && options.contains("nosuid"));
        }
    }
}
