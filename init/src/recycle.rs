//! `SKILLHOST_INIT_RECYCLE=1`: one container serves many calls of its skill, one after
//! another, and is reset between them so that no call can observe anything of an earlier
//! one.
//!
//! Each call arrives on stdin as a header line `KEY LEN\n` and then LEN bytes: the request
//! the skill reads on its stdin (a pipe of its own, closed after the request). The skill's
//! command runs as a fresh child of this process, with this process's environment and
//! working directory, which no skill can change. When it ends, the reset:
//!
//! 1. every other process of the PID namespace is killed and reaped (`kill(-1, SIGKILL)`
//!    until `/proc` holds this process alone: double forks and new sessions included);
//! 2. the call's verdicts: a signal sent to this process from inside the container, an
//!    OOM kill or a refused fork (the cgroup's counters before and after) retires it;
//! 3. every mount a process of the skill's user can write to (each tmpfs, `/dev/shm`,
//!    `/dev/mqueue`) is emptied, directories made searchable first, then checked empty
//!    and, for a tmpfs, holding no block;
//! 4. every SysV shared memory segment, semaphore set and message queue is removed, and
//!    the kernel's lists checked empty;
//! 5. this process's own limits, priority, scheduling, CPU affinity and I/O priority,
//!    which a process of the same user could change and the next call's processes would
//!    inherit, are compared with what they were at the start.
//!
//! Then the trailer `\0skillhost-exit:KEY:CODE:OOM_KILLS:-1:OUTSIDE_SIGNAL:VERDICT\n` goes
//! to stderr and stdout, where OOM_KILLS counts this call's kills alone, the peak is
//! unknown (the cgroup's peak spans every call; a process of the skill's user cannot reset
//! it) and VERDICT is `clean` or why the container must not serve again. Anything but
//! `clean` ends this process, and so the container, after the trailer: fail closed.
//!
//! With `SKILLHOST_INIT_PRESTART=1` too, the next call's command starts right after the
//! reset, waiting on its stdin pipe for the request.
//!
//! The root filesystem must be read-only (it is checked): the reset empties the writable
//! mounts, not an overlay.

use std::ffi::{c_char, CString};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use crate::{
    _exit, fail, from_outside, install, kill, last_errno, oom_kills, read, reap_until, spawn,
    waitpid, SigInfo, CHILD, EINTR, OUTSIDE_SIGNAL,
};

extern "C" {
    fn getrlimit(resource: i32, limit: *mut [u64; 2]) -> i32;
    fn getpriority(which: i32, who: u32) -> i32;
    fn sched_getscheduler(pid: i32) -> i32;
    fn sched_getaffinity(pid: i32, size: usize, mask: *mut u8) -> i32;
    fn syscall(number: i64, ...) -> i64;
    fn shmctl(id: i32, cmd: i32, buf: *mut u8) -> i32;
    fn semctl(id: i32, number: i32, cmd: i32, ...) -> i32;
    fn msgctl(id: i32, cmd: i32, buf: *mut u8) -> i32;
    fn statvfs(path: *const c_char, buf: *mut [u64; 16]) -> i32;
    fn access(path: *const c_char, mode: i32) -> i32;
}

/// Set to `1` to serve calls one after another, resetting between them.
pub(crate) const RECYCLE_VAR: &str = "SKILLHOST_INIT_RECYCLE";
/// The longest request the host sends; anything longer is not a request.
const MAX_REQUEST: usize = 1 << 30;
/// How long the processes a call left behind have to die.
const KILL_BOUND: Duration = Duration::from_secs(2);
const SIGKILL: i32 = 9;
const WNOHANG: i32 = 1;
const IPC_RMID: i32 = 0;
const W_OK: i32 = 2;
const IOPRIO_WHO_PROCESS: i64 = 1;
#[cfg(target_arch = "x86_64")]
const SYS_IOPRIO_GET: i64 = 252;
#[cfg(target_arch = "aarch64")]
const SYS_IOPRIO_GET: i64 = 31;

