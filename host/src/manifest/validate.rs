//! Bounds and cross-field rules, checked after serde accepted the shape.

use std::collections::BTreeMap;
use std::path::{Component, Path};
use std::time::Duration;

use super::locate::{FieldPath, Segment};
use super::units::{HumanDuration, GIB, MIB};
use super::{
    host_protocol_version, Build, Limits, Manifest, Matching, Mode, Network, Recycle, Run, Serve,
    SessionSettings,
};

type Problems = Vec<(FieldPath, String)>;

/// Docker refuses a memory limit below 6 MiB.
pub const MIN_MEMORY: u64 = 6 * MIB;
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Containers one skill may keep created ahead.
pub const MAX_PREWARM: u32 = 32;
/// Serve-mode workers one skill may keep.
pub const MAX_WORKERS: u32 = 64;
/// Most destinations one egress allowlist names.
pub const MAX_EGRESS: usize = 64;
/// The smallest session workspace: room for a few files.
pub const MIN_SESSION_WORKSPACE: u64 = MIB;
/// The largest session workspace. It is memory (a tmpfs), so it is bounded as one.
pub const MAX_SESSION_WORKSPACE: u64 = 16 * GIB;
/// The longest a session may last.
pub const MAX_SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

fn path(parts: &[&str]) -> FieldPath {
    parts.iter().map(|p| Segment::Key(p.to_string())).collect()
}

fn with(mut base: FieldPath, more: Segment) -> FieldPath {
    base.push(more);
    base
}

/// Whether `name` is a valid skill name: `[a-z][a-z0-9-]*`, as image repositories allow.
pub fn is_skill_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && !name.ends_with('-')
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

