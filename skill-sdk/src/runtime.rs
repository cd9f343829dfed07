//! A small runtime so a skill author writes typed functions, not protocol code.
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use skill_sdk::{ActionError, Context, Skill};
//!
//! #[derive(Deserialize)]
//! struct SayArgs { text: String }
//! #[derive(Serialize)]
//! struct SayOutput { text: String }
//!
//! fn main() {
//!     Skill::new()
//!         .action("say", |args: SayArgs, ctx: &mut Context| {
//!             ctx.progress("echoing", Some(0.5));
//!             Ok::<_, ActionError>(SayOutput { text: args.text })
//!         })
//!         .run()
//! }
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::protocol::{
    codes, ErrorBody, Frame, Progress, Request, ResultFrame, MAX_LINE_BYTES, SERVE_MODE_ENV,
};

/// An action's failure, turned into an error frame by the runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionError(pub ErrorBody);

impl ActionError {
    /// An error with a machine-readable code and a message for humans.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ActionError(ErrorBody::new(code, message))
    }

    /// Attach structured details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.0.details = Some(details);
        self
    }
}

impl<E: std::error::Error> From<E> for ActionError {
    fn from(err: E) -> Self {
        ActionError::new("error", err.to_string())
    }
}

/// What an action can do besides returning: report progress, read its deadline.
pub struct Context<'a> {
    id: String,
    deadline_ms: Option<u64>,
    out: &'a mut dyn Write,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("id", &self.id)
            .field("deadline_ms", &self.deadline_ms)
            .finish_non_exhaustive()
    }
}

impl Context<'_> {
    /// The id of the request being served.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Milliseconds the host granted this invocation, if it said.
    pub fn deadline_ms(&self) -> Option<u64> {
        self.deadline_ms
    }

    /// Send a progress frame to the caller. Failures to write are ignored: the host
    /// may already have stopped listening, and the result frame will tell.
    pub fn progress(&mut self, message: impl Into<String>, fraction: Option<f64>) {
        let frame = Frame::Progress(Progress {
            id: self.id.clone(),
            message: message.into(),
            fraction: fraction.map(|f| f.clamp(0.0, 1.0)),
        });
        let _ = self.out.write_all(frame.to_line().as_bytes());
        let _ = self.out.flush();
    }
}

