//! Whether a call's result kept an example's promise: the status and error code, the
//! output (exact or a subset), a clean exit and no process killed for memory. Pure: the
//! call has already run.

use serde_json::{Map, Value};
use skillhost_api::{codes, ExampleFailure, FailureKind, InvocationResult, Status};

use crate::manifest::{Example, Matching};

/// Every way `result` broke the promise of `example`; empty when it kept it.
pub(crate) fn judge(example: &Example, result: &InvocationResult) -> Vec<ExampleFailure> {
    let mut failures = Vec::new();
    match &example.expect_error {
        Some(code) => expect_error(code, result, &mut failures),
        None => expect_output(example, result, &mut failures),
    }
    if let Some(code) = result.exit_code.filter(|c| *c != 0) {
        // A crash without an answer is already a status failure; this is the skill that
        // answered and then failed anyway.
        if matches!(result.status, Status::Ok | Status::SkillError) {
            failures.push(ExampleFailure::new(
                FailureKind::Exit,
                format!(
                    "the skill answered, then exited with code {code}: a skill exits 0 once it \
                     has written its result"
                ),
            ));
        }
    }
    if result.oom_killed && result.status != Status::MemoryLimit {
        failures.push(ExampleFailure::new(
            FailureKind::Memory,
            "a process of the skill was killed for memory, though the call ended: raise \
             run.limits.memory in skill.yaml or use less",
        ));
    }
    failures
}

fn expect_error(code: &str, result: &InvocationResult, failures: &mut Vec<ExampleFailure>) {
    match (&result.status, &result.error) {
        (Status::SkillError, Some(error)) if error.code == code => {}
        (Status::SkillError, Some(error)) => failures.push(
            ExampleFailure::new(
                FailureKind::ErrorCode,
                format!(
                    "the skill failed with {:?} where the example expects {code:?}: {}",
                    error.code, error.message
                ),
            )
            .comparing(Value::from(code), Value::from(error.code.clone())),
        ),
        (Status::Ok, _) => failures.push(
            ExampleFailure::new(
                FailureKind::Status,
                format!("the skill answered ok where the example expects error {code:?}"),
            )
            .comparing(
                Value::from(code),
                result.output.clone().unwrap_or(Value::Null),
            ),
        ),
        _ => failures.push(status_failure(Status::SkillError, result)),
    }
}

fn expect_output(example: &Example, result: &InvocationResult, failures: &mut Vec<ExampleFailure>) {
    if result.status != Status::Ok {
        failures.push(status_failure(Status::Ok, result));
        return;
    }
    let (Some(expected), Some(actual)) = (&example.expect, &result.output) else {
        return;
    };
    match example.matching {
        Matching::Exact if expected != actual => failures.push(
            ExampleFailure::new(FailureKind::Output, "the output is not the one expected")
                .comparing(expected.clone(), actual.clone()),
        ),
        // Compared with only what the example names, so a diff shows what matters.
        Matching::Subset if !contains(expected, actual) => failures.push(
            ExampleFailure::new(
                FailureKind::Output,
                "the output lacks fields the example expects (match: subset)",
            )
            .comparing(expected.clone(), project(actual, expected)),
        ),
        _ => {}
    }
}

/// The failure of a call that ended otherwise than `wanted`, with what to do about it.
fn status_failure(wanted: Status, result: &InvocationResult) -> ExampleFailure {
    let (code, message) = result
        .error
        .as_ref()
        .map(|e| (e.code.as_str(), e.message.as_str()))
        .unwrap_or(("", ""));
    let next = match result.status {
        Status::SkillError if wanted == Status::Ok && code != codes::BUILD_FAILED => Some(
            "if this failure is what the example shows, write `expect_error` with its code \
             instead of `expect`",
        ),
        _ => next_step(result),
    };
    let mut text = format!("expected status {wanted}, got {}", result.status);
    if !code.is_empty() {
        text.push_str(&format!(" ({code}): {message}"));
    }
    if let Some(next) = next {
        text.push_str(&format!("\n{next}"));
    }
    ExampleFailure::new(FailureKind::Status, text).comparing(
        Value::from(wanted.as_str()),
        Value::from(result.status.as_str()),
    )
}

