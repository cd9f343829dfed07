//! `skillhost session ...`: a running service's sessions. A session lives in the service
//! (a CLI process ends, its sessions must not), so every subcommand talks to one: the
//! local service's unix socket by default, or `--server` (with `SKILLHOST_TOKEN` on TCP).
//! Calls in a session are `skillhost invoke - ACTION --session ID`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper::Method;
use skillhost::api::{exit_code, ErrorReport, FileList, SessionInfo, SessionList};
use tokio::io::AsyncWriteExt;

use super::remote::{self, RemoteError, Server};
use super::{output, Format};
use skillhost::manifest::units::HumanDuration;

#[derive(Debug, clap::Args)]
pub(crate) struct SessionCli {
    #[command(subcommand)]
    command: SessionCommand,
    /// The service: unix:PATH or http://HOST:PORT (with the token in SKILLHOST_TOKEN)
    /// [default: the local service's socket].
    #[arg(long, env = "SKILLHOST_SERVER", global = true)]
    server: Option<Server>,
}

#[derive(Debug, clap::Subcommand)]
enum SessionCommand {
    /// Make a session of SKILL (its manifest must declare run.session); prints its id.
    New {
        skill: String,
        /// End it after this long without a call or file operation (at most the
        /// manifest's ceiling), e.g. 15m.
        #[arg(long, value_parser = duration)]
        idle_timeout: Option<Duration>,
        /// End it this long after it was made, however busy, e.g. 2h.
        #[arg(long, value_parser = duration)]
        lifetime: Option<Duration>,
        /// NAME=VALUE for every container of the session; the manifest's run.env must
        /// allow the name.
        #[arg(long = "env", value_name = "NAME=VALUE")]
        env: Vec<String>,
    },
    /// Your open sessions.
    List,
    /// One session: its skill, image, mode and deadlines.
    Show { id: String },
    /// Reset a session's idle clock.
    KeepAlive { id: String },
    /// End a session: its containers and its workspace are removed.
    End { id: String },
    /// The entries of a session's workspace.
    Files { id: String },
    /// Copy a file into a session (`cp LOCAL ID:PATH`) or out of one (`cp ID:PATH LOCAL`);
    /// `-` for stdin or stdout.
    Cp { from: String, to: String },
    /// Remove a file, a link or an empty directory of a session's workspace.
    Rm { id: String, path: String },
}

fn duration(text: &str) -> Result<Duration, String> {
    HumanDuration::parse(text)
        .map(|d| d.0)
        .map_err(|e| e.to_string())
}

/// Why a session command failed.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Local(String),
}

impl SessionError {
    fn exit_code(&self) -> i32 {
        match self {
            SessionError::Remote(e) => e.exit_code(),
            SessionError::Usage(_) => exit_code::USAGE,
            SessionError::Local(_) => exit_code::INFRASTRUCTURE,
        }
    }
}

pub(super) async fn run(cli: SessionCli, format: Format) -> i32 {
    let server = cli.server.unwrap_or_else(Server::local);
    let token = std::env::var("SKILLHOST_TOKEN").ok();
    match command(&server, token.as_deref(), cli.command, format).await {
        Ok(()) => exit_code::OK,
        Err(e) => {
            if format == Format::Json {
                output::json(&ErrorReport::new(e.to_string(), e.exit_code()));
            }
            errln!("error: {e}");
            e.exit_code()
        }
    }
}

async fn command(
    server: &Server,
    token: Option<&str>,
    command: SessionCommand,
    format: Format,
) -> Result<(), SessionError> {
    let session = |id: &str| remote::path_of("/v1/sessions", &[id]);
    match command {
        SessionCommand::New {
            skill,
            idle_timeout,
            lifetime,
            env,
        } => {
            let body = serde_json::json!({
                "skill": skill,
                "idle_timeout_ms": idle_timeout.map(|d| d.as_millis() as u64),
                "max_lifetime_ms": lifetime.map(|d| d.as_millis() as u64),
                "env": parse_env(&env)?,
            });
            let info: Option<SessionInfo> =
                remote::json(server, Method::POST, "/v1/sessions", token, Some(&body)).await?;
            show(info, format, |info| out!("{}", info.id));
        }
        SessionCommand::List => {
            let list: Option<SessionList> =
                remote::json(server, Method::GET, "/v1/sessions", token, None).await?;
            show(list, format, |list| {
                for info in &list.sessions {
                    out!("{}", line(info));
                }
            });
        }
        SessionCommand::Show { id } => {
            let info: Option<SessionInfo> =
                remote::json(server, Method::GET, &session(&id), token, None).await?;
            show(info, format, |info| out!("{}", line(info)));
        }
        SessionCommand::KeepAlive { id } => {
            let path = format!("{}/keepalive", session(&id));
            let info: Option<SessionInfo> =
                remote::json(server, Method::POST, &path, token, None).await?;
            show(info, format, |info| out!("{}", line(info)));
        }
        SessionCommand::End { id } => {
            remote::json::<serde_json::Value>(server, Method::DELETE, &session(&id), token, None)
                .await?;
        }
        SessionCommand::Files { id } => {
            let path = format!("{}/files", session(&id));
            let list: Option<FileList> =
                remote::json(server, Method::GET, &path, token, None).await?;
            show(list, format, |list| {
                for file in &list.files {
                    out!(
                        "{:>10}  {:04o}  {:<9}  {}",
                        file.size,
                        file.mode,
                        format!("{:?}", file.kind).to_lowercase(),
                        file.path
                    );
                }
                if list.truncated {
                    errln!("(more entries than a listing returns)");
                }
            });
        }
        SessionCommand::Rm { id, path } => {
            let path = file_path(&id, &path);
            remote::json::<serde_json::Value>(server, Method::DELETE, &path, token, None).await?;
        }
        SessionCommand::Cp { from, to } => copy(server, token, &from, &to).await?,
    }
    Ok(())
}