/// A signal sent to this process from inside the container: it was disturbed.
static DISTURBED: AtomicI32 = AtomicI32::new(0);
/// The engine is stopping the container: no call after this one.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Why a container must not serve another call, or `Clean`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Clean,
    /// A process of the container signalled this one.
    Disturbed,
    /// The engine is stopping the container.
    Stopping,
    /// The kernel killed a process of the container for memory during the call.
    Oom,
    /// A fork was refused at the container's process limit during the call.
    ProcessLimit,
    /// A process outlived the kill.
    Survivor,
    /// A file, directory or IPC object could not be removed, or was there after removal.
    Leftover,
    /// This process's limits, priority, scheduling or affinity are not what they were.
    Changed,
    /// What the reset must check could not be read.
    Unverifiable,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Disturbed => "disturbed",
            Verdict::Stopping => "stopping",
            Verdict::Oom => "oom",
            Verdict::ProcessLimit => "process_limit",
            Verdict::Survivor => "survivor",
            Verdict::Leftover => "leftover",
            Verdict::Changed => "changed",
            Verdict::Unverifiable => "unverifiable",
        }
    }
}

extern "C" fn on_signal(sig: i32, info: *const SigInfo, _context: *mut u8) {
    if info.is_null() {
        DISTURBED.store(sig, Ordering::SeqCst);
        return;
    }
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t, whose head `SigInfo`
    // declares; null was checked above.
    let info = unsafe { &*info };
    if from_outside(info) {
        OUTSIDE_SIGNAL.store(sig, Ordering::SeqCst);
        STOPPING.store(true, Ordering::SeqCst);
        let child = CHILD.load(Ordering::SeqCst);
        if child > 0 {
            // SAFETY: kill is async-signal-safe and takes plain integers.
            unsafe { kill(child, sig) };
        }
    } else if info.code > 0 {
        // A fault of this process's own (SEGV_MAPERR and the like): returning would
        // fault again.
        // SAFETY: _exit is async-signal-safe and ends the process at once.
        unsafe { _exit(128 + sig) }
    } else {
        DISTURBED.store(sig, Ordering::SeqCst);
    }
}

/// Every signal a process can catch, but SIGPIPE (ignored: writes say EPIPE) and SIGCHLD
/// (children's ends, which the waits collect), comes to `on_signal`: as PID 1 this
/// process would otherwise not see what a skill sends it.
fn install_handlers() {
    install(
        on_signal,
        (1..=31).filter(|s| ![SIGKILL, 13, 17, 19].contains(s)),
    );
}

pub(crate) fn main(argv: &[String], prestart: bool) -> ExitCode {
    install_handlers();
    match root_is_read_only() {
        Ok(true) => {}
        Ok(false) => return fail("recycling needs a read-only root filesystem"),
        Err(message) => return fail(&message),
    }
    let own = Own::read();
    loop {
        let before = Counters::read();
        let prestarted = prestart.then(|| spawn(argv, true));
        let (key, request) = match read_call() {
            Ok(Some(call)) => call,
            outcome => {
                if let Some(Ok(child)) = &prestarted {
                    // SAFETY: kill takes plain integers; the child is ours and unreaped.
                    unsafe { kill(child.id() as i32, SIGKILL) };
                }
                return match outcome {
                    Err(message) => fail(&message),
                    _ => ExitCode::SUCCESS,
                };
            }
        };
        let spawned = prestarted.unwrap_or_else(|| spawn(argv, true));
        let (code, writer) = match spawned {
            Ok(child) => {
                let pid = child.id() as i32;
                let writer = feed(child, request);
                (reap_until(pid), Some(writer))
            }
            Err(code) => (code, None),
        };
        CHILD.store(0, Ordering::SeqCst);
        let (verdict, oom) = reset(&own, &before);
        if let Some(writer) = writer {
            // Every process that could read its pipe is gone: it has ended or will now.
            let _ = writer.join();
        }
        let outside = OUTSIDE_SIGNAL.load(Ordering::SeqCst);
        let trailer = format!(
            "\0skillhost-exit:{key}:{code}:{oom}:-1:{outside}:{}\n",
            verdict.word()
        );
        let _ = std::io::stderr().write_all(trailer.as_bytes());
        let mut stdout = std::io::stdout();
        let _ = stdout
            .write_all(trailer.as_bytes())
            .and_then(|()| stdout.flush());
        if verdict != Verdict::Clean {
            return ExitCode::from(code);
        }
    }
}