/// What the skill's author can do about a call that ended as `result` did, when there is
/// something to say.
pub(crate) fn next_step(result: &InvocationResult) -> Option<&'static str> {
    let code = result.error.as_ref().map(|e| e.code.as_str()).unwrap_or("");
    Some(match result.status {
        Status::ProtocolError if code == codes::OUTPUT_SCHEMA => {
            "fix the skill, or the action's output schema in skill.yaml"
        }
        Status::ProtocolError => {
            "every line on stdout must be one JSON frame with the request's id (log to \
             stderr), the result frame comes last, and nothing follows it: see the protocol \
             guide, docs/protocol.md"
        }
        Status::Crashed => "its stderr should tell why",
        Status::Timeout => "make it faster, or raise run.limits.timeout in skill.yaml",
        Status::MemoryLimit => "use less memory, or raise run.limits.memory in skill.yaml",
        Status::OutputLimit => "write less to stdout, or raise run.limits.output in skill.yaml",
        Status::SkillError if code == codes::BUILD_FAILED => {
            "fix the build, then run `skillhost test` again"
        }
        Status::InfrastructureError if code == codes::BASE_IMAGE_MISSING => {
            "the skill's Dockerfile starts FROM an image this engine does not have; the error \
             says how to get it"
        }
        Status::InfrastructureError => "the host could not run it; this is not the skill's fault",
        _ => return None,
    })
}

/// Whether `actual` holds everything `expected` names: objects by key at any depth,
/// arrays element by element and of the same length, anything else equal.
pub(crate) fn contains(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(want), Value::Object(have)) => want
            .iter()
            .all(|(key, value)| have.get(key).is_some_and(|v| contains(value, v))),
        (Value::Array(want), Value::Array(have)) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| contains(w, h))
        }
        _ => expected == actual,
    }
}