fn is_action_name(name: &str) -> bool {
    name.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

pub fn is_env_name(name: &str) -> bool {
    name.as_bytes()
        .first()
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Relative and free of `..`: stays inside the directory it is relative to.
fn is_contained(p: &Path) -> bool {
    !p.as_os_str().is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Every problem of `m`, one function per section of the manifest (as in `model.rs`).
pub fn validate(m: &Manifest) -> Problems {
    let mut c = Checks::default();
    identity(m, &mut c);
    build(&m.build, &mut c);
    limits(&m.run.limits, &mut c);
    run(&m.run, &mut c);
    if let Some(native) = &m.native {
        c.check(
            native.library.is_relative() && !native.library.as_os_str().is_empty(),
            path(&["native", "library"]),
            format!(
                "{} must be relative to the skill directory",
                native.library.display()
            ),
        );
    }
    let schemas = actions(m, &mut c);
    examples(m, &schemas, &mut c);
    c.problems
}

/// The problems found so far.
#[derive(Default)]
struct Checks {
    problems: Problems,
}

impl Checks {
    /// Record `message` at `field` unless `ok`.
    fn check(&mut self, ok: bool, field: FieldPath, message: String) {
        if !ok {
            self.problems.push((field, message));
        }
    }
}

/// `name` and `protocol`.
fn identity(m: &Manifest, c: &mut Checks) {
    c.check(
        is_skill_name(&m.name),
        path(&["name"]),
        format!(
            "{:?} is not a valid skill name: use lowercase letters, digits and '-', starting with a letter, at most 63 characters",
            m.name
        ),
    );
    let host = host_protocol_version();
    c.check(
        m.protocol.matches(&host),
        path(&["protocol"]),
        format!(
            "the skill requires protocol {}, but this host speaks protocol {host}",
            m.protocol
        ),
    );
}

/// `build`: paths inside the skill directory, names of args and variables.
fn build(b: &Build, c: &mut Checks) {
    c.check(
        is_contained(&b.dockerfile),
        path(&["build", "dockerfile"]),
        format!(
            "{} must be a relative path inside the skill directory",
            b.dockerfile.display()
        ),
    );
    for key in b.args.keys() {
        c.check(
            is_env_name(key),
            with(path(&["build", "args"]), Segment::Key(key.clone())),
            format!("{key:?} is not a valid build arg name"),
        );
    }
    for (i, input) in b.inputs.iter().enumerate() {
        c.check(
            input.is_relative() && !input.as_os_str().is_empty(),
            with(path(&["build", "inputs"]), Segment::Index(i)),
            format!("{} must be relative to the skill directory, so the hash is the same on every machine", input.display()),
        );
    }
    if let Some(command) = &b.command {
        c.check(
            command.first().is_some_and(|c| !c.is_empty()),
            path(&["build", "command"]),
            "must name a program to run".into(),
        );
    }
    for key in b.env.keys() {
        c.check(
            is_env_name(key),
            with(path(&["build", "env"]), Segment::Key(key.clone())),
            format!("{key:?} is not a valid environment variable name"),
        );
    }
    for (dest, src) in &b.outputs {
        let field = with(
            path(&["build", "outputs"]),
            Segment::Key(dest.display().to_string()),
        );
        c.check(
            is_contained(dest),
            field.clone(),
            format!(
                "{} must be a relative path inside the build context",
                dest.display()
            ),
        );
        c.check(
            src.is_relative(),
            field,
            format!("{} must be relative to the skill directory", src.display()),
        );
    }
}

/// `run.limits`: each within what the engine and the host accept.
fn limits(l: &Limits, c: &mut Checks) {
    let limits = |name: &str| path(&["run", "limits", name]);
    c.check(
        l.cpus.0 > 0.0 && l.cpus.0 <= 1024.0,
        limits("cpus"),
        format!(
            "{} is out of range: give a number above 0 and at most 1024",
            l.cpus.0
        ),
    );
    c.check(
        l.memory.0 >= MIN_MEMORY,
        limits("memory"),
        format!(
            "{} is below Docker's minimum memory limit of 6MiB",
            l.memory
        ),
    );
    c.check(
        l.pids > 0 && l.pids <= 4_194_304,
        limits("pids"),
        format!(
            "{} is out of range: a container needs at least 1 process",
            l.pids
        ),
    );
    c.check(
        !l.timeout.0.is_zero() && l.timeout.0 <= MAX_TIMEOUT,
        limits("timeout"),
        format!(
            "{} is out of range: give a timeout above 0 and at most 24h",
            l.timeout
        ),
    );
    c.check(
        l.output.0 > 0 && l.output.0 <= GIB,
        limits("output"),
        format!(
            "{} is out of range: give an output limit above 0 and at most 1GiB",
            l.output
        ),
    );
    c.check(
        l.nofile >= 16 && l.nofile <= 1_048_576,
        limits("nofile"),
        format!(
            "{} is out of range: give at least 16 and at most 1048576 open files",
            l.nofile
        ),
    );
    for (mount, size) in &l.tmpfs {
        let field = with(limits("tmpfs"), Segment::Key(mount.clone()));
        let p = Path::new(mount);
        let normal = p.is_absolute()
            && p.components()
                .skip(1)
                .all(|c| matches!(c, Component::Normal(_)));
        let reserved = ["/proc", "/sys", "/dev"].iter().any(|r| p.starts_with(r));
        c.check(
            normal && p != Path::new("/") && !reserved,
            field.clone(),
            format!("{mount:?} cannot be a tmpfs: give an absolute path other than /, /proc, /sys or /dev"),
        );
        c.check(
            size.0 > 0 && size.0 <= l.memory.0,
            field,
            format!("tmpfs size {size} must be above 0 and at most the memory limit ({}), which it counts against", l.memory),
        );
    }
}

/// The rest of `run`: variables, network, prewarm and prestart, serve mode.
fn run(r: &Run, c: &mut Checks) {
    for (i, name) in r.env.iter().enumerate() {
        c.check(
            is_env_name(name),
            with(path(&["run", "env"]), Segment::Index(i)),
            format!("{name:?} is not a valid environment variable name"),
        );
    }
    if let Network::Egress(destinations) = &r.network {
        let field = path(&["run", "network", "egress"]);
        c.check(
            (1..=MAX_EGRESS).contains(&destinations.len()),
            field.clone(),
            format!(
                "name 1 to {MAX_EGRESS} destinations; for no network at all, write `network: none`"
            ),
        );
        for (i, destination) in destinations.iter().enumerate() {
            c.check(
                !destinations[..i].contains(destination),
                with(field.clone(), Segment::Index(i)),
                format!("{destination} is listed twice"),
            );
        }
    }
    c.check(
        r.prewarm <= MAX_PREWARM,
        path(&["run", "prewarm"]),
        format!(
            "{} is out of range: prewarm at most {MAX_PREWARM} containers",
            r.prewarm
        ),
    );
    c.check(
        r.prewarm == 0 || r.mode == Mode::Oneshot,
        path(&["run", "prewarm"]),
        "prewarming applies to one-shot mode; serve mode keeps its workers running".into(),
    );
    c.check(
        !r.prestart || r.mode == Mode::Oneshot,
        path(&["run", "prestart"]),
        "prestart applies to one-shot mode; serve mode keeps its workers running".into(),
    );
    serve(&r.serve, c);
    if let Some(recycle) = &r.recycle {
        self::recycle(recycle, r, c);
    }
    if let Some(session) = &r.session {
        self::session(session, r, c);
    }
}

/// `run.session`: defaults within their ceilings, a workspace within bounds, and a
/// network no other session shares.
fn session(s: &SessionSettings, r: &Run, c: &mut Checks) {
    let field = |name: &str| path(&["run", "session", name]);
    for (name, default, ceiling) in [
        ("idle_timeout", s.idle_timeout, s.idle_ceiling()),
        ("lifetime", s.lifetime, s.lifetime_ceiling()),
    ] {
        c.check(
            !default.0.is_zero() && default.0 <= MAX_SESSION_LIFETIME,
            field(name),
            format!("{default} is out of range: give a duration above 0 and at most 7 days"),
        );
        c.check(
            ceiling.0 >= default.0 && ceiling.0 <= MAX_SESSION_LIFETIME,
            field(&format!("max_{name}")),
            format!(
                "{ceiling} is out of range: give at least {name} ({default}) and at most 7 days"
            ),
        );
    }
    c.check(
        s.idle_timeout.0 <= s.lifetime_ceiling().0,
        field("idle_timeout"),
        format!(
            "an idle timeout of {} outlasts every lifetime a session may have ({})",
            s.idle_timeout,
            s.lifetime_ceiling()
        ),
    );
    c.check(
        (MIN_SESSION_WORKSPACE..=MAX_SESSION_WORKSPACE).contains(&s.workspace.0),
        field("workspace"),
        format!(
            "{} is out of range: give a size from 1MiB to 16GiB",
            s.workspace
        ),
    );
    c.check(
        r.network == Network::None,
        field("mode"),
        "sessions are for skills with `network: none`: a session's containers must not share a network with another session's".into(),
    );
    c.check(
        r.mode == Mode::Oneshot,
        field("mode"),
        "sessions are for one-shot skills: a serve-mode skill's workers are shared by every caller"
            .into(),
    );
}

/// `run.serve`.
fn serve(s: &Serve, c: &mut Checks) {
    let serve = |name: &str| path(&["run", "serve", name]);
    c.check(
        (1..=MAX_WORKERS).contains(&s.workers),
        serve("workers"),
        format!(
            "{} is out of range: give 1 to {MAX_WORKERS} workers",
            s.workers
        ),
    );
    c.check(
        s.max_requests > 0,
        serve("max_requests"),
        "a worker must be allowed at least 1 request".into(),
    );
    for (name, value) in [("idle_ttl", s.idle_ttl), ("max_lifetime", s.max_lifetime)] {
        lifetime_in_range(value, serve(name), c);
    }
}

/// A worker's or recycled container's idle time or lifetime: above 0, at most 24 h.
fn lifetime_in_range(value: HumanDuration, field: FieldPath, c: &mut Checks) {
    c.check(
        !value.0.is_zero() && value.0 <= MAX_TIMEOUT,
        field,
        format!("{value} is out of range: give a duration above 0 and at most 24h"),
    );
}

/// `run.recycle`: one-shot only, with bounds in range.
fn recycle(s: &Recycle, r: &Run, c: &mut Checks) {
    let field = |name: &str| path(&["run", "recycle", name]);
    c.check(
        r.mode == Mode::Oneshot,
        path(&["run", "recycle"]),
        "recycling applies to one-shot mode; serve mode keeps its workers running".into(),
    );
    c.check(
        (1..=MAX_WORKERS).contains(&s.containers),
        field("containers"),
        format!(
            "{} is out of range: give 1 to {MAX_WORKERS} containers",
            s.containers
        ),
    );
    c.check(
        s.uses > 0,
        field("uses"),
        "a container must be allowed at least 1 call".into(),
    );
    for (name, value) in [("age", s.age), ("idle", s.idle)] {
        lifetime_in_range(value, field(name), c);
    }
}

/// Each action's input and output schemas, compiled once here and used again for the
/// examples.
#[derive(Default)]
struct Schemas<'m> {
    input: BTreeMap<&'m str, jsonschema::Validator>,
    output: BTreeMap<&'m str, jsonschema::Validator>,
}

/// `actions`: names, and schemas that compile.
fn actions<'m>(m: &'m Manifest, c: &mut Checks) -> Schemas<'m> {
    c.check(
        !m.actions.is_empty(),
        path(&["actions"]),
        "a skill needs at least one action".into(),
    );
    let mut schemas = Schemas::default();
    for (name, action) in &m.actions {
        let field = with(path(&["actions"]), Segment::Key(name.clone()));
        c.check(
            is_action_name(name),
            field.clone(),
            format!(
                "{name:?} is not a valid action name: use lowercase letters, digits, '_' and '-'"
            ),
        );
        let tool = skillhost_api::tools::tool_name(&m.name, name);
        c.check(
            tool.len() <= skillhost_api::tools::MAX_TOOL_NAME,
            field.clone(),
            format!(
                "the action's tool name {tool:?} is {} characters; the chat APIs and MCP clients take at most {}: shorten the skill's or the action's name",
                tool.len(),
                skillhost_api::tools::MAX_TOOL_NAME
            ),
        );
        for (key, schema) in [
            ("input", Some(&action.input)),
            ("output", action.output.as_ref()),
        ] {
            match schema.map(jsonschema::validator_for) {
                Some(Err(e)) => c.check(
                    false,
                    with(field.clone(), Segment::Key(key.into())),
                    format!("not a valid JSON Schema: {e}"),
                ),
                Some(Ok(validator)) if key == "input" => {
                    schemas.input.insert(name.as_str(), validator);
                }
                Some(Ok(validator)) => {
                    schemas.output.insert(name.as_str(), validator);
                }
                None => {}
            }
        }
    }
    schemas
}

