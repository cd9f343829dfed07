//! `skillhost invoke SKILL ACTION`: one call, with its arguments from `--args`, a file or
//! stdin; the result on stdout, progress and the skill's logs on stderr. An interrupted
//! call removes its container before the process exits. With `--server`, the call goes to
//! a running `skillhost serve` instead ([`super::remote`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use skillhost::api::{ErrorReport, InvokeRequest};
use skillhost::lock::LockFile;
use skillhost::manifest::units::HumanDuration;
use skillhost::{
    Error, Host, HostConfig, InvocationResult, InvokeOptions, ProgressCallback, Status,
};

use super::remote::{self, Server};
use super::{output, usage, Format};

/// Exit code of a process ended by signal `n` (128 + n), as shells report it.
const SIGNALLED: i32 = 128;

#[derive(Debug, clap::Args)]
pub(crate) struct InvokeCli {
    skill: String,
    action: String,
    /// The arguments, as JSON.
    #[arg(long = "args", value_name = "ARGS", conflicts_with = "args_file")]
    inline: Option<String>,
    /// Read the arguments from a JSON file (`-` for stdin).
    #[arg(long)]
    args_file: Option<PathBuf>,
    /// A deadline shorter than the manifest's timeout, e.g. 2s or 500ms.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// NAME=VALUE, or NAME to pass this process's value; the manifest's run.env
    /// must allow the name.
    #[arg(long = "env", value_name = "NAME[=VALUE]")]
    env: Vec<String>,
    /// A host directory mounted at /workspace (the skill must declare run.workspace).
    #[arg(long)]
    workspace: Option<PathBuf>,
    /// Never build: fail when the image is not prebuilt.
    #[arg(long)]
    no_build: bool,
    /// Run only the image this lock file pins for the skill (`skillhost lock`): no skill
    /// directory is read, nothing is built, and an image that is not the locked one is
    /// integrity_error.
    #[arg(
        long,
        env = "SKILLHOST_LOCKED",
        value_name = "LOCK",
        conflicts_with = "no_build"
    )]
    locked: Option<PathBuf>,
    /// The network through which the egress proxy of a skill with an allowlist
    /// (run.network.egress) reaches its destinations [default: Docker's bridge].
    #[arg(long, env = "SKILLHOST_EGRESS_NETWORK", value_name = "NETWORK")]
    egress_network: Option<String>,
    /// Run the skill's native library inside this process: NO SANDBOX. Also needs
    /// SKILLHOST_ALLOW_NATIVE=1 in the environment, for trusted skills only.
    #[arg(long)]
    native: bool,
    /// Send the call to a running `skillhost serve` instead: unix:PATH or
    /// http://HOST:PORT (with the token in SKILLHOST_TOKEN). Same result, same exit code.
    #[arg(long, env = "SKILLHOST_SERVER", conflicts_with_all = ["workspace", "no_build", "native", "locked"])]
    server: Option<Server>,
    /// Run in this session of the service (`skillhost session new`); SKILL is then the
    /// session's own and may be given as `-`. Without --server, the local service's
    /// socket.
    #[arg(long, value_name = "ID", conflicts_with_all = ["workspace", "no_build", "native", "locked"])]
    session: Option<String>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    HumanDuration::parse(text)
        .map(|d| d.0)
        .map_err(|e| e.to_string())
}

