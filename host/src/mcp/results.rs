//! A skillhost result as an MCP tool result. Pure.
//!
//! `ok`: the output as its JSON text, and as `structuredContent` when it is an object (the
//! shape MCP's structured content takes, and what an action's output schema describes).
//! Every other status: `isError`, with the status, the code and the message in the text,
//! so the model reads what went wrong (a refusal of bad arguments names each violation)
//! and can correct its call. Either way `_meta` carries the invocation's id, path,
//! status and duration under [`META_KEY`].

use rmcp::model::{CallToolResult, ContentBlock, MetaObject};
use serde_json::{json, Map, Value};
use skillhost_api::{InvocationResult, Status};

/// The `_meta` key of a tool result's skillhost invocation.
pub(crate) const META_KEY: &str = "io.skillhost/invocation";

/// `result` as the model and the client see it. `note`, when given, is said to the model
/// after the result (a session that had to be opened afresh, say).
pub(crate) fn tool_result(result: &InvocationResult, note: Option<&str>) -> CallToolResult {
    let ok = result.status == Status::Ok;
    let mut text = if ok {
        serde_json::to_string(&result.output).unwrap_or_else(|e| e.to_string())
    } else {
        match &result.error {
            // The details (a code runner's stdout, stderr and exit code, say) are what
            // the model needs to see why.
            Some(error) => match &error.details {
                Some(details) => format!(
                    "{} ({}): {}\n\n{details}",
                    result.status, error.code, error.message
                ),
                None => format!("{} ({}): {}", result.status, error.code, error.message),
            },
            None => result.status.to_string(),
        }
    };
    if let Some(note) = note {
        text = format!("{text}\n\n{note}");
    }
    let content = vec![ContentBlock::text(text)];
    let mut tool = if ok {
        CallToolResult::success(content)
    } else {
        CallToolResult::error(content)
    };
    if let Some(output) = result.output.as_ref().filter(|o| ok && o.is_object()) {
        tool.structured_content = Some(output.clone());
    }
    let mut invocation = json!({
        "id": result.id,
        "path": result.path,
        "status": result.status,
        "duration_ms": result.duration_ms,
    });
    if let Some(error) = &result.error {
        invocation["code"] = json!(error.code);
    }
    if let Some(session) = &result.session {
        invocation["session"] = json!(session);
    }
    let mut meta = Map::new();
    meta.insert(META_KEY.to_string(), invocation);
    tool.with_meta(Some(MetaObject(meta)))
}

/// What a cancelled call tells the client, should it still read the answer.
pub(crate) fn cancelled() -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(
        "cancelled (cancelled): the client cancelled the call; its container was removed",
    )])
}

/// The tool result of a call that could not be made at all (its session could not be
/// opened, say), as an error the model can read.
pub(crate) fn refused(status: &str, code: &str, message: &str) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!(
        "{status} ({code}): {message}"
    ))])
}

/// `Value::Object` of a call's arguments (an absent one is `{}`).
pub(crate) fn arguments(arguments: Option<Map<String, Value>>) -> Value {
    Value::Object(arguments.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use skillhost_api::{InvocationError, InvocationPath};

    fn text(tool: &CallToolResult) -> String {
        match &tool.content[0] {
            ContentBlock::Text(text) => text.text.clone(),
            other => panic!("not text: {other:?}"),
        }
    }

    #[test]
    fn an_ok_result_is_structured_content_and_its_json_text() {
        let mut result = InvocationResult::new("id-1", "echo", "say");
        result.status = Status::Ok;
        result.output = Some(json!({"text": "hi"}));
        result.path = InvocationPath::Warm;
        result.duration_ms = 7;
        let tool = tool_result(&result, None);
        assert_eq!(tool.is_error, Some(false));
        assert_eq!(tool.structured_content, Some(json!({"text": "hi"})));
        assert_eq!(text(&tool), r#"{"text":"hi"}"#);
        let meta = &tool.meta.as_ref().unwrap().0[META_KEY];
        assert_eq!(meta["id"], "id-1");
        assert_eq!(meta["path"], "warm");
        assert_eq!(meta["status"], "ok");
        assert_eq!(meta["duration_ms"], 7);
    }

    #[test]
    fn output_that_is_not_an_object_is_text_only() {
        let mut result = InvocationResult::new("id", "s", "a");
        result.status = Status::Ok;
        result.output = Some(json!([1, 2]));
        let tool = tool_result(&result, Some("a note"));
        assert_eq!(tool.structured_content, None);
        assert_eq!(text(&tool), "[1,2]\n\na note");
    }

    #[test]
    fn every_other_status_is_an_error_naming_status_code_and_message() {
        for (status, code) in [
            (Status::Rejected, "invalid_args"),
            (Status::SkillError, "boom"),
            (Status::Timeout, "timeout"),
            (Status::MemoryLimit, "memory_limit"),
            (Status::Crashed, "crashed"),
        ] {
            let mut result = InvocationResult::new("id", "s", "a");
            result.status = status;
            result.error = Some(InvocationError::new(code, "what went wrong"));
            let tool = tool_result(&result, None);
            assert_eq!(tool.is_error, Some(true), "{status}");
            assert_eq!(tool.structured_content, None);
            assert_eq!(text(&tool), format!("{status} ({code}): what went wrong"));
            assert_eq!(tool.meta.as_ref().unwrap().0[META_KEY]["code"], code);
        }
    }

    #[test]
    fn a_failures_details_follow_its_message_for_the_model() {
        let mut result = InvocationResult::new("id", "python", "run");
        result.status = Status::SkillError;
        result.error = Some(
            InvocationError::new("code_exit", "the code exited with status 1").with_details(Some(
                json!({"stdout": "", "stderr": "NameError", "exit_code": 1}),
            )),
        );
        let tool = tool_result(&result, None);
        assert_eq!(tool.is_error, Some(true));
        let text = text(&tool);
        assert!(
            text.starts_with("skill_error (code_exit): the code exited with status 1\n\n{"),
            "{text}"
        );
        assert!(text.contains(r#""stderr":"NameError""#), "{text}");
    }
}
