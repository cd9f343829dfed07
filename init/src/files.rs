//! `skillhost-init --files OP ...`: a session workspace's file operations. The host runs
//! them through the engine's exec inside the session's own container, as the skill's
//! user and with the container's confinement, so what a hostile skill left in the
//! workspace is read back by a process that can reach nothing the skill could not.
//!
//! Every path is resolved from the workspace's root one component at a time, each opened
//! with `O_NOFOLLOW`: a symbolic link anywhere in it is refused, never followed, and a
//! rename racing the walk can only make it fail. What is read or replaced is judged on the
//! open descriptor (`fstat`), never on a name: only a regular file with one link is read,
//! without blocking (a FIFO never opens for a read that waits), and its set-id bits are
//! never reported. The workspace is a filesystem of its own, so a hard link can only name
//! another of its files.
//!
//! Operations (stdout: one JSON header line, then the content for `read`):
//!
//! - `list MAX_ENTRIES`: `{"ok":true,"truncated":B}` then one JSON line per entry:
//!   `{"path","kind","size","mode","modified_ms"}`.
//! - `read PATH MAX_BYTES`: `{"ok":true,"size":N,"mode":M}` then the N bytes.
//! - `write PATH MAX_BYTES`: stdin to a new file, renamed over PATH once complete;
//!   `{"ok":true,"size":N}`. Missing directories are made.
//! - `delete PATH`: a file, a link, or an empty directory; `{"ok":true}`.
//!
//! A failure is `{"ok":false,"code":C,"message":M}` and exit code 1, with `code` one of
//! `not_found`, `not_a_file`, `too_large`, `no_space`, `invalid_path`, `not_empty`, `io`.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::process::ExitCode;
use std::time::UNIX_EPOCH;

extern "C" {
    fn openat(dirfd: i32, path: *const std::ffi::c_char, flags: i32, ...) -> i32;
    fn mkdirat(dirfd: i32, path: *const std::ffi::c_char, mode: u32) -> i32;
    fn unlinkat(dirfd: i32, path: *const std::ffi::c_char, flags: i32) -> i32;
    fn renameat(
        olddirfd: i32,
        old: *const std::ffi::c_char,
        newdirfd: i32,
        new: *const std::ffi::c_char,
    ) -> i32;
}

/// The session's workspace inside its containers.
const ROOT: &str = "/workspace";
/// Deepest directory nesting a listing descends into.
const MAX_DEPTH: usize = 64;

const O_RDONLY: i32 = 0;
const O_WRONLY: i32 = 1;
const O_CREAT: i32 = 0o100;
const O_EXCL: i32 = 0o200;
const O_NOCTTY: i32 = 0o400;
const O_NONBLOCK: i32 = 0o4000;
#[cfg(target_arch = "x86_64")]
const O_DIRECTORY: i32 = 0o200000;
#[cfg(target_arch = "x86_64")]
const O_NOFOLLOW: i32 = 0o400000;
#[cfg(target_arch = "aarch64")]
const O_DIRECTORY: i32 = 0o40000;
#[cfg(target_arch = "aarch64")]
const O_NOFOLLOW: i32 = 0o100000;
const O_CLOEXEC: i32 = 0o2000000;
const O_PATH: i32 = 0o10000000;
const AT_REMOVEDIR: i32 = 0x200;

const ENOENT: i32 = 2;
const EEXIST: i32 = 17;
const ENOTDIR: i32 = 20;
const EISDIR: i32 = 21;
const ENOSPC: i32 = 28;
const ELOOP: i32 = 40;
const ENOTEMPTY: i32 = 39;
const EDQUOT: i32 = 122;
const ENXIO: i32 = 6;

/// A refused or failed operation: its code and what to tell the caller.
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    pub code: &'static str,
    pub message: String,
}

