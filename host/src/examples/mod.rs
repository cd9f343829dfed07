//! `skillhost test`: a skill's manifest examples, each run as a real call through a
//! [`Host`] (so in the sandbox and on the path its manifest chooses), and judged against
//! what it promises ([`judge`]). The host already enforces the protocol's conduct (valid
//! frames with the request's id, progress before the result, nothing after it, an output
//! that matches the declared schema) and reports a breach as the call's status, so an
//! example that expects success fails on any of them.

mod judge;

use std::path::Path;

use serde_json::json;
use skillhost_api::{ExampleFailure, ExampleReport, FailureKind, InvocationResult};

use crate::catalog::Skill;
use crate::manifest::{example_line, Example};
use crate::{Host, InvokeOptions};

/// Run every example of `skill` on `host`, one after another, calling `on_report` as each
/// one is judged; their reports, in manifest order.
pub async fn run_skill(
    host: &Host,
    skill: &Skill,
    mut on_report: impl FnMut(&ExampleReport),
) -> Vec<ExampleReport> {
    let located = Located::new(skill);
    let mut reports = Vec::new();
    for (index, example) in skill.manifest.examples.iter().enumerate() {
        let mut report = located.report(index, example);
        let result = host
            .invoke_with(
                skill.name(),
                &example.action,
                example.args.clone(),
                InvokeOptions::default(),
            )
            .await;
        report.failures = judge::judge(example, &result);
        report.duration_ms = result.duration_ms;
        report.result = Some(result);
        on_report(&report);
        reports.push(report);
    }
    reports
}

/// What the skill's author can do about a call that ended as `result` did, when there is
/// something to say: `skillhost invoke` prints it under a failure.
pub fn author_hint(result: &InvocationResult) -> Option<&'static str> {
    judge::next_step(result)
}

/// The reports of the examples of `skill` when its image could not be built: each one
/// failed, with why, and none ran.
pub fn unbuilt(skill: &Skill, why: &str) -> Vec<ExampleReport> {
    let located = Located::new(skill);
    skill
        .manifest
        .examples
        .iter()
        .enumerate()
        .map(|(index, example)| {
            let mut report = located.report(index, example);
            report.failures.push(ExampleFailure::new(
                FailureKind::Build,
                format!("the image did not build, so the example did not run: {why}"),
            ));
            report
        })
        .collect()
}

/// A skill's manifest, with its text for the examples' line numbers.
struct Located<'s> {
    skill: &'s Skill,
    /// `skill.yaml` as the person running the tests would name it.
    path: String,
    text: Option<String>,
}

impl<'s> Located<'s> {
    fn new(skill: &'s Skill) -> Self {
        let path = skill.manifest_path();
        Located {
            skill,
            text: std::fs::read_to_string(&path).ok(),
            path: shown(&path),
        }
    }

    /// An empty report of example `index`.
    fn report(&self, index: usize, example: &Example) -> ExampleReport {
        let name = example
            .name
            .clone()
            .unwrap_or_else(|| format!("{}[{index}]", example.action));
        let location = match self.text.as_deref().and_then(|t| example_line(t, index)) {
            Some(line) => format!("{}:{line}", self.path),
            None => self.path.clone(),
        };
        ExampleReport::new(
            self.skill.name(),
            index,
            name,
            example.action.clone(),
            location,
        )
    }
}

/// `path` relative to the working directory when it is under it, else whole.
fn shown(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| cwd.canonicalize().ok())
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

/// The `skillhost invoke` command that makes example `index` of `skill`'s call by hand.
pub fn rerun_command(skill: &Skill, index: usize) -> Option<String> {
    let example = skill.manifest.examples.get(index)?;
    let args = serde_json::to_string(&example.args).unwrap_or_else(|_| json!({}).to_string());
    let root = skill.dir.parent().map(shown).unwrap_or_else(|| ".".into());
    Some(format!(
        "skillhost --skills-dir {root} invoke {} {} --args '{}'",
        skill.name(),
        example.action,
        args.replace('\'', r"'\''")
    ))
}