/// Write the request into the child's stdin pipe and close it, from a thread: this one
/// waits for the child.
fn feed(mut child: Child, request: Vec<u8>) -> std::thread::JoinHandle<()> {
    let pipe = child.stdin.take();
    std::thread::spawn(move || {
        if let Some(mut pipe) = pipe {
            // A child that exits without reading it all makes this fail: nothing to say.
            let _ = pipe.write_all(&request);
        }
    })
}

/// The next call's key and request; `None` when stdin ended, the host being done.
fn read_call() -> Result<Option<(String, Vec<u8>)>, String> {
    let mut header = Vec::with_capacity(64);
    loop {
        let mut byte = 0u8;
        match read_some(std::slice::from_mut(&mut byte))? {
            0 if header.is_empty() => return Ok(None),
            0 => return Err("stdin ended inside a call's header".into()),
            _ if byte == b'\n' => break,
            _ if header.len() < 64 => header.push(byte),
            _ => return Err("a call's header is longer than a key and a length".into()),
        }
    }
    let (key, len) = parse_header(&header).ok_or("a call's header is not `KEY LEN`")?;
    let mut request = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        match read_some(&mut request[filled..])? {
            0 => return Err("stdin ended inside a request".into()),
            n => filled += n,
        }
    }
    Ok(Some((key, request)))
}

/// One read of stdin; a signal that means the container must end makes it an error.
fn read_some(buf: &mut [u8]) -> Result<usize, String> {
    loop {
        // SAFETY: `buf` is writable for its whole length, which is the count.
        let n = unsafe { read(0, buf.as_mut_ptr(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        if last_errno() != EINTR {
            return Err(format!(
                "cannot read stdin: {}",
                std::io::Error::last_os_error()
            ));
        }
        if STOPPING.load(Ordering::SeqCst) {
            return Err("stopped while waiting for a call".into());
        }
        let sig = DISTURBED.load(Ordering::SeqCst);
        if sig != 0 {
            return Err(format!("signal {sig} from inside the container"));
        }
    }
}

fn parse_header(header: &[u8]) -> Option<(String, usize)> {
    let text = std::str::from_utf8(header).ok()?;
    let (key, len) = text.split_once(' ')?;
    let valid_key = key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit());
    let len: usize = len.parse().ok()?;
    (valid_key && len <= MAX_REQUEST).then(|| (key.to_string(), len))
}

/// Reset the container after a call: its verdict, and the OOM kills during the call (-1
/// when they cannot be counted).
fn reset(own: &Own, before: &Counters) -> (Verdict, i64) {
    let killed = kill_all();
    let after = Counters::read();
    let oom = match (before.oom_kills, after.oom_kills) {
        (b, a) if b >= 0 && a >= 0 => a - b,
        _ => -1,
    };
    let verdict = if !killed {
        Verdict::Survivor
    } else if STOPPING.load(Ordering::SeqCst) {
        Verdict::Stopping
    } else if DISTURBED.load(Ordering::SeqCst) != 0 {
        Verdict::Disturbed
    } else if oom < 0 || before.forks_refused < 0 || after.forks_refused < 0 {
        Verdict::Unverifiable
    } else if oom > 0 {
        Verdict::Oom
    } else if after.forks_refused > before.forks_refused {
        Verdict::ProcessLimit
    } else {
        empty_writable_mounts()
            .and_then(|()| remove_ipc())
            .and_then(|()| own.unchanged())
            .err()
            .unwrap_or(Verdict::Clean)
    };
    (verdict, oom)
}

/// Kill every process but this one and reap them, until `/proc` shows none; false when
/// one is still there after the bound.
fn kill_all() -> bool {
    let until = Instant::now() + KILL_BOUND;
    loop {
        // SAFETY: kill takes plain integers; from PID 1, -1 is every other process of
        // the namespace.
        unsafe { kill(-1, SIGKILL) };
        let mut status = 0;
        // SAFETY: `status` is a writable int that outlives each call.
        while unsafe { waitpid(-1, &mut status, WNOHANG) } > 0 {}
        match others_alive() {
            Ok(false) => return true,
            Ok(true) if Instant::now() < until => std::thread::sleep(Duration::from_millis(1)),
            _ => return false,
        }
    }
}

/// Whether `/proc` lists a process other than this one.
fn others_alive() -> std::io::Result<bool> {
    for entry in std::fs::read_dir("/proc")? {
        let name = entry?.file_name();
        if name
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|pid| pid != 1)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The cgroup's counts a call is judged by, -1 when unreadable.
struct Counters {
    oom_kills: i64,
    forks_refused: i64,
}

impl Counters {
    fn read() -> Counters {
        let forks_refused = [
            "/sys/fs/cgroup/pids.events",
            "/sys/fs/cgroup/pids/pids.events",
        ]
        .iter()
        .find_map(|path| counter(&std::fs::read_to_string(path).ok()?, "max"))
        .unwrap_or(-1);
        Counters {
            oom_kills: oom_kills(),
            forks_refused,
        }
    }
}

/// The value of a `NAME VALUE` line.
fn counter(text: &str, name: &str) -> Option<i64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

/// What a process of the same user could change about this one that the next call's
/// processes would inherit from it.
#[derive(Debug, PartialEq, Eq)]
struct Own {
    limits: Vec<[u64; 2]>,
    nice: i32,
    policy: i32,
    affinity: Vec<u8>,
    io_priority: i64,
}

impl Own {
    fn read() -> Own {
        let limits = (0..16)
            .map(|resource| {
                let mut limit = [0u64; 2];
                // SAFETY: `limit` is a writable `struct rlimit` (two 64-bit numbers).
                unsafe { getrlimit(resource, &mut limit) };
                limit
            })
            .collect();
        let mut affinity = vec![0u8; 128];
        // SAFETY: the mask is writable for the size given.
        unsafe { sched_getaffinity(0, affinity.len(), affinity.as_mut_ptr()) };
        Own {
            limits,
            // SAFETY: plain integers; PRIO_PROCESS (0) of this process (0).
            nice: unsafe { getpriority(0, 0) },
            // SAFETY: plain integer; this process.
            policy: unsafe { sched_getscheduler(0) },
            affinity,
            // SAFETY: ioprio_get takes two integers.
            io_priority: unsafe { syscall(SYS_IOPRIO_GET, IOPRIO_WHO_PROCESS, 0i64) },
        }
    }

    fn unchanged(&self) -> Result<(), Verdict> {
        if Own::read() == *self {
            Ok(())
        } else {
            Err(Verdict::Changed)
        }
    }
}

/// Whether `/` is mounted read-only.
fn root_is_read_only() -> Result<bool, String> {
    let table = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let root = mounts(&table)
        .into_iter()
        .rfind(|m| m.point == Path::new("/"))
        .ok_or("/proc/self/mountinfo has no root mount")?;
    Ok(!root.read_write)
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, PartialEq)]
struct Mount {
    point: PathBuf,
    read_write: bool,
    fs_type: String,
}

fn mounts(table: &str) -> Vec<Mount> {
    table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let separator = fields.iter().position(|f| *f == "-")?;
            Some(Mount {
                point: PathBuf::from(unescape(fields.get(4)?)),
                read_write: fields.get(5)?.split(',').any(|o| o == "rw"),
                fs_type: fields.get(separator + 1)?.to_string(),
            })
        })
        .collect()
}

