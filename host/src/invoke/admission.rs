//! Admission: everything checked before a container may exist, with no engine. The skill
//! and action must exist, the arguments must fit the size limit and the action's input
//! schema, the timeout must be within the manifest's, every environment variable must be
//! allowlisted, and a workspace must be declared and safe to mount. The first failure is
//! a [`Refusal`] with status `rejected`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use skillhost_api::codes;

use super::schemas::{violations, Schemas};
use super::{workspace, InvokeOptions};
use crate::catalog::{Catalog, Skill};
use crate::vocab::Refusal;

/// A call that passed admission: what the rest of its path needs from the checks.
#[derive(Debug)]
pub(crate) struct Admitted<'c> {
    pub(crate) skill: &'c Skill,
    /// The caller's deadline, or the manifest's timeout.
    pub(crate) timeout: Duration,
    /// The manifest's stdout limit, in bytes.
    pub(crate) output_limit: u64,
    /// The workspace, resolved to the directory that will be mounted.
    pub(crate) workspace: Option<PathBuf>,
}

/// The skill named `skill`; refused naming a broken manifest of that directory, or the
/// skills there are.
fn find_skill<'c>(catalog: &'c Catalog, skill: &str) -> Result<&'c Skill, Refusal> {
    if let Some(found) = catalog.get(skill) {
        return Ok(found);
    }
    // Most often the skill is there and its author broke its manifest: say so.
    if let Some(broken) = catalog.broken.iter().find(|b| {
        b.path()
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|dir| dir == skill)
    }) {
        return Err(Refusal::new(
            codes::UNKNOWN_SKILL,
            format!(
                "skill {skill:?} is not loaded: its manifest is broken; fix it and call again:\n{broken}"
            ),
        ));
    }
    let missing = format!("no skill named {skill:?}; this host has");
    Err(unknown(
        codes::UNKNOWN_SKILL,
        missing,
        catalog.skills.keys(),
    ))
}

/// `args` against the action's input schema, every violation named with its path.
fn check_args(schemas: &Schemas, skill: &str, action: &str, args: &Value) -> Result<(), Refusal> {
    let validator = schemas.input(skill, action).ok_or_else(|| {
        Refusal::new(
            codes::INVALID_SCHEMA,
            format!("the input schema of {action} does not compile"),
        )
    })?;
    let problems: Vec<String> = violations(validator, args)
        .into_iter()
        .map(|(at, message)| match at.as_str() {
            "" => message,
            at => format!("{at}: {message}"),
        })
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    Err(Refusal::new(
        codes::INVALID_ARGS,
        format!(
            "arguments do not match the input schema of {action}: {}",
            problems.join("; ")
        ),
    ))
}

/// Check a call of `action` of `skill` with `args` and `options`.
pub(crate) fn admit<'c>(
    catalog: &'c Catalog,
    schemas: &Schemas,
    max_input_bytes: usize,
    skill: &str,
    action: &str,
    args: &Value,
    options: &InvokeOptions,
) -> Result<Admitted<'c>, Refusal> {
    let found = find_skill(catalog, skill)?;
    let manifest = &found.manifest;
    if !manifest.actions.contains_key(action) {
        let missing = format!("skill {skill} has no action {action:?}; it has");
        return Err(unknown(
            codes::UNKNOWN_ACTION,
            missing,
            manifest.actions.keys(),
        ));
    }
    let size = serde_json::to_vec(args).map_or(usize::MAX, |v| v.len());
    if size > max_input_bytes {
        return Err(Refusal::new(
            codes::INPUT_TOO_LARGE,
            format!("arguments are {size} bytes; the limit is {max_input_bytes}"),
        ));
    }
    check_args(schemas, skill, action, args)?;
    let max = &manifest.run.limits.timeout;
    let timeout = match options.timeout {
        Some(t) if t.is_zero() || t > max.0 => {
            return Err(Refusal::new(
                codes::INVALID_OPTIONS,
                format!("timeout {t:?} must be above 0 and at most the manifest's {max}"),
            ))
        }
        Some(t) => t,
        None => max.0,
    };
    if let Some(name) = options
        .env
        .keys()
        .find(|name| !manifest.run.env.contains(name))
    {
        return Err(Refusal::new(
            codes::INVALID_OPTIONS,
            format!(
                "environment variable {name} is not in the manifest's run.env allowlist ({})",
                manifest.run.env.join(", ")
            ),
        ));
    }
    let workspace = options
        .workspace
        .as_deref()
        .map(|dir| workspace::check(dir, manifest.run.workspace, &manifest.run.user))
        .transpose()
        .map_err(|e| Refusal::new(codes::INVALID_OPTIONS, e.to_string()))?;
    Ok(Admitted {
        skill: found,
        timeout,
        output_limit: manifest.run.limits.output.0,
        workspace,
    })
}

