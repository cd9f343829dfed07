//! Labels and names of every resource skillhost creates, so each can be found and
//! cleaned up. Containers and networks are labelled and named here and nowhere else.

use std::collections::HashMap;

use super::instance::Instance;

/// On every container: `true`.
pub(crate) const MANAGED: &str = "io.skillhost.managed";
/// The skill a container or image belongs to.
pub(crate) const SKILL: &str = "io.skillhost.skill";
/// The invocation a container serves, or its [`Role`] when it has none yet.
pub(crate) const INVOCATION: &str = "io.skillhost.invocation";
/// The host process that created a container.
pub(crate) const INSTANCE: &str = "io.skillhost.instance";
/// The version of the skill or base image.
pub(crate) const VERSION: &str = "io.skillhost.version";
/// The full content hash of an image; its tag holds a prefix.
pub(crate) const HASH: &str = "io.skillhost.hash";
/// The base image a `skillhost/<name>` image was built as.
pub(crate) const BASE: &str = "io.skillhost.base";
/// On skill images: the validated manifest, as JSON, so a host can know a skill from its
/// image alone.
pub(crate) const MANIFEST: &str = "io.skillhost.manifest";
/// On images that carry skillhost's init; the value is the trailer format it writes.
pub(crate) const INIT: &str = "io.skillhost.init";

/// On every container and the volume of a session: the session's id.
pub(crate) const SESSION: &str = "io.skillhost.session";
/// On a session's keeper container and its volume: the session's record, as JSON, from
/// which a host that starts after this one's death adopts it.
pub(crate) const SESSION_RECORD: &str = "io.skillhost.session.record";

/// The name of session `id`'s workspace volume.
pub(crate) fn session_volume(id: &str) -> String {
    format!("skillhost-session-{id}")
}

/// On an egress network and its proxy: the allowlist's key.
pub(crate) const EGRESS: &str = "io.skillhost.egress";

/// The labels of the egress network and proxy of allowlist `key`, made by this host
/// process.
pub(crate) fn for_gateway(key: &str, instance: &Instance) -> HashMap<String, String> {
    HashMap::from([
        (MANAGED.to_string(), "true".to_string()),
        (INSTANCE.to_string(), instance.id.clone()),
        (EGRESS.to_string(), key.to_string()),
    ])
}

/// The name of allowlist `key`'s network and of its proxy container; `suffix` is random
/// per host process, so two hosts on one engine never share.
pub(crate) fn gateway_name(key: &str, suffix: &str) -> String {
    format!("skillhost-egress-{key}-{suffix}")
}

/// On a network holder: the egress network it holds an endpoint on.
pub(crate) const HOLDS: &str = "io.skillhost.holds";

/// The labels of a holder of an endpoint on `network`, made by this host process.
pub(crate) fn for_holder(network: &str, instance: &Instance) -> HashMap<String, String> {
    HashMap::from([
        (MANAGED.to_string(), "true".to_string()),
        (INSTANCE.to_string(), instance.id.clone()),
        (HOLDS.to_string(), network.to_string()),
    ])
}

/// A holder's name: its network's, `-h-` and 8 random hex digits.
pub(crate) fn holder_name(network: &str) -> String {
    format!("{network}-h-{}", random_suffix())
}

/// 8 random hex digits, for names no other host process on the engine uses.
pub(crate) fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

