//! `skillhost mcp`: MCP on stdin and stdout, for an MCP client that starts a server as a
//! command. With a host of this process's own, or (`--server`) bridged to a running
//! `skillhost serve`'s `/mcp`, so its prewarmed containers and warm workers serve the
//! agent. Nothing but MCP is written to stdout; logs go to stderr.

use std::path::PathBuf;
use std::sync::Arc;

use hyper::Method;
use rmcp::service::{RoleClient, RoleServer};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{IntoTransport, StreamableHttpClientTransport, Transport};
use skillhost::api::{exit_code, SkillList};
use skillhost::lock::LockFile;
use skillhost::{Error, Host, HostConfig};

use super::invoke::Interrupts;
use super::remote::{self, Server};
use super::serve::prewarm_pair;
use super::usage;

#[derive(Debug, clap::Args)]
pub(crate) struct McpCli {
    /// Bridge to a running `skillhost serve` instead: unix:PATH or http://HOST:PORT (with
    /// the token in SKILLHOST_TOKEN). The service's `/mcp` answers.
    #[arg(long, env = "SKILLHOST_SERVER")]
    server: Option<Server>,
    /// Never build: fail a call whose image is not prebuilt.
    #[arg(long, conflicts_with = "server")]
    no_build: bool,
    /// Run only the images this lock file pins (`skillhost lock`).
    #[arg(long, env = "SKILLHOST_LOCKED", value_name = "LOCK", conflicts_with_all = ["server", "no_build"])]
    locked: Option<PathBuf>,
    /// Keep K containers of SKILL made ahead, over its manifest's run.prewarm (repeat per
    /// skill).
    #[arg(long, value_name = "SKILL=K", value_parser = prewarm_pair, conflicts_with = "server")]
    prewarm: Vec<(String, u32)>,
    /// The network through which egress proxies reach their destinations [default:
    /// Docker's bridge].
    #[arg(
        long,
        env = "SKILLHOST_EGRESS_NETWORK",
        value_name = "NETWORK",
        conflicts_with = "server"
    )]
    egress_network: Option<String>,
}

pub(super) async fn run(skill_roots: Vec<PathBuf>, cli: McpCli) -> Result<i32, Error> {
    let mut interrupts = Interrupts::install()?;
    if let Some(server) = &cli.server {
        let token = std::env::var("SKILLHOST_TOKEN").ok();
        // Reach the service (and have it take the token) before the client's first
        // message, so a wrong address or token is said at once, in its own words.
        let checked =
            remote::json::<SkillList>(server, Method::GET, "/v1/skills", token.as_deref(), None);
        if let Err(e) = checked.await {
            errln!("error: {e}");
            return Ok(e.exit_code());
        }
        return tokio::select! {
            bridged = bridge(server, token) => match bridged {
                Ok(()) => Ok(exit_code::OK),
                Err(message) => {
                    errln!("error: MCP through {server}: {message}");
                    Ok(exit_code::INFRASTRUCTURE)
                }
            },
            _ = interrupts.recv() => Ok(exit_code::OK),
        };
    }
    let locked = cli.locked.as_deref().map(LockFile::load).transpose()?;
    let config = HostConfig::new(skill_roots)
        .build_images(!cli.no_build)
        .locked(locked)
        .prewarm(cli.prewarm.into_iter().collect())
        .egress_network(
            cli.egress_network
                .unwrap_or_else(|| HostConfig::default().egress_network),
        );
    let host = Arc::new(Host::new(config).await?);
    let prewarming = host.clone();
    tokio::spawn(async move {
        for (skill, refusal) in prewarming.prewarm_all().await {
            tracing::warn!(skill, "cannot prewarm: {refusal}");
        }
    });
    // The client closing stdin ends the conversation, as a signal does; either way every
    // container and session is removed before the process exits.
    let served = tokio::select! {
        served = skillhost::mcp::serve_stdio(host.clone()) => served,
        _ = interrupts.recv() => Ok(()),
    };
    host.shutdown().await;
    served.map_err(|e| usage(e.to_string()))?;
    Ok(exit_code::OK)
}

/// Pass MCP messages between stdio and the service's `/mcp` until either side closes.
async fn bridge(server: &Server, token: Option<String>) -> Result<(), String> {
    let stdio = IntoTransport::<RoleServer, _, _>::into_transport(rmcp::transport::io::stdio());
    match server {
        Server::Unix(path) => {
            let uri = "http://localhost/mcp";
            let path = path.to_string_lossy();
            let remote = StreamableHttpClientTransport::from_unix_socket(&path, uri);
            pump(stdio, remote).await
        }
        Server::Tcp(authority) => {
            let mut config =
                StreamableHttpClientTransportConfig::with_uri(format!("http://{authority}/mcp"));
            if let Some(token) = token {
                config = config.auth_header(token);
            }
            let remote = StreamableHttpClientTransport::from_config(config);
            pump(stdio, remote).await
        }
    }
}

async fn pump(
    mut local: impl Transport<RoleServer>,
    mut remote: impl Transport<RoleClient>,
) -> Result<(), String> {
    loop {
        tokio::select! {
            message = local.receive() => match message {
                Some(message) => remote.send(message).await.map_err(|e| e.to_string())?,
                None => break,
            },
            message = remote.receive() => match message {
                Some(message) => local.send(message).await.map_err(|e| e.to_string())?,
                None => {
                    let _ = local.close().await;
                    return Err("the service closed the connection".into());
                }
            },
        }
    }
    // The client is gone: ending the MCP session ends its skillhost sessions.
    let _ = remote.close().await;
    Ok(())
}