fn failure(code: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

/// An OS error on `path` in the caller's terms.
fn os_failure(path: &str, errno: i32) -> Failure {
    match errno {
        ENOENT => failure("not_found", format!("{path} does not exist")),
        ELOOP => failure(
            "not_a_file",
            format!("{path} is or passes through a symbolic link, which is never followed"),
        ),
        ENOTDIR => failure(
            "not_found",
            format!("{path}: a component of it is not a directory"),
        ),
        EISDIR => failure("not_a_file", format!("{path} is a directory")),
        ENXIO => failure("not_a_file", format!("{path} is a FIFO or a socket")),
        ENOSPC | EDQUOT => failure(
            "no_space",
            format!("the workspace is full: no space left for {path}"),
        ),
        ENOTEMPTY => failure(
            "not_empty",
            format!("{path} is a directory that is not empty"),
        ),
        _ => failure(
            "io",
            format!("{path}: {}", std::io::Error::from_raw_os_error(errno)),
        ),
    }
}

/// The components of a relative path: no empty, `.` or `..` component, no NUL, at most
/// 255 bytes each and 4096 in all.
pub fn components(path: &str) -> Result<Vec<&str>, Failure> {
    let invalid = |why: &str| failure("invalid_path", format!("{path:?} {why}"));
    if path.is_empty() || path.len() > 4096 {
        return Err(invalid("must have 1 to 4096 bytes"));
    }
    if path.starts_with('/') {
        return Err(invalid("is absolute; give a path inside the workspace"));
    }
    if path.contains('\0') {
        return Err(invalid("holds a NUL byte"));
    }
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts {
        match *part {
            "" => return Err(invalid("has an empty component (`//` or a trailing `/`)")),
            "." | ".." => return Err(invalid("has a `.` or `..` component")),
            p if p.len() > 255 => return Err(invalid("has a component longer than 255 bytes")),
            _ => {}
        }
    }
    Ok(parts)
}

fn c_name(name: &str) -> CString {
    // `components` refused NULs already; an empty string cannot name anything.
    CString::new(name).unwrap_or_default()
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `openat(dir, name, flags)` as an owned descriptor, or the errno.
fn open_at(dir: i32, name: &str, flags: i32, mode: u32) -> Result<OwnedFd, i32> {
    let name = c_name(name);
    // SAFETY: `name` is a NUL-terminated string that outlives the call; openat reads the
    // mode argument only with O_CREAT, and it is passed as the C int it expects.
    let fd = unsafe { openat(dir, name.as_ptr(), flags | O_CLOEXEC, mode) };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: a descriptor openat just returned, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open_root() -> Result<OwnedFd, Failure> {
    open_at(-100, ROOT, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0)
        .map_err(|e| os_failure("the workspace", e))
}

/// The directory that holds the last component of `parts`, walked without following a
/// link; missing directories are made when `make`.
fn parent_of(parts: &[&str], path: &str, make: bool) -> Result<OwnedFd, Failure> {
    let mut dir = open_root()?;
    for part in &parts[..parts.len() - 1] {
        if make {
            let name = c_name(part);
            // SAFETY: `name` is NUL-terminated and outlives the call.
            let made = unsafe { mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o755) };
            if made < 0 && last_errno() != EEXIST {
                return Err(os_failure(path, last_errno()));
            }
        }
        dir = open_at(
            dir.as_raw_fd(),
            part,
            O_RDONLY | O_DIRECTORY | O_NOFOLLOW,
            0,
        )
        .map_err(|e| os_failure(path, link_or(&dir, part, e)))?;
    }
    Ok(dir)
}

/// `errno`, or `ELOOP` when `name` in `dir` is a symbolic link: `O_DIRECTORY` reports a
/// link as `ENOTDIR`, and the caller is owed the real reason.
fn link_or(dir: &OwnedFd, name: &str, errno: i32) -> i32 {
    let is_link = open_at(dir.as_raw_fd(), name, O_PATH | O_NOFOLLOW, 0)
        .ok()
        .and_then(|fd| File::from(fd).metadata().ok())
        .is_some_and(|meta| meta.file_type().is_symlink());
    if is_link {
        ELOOP
    } else {
        errno
    }
}

/// A header line: `{"ok":true,...}` with `fields` already JSON.
fn header(fields: &[(&str, String)]) -> Vec<u8> {
    let mut line = String::from("{\"ok\":true");
    for (name, value) in fields {
        line.push_str(&format!(",\"{name}\":{value}"));
    }
    line.push_str("}\n");
    line.into_bytes()
}

/// `text` as a JSON string.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn kind(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_file() {
        "file"
    } else if file_type.is_dir() {
        "directory"
    } else if file_type.is_symlink() {
        "symlink"
    } else if file_type.is_fifo() {
        "fifo"
    } else if file_type.is_socket() {
        "socket"
    } else {
        "device"
    }
}

/// Permission bits only: set-id and sticky bits are never handed out.
fn permissions(mode: u32) -> u32 {
    mode & 0o777
}