/// `actual` cut down to the fields `expected` names, at every depth, so that a diff
/// against `expected` shows only what the subset compares.
pub(crate) fn project(actual: &Value, expected: &Value) -> Value {
    match (actual, expected) {
        (Value::Object(have), Value::Object(want)) => Value::Object(
            have.iter()
                .filter_map(|(key, value)| want.get(key).map(|w| (key.clone(), project(value, w))))
                .collect::<Map<String, Value>>(),
        ),
        (Value::Array(have), Value::Array(want)) if have.len() == want.len() => {
            Value::Array(have.iter().zip(want).map(|(h, w)| project(h, w)).collect())
        }
        _ => actual.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use skillhost_api::InvocationError;

    use super::*;

    fn example(expect: Option<Value>, expect_error: Option<&str>, matching: Matching) -> Example {
        Example {
            name: None,
            action: "run".into(),
            args: json!({}),
            expect,
            expect_error: expect_error.map(String::from),
            matching,
        }
    }

    fn ok(output: Value) -> InvocationResult {
        let mut result = InvocationResult::new("i", "s", "run");
        result.status = Status::Ok;
        result.output = Some(output);
        result.exit_code = Some(0);
        result
    }

    fn failed(status: Status, code: &str) -> InvocationResult {
        let mut result = InvocationResult::new("i", "s", "run");
        result.status = status;
        result.error = Some(InvocationError::new(code, "it went wrong"));
        result.exit_code = Some(0);
        result
    }

    fn kinds(failures: &[ExampleFailure]) -> Vec<FailureKind> {
        failures.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn an_exact_expectation_passes_only_on_an_equal_output() {
        let promise = example(Some(json!({"a": 1})), None, Matching::Exact);
        assert!(judge(&promise, &ok(json!({"a": 1}))).is_empty());
        let failures = judge(&promise, &ok(json!({"a": 1, "b": 2})));
        assert_eq!(kinds(&failures), [FailureKind::Output]);
        assert_eq!(failures[0].expected, Some(json!({"a": 1})));
        assert_eq!(failures[0].actual, Some(json!({"a": 1, "b": 2})));
    }

    #[test]
    fn a_subset_ignores_other_fields_and_its_diff_shows_only_the_named_ones() {
        let promise = example(
            Some(json!({"stdout": "2\n", "files": {"a": 1}})),
            None,
            Matching::Subset,
        );
        let actual = json!({"stdout": "2\n", "stderr": "", "files": {"a": 1, "b": 2}});
        assert!(judge(&promise, &ok(actual)).is_empty());

        let actual = json!({"stdout": "3\n", "stderr": "x", "files": {"a": 1, "b": 2}});
        let failures = judge(&promise, &ok(actual));
        assert_eq!(kinds(&failures), [FailureKind::Output]);
        assert_eq!(
            failures[0].actual,
            Some(json!({"stdout": "3\n", "files": {"a": 1}}))
        );
    }

    #[test]
    fn subset_arrays_match_element_by_element_and_in_length() {
        assert!(contains(&json!([{"a": 1}]), &json!([{"a": 1, "b": 2}])));
        assert!(!contains(&json!([{"a": 1}]), &json!([{"a": 1}, {"a": 1}])));
        assert!(!contains(&json!({"a": null}), &json!({})));
        assert!(contains(&json!(3), &json!(3)));
    }

    #[test]
    fn an_expected_error_needs_its_code() {
        let promise = example(None, Some("empty_text"), Matching::Exact);
        assert!(judge(&promise, &failed(Status::SkillError, "empty_text")).is_empty());
        let failures = judge(&promise, &failed(Status::SkillError, "other"));
        assert_eq!(kinds(&failures), [FailureKind::ErrorCode]);
        assert_eq!(failures[0].expected, Some(json!("empty_text")));
        let failures = judge(&promise, &ok(json!(1)));
        assert_eq!(kinds(&failures), [FailureKind::Status]);
    }

    #[test]
    fn a_broken_protocol_fails_with_the_status_and_the_way_forward() {
        let promise = example(Some(json!(1)), None, Matching::Exact);
        let failures = judge(&promise, &failed(Status::ProtocolError, "protocol_error"));
        assert_eq!(kinds(&failures), [FailureKind::Status]);
        assert!(failures[0]
            .message
            .contains("expected status ok, got protocol_error"));
        assert!(failures[0].message.contains("docs/protocol.md"));

        let failures = judge(
            &promise,
            &failed(Status::ProtocolError, codes::OUTPUT_SCHEMA),
        );
        assert!(failures[0].message.contains("output schema in skill.yaml"));

        let failures = judge(&promise, &failed(Status::SkillError, "nope"));
        assert!(failures[0].message.contains("write `expect_error`"));
    }

    #[test]
    fn an_example_without_expectations_needs_only_success() {
        let promise = example(None, None, Matching::Exact);
        assert!(judge(&promise, &ok(json!("anything"))).is_empty());
        let failures = judge(&promise, &failed(Status::Timeout, codes::TIMEOUT));
        assert!(failures[0].message.contains("run.limits.timeout"));
    }

    #[test]
    fn an_answer_followed_by_a_bad_exit_or_a_memory_kill_fails() {
        let promise = example(Some(json!(1)), None, Matching::Exact);
        let mut result = ok(json!(1));
        result.exit_code = Some(3);
        result.oom_killed = true;
        let failures = judge(&promise, &result);
        assert_eq!(kinds(&failures), [FailureKind::Exit, FailureKind::Memory]);
        assert!(failures[0].message.contains("exited with code 3"));

        // Warm and native calls have no exit code of their own: nothing to judge.
        let mut result = ok(json!(1));
        result.exit_code = None;
        assert!(judge(&promise, &result).is_empty());

        // A crash is the status's failure, not a second one about the exit.
        let mut result = failed(Status::Crashed, codes::CRASHED);
        result.exit_code = Some(1);
        assert_eq!(kinds(&judge(&promise, &result)), [FailureKind::Status]);
    }
}