type Handler = Box<dyn Fn(Value, &mut Context<'_>) -> Result<Value, ErrorBody>>;

/// A skill: a set of named actions and the loop that serves them.
#[derive(Default)]
pub struct Skill {
    actions: BTreeMap<String, Handler>,
}

impl std::fmt::Debug for Skill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Skill")
            .field("actions", &self.actions.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Skill {
    /// A skill with no actions yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Register `name`, whose arguments deserialize into `A` and whose output is `O`.
    /// Arguments that do not fit `A` are answered with an `invalid_args` error frame.
    pub fn action<A, O, E, F>(mut self, name: &str, handler: F) -> Self
    where
        A: DeserializeOwned,
        O: Serialize,
        E: Into<ActionError>,
        F: Fn(A, &mut Context<'_>) -> Result<O, E> + 'static,
    {
        let handler: Handler = Box::new(move |args, ctx| {
            let args: A = serde_json::from_value(args)
                .map_err(|e| ErrorBody::new(codes::INVALID_ARGS, e.to_string()))?;
            let output = handler(args, ctx).map_err(|e| e.into().0)?;
            serde_json::to_value(output)
                .map_err(|e| ErrorBody::new(codes::BAD_OUTPUT, e.to_string()))
        });
        self.actions.insert(name.to_string(), handler);
        self
    }

    /// Answer requests from stdin on stdout, then exit the process.
    ///
    /// One-shot by default: one request, one answer. When the host starts the container
    /// in serve mode ([`SERVE_MODE_ENV`] is `serve`), requests arrive one per line until
    /// stdin closes, each answered in turn; the author writes nothing different.
    ///
    /// The exit code is 0 when every request got a result frame (even an error result:
    /// the frame carries the failure) and 2 when stdout could not be written.
    pub fn run(self) -> ! {
        let stdin = std::io::stdin();
        let mut stdout = std::io::stdout().lock();
        let served = if std::env::var(SERVE_MODE_ENV).as_deref() == Ok("serve") {
            self.serve_many(stdin.lock(), &mut stdout)
        } else {
            self.serve_one(stdin.lock(), &mut stdout)
        };
        std::process::exit(if served.is_ok() { 0 } else { 2 })
    }

    /// Read one request line from `input` and write the answer to `out`.
    pub fn serve_one(&self, mut input: impl BufRead, out: &mut dyn Write) -> std::io::Result<()> {
        let result = match read_request_line(&mut input) {
            Ok(Some(line)) => self.answer_line(&line, out),
            Ok(None) => ResultFrame::err(
                "",
                ErrorBody::new(codes::BAD_REQUEST, "stdin closed before a request arrived"),
            ),
            Err(message) => ResultFrame::err("", ErrorBody::new(codes::BAD_REQUEST, message)),
        };
        out.write_all(Frame::Result(result).to_line().as_bytes())?;
        out.flush()
    }

    /// Serve mode: answer each request line of `input` until it ends. A bad line gets an
    /// error result and the next line is still served.
    pub fn serve_many(&self, mut input: impl BufRead, out: &mut dyn Write) -> std::io::Result<()> {
        loop {
            let result = match read_request_line(&mut input) {
                Ok(Some(line)) => self.answer_line(&line, out),
                Ok(None) => return Ok(()),
                Err(message) => ResultFrame::err("", ErrorBody::new(codes::BAD_REQUEST, message)),
            };
            out.write_all(Frame::Result(result).to_line().as_bytes())?;
            out.flush()?;
        }
    }

    /// Answer one request line with the frames it produces, progress then result, each
    /// on its own line: what the native C ABI returns.
    pub fn answer(&self, line: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let result = self.answer_line(line.trim_end_matches(['\r', '\n']), &mut out);
        out.extend_from_slice(Frame::Result(result).to_line().as_bytes());
        out
    }

    fn answer_line(&self, line: &str, out: &mut dyn Write) -> ResultFrame {
        let request = match Request::parse_line(line) {
            Ok(request) => request,
            Err(err) => {
                let id = salvage_id(line);
                let message = format!("malformed request: {err}");
                return ResultFrame::err(id, ErrorBody::new(codes::BAD_REQUEST, message));
            }
        };
        let id = request.id.clone();
        match self.dispatch(request, out) {
            Ok(output) => ResultFrame::ok(id, output),
            Err(error) => ResultFrame::err(id, error),
        }
    }

    fn dispatch(&self, request: Request, out: &mut dyn Write) -> Result<Value, ErrorBody> {
        if request.protocol_major() != Some(1) {
            return Err(ErrorBody::new(
                codes::UNSUPPORTED_PROTOCOL,
                format!(
                    "request speaks protocol {:?}; this skill speaks 1.x",
                    request.protocol
                ),
            ));
        }
        let handler = self.actions.get(&request.action).ok_or_else(|| {
            let known: Vec<&str> = self.actions.keys().map(String::as_str).collect();
            ErrorBody::new(
                codes::UNKNOWN_ACTION,
                format!(
                    "no action {:?}; this skill has: {}",
                    request.action,
                    known.join(", ")
                ),
            )
        })?;
        let mut ctx = Context {
            id: request.id,
            deadline_ms: request.deadline_ms,
            out,
        };
        catch_unwind(AssertUnwindSafe(|| handler(request.args, &mut ctx)))
            .unwrap_or_else(|panic| Err(ErrorBody::new(codes::PANIC, panic_message(&panic))))
    }
}

/// One line of at most [`MAX_LINE_BYTES`]; `None` at end of input. An over-long line is
/// consumed to its end so serve mode stays aligned on the next request.
fn read_request_line(input: &mut impl BufRead) -> Result<Option<String>, String> {
    let mut bytes = Vec::new();
    let read = input
        .by_ref()
        .take(MAX_LINE_BYTES as u64 + 1)
        .read_until(b'\n', &mut bytes)
        .map_err(|e| format!("cannot read the request from stdin: {e}"))?;
    if read == 0 {
        return Ok(None);
    }
    if bytes.len() > MAX_LINE_BYTES {
        let mut rest = Vec::new();
        let _ = input.read_until(b'\n', &mut rest);
        return Err(format!("request exceeds {MAX_LINE_BYTES} bytes"));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|e| format!("request is not UTF-8: {e}"))
}

fn salvage_id(line: &str) -> String {
    serde_json::from_str::<Value>(line)
        .ok()
        .and_then(|v| v.get("id")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into());
    format!("action panicked: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Args {
        text: String,
    }

    fn skill() -> Skill {
        Skill::new()
            .action("say", |a: Args, ctx: &mut Context| {
                ctx.progress("working", Some(2.0));
                Ok::<_, ActionError>(json!({"text": a.text}))
            })
            .action("fail", |_: Value, _: &mut Context| {
                Err::<Value, _>(ActionError::new("nope", "refused"))
            })
            .action(
                "panic",
                |_: Value, _: &mut Context| -> Result<Value, ActionError> { panic!("kaboom") },
            )
    }

    fn frames(input: &str) -> Vec<Frame> {
        let mut out = Vec::new();
        skill().serve_one(input.as_bytes(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        text.lines()
            .map(|l| Frame::parse_line(l).unwrap())
            .collect()
    }

    fn result(input: &str) -> ResultFrame {
        match frames(input).pop() {
            Some(Frame::Result(r)) => r,
            other => panic!("last frame is not a result: {other:?}"),
        }
    }

    #[test]
    fn serve_mode_answers_every_line_in_turn_until_input_ends() {
        let input = format!(
            "{}not json\n{}",
            Request::new("a", "say", json!({"text": "one"})).to_line(),
            Request::new("b", "fail", json!({})).to_line()
        );
        let mut out = Vec::new();
        skill().serve_many(input.as_bytes(), &mut out).unwrap();
        let results: Vec<ResultFrame> = String::from_utf8(out)
            .unwrap()
            .lines()
            .filter_map(|l| match Frame::parse_line(l).unwrap() {
                Frame::Result(r) => Some(r),
                Frame::Progress(_) => None,
            })
            .collect();
        let summary: Vec<(&str, bool, Option<&str>)> = results
            .iter()
            .map(|r| {
                (
                    r.id.as_str(),
                    r.ok,
                    r.error.as_ref().map(|e| e.code.as_str()),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("a", true, None),
                ("", false, Some(codes::BAD_REQUEST)),
                ("b", false, Some("nope"))
            ]
        );
    }

    #[test]
    fn success_streams_progress_then_result() {
        let frames = frames(&Request::new("r1", "say", json!({"text": "hi"})).to_line());
        assert_eq!(frames.len(), 2);
        let Frame::Progress(p) = &frames[0] else {
            panic!("{frames:?}")
        };
        assert_eq!((p.id.as_str(), p.fraction), ("r1", Some(1.0)));
        assert_eq!(
            frames[1],
            Frame::Result(ResultFrame::ok("r1", json!({"text": "hi"})))
        );
    }

    #[test]
    fn bad_arguments_become_invalid_args() {
        let r = result(&Request::new("r", "say", json!({"txt": 1})).to_line());
        let err = r.error.unwrap();
        assert_eq!(err.code, codes::INVALID_ARGS);
        assert!(
            err.message.contains("unknown field `txt`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn action_errors_and_panics_become_error_frames() {
        let r = result(&Request::new("r", "fail", Value::Null).to_line());
        assert_eq!(r.error.unwrap(), ErrorBody::new("nope", "refused"));
        let r = result(&Request::new("r", "panic", Value::Null).to_line());
        let err = r.error.unwrap();
        assert_eq!(err.code, codes::PANIC);
        assert!(err.message.contains("kaboom"));
    }

    #[test]
    fn unknown_action_names_the_known_ones() {
        let err = result(&Request::new("r", "shout", Value::Null).to_line())
            .error
            .unwrap();
        assert_eq!(err.code, codes::UNKNOWN_ACTION);
        assert!(err.message.contains("fail, panic, say"), "{}", err.message);
    }

    #[test]
    fn malformed_requests_are_answered_not_crashed_on() {
        for (input, needle) in [
            ("", "stdin closed"),
            ("not json\n", "malformed request"),
            (
                "{\"protocol\":\"1.0\",\"id\":\"q\",\"action\":\"say\",\"bogus\":1}\n",
                "unknown field",
            ),
            (
                "{\"protocol\":\"2.0\",\"id\":\"q\",\"action\":\"say\",\"args\":{}}\n",
                "protocol",
            ),
        ] {
            let r = result(input);
            assert!(!r.ok);
            let err = r.error.unwrap();
            assert!(err.message.contains(needle), "{input:?}: {}", err.message);
        }
        // The id survives a strict-parse failure so the host can match the answer.
        let r = result("{\"protocol\":\"1.0\",\"id\":\"q\",\"action\":\"say\",\"bogus\":1}\n");
        assert_eq!(r.id, "q");
    }

    #[test]
    fn invalid_utf8_request_is_bad_request() {
        let mut out = Vec::new();
        skill().serve_one(&b"\xff\xfe\n"[..], &mut out).unwrap();
        let r = Frame::parse_line(std::str::from_utf8(&out).unwrap()).unwrap();
        let Frame::Result(r) = r else { panic!() };
        assert_eq!(r.error.unwrap().code, codes::BAD_REQUEST);
    }
}
