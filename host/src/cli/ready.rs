//! `skillhost ready`: whether a running `skillhost serve` is ready for calls (its
//! `/readyz`), as an exit code. It is the health check of the skillhost image, and what an
//! operator runs to see why a node is not ready.

use skillhost::api::{exit_code, ErrorReport};
use skillhost::service::default_socket;
use skillhost::Error;

use super::remote::{self, Server};
use super::{output, Format};

#[derive(Debug, clap::Args)]
pub(crate) struct ReadyCli {
    /// The service: unix:PATH, or http://HOST:PORT (/readyz needs no token) [default: the
    /// socket `skillhost serve` binds: SKILLHOST_SOCKET, else its default].
    #[arg(long, env = "SKILLHOST_SERVER")]
    server: Option<Server>,
}

/// Exits 0 when ready; 3 (infrastructure) when not ready or unreachable, naming why.
pub(super) async fn run(cli: ReadyCli, format: Format) -> Result<i32, Error> {
    let server = cli.server.unwrap_or_else(|| {
        Server::Unix(
            std::env::var_os("SKILLHOST_SOCKET")
                .filter(|s| !s.is_empty())
                .map_or_else(default_socket, Into::into),
        )
    });
    match remote::ready(&server).await {
        Ok(readiness) => {
            match format {
                Format::Json => output::json(&readiness),
                Format::Human if readiness.ready => outln!("{server}: ready"),
                Format::Human => {
                    outln!("{server}: not ready");
                    for problem in &readiness.problems {
                        outln!("  {problem}");
                    }
                }
            }
            Ok(if readiness.ready {
                exit_code::OK
            } else {
                exit_code::INFRASTRUCTURE
            })
        }
        Err(e) => {
            if format == Format::Json {
                output::json(&ErrorReport::new(e.to_string(), exit_code::INFRASTRUCTURE));
            }
            errln!("error: {e}");
            Ok(exit_code::INFRASTRUCTURE)
        }
    }
}