/// `examples`: each names an action, and its args and exact expectation fit the schemas.
fn examples(m: &Manifest, schemas: &Schemas<'_>, c: &mut Checks) {
    for (i, example) in m.examples.iter().enumerate() {
        let field = with(path(&["examples"]), Segment::Index(i));
        if !m.actions.contains_key(&example.action) {
            let known: Vec<&str> = m.actions.keys().map(String::as_str).collect();
            c.check(
                false,
                with(field, Segment::Key("action".into())),
                format!(
                    "no action {:?}; the skill has: {}",
                    example.action,
                    known.join(", ")
                ),
            );
            continue;
        }
        if let Some(validator) = schemas.input.get(example.action.as_str()) {
            if let Err(e) = validator.validate(&example.args) {
                c.check(
                    false,
                    with(field.clone(), Segment::Key("args".into())),
                    format!(
                        "does not match the input schema of {:?}: {e}",
                        example.action
                    ),
                );
            }
        }
        // A subset need not be a whole output, so only an exact expectation must match.
        if let (Some(expect), Some(validator), Matching::Exact) = (
            &example.expect,
            schemas.output.get(example.action.as_str()),
            example.matching,
        ) {
            if let Err(e) = validator.validate(expect) {
                c.check(
                    false,
                    with(field.clone(), Segment::Key("expect".into())),
                    format!(
                        "does not match the output schema of {:?}, so no output could equal it: {e}",
                        example.action
                    ),
                );
            }
        }
        c.check(
            example.expect.is_none() || example.expect_error.is_none(),
            field.clone(),
            "give expect or expect_error, not both".into(),
        );
        c.check(
            example.matching == Matching::Exact || example.expect.is_some(),
            with(field, Segment::Key("match".into())),
            "match: subset compares with expect, which this example does not give".into(),
        );
    }
}
