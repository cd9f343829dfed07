//! Decoding a skill's stdout into frames as it arrives, strictly and within a byte limit.
//!
//! Every line must be a frame for this request; progress frames may come in any number,
//! then exactly one result, then nothing. The first violation is kept as the protocol
//! error (with the parser's own message) and parsing stops, while bytes are still counted
//! so the output limit holds.

use skill_sdk::protocol::ResultFrame;
use skill_sdk::{Frame, Progress};

/// How much of an offending line a protocol error quotes.
const QUOTE_CHARS: usize = 120;

/// What [`FrameReader::push`] found in a chunk.
#[derive(Debug, Default, PartialEq)]
pub struct Pushed {
    /// Progress frames completed by this chunk, to deliver now.
    pub progress: Vec<Progress>,
    /// The output limit is exceeded: the container must be stopped.
    pub over_limit: bool,
}

/// The decoded stdout once the container is done.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The result frame, if one came.
    pub result: Option<ResultFrame>,
    /// The first violation of the protocol, if any.
    pub protocol_error: Option<String>,
    /// Bytes read from stdout.
    pub bytes: u64,
    /// Progress frames read.
    pub progress_frames: u64,
}

#[derive(Debug)]
pub struct FrameReader {
    id: String,
    limit: u64,
    pending: Vec<u8>,
    line_number: usize,
    bytes: u64,
    progress_frames: u64,
    result: Option<ResultFrame>,
    error: Option<String>,
}

impl FrameReader {
    /// A reader for the answer to request `id`, allowing `limit` bytes of stdout.
    pub fn new(id: &str, limit: u64) -> Self {
        FrameReader {
            id: id.to_string(),
            limit,
            pending: Vec::new(),
            line_number: 0,
            bytes: 0,
            progress_frames: 0,
            result: None,
            error: None,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) -> Pushed {
        let mut pushed = Pushed::default();
        self.bytes += chunk.len() as u64;
        if self.bytes > self.limit {
            pushed.over_limit = true;
            self.pending.clear();
            return pushed;
        }
        if self.error.is_some() {
            return pushed;
        }
        self.pending.extend_from_slice(chunk);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.line(&line[..line.len() - 1], &mut pushed);
            if self.error.is_some() {
                self.pending.clear();
                break;
            }
        }
        pushed
    }

    /// A result arrived, or the output broke the protocol: nothing more is expected.
    pub fn is_done(&self) -> bool {
        self.result.is_some() || self.error.is_some()
    }

    /// A clean result arrived.
    pub fn has_result(&self) -> bool {
        self.result.is_some() && self.error.is_none()
    }