/// The kernel writes a space, tab, newline or backslash in a path as `\NNN` (octal).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Empty every read-write mount whose root the skill's user may write to, and check each
/// is empty.
fn empty_writable_mounts() -> Result<(), Verdict> {
    let table =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|_| Verdict::Unverifiable)?;
    for mount in mounts(&table).into_iter().filter(|m| m.read_write) {
        let path = CString::new(mount.point.as_os_str().as_encoded_bytes())
            .map_err(|_| Verdict::Unverifiable)?;
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        if unsafe { access(path.as_ptr(), W_OK) } != 0 {
            continue;
        }
        // Docker masks files of /proc with /dev/null: a device holds nothing. Any other
        // writable file mount could carry data to the next call.
        let kind = std::fs::metadata(&mount.point)
            .map_err(|_| Verdict::Unverifiable)?
            .file_type();
        if kind.is_char_device() {
            continue;
        }
        if !kind.is_dir() {
            return Err(Verdict::Unverifiable);
        }
        let entries = std::fs::read_dir(&mount.point).map_err(|_| Verdict::Unverifiable)?;
        for entry in entries {
            let entry = entry.map_err(|_| Verdict::Unverifiable)?;
            remove_tree(&entry.path()).map_err(|_| Verdict::Leftover)?;
        }
        let left = std::fs::read_dir(&mount.point)
            .map_err(|_| Verdict::Unverifiable)?
            .next()
            .is_some();
        if left || (mount.fs_type == "tmpfs" && blocks_used(&path)? != 0) {
            return Err(Verdict::Leftover);
        }
    }
    Ok(())
}

