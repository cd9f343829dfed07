//! Protocol v1 wire types, shared by the host and every Rust skill.
//!
//! One JSON value per line. The host writes one [`Request`] to the container's stdin and
//! closes it; the skill answers with any number of [`Frame::Progress`] lines followed by
//! exactly one [`Frame::Result`] line on stdout. In serve mode the host writes requests
//! one at a time on the same stdin, each answered the same way before the next. Parsing is strict: unknown fields are
//! refused so that a typo or a foreign program's output is never mistaken for a frame.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this crate speaks, as written in [`Request::protocol`].
pub const PROTOCOL_VERSION: &str = "1.0";

/// The protocol version as semver, for matching a manifest's `protocol` requirement.
pub const PROTOCOL_SEMVER: (u64, u64, u64) = (1, 0, 0);

/// The longest line [`Frame::parse_line`] and [`Request::parse_line`] accept, in bytes.
///
/// A bound keeps a hostile peer from making the other side buffer without end; hosts
/// enforce their own (usually smaller) output limit before this one.
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// The environment variable that tells a skill how to read stdin: `serve` for many
/// requests, one per line, until stdin closes; absent for one request.
pub const SERVE_MODE_ENV: &str = "SKILLHOST_MODE";

/// What the host asks a skill to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The protocol version of the sender, `major.minor`.
    pub protocol: String,
    /// Unique id of this invocation; every frame answering it carries it.
    pub id: String,
    /// The action's name, as declared in the skill's manifest.
    pub action: String,
    /// The action's arguments, already validated by the host against the input schema.
    #[serde(default)]
    pub args: Value,
    /// Milliseconds the skill has before the host kills it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
}

/// One line a skill writes to stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Frame {
    /// Optional, any number, before the result.
    Progress(Progress),
    /// The last frame: success with an output, or failure with an error body.
    Result(ResultFrame),
}

/// A progress report, delivered to the caller while the action runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// The request's id.
    pub id: String,
    /// Human-readable status.
    #[serde(default)]
    pub message: String,
    /// Completion between 0 and 1, when the skill can tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
}

/// The result of an action, as it travels on the wire.
///
/// Exactly one of `output` (when `ok`) and `error` (when not) is present; use
/// [`ResultFrame::outcome`] rather than reading the fields directly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultFrame {
    /// The request's id.
    pub id: String,
    /// Whether the action succeeded.
    pub ok: bool,
    /// The action's output; present exactly when `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why the action failed; present exactly when not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// Why an action failed, as reported by the skill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// Machine-readable code, `snake_case`: see [`codes`] for the ones the SDK uses.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// Structured details, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// Error codes the SDK runtime itself produces.
pub mod codes {
    /// The arguments did not deserialize into the action's argument type.
    pub const INVALID_ARGS: &str = "invalid_args";
    /// The request named an action the skill does not have.
    pub const UNKNOWN_ACTION: &str = "unknown_action";
    /// The request could not be read or parsed.
    pub const BAD_REQUEST: &str = "bad_request";
    /// The request's protocol major version is not one this SDK speaks.
    pub const UNSUPPORTED_PROTOCOL: &str = "unsupported_protocol";
    /// The action panicked.
    pub const PANIC: &str = "panic";
    /// The action's output could not be serialized.
    pub const BAD_OUTPUT: &str = "bad_output";
}

/// Why a line is not a valid frame or request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The line exceeds [`MAX_LINE_BYTES`].
    TooLong {
        /// Length of the offending line.
        len: usize,
    },
    /// The line is not the expected JSON shape; the message is the parser's.
    Json(String),
    /// A result frame whose `ok` disagrees with the fields present.
    Inconsistent(&'static str),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::TooLong { len } => {
                write!(
                    f,
                    "line of {len} bytes exceeds the {MAX_LINE_BYTES}-byte limit"
                )
            }
            ParseError::Json(msg) => f.write_str(msg),
            ParseError::Inconsistent(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for ParseError {}

fn parse_json<T: for<'de> Deserialize<'de>>(line: &str) -> Result<T, ParseError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(ParseError::TooLong { len: line.len() });
    }
    // serde_json refuses nesting deeper than 128 levels, which bounds the stack a
    // hostile line can consume.
    let line = line.trim_end_matches(['\r', '\n']);
    // serde_json's maps keep the last of two equal keys; the typed fields refuse a
    // duplicate, but `output`, `args` and `details` are free JSON. One pass over the whole
    // line refuses a duplicate key at any depth, escapes decoded (`"a"` and `"\u0061"` are
    // one key).
    serde_json::from_str::<NoDuplicateKeys>(line).map_err(|e| ParseError::Json(e.to_string()))?;
    serde_json::from_str(line).map_err(|e| ParseError::Json(e.to_string()))
}

