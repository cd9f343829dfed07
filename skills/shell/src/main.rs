//! The bundled shell skill: action `run` runs a command with /bin/sh in a work directory.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use skill_sdk::{ActionError, Context, Skill};

/// Bytes kept per output stream; the rest is counted as truncated.
const CAPTURE_LIMIT: usize = 1 << 20;
/// Bytes returned per written file.
const FILE_LIMIT: u64 = 256 << 10;
const MAX_FILES: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunArgs {
    command: String,
    #[serde(default)]
    stdin: String,
    #[serde(default)]
    files: BTreeMap<String, String>,
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

fn snapshot(dir: &Path, into: &mut BTreeMap<PathBuf, (SystemTime, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.metadata() {
            Ok(meta) if meta.is_dir() => snapshot(&path, into),
            Ok(meta) => {
                into.insert(
                    path,
                    (
                        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                        meta.len(),
                    ),
                );
            }
            Err(_) => {}
        }
    }
}

fn capture(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<(Vec<u8>, bool)> {
    std::thread::spawn(move || {
        let (mut kept, mut dropped, mut buf) = (Vec::new(), false, [0u8; 65536]);
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            let room = CAPTURE_LIMIT - kept.len();
            kept.extend_from_slice(&buf[..n.min(room)]);
            dropped |= n > room;
        }
        (kept, dropped)
    })
}

fn encode(path: &Path) -> std::io::Result<FileOut> {
    let mut data = Vec::new();
    std::fs::File::open(path)?
        .take(FILE_LIMIT + 1)
        .read_to_end(&mut data)?;
    let truncated = data.len() as u64 > FILE_LIMIT;
    data.truncate(FILE_LIMIT as usize);
    Ok(match String::from_utf8(data) {
        Ok(content) => FileOut {
            content,
            encoding: "utf-8",
            truncated,
        },
        Err(e) => FileOut {
            content: base64(e.as_bytes()),
            encoding: "base64",
            truncated,
        },
    })
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
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
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, content)?;
    }
    let mut before = BTreeMap::new();
    snapshot(&dir, &mut before);

    // Leave a second for the answer: past the deadline the host kills everything.
    let budget = ctx
        .deadline_ms()
        .map(|ms| Duration::from_millis(ms.saturating_sub(1000).max(500)));
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(&args.command)
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let out = capture(child.stdout.take().expect("piped"));
    let err = capture(child.stderr.take().expect("piped"));
    let mut stdin = child.stdin.take().expect("piped");
    let input = args.stdin.into_bytes();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let started = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if budget.is_some_and(|b| started.elapsed() >= b) {
            timed_out = true;
            let _ = child.kill();
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = writer.join();
    let (stdout, out_dropped) = out.join().unwrap_or_default();
    let (stderr, err_dropped) = err.join().unwrap_or_default();

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
            files.insert(name, encode(&path)?);
        }
    }
    Ok(RunOutput {
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        exit_code: status.code(),
        timed_out,
        truncated: out_dropped || err_dropped,
        files,
    })
}

fn main() {
    Skill::new().action("run", run).run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xff, 0xfe, 0x00, 0x01]), "//4AAQ==");
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
