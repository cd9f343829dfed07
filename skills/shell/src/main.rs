//! The bundled shell skill: action `run` runs a command with /bin/sh in a work directory.
//!
//! The command runs in a process group of its own. The answer never waits on more than
//! the command itself: once /bin/sh ends, what it started gets a short grace and is then
//! killed; a full capture bound or the time running out kills the whole group at once.
//! Whatever was printed until then is kept.
//!
//! A command that finished normally (exit 0) is `ok`; one that did not fails with a code
//! saying what happened (`code_exit`, `code_timeout`, `code_memory`, `code_killed`,
//! `code_output_limit`; docs/results.md), the same output in the error's details.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use rustix::process::{kill_process_group, Pid, Signal};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use skill_sdk::{ActionError, Context, Skill};

/// Bytes kept per output stream; the rest is counted as truncated.
const CAPTURE_LIMIT: usize = 1 << 20;
/// Bytes returned per written file.
const FILE_LIMIT: u64 = 256 << 10;
const MAX_FILES: usize = 64;
/// After /bin/sh ends, how long what it started may still write.
const GRACE: Duration = Duration::from_millis(200);
/// After the group is killed, how long its output may take to drain. A process that left
/// the group (setsid) may hold the pipes open; it is not waited for.
const DRAIN: Duration = Duration::from_millis(200);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunArgs {
    command: String,
    #[serde(default)]
    stdin: String,
    #[serde(default)]
    files: BTreeMap<String, FileIn>,
}

/// A request file's content: UTF-8 text, or any bytes as `{"base64": "..."}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum FileIn {
    Text(String),
    Bytes(Base64File),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Base64File {
    base64: String,
}

impl FileIn {
    fn bytes(&self, name: &str) -> Result<Vec<u8>, ActionError> {
        match self {
            FileIn::Text(text) => Ok(text.as_bytes().to_vec()),
            FileIn::Bytes(file) => base64::engine::general_purpose::STANDARD
                .decode(&file.base64)
                .map_err(|e| {
                    ActionError::new(
                        "invalid_args",
                        format!("file {name:?}: its base64 is not valid: {e}"),
                    )
                }),
        }
    }
}

#[derive(Serialize)]
struct RunOutput {
    stdout: String,
    stderr: String,
    exit_code: Option<i32>,
    timed_out: bool,
    truncated: bool,
    files: BTreeMap<String, FileOut>,
}

#[derive(Serialize)]
struct FileOut {
    content: String,
    encoding: &'static str,
    truncated: bool,
}

fn work_dir() -> PathBuf {
    let workspace = Path::new("/workspace");
    // A read-only workspace is for reading: work happens in /tmp then.
    let writable =
        workspace.is_dir() && std::fs::File::create(workspace.join(".skill-probe")).is_ok();
    if writable {
        let _ = std::fs::remove_file(workspace.join(".skill-probe"));
        workspace.to_path_buf()
    } else {
        PathBuf::from("/tmp/work")
    }
}

fn inside(dir: &Path, name: &str) -> Option<PathBuf> {
    let relative = Path::new(name);
    let normal = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    (normal && !name.is_empty()).then(|| dir.join(relative))
}

/// open(2) flags, as Linux defines them on every architecture skills are built for.
const O_NOFOLLOW: i32 = 0o400000;
const O_NONBLOCK: i32 = 0o4000;

fn snapshot(dir: &Path, into: &mut BTreeMap<PathBuf, (SystemTime, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.metadata() {
            Ok(meta) if meta.is_dir() => snapshot(&path, into),
            // Only regular files are collected: a FIFO, socket, device or link (to
            // /dev/zero, say) would block or never end the read.
            Ok(meta) if meta.is_file() => {
                into.insert(
                    path,
                    (
                        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                        meta.len(),
                    ),
                );
            }
            _ => {}
        }
    }
}

/// Which stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Out,
    Err,
}