pub(super) async fn run(
    skill_roots: Vec<PathBuf>,
    cli: InvokeCli,
    format: Format,
) -> Result<i32, Error> {
    // Installed first, so a signal that arrives while the host starts is not fatal.
    let mut interrupts = Interrupts::install()?;
    let args = read_args(cli.inline.as_deref(), cli.args_file.as_deref())?;
    let env = parse_env(&cli.env)?;
    let server = match (&cli.server, &cli.session) {
        (None, Some(_)) => Some(Server::local()),
        (server, _) => server.clone(),
    };
    if let Some(server) = &server {
        let mut request = InvokeRequest::new(args);
        request.timeout_ms = cli.timeout.map(|t| t.as_millis() as u64);
        request.env = env;
        let token = std::env::var("SKILLHOST_TOKEN").ok();
        let target = match &cli.session {
            Some(id) => remote::Target::Session(id),
            None => remote::Target::Skill(&cli.skill),
        };
        let call = remote::invoke(
            server,
            target,
            &cli.action,
            &request,
            token.as_deref(),
            print_progress,
        );
        // An interrupted remote call closes its connection, which cancels it there.
        let result = tokio::select! {
            result = call => result,
            (name, number) = interrupts.recv() => {
                errln!("error: interrupted by {name}; the service cancels the call");
                return Ok(SIGNALLED + number);
            }
        };
        return match result {
            Ok(result) => Ok(report(&result, format, cli.timeout)),
            Err(e) => {
                if format == Format::Json {
                    output::json(&ErrorReport::new(e.to_string(), e.exit_code()));
                }
                errln!("error: {e}");
                Ok(e.exit_code())
            }
        };
    }
    let locked = cli.locked.as_deref().map(LockFile::load).transpose()?;
    let config = HostConfig::new(skill_roots)
        .build_images(!cli.no_build)
        .locked(locked)
        .allow_native(std::env::var("SKILLHOST_ALLOW_NATIVE").as_deref() == Ok("1"))
        .egress_network(
            cli.egress_network
                .unwrap_or_else(|| HostConfig::default().egress_network),
        );
    let host = Host::new(config).await?;
    let on_progress: ProgressCallback = Arc::new(print_progress);
    let options = InvokeOptions::default()
        .timeout(cli.timeout)
        .env(env)
        .workspace(cli.workspace)
        .on_progress(on_progress)
        .native(cli.native);
    // An interrupted invoke drops the invocation, whose guard removes the container
    // before we exit.
    let result = tokio::select! {
        result = host.invoke_with(&cli.skill, &cli.action, args, options) => result,
        (name, number) = interrupts.recv() => {
            host.shutdown().await;
            errln!("error: interrupted by {name}; the container was removed");
            return Ok(SIGNALLED + number);
        }
    };
    // The result is known; removing its container must still finish before we exit.
    host.shutdown().await;
    Ok(report(&result, format, cli.timeout))
}

/// Print the result for `format`; its exit code. `timeout` is the caller's `--timeout`.
fn report(result: &InvocationResult, format: Format, timeout: Option<Duration>) -> i32 {
    match format {
        Format::Json => output::json(result),
        Format::Human => print_result(result, timeout),
    }
    result.status.exit_code()
}

/// What to do next about a failed call: the author's hint, unless the caller's own
/// `--timeout` ended it, which the manifest's limit has nothing to do with.
fn hint(result: &InvocationResult, timeout: Option<Duration>) -> Option<String> {
    match (result.status, timeout) {
        (Status::Timeout, Some(timeout)) => Some(format!(
            "this call's --timeout ({}) ended it; give it more time with --timeout, up to the manifest's run.limits.timeout",
            humantime::format_duration(timeout)
        )),
        _ => skillhost::examples::author_hint(result).map(str::to_string),
    }
}

fn print_progress(p: &skill_sdk::Progress) {
    match p.fraction {
        Some(f) => errln!("progress {:>3.0}% {}", f * 100.0, p.message),
        None => errln!("progress {}", p.message),
    }
}

fn read_args(inline: Option<&str>, file: Option<&Path>) -> Result<Value, Error> {
    let (text, source) = match (inline, file) {
        (Some(text), _) => (text.to_string(), "--args".to_string()),
        (None, Some(path)) if path == Path::new("-") => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| usage(format!("cannot read the arguments from stdin: {e}")))?;
            (text, "stdin".to_string())
        }
        (None, Some(path)) => (
            std::fs::read_to_string(path).map_err(|e| {
                usage(format!(
                    "cannot read the arguments from {}: {e}",
                    path.display()
                ))
            })?,
            path.display().to_string(),
        ),
        (None, None) => return Ok(json!({})),
    };
    serde_json::from_str(&text)
        .map_err(|e| usage(format!("the arguments in {source} are not JSON: {e}")))
}

fn parse_env(pairs: &[String]) -> Result<BTreeMap<String, String>, Error> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => Ok((name.to_string(), value.to_string())),
            None => std::env::var(pair)
                .map(|value| (pair.clone(), value))
                .map_err(|_| {
                    usage(format!(
                        "--env {pair}: no such variable in this environment; give {pair}=VALUE"
                    ))
                }),
        })
        .collect()
}

/// SIGTERM and SIGINT, caught instead of ending the process, so cleanup can run.
pub(super) struct Interrupts {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Interrupts {
    pub(super) fn install() -> Result<Interrupts, Error> {
        use tokio::signal::unix::{signal, SignalKind};
        let failed = |e: std::io::Error| usage(format!("cannot install signal handlers: {e}"));
        Ok(Interrupts {
            term: signal(SignalKind::terminate()).map_err(failed)?,
            int: signal(SignalKind::interrupt()).map_err(failed)?,
        })
    }