fn read(path: &str, max: u64, out: &mut impl Write) -> Result<(), Failure> {
    let parts = components(path)?;
    let dir = parent_of(&parts, path, false)?;
    let last = parts[parts.len() - 1];
    let fd = open_at(
        dir.as_raw_fd(),
        last,
        O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY,
        0,
    )
    .map_err(|e| os_failure(path, e))?;
    let mut file = File::from(fd);
    let meta = file.metadata().map_err(|e| io_failure(path, &e))?;
    if !meta.file_type().is_file() {
        let what = kind(meta.file_type());
        return Err(failure(
            "not_a_file",
            format!("{path} is a {what}, not a regular file"),
        ));
    }
    if meta.nlink() > 1 {
        return Err(failure(
            "not_a_file",
            format!(
                "{path} has {} hard links; only a file with one is read",
                meta.nlink()
            ),
        ));
    }
    if meta.len() > max {
        return Err(failure(
            "too_large",
            format!(
                "{path} has {} bytes, more than the {max} a download may have",
                meta.len()
            ),
        ));
    }
    let fields = [
        ("size", meta.len().to_string()),
        ("mode", permissions(meta.mode()).to_string()),
    ];
    out.write_all(&header(&fields))
        .map_err(|e| io_failure(path, &e))?;
    // What was measured is what is sent, even should the file grow meanwhile.
    let copied =
        std::io::copy(&mut (&mut file).take(meta.len()), out).map_err(|e| io_failure(path, &e))?;
    // A file that shrank: pad to the promised length, so the stream stays framed.
    if copied < meta.len() {
        let pad = vec![0u8; (meta.len() - copied) as usize];
        out.write_all(&pad).map_err(|e| io_failure(path, &e))?;
    }
    Ok(())
}

fn io_failure(path: &str, e: &std::io::Error) -> Failure {
    os_failure(path, e.raw_os_error().unwrap_or(0))
}

fn write(path: &str, max: u64, input: &mut impl Read, out: &mut impl Write) -> Result<(), Failure> {
    let parts = components(path)?;
    let dir = parent_of(&parts, path, true)?;
    let last = parts[parts.len() - 1];
    let temporary = format!(".skillhost-upload-{}", std::process::id());
    let fd = open_at(
        dir.as_raw_fd(),
        &temporary,
        O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW,
        0o644,
    )
    .map_err(|e| os_failure(path, e))?;
    let mut file = File::from(fd);
    let discard = |dir: &OwnedFd| {
        let name = c_name(&temporary);
        // SAFETY: `name` is NUL-terminated and outlives the call.
        unsafe { unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
    };
    let copied = std::io::copy(&mut input.take(max + 1), &mut file);
    let size = match copied {
        Ok(size) if size > max => {
            discard(&dir);
            return Err(failure(
                "too_large",
                format!("{path}: an upload may have at most {max} bytes"),
            ));
        }
        Ok(size) => size,
        Err(e) => {
            discard(&dir);
            return Err(io_failure(path, &e));
        }
    };
    drop(file);
    let (from, to) = (c_name(&temporary), c_name(last));
    // SAFETY: both names are NUL-terminated and outlive the call.
    let renamed = unsafe { renameat(dir.as_raw_fd(), from.as_ptr(), dir.as_raw_fd(), to.as_ptr()) };
    if renamed < 0 {
        let errno = last_errno();
        discard(&dir);
        return Err(os_failure(path, errno));
    }
    out.write_all(&header(&[("size", size.to_string())]))
        .map_err(|e| io_failure(path, &e))
}

fn delete(path: &str, out: &mut impl Write) -> Result<(), Failure> {
    let parts = components(path)?;
    let dir = parent_of(&parts, path, false)?;
    let name = c_name(parts[parts.len() - 1]);
    // SAFETY: `name` is NUL-terminated and outlives both calls.
    let mut gone = unsafe { unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
    if gone < 0 && last_errno() == EISDIR {
        // SAFETY: as above.
        gone = unsafe { unlinkat(dir.as_raw_fd(), name.as_ptr(), AT_REMOVEDIR) };
    }
    if gone < 0 {
        return Err(os_failure(path, last_errno()));
    }
    out.write_all(&header(&[]))
        .map_err(|e| io_failure(path, &e))
}

/// One listed entry.
struct Entry {
    path: String,
    kind: &'static str,
    size: u64,
    mode: u32,
    modified_ms: u128,
}

/// Every entry under `dir` (a descriptor of `prefix`), depth first, without following a
/// link or opening anything but directories; names that are not UTF-8 are left out.
fn walk(dir: &OwnedFd, prefix: &str, depth: usize, max: usize, found: &mut Vec<Entry>) -> bool {
    let Ok(names) = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd())) else {
        return true;
    };
    let mut names: Vec<String> = names
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in names {
        if found.len() >= max {
            return false;
        }
        let Ok(fd) = open_at(dir.as_raw_fd(), &name, O_PATH | O_NOFOLLOW, 0) else {
            continue;
        };
        let Ok(meta) = File::from(fd).metadata() else {
            continue;
        };
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let modified_ms = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis());
        found.push(Entry {
            path: path.clone(),
            kind: kind(meta.file_type()),
            size: meta.len(),
            mode: permissions(meta.mode()),
            modified_ms,
        });
        if meta.file_type().is_dir() && depth < MAX_DEPTH {
            let Ok(sub) = open_at(
                dir.as_raw_fd(),
                &name,
                O_RDONLY | O_DIRECTORY | O_NOFOLLOW,
                0,
            ) else {
                continue;
            };
            if !walk(&sub, &path, depth + 1, max, found) {
                return false;
            }
        }
    }
    true
}