/// Remove a file, or a directory and everything in it, made searchable and writable
/// first (a skill may leave a directory of mode 000). No process is left to race this.
fn remove_tree(path: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return std::fs::remove_file(path);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    for entry in std::fs::read_dir(path)? {
        remove_tree(&entry?.path())?;
    }
    std::fs::remove_dir(path)
}

/// Blocks in use on the filesystem at `path`.
fn blocks_used(path: &CString) -> Result<u64, Verdict> {
    // `struct statvfs` on the 64-bit targets allowed: f_bsize, f_frsize, f_blocks,
    // f_bfree, ... as 64-bit fields; 16 of them hold it whole.
    let mut stats = [0u64; 16];
    // SAFETY: `path` is NUL-terminated and `stats` is larger than a `struct statvfs`.
    if unsafe { statvfs(path.as_ptr(), &mut stats) } != 0 {
        return Err(Verdict::Unverifiable);
    }
    Ok(stats[2].saturating_sub(stats[3]))
}

/// Remove every SysV IPC object of the namespace and check none is left.
fn remove_ipc() -> Result<(), Verdict> {
    type Remove = fn(i32) -> i32;
    let kinds: [(&str, Remove); 3] = [
        // SAFETY (all three): IPC_RMID takes no buffer; a null one is what it expects.
        ("/proc/sysvipc/shm", |id| unsafe {
            shmctl(id, IPC_RMID, std::ptr::null_mut())
        }),
        ("/proc/sysvipc/sem", |id| unsafe { semctl(id, 0, IPC_RMID) }),
        ("/proc/sysvipc/msg", |id| unsafe {
            msgctl(id, IPC_RMID, std::ptr::null_mut())
        }),
    ];
    for (list, remove) in kinds {
        let read = || std::fs::read_to_string(list).map_err(|_| Verdict::Unverifiable);
        for id in ipc_ids(&read()?) {
            remove(id);
        }
        if !ipc_ids(&read()?).is_empty() {
            return Err(Verdict::Leftover);
        }
    }
    Ok(())
}

/// The ids (second column) of a `/proc/sysvipc` list, after its header line.
fn ipc_ids(list: &str) -> Vec<i32> {
    list.lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_is_a_key_and_a_bounded_length() {
        let key = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            parse_header(format!("{key} 17").as_bytes()),
            Some((key.to_string(), 17))
        );
        assert_eq!(parse_header(format!("{key}17").as_bytes()), None);
        assert_eq!(parse_header(b"short 17"), None);
        assert_eq!(parse_header(format!("{key} -1").as_bytes()), None);
        assert_eq!(
            parse_header(format!("{key} {}", MAX_REQUEST + 1).as_bytes()),
            None
        );
    }

    #[test]
    fn mountinfo_lines_give_point_mode_and_type() {
        let table = "\
1 0 0:1 / / ro,relatime - overlay overlay ro,lowerdir=x
2 1 0:2 / /tmp rw,nosuid,nodev,noexec - tmpfs tmpfs rw,size=1024k
3 1 0:3 / /dev/mqueue rw,nosuid - mqueue mqueue rw
4 1 0:4 / /with\\040space rw - tmpfs tmpfs rw
";
        let found = mounts(table);
        assert_eq!(found.len(), 4);
        assert!(!found[0].read_write);
        assert_eq!(found[1].point, Path::new("/tmp"));
        assert_eq!(found[1].fs_type, "tmpfs");
        assert!(found[2].read_write);
        assert_eq!(found[3].point, Path::new("/with space"));
    }

    #[test]
    fn counters_and_ipc_lists_are_read() {
        assert_eq!(counter("max 3\n", "max"), Some(3));
        assert_eq!(counter("maximum 3\n", "max"), None);
        let shm = "       key      shmid perms                  size  cpid  lpid nattch\n         0          5   600                  4096    12    12      0\n      4660         17   600                  4096    13    13      0\n";
        assert_eq!(ipc_ids(shm), vec![5, 17]);
        assert!(ipc_ids("       key      semid perms\n").is_empty());
    }
}