    /// The next signal: its name and number.
    pub(super) async fn recv(&mut self) -> (&'static str, i32) {
        tokio::select! {
            _ = self.term.recv() => ("SIGTERM", 15),
            _ = self.int.recv() => ("SIGINT", 2),
        }
    }
}

/// What an ok result's exit says that its output does not: a skill that answered and
/// then exited non-zero, died of a signal or lost a process to the memory limit.
fn after_answer_warning(exit_code: Option<i64>, oom_killed: bool) -> Option<String> {
    let exit = match exit_code {
        Some(code) if code > 128 && code < 160 => {
            let signal = code - 128;
            let name = match signal {
                6 => " (SIGABRT)",
                9 => " (SIGKILL)",
                11 => " (SIGSEGV)",
                15 => " (SIGTERM)",
                _ => "",
            };
            Some(format!(
                "the skill answered, then died of signal {signal}{name}"
            ))
        }
        Some(code) if code != 0 => {
            Some(format!("the skill answered, then exited with code {code}"))
        }
        _ => None,
    };
    match (exit, oom_killed) {
        (Some(exit), true) => Some(format!(
            "{exit}; a process of the skill was killed for memory"
        )),
        (None, true) => Some("a process of the skill was killed for memory".into()),
        (exit, false) => exit,
    }
}

/// Whether `value` is a process's output: a `stdout` string (and maybe `stderr`).
fn process_like(value: &Value) -> bool {
    value.get("stdout").is_some_and(Value::is_string)
}

/// The output for people: a process-like result (`stdout`/`stderr` fields) as its text,
/// a string as itself, anything else as JSON. A failure's process-like details (code
/// that did not finish normally) are printed the same way, then the failure on stderr
/// with the logs.
fn print_result(result: &InvocationResult, timeout: Option<Duration>) {
    let failed_process = result
        .error
        .as_ref()
        .and_then(|e| e.details.as_ref())
        .filter(|details| process_like(details));
    if let Some(output) = result.output.as_ref().or(failed_process) {
        match output {
            Value::String(text) => outln!("{text}"),
            fields if process_like(fields) => {
                out!("{}", fields["stdout"].as_str().unwrap_or_default());
                if let Some(stderr) = fields.get("stderr").and_then(Value::as_str) {
                    err!("{stderr}");
                }
            }
            other => output::json(other),
        }
    }
    if let Some(egress) = result.egress.as_ref().filter(|e| !e.denied.is_empty()) {
        let denied: Vec<String> = egress
            .denied
            .iter()
            .map(|d| format!("{} ({}x)", d.destination, d.count))
            .collect();
        errln!(
            "note: the egress proxy refused {}; run.network.egress allows only {}",
            denied.join(", "),
            egress.allowed.join(", ")
        );
    }
    if result.status == Status::Ok {
        if let Some(warning) = after_answer_warning(result.exit_code, result.oom_killed) {
            errln!("warning: {warning}");
        }
    }
    if let Some(error) = &result.error {
        errln!(
            "error: {}: {} ({})",
            result.status,
            error.message,
            error.code
        );
        if let Some(hint) = hint(result, timeout) {
            errln!("hint: {hint}");
        }
        if !result.logs.is_empty() {
            let truncated = if result.logs_truncated {
                " (truncated)"
            } else {
                ""
            };
            errln!("--- skill stderr{truncated} ---");
            err!("{}", result.logs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_the_caller_chose_points_at_its_own_flag() {
        let mut result = InvocationResult::new("i", "python", "run");
        result.status = Status::Timeout;
        let chosen = hint(&result, Some(Duration::from_secs(2))).unwrap();
        assert!(chosen.contains("--timeout (2s)"), "{chosen}");
        let manifests = hint(&result, None).unwrap();
        assert!(
            manifests.contains("run.limits.timeout in skill.yaml"),
            "{manifests}"
        );
    }

    #[test]
    fn an_ok_result_warns_of_a_bad_exit_after_the_answer() {
        assert_eq!(after_answer_warning(Some(0), false), None);
        assert_eq!(after_answer_warning(None, false), None);
        assert_eq!(
            after_answer_warning(Some(3), false).unwrap(),
            "the skill answered, then exited with code 3"
        );
        assert_eq!(
            after_answer_warning(Some(139), false).unwrap(),
            "the skill answered, then died of signal 11 (SIGSEGV)"
        );
        assert_eq!(
            after_answer_warning(Some(137), true).unwrap(),
            "the skill answered, then died of signal 9 (SIGKILL); a process of the skill was killed for memory"
        );
        assert_eq!(
            after_answer_warning(Some(0), true).unwrap(),
            "a process of the skill was killed for memory"
        );
    }
}