/// Read `pipe` on a thread of its own, sending each chunk (an empty one at its end).
fn forward(
    mut pipe: impl Read + Send + 'static,
    stream: Stream,
    to: mpsc::Sender<(Stream, Vec<u8>)>,
) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        loop {
            let n = pipe.read(&mut buf).unwrap_or(0);
            if to.send((stream, buf[..n].to_vec())).is_err() || n == 0 {
                return;
            }
        }
    });
}

/// What the command left: its output up to the bounds, and how it ended.
struct Supervised {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    truncated: bool,
    timed_out: bool,
    status: ExitStatus,
}

fn kill_group(child: &Child) {
    if let Some(pid) = Pid::from_raw(child.id() as i32) {
        let _ = kill_process_group(pid, Signal::KILL);
    }
}

/// Collect the command's output until both pipes close, ending its process group after
/// [`GRACE`] once /bin/sh is done, at once when a capture bound is full, or at `budget`.
fn supervise(
    mut child: Child,
    chunks: mpsc::Receiver<(Stream, Vec<u8>)>,
    budget: Option<Duration>,
) -> std::io::Result<Supervised> {
    let started = Instant::now();
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let (mut truncated, mut timed_out, mut killed) = (false, false, false);
    let mut status = None;
    let mut open = 2;
    // Once set: when to stop waiting (killing the group first, unless it was killed).
    let mut stop_at: Option<Instant> = None;
    while open > 0 {
        let now = Instant::now();
        if status.is_none() {
            status = child.try_wait()?;
            if status.is_some() && stop_at.is_none() {
                stop_at = Some(now + GRACE);
            }
        }
        if stop_at.is_some_and(|at| now >= at) {
            if killed {
                break;
            }
            kill_group(&child);
            (killed, stop_at) = (true, Some(now + DRAIN));
            continue;
        }
        if !killed && budget.is_some_and(|b| now.duration_since(started) >= b) {
            timed_out = true;
            kill_group(&child);
            (killed, stop_at) = (true, Some(now + DRAIN));
            continue;
        }
        // Short waits: the main process's end is looked for between chunks.
        let (stream, chunk) = match chunks.recv_timeout(Duration::from_millis(5)) {
            Ok(item) => item,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if chunk.is_empty() {
            open -= 1;
            continue;
        }
        let kept = match stream {
            Stream::Out => &mut stdout,
            Stream::Err => &mut stderr,
        };
        let room = CAPTURE_LIMIT - kept.len();
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() > room && !truncated {
            // Full: nothing more of this run will be kept, so it need not go on.
            truncated = true;
            kill_group(&child);
            (killed, stop_at) = (true, Some(Instant::now() + DRAIN));
        }
    }
    if status.is_none() {
        kill_group(&child);
    }
    let status = match status {
        Some(status) => status,
        None => child.wait()?,
    };
    Ok(Supervised {
        stdout,
        stderr,
        truncated,
        timed_out,
        status,
    })
}

fn encode(path: &Path) -> std::io::Result<FileOut> {
    use std::os::unix::fs::OpenOptionsExt;
    // Opened without following a link and without blocking, then checked again: the
    // name may have become a FIFO since it was listed.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NOFOLLOW | O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut data = Vec::new();
    file.take(FILE_LIMIT + 1).read_to_end(&mut data)?;
    let truncated = data.len() as u64 > FILE_LIMIT;
    data.truncate(FILE_LIMIT as usize);
    Ok(match String::from_utf8(data) {
        Ok(content) => FileOut {
            content,
            encoding: "utf-8",
            truncated,
        },
        Err(e) => FileOut {
            content: base64::engine::general_purpose::STANDARD.encode(e.as_bytes()),
            encoding: "base64",
            truncated,
        },
    })
}

fn run(args: RunArgs, ctx: &mut Context) -> Result<RunOutput, ActionError> {
    let dir = work_dir();
    std::fs::create_dir_all(&dir)?;
    for (name, content) in &args.files {
        let path = inside(&dir, name).ok_or_else(|| {
            ActionError::new(
                "invalid_args",
                format!("file {name:?} is outside the work directory"),
            )
        })?;
        let bytes = content.bytes(name)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes)?;
    }
    let mut before = BTreeMap::new();
    snapshot(&dir, &mut before);

    // Leave a second for the answer: past the deadline the host kills everything.
    let budget = ctx
        .deadline_ms()
        .map(|ms| Duration::from_millis(ms.saturating_sub(1000).max(500)));
    let ooms_before = oom_kills();
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(&args.command)
        .current_dir(&dir)
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (to, chunks) = mpsc::channel();
    if let Some(pipe) = child.stdout.take() {
        forward(pipe, Stream::Out, to.clone());
    }
    if let Some(pipe) = child.stderr.take() {
        forward(pipe, Stream::Err, to);
    }
    if let Some(mut stdin) = child.stdin.take() {
        let input = args.stdin.into_bytes();
        // A command that never reads its input must not block the runner.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let run = supervise(child, chunks, budget)?;

    let mut after = BTreeMap::new();
    snapshot(&dir, &mut after);
    let mut files = BTreeMap::new();
    for (path, stamp) in after {
        if before.get(&path) != Some(&stamp) && files.len() < MAX_FILES {
            let name = path
                .strip_prefix(&dir)
                .unwrap_or(&path)
                .display()
                .to_string();
            // A name that is no longer a regular file, or is gone, is not collected.
            if let Ok(file) = encode(&path) {
                files.insert(name, file);
            }
        }
    }
    let output = RunOutput {
        stdout: String::from_utf8_lossy(&run.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&run.stderr).into_owned(),
        exit_code: run.status.code(),
        timed_out: run.timed_out,
        truncated: run.truncated,
        files,
    };
    let ended = Ended {
        signal: run.status.signal(),
        budget,
        killed_for_memory: matches!((ooms_before, oom_kills()), (Some(b), Some(a)) if a > b),
    };
    match did_not_finish(&output, &ended) {
        None => Ok(output),
        Some((code, message)) => Err(ActionError::new(code, message)
            .with_details(serde_json::to_value(&output).unwrap_or_default())),
    }
}

/// How the command's run ended, besides its output.
struct Ended {
    /// The signal that ended /bin/sh, if one did.
    signal: Option<i32>,
    /// The command's own time.
    budget: Option<Duration>,
    /// The container's OOM-kill count rose during the run.
    killed_for_memory: bool,
}

/// Why the command did not finish normally, as an error code and message; `None` when
/// it did (docs/results.md, "Code that did not finish normally").
fn did_not_finish(output: &RunOutput, ended: &Ended) -> Option<(&'static str, String)> {
    if output.timed_out {
        let budget = ended.budget.map_or(0.0, |b| b.as_secs_f64());
        return Some((
            "code_timeout",
            format!("the command ran past its time ({budget:.1}s) and was stopped"),
        ));
    }
    if output.truncated {
        return Some((
            "code_output_limit",
            format!(
                "the command printed more than {} MiB on stdout or stderr and was stopped",
                CAPTURE_LIMIT >> 20
            ),
        ));
    }
    if ended.killed_for_memory {
        let limit = memory_limit()
            .filter(|l| *l < 1 << 50)
            .map(|l| format!(" ({} MiB)", l >> 20))
            .unwrap_or_default();
        return Some((
            "code_memory",
            format!(
                "the command was killed for memory: it went past the skill's memory limit{limit}"
            ),
        ));
    }
    if let Some(signal) = ended.signal {
        return Some((
            "code_killed",
            format!("the command was killed by {}", signal_name(signal)),
        ));
    }
    match output.exit_code {
        Some(0) | None => None,
        Some(code) => {
            let last = output
                .stderr
                .lines()
                .map(str::trim)
                .rfind(|line| !line.is_empty())
                .map(|line| format!(": {}", line.chars().take(300).collect::<String>()))
                .unwrap_or_default();
            Some((
                "code_exit",
                format!("the command exited with status {code}{last}"),
            ))
        }
    }
}

fn signal_name(signal: i32) -> String {
    let name = match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        31 => "SIGSYS",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

/// A number from the first of `paths` that reads: `key`'s value in a flat-keyed file,
/// or the whole file's (key `None`).
fn cgroup_value(paths: &[(&str, Option<&str>)]) -> Option<u64> {
    paths.iter().find_map(|(path, key)| {
        let text = std::fs::read_to_string(path).ok()?;
        match key {
            None => text.trim().parse().ok(),
            Some(key) => text.lines().find_map(|line| {
                let (name, value) = line.split_once(' ')?;
                (name == *key).then(|| value.trim().parse().ok()).flatten()
            }),
        }
    })
}

/// Processes the kernel killed for memory in this container so far (cgroup v2 or v1).
fn oom_kills() -> Option<u64> {
    cgroup_value(&[
        ("/sys/fs/cgroup/memory.events", Some("oom_kill")),
        ("/sys/fs/cgroup/memory/memory.oom_control", Some("oom_kill")),
    ])
}

fn memory_limit() -> Option<u64> {
    cgroup_value(&[
        ("/sys/fs/cgroup/memory.max", None),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", None),
    ])
}

fn main() {
    Skill::new().action("run", run).run()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(exit_code: Option<i32>, stderr: &str) -> RunOutput {
        RunOutput {
            stdout: String::new(),
            stderr: stderr.into(),
            exit_code,
            timed_out: false,
            truncated: false,
            files: BTreeMap::new(),
        }
    }

    fn ended() -> Ended {
        Ended {
            signal: None,
            budget: Some(Duration::from_millis(2500)),
            killed_for_memory: false,
        }
    }

    #[test]
    fn a_command_that_did_not_finish_normally_says_what_happened() {
        assert_eq!(did_not_finish(&output(Some(0), ""), &ended()), None);
        let (code, message) =
            did_not_finish(&output(Some(2), "ls: x: No such file\n\n"), &ended()).unwrap();
        assert_eq!(code, "code_exit");
        assert_eq!(
            message,
            "the command exited with status 2: ls: x: No such file"
        );
        let killed = Ended {
            signal: Some(11),
            ..ended()
        };
        assert_eq!(
            did_not_finish(&output(None, ""), &killed).unwrap(),
            (
                "code_killed",
                "the command was killed by SIGSEGV".to_string()
            )
        );
        let memory = Ended {
            signal: Some(9),
            killed_for_memory: true,
            ..ended()
        };
        assert_eq!(
            did_not_finish(&output(None, ""), &memory).unwrap().0,
            "code_memory"
        );
        let mut late = output(None, "");
        late.timed_out = true;
        assert_eq!(
            did_not_finish(&late, &killed).unwrap(),
            (
                "code_timeout",
                "the command ran past its time (2.5s) and was stopped".to_string()
            )
        );
        let mut flood = output(None, "");
        flood.truncated = true;
        assert_eq!(
            did_not_finish(&flood, &killed).unwrap().0,
            "code_output_limit"
        );
    }

    #[test]
    fn a_file_is_text_or_base64_bytes() {
        let args: RunArgs = serde_json::from_str(
            r#"{"command": "true", "files": {"a.txt": "hi", "b.bin": {"base64": "AAH/"}}}"#,
        )
        .unwrap();
        assert_eq!(args.files["a.txt"].bytes("a.txt").unwrap(), b"hi");
        assert_eq!(args.files["b.bin"].bytes("b.bin").unwrap(), [0, 1, 255]);
        let bad: RunArgs =
            serde_json::from_str(r#"{"command": "true", "files": {"c": {"base64": "!!"}}}"#)
                .unwrap();
        assert!(bad.files["c"].bytes("c").is_err());
        assert!(serde_json::from_str::<RunArgs>(
            r#"{"command": "true", "files": {"d": {"hex": "00"}}}"#
        )
        .is_err());
    }

    #[test]
    fn files_stay_inside_the_work_directory() {
        let dir = Path::new("/tmp/work");
        assert_eq!(inside(dir, "a/b.txt"), Some(dir.join("a/b.txt")));
        for bad in ["../x", "/etc/passwd", "a/../../x", ""] {
            assert_eq!(inside(dir, bad), None, "{bad}");
        }
    }
}
