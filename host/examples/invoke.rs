//! Invoke a skill from Rust, as a core application would.
//!
//!     cargo run -p skillhost --example invoke -- echo say '{"text":"hi"}'

use std::sync::Arc;

use skillhost::{Host, HostConfig, InvokeOptions, Status};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut argv = std::env::args().skip(1);
    let (skill, action) = match (argv.next(), argv.next()) {
        (Some(skill), Some(action)) => (skill, action),
        _ => return Err("usage: invoke SKILL ACTION [ARGS-JSON]".into()),
    };
    let args = serde_json::from_str(&argv.next().unwrap_or_else(|| "{}".into()))?;

    // Discovers ./skills, connects to the engine, and removes leftovers of dead hosts.
    let host = Host::new(HostConfig::default()).await?;
    let options =
        InvokeOptions::default().on_progress(Arc::new(|p| eprintln!("progress: {}", p.message)));
    let result = host.invoke_with(&skill, &action, args, options).await;
    // Removes the container, which the result did not wait for.
    host.shutdown().await;
    println!("{}", serde_json::to_string_pretty(&result)?);
    match result.status {
        Status::Ok => Ok(()),
        other => Err(format!("the invocation ended as {other:?}").into()),
    }
}