/// A refusal of something unknown that names what there is.
fn unknown<'a>(
    code: &'static str,
    missing: String,
    known: impl Iterator<Item = &'a String>,
) -> Refusal {
    let known: Vec<&str> = known.map(String::as_str).collect();
    Refusal::new(code, format!("{missing}: {}", known.join(", ")))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;
    use skillhost_api::Status;

    use super::*;
    use crate::manifest::{Manifest, ManifestError, Problem};

    const LIMIT: usize = 1024;

    fn catalog() -> Catalog {
        let manifest = Manifest::parse(
            "name: t\nversion: 1.0.0\nprotocol: '^1'\nrun:\n  env: [LANG]\n  workspace: ro\n  limits: {timeout: 10s}\nactions:\n  go:\n    input: {type: object, required: [n], properties: {n: {type: integer, maximum: 5}}}\n  other: {}\n",
        )
        .unwrap();
        let skill = Skill {
            manifest,
            dir: PathBuf::from("/skills/t"),
            relative_dir: PathBuf::from("t"),
        };
        Catalog {
            skills: BTreeMap::from([("t".to_string(), skill)]),
            broken: vec![ManifestError::Invalid {
                path: PathBuf::from("/skills/b/skill.yaml"),
                problems: vec![Problem {
                    field: "version".into(),
                    position: Some((2, 10)),
                    message: "not semver".into(),
                }],
            }],
        }
    }

    fn admit_with(
        skill: &str,
        action: &str,
        args: Value,
        options: &InvokeOptions,
    ) -> Result<(Duration, u64, Option<PathBuf>), Refusal> {
        let catalog = catalog();
        let schemas = Schemas::compile(&catalog);
        admit(&catalog, &schemas, LIMIT, skill, action, &args, options)
            .map(|a| (a.timeout, a.output_limit, a.workspace))
    }

    fn refused(skill: &str, action: &str, args: Value, options: &InvokeOptions) -> Refusal {
        let refusal = admit_with(skill, action, args, options).unwrap_err();
        assert_eq!(refusal.status, Status::Rejected, "{refusal}");
        refusal
    }

    #[test]
    fn a_good_call_gets_the_manifests_limits() {
        let (timeout, output, workspace) =
            admit_with("t", "go", json!({"n": 1}), &InvokeOptions::default()).unwrap();
        assert_eq!(timeout, Duration::from_secs(10));
        assert_eq!(output, 1024 * 1024, "the default output limit");
        assert_eq!(workspace, None);
        let shorter = InvokeOptions {
            timeout: Some(Duration::from_millis(1500)),
            env: BTreeMap::from([("LANG".into(), "C".into())]),
            ..InvokeOptions::default()
        };
        let (timeout, ..) = admit_with("t", "go", json!({"n": 5}), &shorter).unwrap();
        assert_eq!(timeout, Duration::from_millis(1500));
    }

    #[test]
    fn unknown_skills_and_actions_name_what_exists() {
        let r = refused("nope", "go", json!({}), &InvokeOptions::default());
        assert_eq!(r.code, codes::UNKNOWN_SKILL);
        assert_eq!(r.message, "no skill named \"nope\"; this host has: t");
        // A skill whose manifest broke is named with the problem, not as unknown.
        let r = refused("b", "go", json!({}), &InvokeOptions::default());
        assert_eq!(r.code, codes::UNKNOWN_SKILL);
        assert_eq!(
            r.message,
            "skill \"b\" is not loaded: its manifest is broken; fix it and call again:\n\
             /skills/b/skill.yaml:2:10: version: not semver"
        );
        let r = refused("t", "nope", json!({}), &InvokeOptions::default());
        assert_eq!(r.code, codes::UNKNOWN_ACTION);
        assert_eq!(
            r.message,
            "skill t has no action \"nope\"; it has: go, other"
        );
    }

    #[test]
    fn arguments_are_checked_for_size_then_schema() {
        let big = json!({"n": 1, "pad": "x".repeat(LIMIT)});
        let r = refused("t", "go", big, &InvokeOptions::default());
        assert_eq!(r.code, codes::INPUT_TOO_LARGE);
        assert!(r.message.ends_with("the limit is 1024"), "{}", r.message);
        let r = refused("t", "go", json!({"n": "one"}), &InvokeOptions::default());
        assert_eq!(r.code, codes::INVALID_ARGS);
        assert!(
            r.message.contains("/n: \"one\" is not of type"),
            "{}",
            r.message
        );
        let r = refused("t", "go", json!({}), &InvokeOptions::default());
        assert!(
            r.message.contains("\"n\" is a required property"),
            "{}",
            r.message
        );
        let r = refused("t", "go", json!({"n": 6}), &InvokeOptions::default());
        assert!(r.message.contains("maximum"), "{}", r.message);
        // An action without a declared input takes any object, and only an object.
        let any = json!({"x": [1, "y"]});
        assert!(admit_with("t", "other", any, &InvokeOptions::default()).is_ok());
        let r = refused("t", "other", json!([1]), &InvokeOptions::default());
        assert_eq!(r.code, codes::INVALID_ARGS);
    }

    #[test]
    fn a_missing_schema_is_refused_not_skipped() {
        let catalog = catalog();
        let schemas = Schemas::default();
        let r = admit(
            &catalog,
            &schemas,
            LIMIT,
            "t",
            "go",
            &json!({"n": 1}),
            &InvokeOptions::default(),
        )
        .unwrap_err();
        assert_eq!(
            (r.status, r.code),
            (Status::Rejected, codes::INVALID_SCHEMA)
        );
    }

    #[test]
    fn timeouts_must_be_positive_and_within_the_manifest() {
        for t in [Duration::ZERO, Duration::from_secs(11)] {
            let options = InvokeOptions {
                timeout: Some(t),
                ..InvokeOptions::default()
            };
            let r = refused("t", "go", json!({"n": 1}), &options);
            assert_eq!(r.code, codes::INVALID_OPTIONS);
            assert!(
                r.message.contains("at most the manifest's 10s"),
                "{}",
                r.message
            );
        }
        let exact = InvokeOptions {
            timeout: Some(Duration::from_secs(10)),
            ..InvokeOptions::default()
        };
        assert!(admit_with("t", "go", json!({"n": 1}), &exact).is_ok());
    }

    #[test]
    fn only_allowlisted_environment_variables_pass() {
        let options = InvokeOptions {
            env: BTreeMap::from([("LANG".into(), "C".into()), ("PATH".into(), "/x".into())]),
            ..InvokeOptions::default()
        };
        let r = refused("t", "go", json!({"n": 1}), &options);
        assert_eq!(r.code, codes::INVALID_OPTIONS);
        assert_eq!(
            r.message,
            "environment variable PATH is not in the manifest's run.env allowlist (LANG)"
        );
    }

    #[test]
    fn a_workspace_is_resolved_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let options = |path: &Path| InvokeOptions {
            workspace: Some(path.to_path_buf()),
            ..InvokeOptions::default()
        };
        let (.., workspace) = admit_with("t", "go", json!({"n": 1}), &options(dir.path())).unwrap();
        assert_eq!(workspace, Some(dir.path().canonicalize().unwrap()));
        let r = refused("t", "go", json!({"n": 1}), &options(Path::new("/etc")));
        assert_eq!(r.code, codes::INVALID_OPTIONS);
        assert!(r.message.contains("never mounted"), "{}", r.message);
        let r = refused(
            "t",
            "go",
            json!({"n": 1}),
            &options(&dir.path().join("missing")),
        );
        assert!(r.message.contains("cannot be resolved"), "{}", r.message);
    }

    #[test]
    fn checks_run_in_order_so_the_first_problem_is_named() {
        // Unknown action beats bad arguments and bad options.
        let options = InvokeOptions {
            timeout: Some(Duration::ZERO),
            ..InvokeOptions::default()
        };
        assert_eq!(
            refused("t", "nope", json!("bad"), &options).code,
            codes::UNKNOWN_ACTION
        );
        // Bad arguments beat bad options.
        assert_eq!(
            refused("t", "go", json!("bad"), &options).code,
            codes::INVALID_ARGS
        );
    }
}