/// What a container is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role<'a> {
    /// One invocation, by id.
    Invocation(&'a str),
    /// Made ahead of time for an invocation not known yet.
    Prewarmed,
    /// A serve-mode worker, which answers many invocations.
    Worker,
    /// A recycled container, which serves many invocations one at a time, reset between
    /// them.
    Recycled,
    /// Never started: made to read files of its image (the users a skill may run as).
    Lookup,
    /// Holds session `id`'s workspace mounted for the session's life, doing nothing; file
    /// operations run in it.
    SessionKeeper(&'a str),
    /// Session `id`'s own worker (a `process` session).
    SessionWorker(&'a str),
    /// A keeper made ahead, for a session not asked for yet: it carries no record.
    SessionSpare(&'a str),
    /// Never started: carries the record of session `id`, whose keeper was made ahead.
    SessionRecord(&'a str),
}

impl Role<'_> {
    /// Whether a container of this role holds a session's workspace or record, which a
    /// host that serves sessions adopts instead of removing.
    pub(crate) fn keeps_a_session(label: &str) -> bool {
        matches!(label, "session-keeper" | "session-spare" | "session-record")
    }
}

impl<'a> Role<'a> {
    /// The [`INVOCATION`] label's value.
    pub(crate) fn label(self) -> &'a str {
        match self {
            Role::Invocation(id) => id,
            Role::Prewarmed => "prewarmed",
            Role::Worker => "worker",
            Role::Recycled => "recycled",
            Role::Lookup => "lookup",
            Role::SessionKeeper(_) => "session-keeper",
            Role::SessionWorker(_) => "session-worker",
            Role::SessionSpare(_) => "session-spare",
            Role::SessionRecord(_) => "session-record",
        }
    }
}

/// The labels of a container of `skill` in `role`, made by this host process.
pub(crate) fn for_container(
    skill: &str,
    role: Role<'_>,
    instance: &Instance,
) -> HashMap<String, String> {
    HashMap::from([
        (MANAGED.to_string(), "true".to_string()),
        (SKILL.to_string(), skill.to_string()),
        (INVOCATION.to_string(), role.label().to_string()),
        (INSTANCE.to_string(), instance.id.clone()),
    ])
}

/// A container's name: `skillhost-<skill>-<8 of the invocation id>` for an invocation,
/// `-pw-`, `-w-` or `-rc-` and 8 random hex digits for prewarmed containers, workers and
/// recycled containers.
pub(crate) fn container_name(skill: &str, role: Role<'_>) -> String {
    match role {
        Role::Invocation(id) => format!("skillhost-{skill}-{}", id.get(..8).unwrap_or(id)),
        Role::Prewarmed => format!("skillhost-{skill}-pw-{}", random_suffix()),
        Role::Worker => format!("skillhost-{skill}-w-{}", random_suffix()),
        Role::Recycled => format!("skillhost-{skill}-rc-{}", random_suffix()),
        Role::Lookup => format!("skillhost-{skill}-lookup-{}", random_suffix()),
        Role::SessionKeeper(id) => format!(
            "skillhost-{skill}-sk-{}-{}",
            id.get(..8).unwrap_or(id),
            random_suffix()
        ),
        Role::SessionWorker(id) => format!(
            "skillhost-{skill}-sw-{}-{}",
            id.get(..8).unwrap_or(id),
            random_suffix()
        ),
        Role::SessionSpare(id) => format!(
            "skillhost-{skill}-ss-{}-{}",
            id.get(..8).unwrap_or(id),
            random_suffix()
        ),
        Role::SessionRecord(id) => format!(
            "skillhost-{skill}-sr-{}-{}",
            id.get(..8).unwrap_or(id),
            random_suffix()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_container_carries_the_four_labels() {
        let instance = Instance {
            id: "host:1:2".into(),
        };
        let labels = for_container("echo", Role::Invocation("abc"), &instance);
        assert_eq!(labels[MANAGED], "true");
        assert_eq!(labels[SKILL], "echo");
        assert_eq!(labels[INVOCATION], "abc");
        assert_eq!(labels[INSTANCE], "host:1:2");
        assert_eq!(
            for_container("echo", Role::Worker, &instance)[INVOCATION],
            "worker"
        );
        assert_eq!(
            for_container("echo", Role::Prewarmed, &instance)[INVOCATION],
            "prewarmed"
        );
    }

    #[test]
    fn names_say_the_skill_and_the_role() {
        let id = "0123456789abcdef";
        assert_eq!(
            container_name("echo", Role::Invocation(id)),
            "skillhost-echo-01234567"
        );
        assert_eq!(
            container_name("echo", Role::Invocation("ab")),
            "skillhost-echo-ab"
        );
        let pw = container_name("echo", Role::Prewarmed);
        assert!(
            pw.starts_with("skillhost-echo-pw-") && pw.len() == 26,
            "{pw}"
        );
        let w = container_name("echo", Role::Worker);
        assert!(w.starts_with("skillhost-echo-w-") && w.len() == 25, "{w}");
        assert_ne!(w, container_name("echo", Role::Worker));
    }
}
