//! The exit trailer of skillhost's init: how a one-shot container tells the host how its
//! skill ended, on the same streams as its output, without waiting for the engine.
//!
//! The host writes a fresh key as the first line of stdin; the init reads it, runs the
//! skill, and after the skill's exit writes
//! `\0skillhost-exit:KEY:CODE:OOM_KILLS:PEAK:OUTSIDE_SIGNAL\n` to stderr and then stdout
//! (-1 for a count or peak it could not read, 0 when no signal came from outside). A [`TrailerScanner`] per stream passes everything before the
//! trailer on as the skill's own output, holding back only a tail that could be the start
//! of a trailer, and reads the report. Without the key no one can write a trailer.

/// What the init reported about the skill's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitReport {
    /// The exit code, or 128 + the signal that killed the skill.
    pub code: i64,
    /// Processes of the container the kernel killed for memory; `None` when the init
    /// could not read its cgroup.
    pub oom_kills: Option<u64>,
    /// The most memory the container's cgroup was charged at once, in bytes.
    pub peak_memory_bytes: Option<u64>,
    /// A termination signal sent from outside the container (the engine stopping it,
    /// for `docker stop` or its own shutdown), which the init passed to the skill.
    pub outside_signal: Option<i32>,
    /// A recycling init's verdict on the container after its reset; `None` from a
    /// one-shot init.
    pub reset: Option<ResetVerdict>,
}

/// What a recycling init found when it reset its container after a call (see the init's
/// `recycle.rs`): `Clean`, or why the container must not serve again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetVerdict {
    /// Nothing of the call is left; the container may serve the next one.
    Clean,
    /// A process of the container signalled the init.
    Disturbed,
    /// The engine is stopping the container.
    Stopping,
    /// The kernel killed a process for memory during the call.
    Oom,
    /// A fork was refused at the process limit during the call.
    ProcessLimit,
    /// A process outlived the kill.
    Survivor,
    /// A file, directory or IPC object could not be removed.
    Leftover,
    /// The init's own limits, priority or affinity were changed.
    Changed,
    /// What the reset checks could not be read.
    Unverifiable,
}

impl ResetVerdict {
    /// The init's word for it, as in the trailer and in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ResetVerdict::Clean => "clean",
            ResetVerdict::Disturbed => "disturbed",
            ResetVerdict::Stopping => "stopping",
            ResetVerdict::Oom => "oom",
            ResetVerdict::ProcessLimit => "process_limit",
            ResetVerdict::Survivor => "survivor",
            ResetVerdict::Leftover => "leftover",
            ResetVerdict::Changed => "changed",
            ResetVerdict::Unverifiable => "unverifiable",
        }
    }

    const ALL: [ResetVerdict; 9] = [
        ResetVerdict::Clean,
        ResetVerdict::Disturbed,
        ResetVerdict::Stopping,
        ResetVerdict::Oom,
        ResetVerdict::ProcessLimit,
        ResetVerdict::Survivor,
        ResetVerdict::Leftover,
        ResetVerdict::Changed,
        ResetVerdict::Unverifiable,
    ];

    fn parse(word: &str) -> Option<ResetVerdict> {
        ResetVerdict::ALL.into_iter().find(|v| v.as_str() == word)
    }
}

/// A key no skill can guess: 32 hex digits from a random UUID.
pub fn new_key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// What stdin carries before the request: the key line the init reads.
pub fn key_line(key: &str) -> Vec<u8> {
    format!("{key}\n").into_bytes()
}

/// What a recycling init reads before each request: the key and the request's length.
pub fn call_header(key: &str, request_len: usize) -> Vec<u8> {
    format!("{key} {request_len}\n").into_bytes()
}

/// Scans one output stream for the trailer.
#[derive(Debug)]
pub struct TrailerScanner {
    needle: Vec<u8>,
    /// A tail of output that may be the beginning of a trailer.
    held: Vec<u8>,
    state: State,
}

#[derive(Debug)]
enum State {
    Scanning,
    /// The key was seen; the rest of the line is being collected.
    InTrailer(Vec<u8>),
    /// The trailer line ended; `None` if it did not parse.
    Done(Option<ExitReport>),
}

