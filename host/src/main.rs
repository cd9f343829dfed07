//! The `skillhost` command line. Results go to stdout, logs and progress to stderr.

mod cli;
mod progress;

use clap::Parser;

fn main() {
    let args = cli::Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,skillhost=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(skillhost::exit_code::INFRASTRUCTURE);
        }
    };
    let code = runtime.block_on(cli::run(args));
    std::process::exit(code);
}
