//! Writing to stdout and stderr without panicking. A reader that closes its end early
//! (`skillhost invoke ... | head -c 10`) has had what it wanted: the rest is dropped
//! quietly, where `println!` would panic with a backtrace.

use std::fmt::Arguments;
use std::io::{ErrorKind, Write};

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
    if let Err(e) = write(&mut std::io::stdout().lock(), text) {
        // Where stdout went is gone or full; stderr may still tell why.
        let _ = write(
            &mut std::io::stderr().lock(),
            format_args!("error: cannot write to stdout: {e}\n"),
        );
    }
}

pub(crate) fn stderr(text: Arguments<'_>) {
    let _ = write(&mut std::io::stderr().lock(), text);
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