/// The longest trailer body (`CODE:OOM_KILLS:PEAK:SIGNAL[:VERDICT]`) worth collecting.
const BODY_LIMIT: usize = 96;

impl TrailerScanner {
    pub fn new(key: &str) -> TrailerScanner {
        TrailerScanner {
            needle: format!("\0skillhost-exit:{key}:").into_bytes(),
            held: Vec::new(),
            state: State::Scanning,
        }
    }

    /// Feed a chunk of the stream; returns the part of it that is the skill's output.
    /// After the trailer nothing is: that is output of processes the init's exit ends.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        match &mut self.state {
            State::Done(_) => return Vec::new(),
            State::InTrailer(body) => {
                body.extend_from_slice(chunk);
                self.settle();
                return Vec::new();
            }
            State::Scanning => {}
        }
        let mut bytes = std::mem::take(&mut self.held);
        bytes.extend_from_slice(chunk);
        if let Some(at) = find(&bytes, &self.needle) {
            let body = bytes.split_off(at + self.needle.len());
            bytes.truncate(at);
            self.state = State::InTrailer(body);
            self.settle();
            return bytes;
        }
        let keep = partial_match(&bytes, &self.needle);
        self.held = bytes.split_off(bytes.len() - keep);
        bytes
    }

    /// The stream ended: the bytes held back were output after all.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }

    /// The report, once a whole, well-formed trailer was read.
    pub fn report(&self) -> Option<ExitReport> {
        match self.state {
            State::Done(report) => report,
            _ => None,
        }
    }

    fn settle(&mut self) {
        let State::InTrailer(body) = &self.state else {
            return;
        };
        if let Some(end) = body.iter().position(|&b| b == b'\n') {
            self.state = State::Done(parse_body(&body[..end]));
        } else if body.len() > BODY_LIMIT {
            self.state = State::Done(None);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// How many bytes at the end of `bytes` could begin `needle`.
fn partial_match(bytes: &[u8], needle: &[u8]) -> usize {
    let from = bytes.len().saturating_sub(needle.len() - 1);
    (from..bytes.len())
        .find(|&i| bytes[i] == needle[0] && needle.starts_with(&bytes[i..]))
        .map_or(0, |i| bytes.len() - i)
}

fn parse_body(body: &[u8]) -> Option<ExitReport> {
    let text = std::str::from_utf8(body).ok()?;
    let fields: Vec<&str> = text.split(':').collect();
    let (fields, reset) = match fields.as_slice() {
        [head @ .., verdict] if fields.len() == 5 => (head, Some(ResetVerdict::parse(verdict)?)),
        all => (all, None),
    };
    let [code, oom, peak, outside] = <[&str; 4]>::try_from(fields).ok()?;
    // -1 (unknown) is the one negative value; it becomes None.
    let known = |field: &str| -> Option<Option<u64>> {
        match field.parse::<i64>().ok()? {
            -1 => Some(None),
            value => u64::try_from(value).ok().map(Some),
        }
    };
    Some(ExitReport {
        code: code.parse().ok()?,
        oom_kills: known(oom)?,
        peak_memory_bytes: known(peak)?,
        outside_signal: match outside.parse::<i32>().ok()? {
            0 => None,
            signal if signal > 0 => Some(signal),
            _ => return None,
        },
        reset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &str = "00112233445566778899aabbccddeeff";

    fn trailer(body: &str) -> Vec<u8> {
        format!("\0skillhost-exit:{KEY}:{body}\n").into_bytes()
    }

    /// Feed `stream` in chunks of `size`; the output passed on and the report.
    fn scan(stream: &[u8], size: usize) -> (Vec<u8>, Option<ExitReport>) {
        let mut scanner = TrailerScanner::new(KEY);
        let mut out = Vec::new();
        for chunk in stream.chunks(size.max(1)) {
            out.extend(scanner.push(chunk));
        }
        out.extend(scanner.finish());
        (out, scanner.report())
    }

    #[test]
    fn output_before_the_trailer_passes_and_the_report_is_read() {
        let mut stream = b"{\"type\":\"result\"}\n".to_vec();
        stream.extend(trailer("0:0:2101248:0"));
        stream.extend(b"late output of a dying child\n");
        let (out, report) = scan(&stream, 4096);
        assert_eq!(out, b"{\"type\":\"result\"}\n");
        assert_eq!(
            report,
            Some(ExitReport {
                code: 0,
                oom_kills: Some(0),
                peak_memory_bytes: Some(2101248),
                outside_signal: None,
                reset: None,
            })
        );
    }

    #[test]
    fn every_verdict_is_a_word_the_init_writes() {
        // The init has no dependency to share the enum through: its words are checked
        // against its source instead.
        let init = include_str!("../../../init/src/recycle.rs");
        for verdict in ResetVerdict::ALL {
            let word = format!("=> \"{}\"", verdict.as_str());
            assert!(init.contains(&word), "the init never writes {word}");
        }
    }

    #[test]
    fn a_recycling_inits_verdict_is_read() {
        let (_, report) = scan(&trailer("0:0:-1:0:clean"), 5);
        assert_eq!(report.and_then(|r| r.reset), Some(ResetVerdict::Clean));
        let (_, report) = scan(&trailer("137:1:-1:0:oom"), 64);
        let report = report.unwrap();
        assert_eq!(
            (report.oom_kills, report.reset),
            (Some(1), Some(ResetVerdict::Oom))
        );
        assert_eq!(
            scan(&trailer("0:0:-1:0:tidy"), 64).1,
            None,
            "an unknown verdict"
        );
        assert_eq!(
            scan(&trailer("0:0:-1:0:clean:x"), 64).1,
            None,
            "a field too many"
        );
        assert_eq!(call_header(KEY, 12), format!("{KEY} 12\n").into_bytes());
    }

    #[test]
    fn unknown_counts_and_a_signal_exit_are_read() {
        let (_, report) = scan(&trailer("143:-1:-1:15"), 7);
        assert_eq!(
            report,
            Some(ExitReport {
                code: 143,
                oom_kills: None,
                peak_memory_bytes: None,
                outside_signal: Some(15),
                reset: None,
            })
        );
    }

    #[test]
    fn a_trailer_with_another_key_is_output() {
        let forged = b"\0skillhost-exit:ffffffffffffffffffffffffffffffff:0:0:0:0\n".to_vec();
        let (out, report) = scan(&forged, 3);
        assert_eq!((out, report), (forged, None));
    }

    #[test]
    fn a_malformed_trailer_reports_nothing() {
        assert_eq!(scan(&trailer("zero:0:0:0"), 100).1, None);
        assert_eq!(scan(&trailer("0:0:0"), 100).1, None, "a field missing");
        assert_eq!(
            scan(&trailer("0:-2:0:0"), 100).1,
            None,
            "no negative but -1"
        );
        let endless = format!("\0skillhost-exit:{KEY}:{}", "1".repeat(100));
        assert_eq!(scan(endless.as_bytes(), 100).1, None);
    }

    #[test]
    fn nul_bytes_that_begin_no_trailer_are_not_held() {
        let mut scanner = TrailerScanner::new(KEY);
        assert_eq!(scanner.push(b"a\0b\n"), b"a\0b\n");
        // A tail that could begin the trailer waits for the next chunk...
        assert_eq!(scanner.push(b"x\0skill"), b"x");
        // ...and is output when the next chunk shows it was not one.
        assert_eq!(scanner.push(b"s\n"), b"\0skills\n");
    }

    proptest! {
        #[test]
        fn any_output_in_any_chunking_passes_whole(
            output in proptest::collection::vec(prop_oneof![Just(0u8), Just(b's'), any::<u8>()], 0..300),
            size in 1usize..80,
            with_trailer: bool,
        ) {
            let mut stream = output.clone();
            if with_trailer {
                stream.extend(trailer("3:1:65536:0"));
            }
            let (out, report) = scan(&stream, size);
            prop_assert_eq!(out, output);
            prop_assert_eq!(report.is_some(), with_trailer);
        }
    }
}