/// Any JSON value, refused when an object anywhere in it has a key twice.
struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicateKeys)
    }
}

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeys {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(self)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value::<NoDuplicateKeys>()?;
            if let Some(key) = seen.replace(key) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key `{key}`"
                )));
            }
        }
        Ok(self)
    }
}

impl Request {
    /// A request for `action` with `args`, speaking [`PROTOCOL_VERSION`].
    pub fn new(id: impl Into<String>, action: impl Into<String>, args: Value) -> Self {
        Request {
            protocol: PROTOCOL_VERSION.to_string(),
            id: id.into(),
            action: action.into(),
            args,
            deadline_ms: None,
        }
    }

    /// Parse one request line strictly.
    pub fn parse_line(line: &str) -> Result<Self, ParseError> {
        parse_json(line)
    }

    /// The request's major protocol version, if `protocol` is `major[.minor]`.
    pub fn protocol_major(&self) -> Option<u64> {
        self.protocol.split('.').next()?.parse().ok()
    }

    /// The request as one line, newline included.
    pub fn to_line(&self) -> String {
        line_of(self)
    }
}

impl Frame {
    /// Parse one frame line strictly, checking a result's `ok` against its fields.
    pub fn parse_line(line: &str) -> Result<Self, ParseError> {
        let frame: Frame = parse_json(line)?;
        if let Frame::Result(r) = &frame {
            let _checked = r.outcome()?;
        }
        Ok(frame)
    }

    /// The id of the request this frame answers.
    pub fn id(&self) -> &str {
        match self {
            Frame::Progress(p) => &p.id,
            Frame::Result(r) => &r.id,
        }
    }

    /// The frame as one line, newline included.
    pub fn to_line(&self) -> String {
        line_of(self)
    }
}

impl ResultFrame {
    /// A successful result.
    pub fn ok(id: impl Into<String>, output: Value) -> Self {
        ResultFrame {
            id: id.into(),
            ok: true,
            output: Some(output),
            error: None,
        }
    }

    /// A failed result.
    pub fn err(id: impl Into<String>, error: ErrorBody) -> Self {
        ResultFrame {
            id: id.into(),
            ok: false,
            output: None,
            error: Some(error),
        }
    }

    /// The output or the error, refusing a frame whose `ok` disagrees with its fields.
    pub fn outcome(&self) -> Result<Result<&Value, &ErrorBody>, ParseError> {
        match (self.ok, &self.output, &self.error) {
            (true, Some(output), None) => Ok(Ok(output)),
            (false, None, Some(error)) if !is_snake_case(&error.code) => {
                Err(ParseError::Inconsistent(
                    "result's error.code is not snake_case ([a-z][a-z0-9_]*, at most 64 bytes)",
                ))
            }
            (false, None, Some(error)) => Ok(Err(error)),
            (true, None, _) => Err(ParseError::Inconsistent("result has ok=true but no output")),
            (true, Some(_), Some(_)) => {
                Err(ParseError::Inconsistent("result has ok=true and an error"))
            }
            (false, _, None) => Err(ParseError::Inconsistent("result has ok=false but no error")),
            (false, Some(_), Some(_)) => Err(ParseError::Inconsistent(
                "result has ok=false and an output",
            )),
        }
    }
}

/// `[a-z][a-z0-9_]*`, at most 64 bytes: what the protocol allows as an `error.code`.
pub fn is_snake_case(code: &str) -> bool {
    code.len() <= 64
        && code.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl ErrorBody {
    /// An error body with a code and a message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            code: code.into(),
            message: message.into(),
            details: None,
        }
    }
}