/// Print `value` as JSON, or through `human`.
fn show<T: serde::Serialize>(value: Option<T>, format: Format, human: impl Fn(&T)) {
    let Some(value) = value else { return };
    match format {
        Format::Json => output::json(&value),
        Format::Human => human(&value),
    }
}

/// One session on one line: id, skill, mode, when it ends.
fn line(info: &SessionInfo) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let ends = info.idle_deadline_ms.min(info.lifetime_deadline_ms);
    let left = Duration::from_secs(ends.saturating_sub(now) / 1000);
    format!(
        "{}  {}  {}  ends in {} unless used",
        info.id,
        info.skill,
        format!("{:?}", info.mode).to_lowercase(),
        humantime::format_duration(left)
    )
}

fn file_path(id: &str, path: &str) -> String {
    let mut segments = vec![id, "files"];
    segments.extend(path.split('/'));
    remote::path_of("/v1/sessions", &segments)
}

/// `ID:PATH` as its two parts.
fn in_session(text: &str) -> Option<(&str, &str)> {
    let (id, path) = text.split_once(':')?;
    (!id.is_empty() && !id.contains('/') && !path.is_empty()).then_some((id, path))
}

async fn copy(
    server: &Server,
    token: Option<&str>,
    from: &str,
    to: &str,
) -> Result<(), SessionError> {
    match (in_session(from), in_session(to)) {
        (None, Some((id, path))) => {
            let bytes = if from == "-" {
                let mut all = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut all)
                    .map_err(|e| SessionError::Local(format!("reading stdin: {e}")))?;
                all
            } else {
                tokio::fs::read(from)
                    .await
                    .map_err(|e| SessionError::Usage(format!("cannot read {from}: {e}")))?
            };
            let response = remote::request(
                server,
                Method::PUT,
                &file_path(id, path),
                token,
                Some("application/octet-stream"),
                Bytes::from(bytes),
            )
            .await?;
            if !response.status().is_success() {
                return Err(remote::failure(server, response).await.into());
            }
            Ok(())
        }
        (Some((id, path)), None) => {
            let response = remote::request(
                server,
                Method::GET,
                &file_path(id, path),
                token,
                None,
                Bytes::new(),
            )
            .await?;
            if !response.status().is_success() {
                return Err(remote::failure(server, response).await.into());
            }
            download(server, response, to).await
        }
        _ => Err(SessionError::Usage(format!(
            "copy between a local path and ID:PATH, one of each: got {from:?} and {to:?}"
        ))),
    }
}

/// Stream a download to `to` (`-`: stdout); a file is written whole or not at all.
async fn download(
    server: &Server,
    response: hyper::Response<hyper::body::Incoming>,
    to: &str,
) -> Result<(), SessionError> {
    let local = |e: std::io::Error| SessionError::Local(format!("writing {to}: {e}"));
    let broke = |e: hyper::Error| {
        SessionError::Remote(RemoteError::Unreachable {
            server: server.to_string(),
            message: format!("the download broke: {e}"),
        })
    };
    let mut body = response.into_body();
    if to == "-" {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(broke)?.into_data() {
                stdout.write_all(&data).map_err(local)?;
            }
        }
        return stdout.flush().map_err(local);
    }
    let target = PathBuf::from(to);
    let partial = target.with_extension("skillhost-partial");
    let mut file = tokio::fs::File::create(&partial).await.map_err(local)?;
    let written = async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(broke)?.into_data() {
                file.write_all(&data).await.map_err(local)?;
            }
        }
        file.flush().await.map_err(local)?;
        tokio::fs::rename(&partial, &target).await.map_err(local)
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    written
}

fn parse_env(pairs: &[String]) -> Result<BTreeMap<String, String>, SessionError> {
    pairs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| SessionError::Usage(format!("--env {pair:?}: give NAME=VALUE")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_side_of_a_copy_is_id_colon_path() {
        assert_eq!(in_session("abc:out/x.png"), Some(("abc", "out/x.png")));
        assert_eq!(in_session("./local.csv"), None);
        assert_eq!(in_session("dir/a:b"), None, "a local path with a colon");
        assert_eq!(in_session("abc:"), None);
    }

    #[test]
    fn file_paths_are_encoded_segment_by_segment() {
        assert_eq!(
            file_path("s1", "out dir/a.png"),
            "/v1/sessions/s1/files/out%20dir/a.png"
        );
    }
}
