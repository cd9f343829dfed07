//! The `skillhost` command line, a thin layer over the library. Results go to stdout, logs
//! and progress to stderr.

#[macro_use]
mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use skillhost::api::exit_code;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,skillhost=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // A container's log, or a file, gets no colour codes.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let code = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(cli::run(args)),
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            exit_code::INFRASTRUCTURE
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}
