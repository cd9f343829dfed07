//! Writing to stdout and stderr without panicking. A reader that closes its end early
//! (`skillhost invoke ... | head -c 10`) has had what it wanted: the rest is dropped
//! quietly, where `println!` would panic with a backtrace. What reaches a terminal has
//! its control characters shown rather than obeyed.

use std::borrow::Cow;
use std::fmt::Arguments;
use std::io::{ErrorKind, IsTerminal, Write};

/// Like `println!`, for results on stdout.
macro_rules! outln {
    ($($arg:tt)*) => { $crate::cli::output::stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Like `print!`, for results on stdout.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::output::stdout(format_args!($($arg)*)) };
}

/// Like `eprintln!`, for messages on stderr.
macro_rules! errln {
    ($($arg:tt)*) => { $crate::cli::output::stderr(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Like `eprint!`, for messages on stderr.
macro_rules! err {
    ($($arg:tt)*) => { $crate::cli::output::stderr(format_args!($($arg)*)) };
}

pub(crate) fn stdout(text: Arguments<'_>) {
    let stdout = std::io::stdout();
    let written = if stdout.is_terminal() {
        write_str(&mut stdout.lock(), &neutralised(&text.to_string()))
    } else {
        write(&mut stdout.lock(), text)
    };
    if let Err(e) = written {
        // Where stdout went is gone or full; stderr may still tell why.
        let _ = write(
            &mut std::io::stderr().lock(),
            format_args!("error: cannot write to stdout: {e}\n"),
        );
    }
}

pub(crate) fn stderr(text: Arguments<'_>) {
    let stderr = std::io::stderr();
    let _ = if stderr.is_terminal() {
        write_str(&mut stderr.lock(), &neutralised(&text.to_string()))
    } else {
        write(&mut stderr.lock(), text)
    };
}

/// Text bound for a terminal, with every control character but newline and tab (escape
/// sequences that retitle the window or clear the screen, carriage returns that hide a
/// line, bidirectional overrides that reorder one) shown as an escape instead of obeyed.
/// Much of what the CLI prints is a skill's: its output, error message, progress and
/// stderr. Redirected output is left byte for byte; JSON output escapes them anyway.
fn neutralised(text: &str) -> Cow<'_, str> {
    let obeyed = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(obeyed) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            c if !obeyed(c) => shown.push(c),
            c if (c as u32) < 0x100 => shown.push_str(&format!("\\x{:02x}", c as u32)),
            c => shown.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(shown)
}

fn write_str(to: &mut impl Write, text: &str) -> std::io::Result<()> {
    match to.write_all(text.as_bytes()).and_then(|()| to.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Write and flush; a closed pipe is not an error.
fn write(to: &mut impl Write, text: Arguments<'_>) -> std::io::Result<()> {
    match to.write_fmt(text).and_then(|()| to.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// A value as pretty JSON on stdout.
pub(crate) fn json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => outln!("{text}"),
        Err(e) => errln!("error: cannot serialize the output: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(neutralised("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(
            neutralised("\u{1b}]0;owned\u{7}\u{1b}[2Jhi\r"),
            "\\x1b]0;owned\\x07\\x1b[2Jhi\\x0d"
        );
        assert_eq!(neutralised("a\u{9b}b"), "a\\x9bb", "C1 controls too");
        assert_eq!(neutralised("x\u{202e}y"), "x\\u{202e}y");
        assert!(matches!(neutralised("é ok"), Cow::Borrowed(_)));
    }
}