fn line_of<T: Serialize>(value: &T) -> String {
    // These types hold only strings, numbers and JSON values: serialization cannot fail.
    let mut line = serde_json::to_string(value).expect("protocol types always serialize");
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_round_trip() {
        let frames = [
            Frame::Progress(Progress {
                id: "a".into(),
                message: "half".into(),
                fraction: Some(0.5),
            }),
            Frame::Result(ResultFrame::ok("a", json!({"text": "hi"}))),
            Frame::Result(ResultFrame::err("a", ErrorBody::new("boom", "it broke"))),
        ];
        for frame in frames {
            let line = frame.to_line();
            assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
            assert_eq!(Frame::parse_line(&line).unwrap(), frame);
        }
    }

    #[test]
    fn wire_shape_matches_design() {
        let line = Frame::Result(ResultFrame::ok("x", json!(1))).to_line();
        assert_eq!(
            line,
            "{\"type\":\"result\",\"id\":\"x\",\"ok\":true,\"output\":1}\n"
        );
        let req = Request::new("x", "say", json!({"text": "hi"})).to_line();
        assert_eq!(
            req,
            "{\"protocol\":\"1.0\",\"id\":\"x\",\"action\":\"say\",\"args\":{\"text\":\"hi\"}}\n"
        );
    }

    #[test]
    fn malformed_frames_are_refused_with_the_parsers_message() {
        let cases = [
            ("", "EOF"),
            ("hello", "expected value"),
            ("{\"type\":\"result\",\"id\":\"a\",\"ok\":true", "EOF"),
            (
                "{\"type\":\"shout\",\"id\":\"a\"}",
                "unknown variant `shout`",
            ),
            (
                "{\"type\":\"result\",\"id\":\"a\",\"ok\":true,\"output\":1,\"extra\":2}",
                "unknown field `extra`",
            ),
            (
                "{\"type\":\"result\",\"id\":\"a\",\"id\":\"b\",\"ok\":true,\"output\":1}",
                "duplicate key `id`",
            ),
            (
                "{\"type\":\"result\",\"id\":\"a\",\"ok\":true,\"output\":{\"a\":1,\"a\":2}}",
                "duplicate key `a`",
            ),
            (
                "{\"type\":\"result\",\"id\":\"a\",\"ok\":true,\"output\":{\"a\":1,\"\\u0061\":2}}",
                "duplicate key `a`",
            ),
            (
                "{\"type\":\"result\",\"id\":\"a\",\"ok\":true,\"output\":[{\"x\":[{\"b\":1,\"b\":1}]}]}",
                "duplicate key `b`",
            ),
            (
                "{\"type\":\"result\",\"id\":\"a\",\"ok\":false,\"error\":{\"code\":\"c\",\"message\":\"m\",\"details\":{\"k\":1,\"k\":1}}}",
                "duplicate key `k`",
            ),
            (
                "{\"type\":\"result\",\"id\":\"a\",\"ok\":false,\"error\":{\"code\":\"\\u001b]0;pwned\\u0007\",\"message\":\"m\"}}",
                "error.code is not snake_case",
            ),
            (
                "{\"type\":\"result\",\"id\":\"a\",\"ok\":false,\"error\":{\"code\":\"NotFound\",\"message\":\"m\"}}",
                "error.code is not snake_case",
            ),
            (
                "{\"type\":\"result\",\"id\":\"a\",\"ok\":true}",
                "ok=true but no output",
            ),
            (
                "{\"type\":\"result\",\"id\":\"a\",\"ok\":false}",
                "ok=false but no error",
            ),
            (
                "{\"type\":\"result\",\"id\":\"a\",\"ok\":\"yes\",\"output\":1}",
                "invalid type",
            ),
            (
                "{\"type\":\"progress\",\"id\":\"a\"} {}",
                "trailing characters",
            ),
        ];
        for (line, needle) in cases {
            let err = Frame::parse_line(line).unwrap_err().to_string();
            assert!(err.contains(needle), "{line:?}: {err:?} lacks {needle:?}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let line = format!(
            "{{\"type\":\"result\",\"id\":\"a\",\"ok\":true,\"output\":{}{}}}",
            "[".repeat(200_000),
            "]".repeat(200_000)
        );
        let err = Frame::parse_line(&line).unwrap_err().to_string();
        assert!(err.contains("recursion limit"), "{err}");
    }

    #[test]
    fn protocol_major_is_read_from_the_request() {
        let mut req = Request::new("a", "b", Value::Null);
        assert_eq!(req.protocol_major(), Some(1));
        req.protocol = "2.3".into();
        assert_eq!(req.protocol_major(), Some(2));
        req.protocol = "x".into();
        assert_eq!(req.protocol_major(), None);
    }
}
