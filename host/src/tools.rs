//! What a skill's manifest tells a caller about it, as `GET /v1/skills`, `GET /v1/tools`
//! and the MCP server give it: each action's schemas, its tool name, and the tool
//! annotations the manifest makes true. Pure.

use std::collections::BTreeMap;

use skillhost_api::tools::{tool_name, ToolAnnotations};
use skillhost_api::{ActionInfo, SkillInfo};

use crate::catalog::Catalog;
use crate::manifest::{Manifest, Network, WorkspaceMode};

/// Every skill of `catalog` as a caller sees it, in the catalog's order.
pub(crate) fn catalog_info(catalog: &Catalog) -> Vec<SkillInfo> {
    catalog
        .skills
        .values()
        .map(|skill| skill_info(&skill.manifest))
        .collect()
}

/// `manifest` as a caller sees it, without its image's state.
pub(crate) fn skill_info(manifest: &Manifest) -> SkillInfo {
    let annotations = annotations(manifest);
    let actions: BTreeMap<String, ActionInfo> = manifest
        .actions
        .iter()
        .map(|(name, action)| {
            let mut info = ActionInfo::new(
                &action.description,
                Some(action.input.clone()),
                action.output.clone(),
            );
            info.tool = Some(tool_name(&manifest.name, name));
            info.annotations = Some(annotations.clone());
            (name.clone(), info)
        })
        .collect();
    SkillInfo::new(
        &manifest.name,
        manifest.version.to_string(),
        &manifest.description,
        actions,
    )
}

/// What the manifest makes true of every action of the skill: with no network it reaches
/// nothing beyond the host (closed world); with no network, no writable workspace and no
/// session it changes nothing outside its own call (read-only); a read-write workspace
/// may be overwritten (destructive).
fn annotations(manifest: &Manifest) -> ToolAnnotations {
    let run = &manifest.run;
    let networked = run.network != Network::None;
    let writes = run.workspace == WorkspaceMode::Rw || run.session.is_some();
    let mut annotations = ToolAnnotations::default();
    annotations.open_world_hint = Some(networked);
    annotations.read_only_hint = Some(!networked && !writes);
    if run.workspace == WorkspaceMode::Rw {
        annotations.destructive_hint = Some(true);
    }
    annotations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(run: &str) -> Manifest {
        Manifest::parse(&format!(
            "name: t\nversion: 0.1.0\nprotocol: '1'\nrun: {run}\nactions: {{go: {{description: Go}}}}\n"
        ))
        .unwrap()
    }

    #[test]
    fn annotations_say_only_what_the_manifest_makes_true() {
        let closed = skill_info(&manifest("{}"));
        let go = &closed.actions["go"];
        assert_eq!(go.tool.as_deref(), Some("t__go"));
        let a = go.annotations.clone().unwrap();
        assert_eq!(
            (a.read_only_hint, a.open_world_hint, a.destructive_hint),
            (Some(true), Some(false), None)
        );

        let a = skill_info(&manifest("{network: bridge}")).actions["go"]
            .annotations
            .clone()
            .unwrap();
        assert_eq!(
            (a.read_only_hint, a.open_world_hint),
            (Some(false), Some(true))
        );

        let a = skill_info(&manifest("{workspace: rw}")).actions["go"]
            .annotations
            .clone()
            .unwrap();
        assert_eq!(
            (a.read_only_hint, a.open_world_hint, a.destructive_hint),
            (Some(false), Some(false), Some(true))
        );

        let a = skill_info(&manifest("{workspace: ro}")).actions["go"]
            .annotations
            .clone()
            .unwrap();
        assert_eq!(a.read_only_hint, Some(true));

        let a = skill_info(&manifest("{session: {mode: files}}")).actions["go"]
            .annotations
            .clone()
            .unwrap();
        assert_eq!(a.read_only_hint, Some(false));
    }
}