    /// Bytes after the last complete line are waiting.
    pub fn has_partial_line(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The outcome, treating an unterminated last line as a line.
    pub fn finish(mut self) -> Decoded {
        if !self.pending.is_empty() && self.error.is_none() && self.bytes <= self.limit {
            let line = std::mem::take(&mut self.pending);
            let mut ignored = Pushed::default();
            self.line(&line, &mut ignored);
            self.progress_frames -= ignored.progress.len() as u64;
        }
        Decoded {
            result: self.result,
            protocol_error: self.error,
            bytes: self.bytes,
            progress_frames: self.progress_frames,
        }
    }

    fn line(&mut self, raw: &[u8], pushed: &mut Pushed) {
        self.line_number += 1;
        let n = self.line_number;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = match std::str::from_utf8(raw) {
            Ok(text) => text,
            Err(e) => {
                self.error = Some(format!("stdout line {n} is not UTF-8: {e}"));
                return;
            }
        };
        if text.trim().is_empty() {
            return;
        }
        let frame = match Frame::parse_line(text) {
            Ok(frame) => frame,
            Err(e) => {
                self.error = Some(format!(
                    "stdout line {n} is not a protocol frame: {e}: {}",
                    quote(text)
                ));
                return;
            }
        };
        if frame.id() != self.id {
            self.error = Some(format!(
                "stdout line {n} answers request {:?}, not {:?}",
                frame.id(),
                self.id
            ));
            return;
        }
        if self.result.is_some() {
            self.error = Some(format!(
                "stdout line {n} follows the result frame; the result must be last"
            ));
            return;
        }
        match frame {
            Frame::Progress(p) => {
                self.progress_frames += 1;
                pushed.progress.push(p);
            }
            Frame::Result(r) => self.result = Some(r),
        }
    }
}

fn quote(text: &str) -> String {
    let mut quoted: String = text.chars().take(QUOTE_CHARS).collect();
    if quoted.len() < text.len() {
        quoted.push('…');
    }
    format!("{quoted:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use skill_sdk::ErrorBody;

    fn result_line(id: &str) -> String {
        Frame::Result(ResultFrame::ok(id, json!({"text": "hi"}))).to_line()
    }

    fn progress_line(id: &str) -> String {
        Frame::Progress(Progress {
            id: id.into(),
            message: "half".into(),
            fraction: Some(0.5),
        })
        .to_line()
    }

    #[test]
    fn progress_then_result_split_across_chunks() {
        let mut reader = FrameReader::new("r", 1 << 20);
        let all = format!("{}{}", progress_line("r"), result_line("r"));
        let (a, b) = all.as_bytes().split_at(7);
        assert!(reader.push(a).progress.is_empty());
        let pushed = reader.push(b);
        assert_eq!(pushed.progress.len(), 1);
        let decoded = reader.finish();
        assert_eq!(decoded.result.unwrap().output, Some(json!({"text": "hi"})));
        assert_eq!((decoded.protocol_error, decoded.progress_frames), (None, 1));
    }

    #[test]
    fn a_missing_final_newline_is_tolerated() {
        let mut reader = FrameReader::new("r", 1 << 20);
        reader.push(result_line("r").trim_end().as_bytes());
        assert!(reader.finish().result.is_some());
    }

    #[test]
    fn garbage_is_a_protocol_error_with_the_parsers_message() {
        for (stdout, needle) in [
            (
                "hello world\n".to_string(),
                "line 1 is not a protocol frame: expected value",
            ),
            (
                format!("{}{}", result_line("r"), result_line("r")),
                "line 2 follows the result frame",
            ),
            (
                format!("debug: x\n{}", result_line("r")),
                "line 1 is not a protocol frame",
            ),
            (result_line("other"), "answers request \"other\", not \"r\""),
            (
                "{\"type\":\"result\",\"id\":\"r\",\"ok\":true,\"output\":1e400}\n".into(),
                "number out of range",
            ),
            (
                "{\"type\":\"result\",\"id\":\"r\",\"ok\":true,\"output\":\"\\ud800\"}\n".into(),
                "hex escape",
            ),
            (
                "{\"type\":\"result\",\"id\":\"r\",\"ok\":true,\"output\":\"a\u{1}b\"}\n".into(),
                "control character",
            ),
            (
                "{\"type\":\"result\",\"id\":\"r\",\"ok\":true".into(),
                "EOF while parsing",
            ),
        ] {
            let mut reader = FrameReader::new("r", 1 << 20);
            reader.push(stdout.as_bytes());
            let error = reader.finish().protocol_error.unwrap_or_default();
            assert!(error.contains(needle), "{stdout:?}: {error:?}");
        }
        let mut reader = FrameReader::new("r", 1 << 20);
        reader.push(b"\xff\xfe\n");
        assert!(reader
            .finish()
            .protocol_error
            .unwrap()
            .contains("not UTF-8"));
    }

    #[test]
    fn an_error_result_is_kept() {
        let mut reader = FrameReader::new("r", 1 << 20);
        reader.push(
            Frame::Result(ResultFrame::err("r", ErrorBody::new("bad", "no")))
                .to_line()
                .as_bytes(),
        );
        let decoded = reader.finish();
        assert_eq!(decoded.result.unwrap().error.unwrap().code, "bad");
    }

    #[test]
    fn the_limit_counts_every_byte_even_after_an_error() {
        let mut reader = FrameReader::new("r", 10);
        assert!(!reader.push(b"garbage\n").over_limit);
        assert!(reader.push(b"more").over_limit);
        let decoded = reader.finish();
        assert_eq!(decoded.bytes, 12);
    }

    #[test]
    fn long_garbage_is_quoted_briefly() {
        let mut reader = FrameReader::new("r", 1 << 20);
        reader.push(format!("{}\n", "x".repeat(10_000)).as_bytes());
        let error = reader.finish().protocol_error.unwrap();
        assert!(error.len() < 400, "{error}");
    }
}
