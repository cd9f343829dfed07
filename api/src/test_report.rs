//! What `skillhost test --format json` prints: each example the manifests declare, run in
//! the sandbox, and how it compared with what it promised.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::report::BrokenSkill;
use crate::result::InvocationResult;

/// The whole run: every example's report, and the skills that could not be tested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TestReport {
    /// One report per example, in manifest order, skill by skill.
    pub examples: Vec<ExampleReport>,
    /// Examples that kept their promises.
    pub passed: usize,
    /// Examples that did not, counting those of a skill whose image failed to build.
    pub failed: usize,
    /// Skills selected that declare no examples: nothing of theirs was run.
    pub without_examples: Vec<String>,
    /// Manifests that failed to load, when no skill was named: each is a failure.
    pub broken: Vec<BrokenSkill>,
    /// Milliseconds the whole run took, builds included.
    pub duration_ms: u64,
}

impl TestReport {
    /// A report of `examples`, counted.
    pub fn new(
        examples: Vec<ExampleReport>,
        without_examples: Vec<String>,
        broken: Vec<BrokenSkill>,
        duration_ms: u64,
    ) -> Self {
        let passed = examples.iter().filter(|e| e.passed()).count();
        TestReport {
            failed: examples.len() - passed,
            passed,
            examples,
            without_examples,
            broken,
            duration_ms,
        }
    }

    /// Whether everything passed: every example, and no broken manifest.
    pub fn all_passed(&self) -> bool {
        self.failed == 0 && self.broken.is_empty()
    }
}

/// One example of one skill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExampleReport {
    /// The skill.
    pub skill: String,
    /// The example's position in the manifest's `examples`, from 0.
    pub index: usize,
    /// Its `name`, or `<action>[<index>]`.
    pub name: String,
    /// The action it called.
    pub action: String,
    /// Where it is declared: `path/skill.yaml:line`, or the path alone when the line is
    /// not known.
    pub location: String,
    /// Every way it broke its promise; empty when it passed.
    pub failures: Vec<ExampleFailure>,
    /// The invocation's whole result; `None` when it never ran (its image failed to
    /// build).
    pub result: Option<InvocationResult>,
    /// Milliseconds the call took.
    pub duration_ms: u64,
}

impl ExampleReport {
    /// An example's report; it passed when `failures` is empty.
    pub fn new(
        skill: impl Into<String>,
        index: usize,
        name: impl Into<String>,
        action: impl Into<String>,
        location: impl Into<String>,
    ) -> Self {
        ExampleReport {
            skill: skill.into(),
            index,
            name: name.into(),
            action: action.into(),
            location: location.into(),
            failures: Vec::new(),
            result: None,
            duration_ms: 0,
        }
    }

    /// Whether the example kept its promise.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// One way an example broke its promise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExampleFailure {
    /// What was compared.
    pub kind: FailureKind,
    /// What went wrong and what to do about it, for people.
    pub message: String,
    /// What the example promised, when a value was compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Value>,
    /// What the skill gave instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<Value>,
}

impl ExampleFailure {
    /// A failure with no compared values.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        ExampleFailure {
            kind,
            message: message.into(),
            expected: None,
            actual: None,
        }
    }

    /// The same failure, with the values compared.
    pub fn comparing(mut self, expected: Value, actual: Value) -> Self {
        self.expected = Some(expected);
        self.actual = Some(actual);
        self
    }
}

/// What an example's failure concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The skill's image failed to build, so nothing ran.
    Build,
    /// The call ended with another status than promised (a protocol error, a crash, a
    /// timeout, an error where an output was expected, ...).
    Status,
    /// The skill failed with another error code than promised.
    ErrorCode,
    /// The output differs from `expect`.
    Output,
    /// The container exited with a non-zero code after answering.
    Exit,
    /// A process of the skill was killed for memory.
    Memory,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_counts_what_passed_and_a_broken_manifest_fails_the_run() {
        let passed = ExampleReport::new("echo", 0, "say[0]", "say", "skills/echo/skill.yaml:20");
        let mut failed = passed.clone();
        failed.index = 1;
        failed
            .failures
            .push(ExampleFailure::new(FailureKind::Exit, "exited 3"));
        let report = TestReport::new(vec![passed.clone(), failed], Vec::new(), Vec::new(), 5);
        assert_eq!((report.passed, report.failed), (1, 1));
        assert!(!report.all_passed());

        let broken = BrokenSkill::new("skills/x/skill.yaml: bad", Vec::new());
        let report = TestReport::new(vec![passed], Vec::new(), vec![broken], 5);
        assert_eq!((report.passed, report.failed), (1, 0));
        assert!(!report.all_passed(), "a broken manifest is not a pass");
    }

    #[test]
    fn failures_serialize_with_their_kind_and_only_the_values_compared() {
        let failure = ExampleFailure::new(FailureKind::ErrorCode, "other code")
            .comparing(Value::from("a"), Value::from("b"));
        let json = serde_json::to_value(&failure).unwrap();
        assert_eq!(json["kind"], "error_code");
        assert_eq!(json["expected"], "a");
        let json = serde_json::to_value(ExampleFailure::new(FailureKind::Build, "x")).unwrap();
        assert!(json.get("expected").is_none());
    }
}