fn list(max: usize, out: &mut impl Write) -> Result<(), Failure> {
    let root = open_root()?;
    let mut found = Vec::new();
    let complete = walk(&root, "", 0, max, &mut found);
    let mut text = header(&[("truncated", (!complete).to_string())]);
    for e in found {
        text.extend_from_slice(
            format!(
                "{{\"path\":{},\"kind\":\"{}\",\"size\":{},\"mode\":{},\"modified_ms\":{}}}\n",
                json_string(&e.path),
                e.kind,
                e.size,
                e.mode,
                e.modified_ms
            )
            .as_bytes(),
        );
    }
    out.write_all(&text)
        .map_err(|e| io_failure("the listing", &e))
}

fn number(text: Option<&String>, what: &str) -> Result<u64, Failure> {
    text.and_then(|t| t.parse().ok())
        .ok_or_else(|| failure("invalid_path", format!("{what} must be a number")))
}

fn dispatch(args: &[String]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    let path = || args.get(1).map(String::as_str).unwrap_or("");
    match args.first().map(String::as_str) {
        Some("list") => list(number(args.get(1), "MAX_ENTRIES")? as usize, &mut out),
        Some("read") => read(path(), number(args.get(2), "MAX_BYTES")?, &mut out),
        Some("write") => write(
            path(),
            number(args.get(2), "MAX_BYTES")?,
            &mut std::io::stdin().lock(),
            &mut out,
        ),
        Some("delete") => delete(path(), &mut out),
        _ => Err(failure(
            "invalid_path",
            "usage: --files list MAX | read PATH MAX | write PATH MAX | delete PATH",
        )),
    }?;
    out.flush().map_err(|e| io_failure("stdout", &e))
}

/// Run one operation; its outcome is on stdout.
pub fn main(args: &[String]) -> ExitCode {
    match dispatch(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            let line = format!(
                "{{\"ok\":false,\"code\":\"{}\",\"message\":{}}}\n",
                f.code,
                json_string(&f.message)
            );
            let _ = std::io::stdout().write_all(line.as_bytes());
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_could_leave_the_workspace_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "a\0b",
        ] {
            assert_eq!(components(bad).unwrap_err().code, "invalid_path", "{bad:?}");
        }
        assert_eq!(components("a/b.txt").unwrap(), vec!["a", "b.txt"]);
        assert_eq!(components("..hidden").unwrap(), vec!["..hidden"]);
    }

    #[test]
    fn names_are_escaped_as_json() {
        assert_eq!(json_string("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
    }

    #[test]
    fn set_id_bits_are_never_reported() {
        assert_eq!(permissions(0o104755), 0o755);
        assert_eq!(permissions(0o42755), 0o755);
    }

    #[test]
    fn errors_name_the_path_and_a_code() {
        assert_eq!(os_failure("x", ELOOP).code, "not_a_file");
        assert_eq!(os_failure("x", ENOSPC).code, "no_space");
        assert!(os_failure("a/b", ENOENT).message.contains("a/b"));
    }
}
