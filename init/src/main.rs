//! PID 1 of a one-shot skill container, in place of Docker's own init.
//!
//! It does what an init must (run the command, reap every orphan, pass on termination
//! signals) and one thing more: when the skill's process ends, it writes a trailer with
//! the exit code, the cgroup's OOM-kill count and its peak memory to stderr and then to
//! stdout, and exits.
//! The host then knows how the skill ended as soon as it happened, instead of waiting
//! 35-45 ms for the engine to tear the container down and report the exit.
//!
//! The trailer carries a key the host writes as the first line of stdin, which only this
//! process reads, so a skill cannot forge one: the key never appears in an argument, the
//! environment or a file, and this process is not dumpable, so /proc/1/mem stays closed.
//!
//! Usage: `skillhost-init COMMAND [ARG]...`, stdin beginning with `KEY\n`.
//!
//! With `SKILLHOST_INIT_PRESTART=1` in its environment (set by the host for skills whose
//! manifest says `run.prestart`), the command starts at once, before the key, with a
//! pipe for stdin: the skill can load what it needs while the container waits for its
//! request, and never sees the key line. Once the key is read, the rest of stdin is
//! copied into that pipe. The variable is not passed on.
//! Trailer: `\0skillhost-exit:KEY:CODE:OOM_KILLS:PEAK_BYTES:OUTSIDE_SIGNAL\n`, -1 for
//! what is unknown; OUTSIDE_SIGNAL is the last termination signal that came from outside
//! the container (the engine stopping it), 0 if none did.
//!
//! With `SKILLHOST_INIT_RECYCLE=1` it serves many calls, one after another, resetting
//! the container between them (`recycle.rs`).
//!
//! Two more modes serve sessions (see the host's `session` module): `--hold` keeps a
//! session's container, and so its workspace, alive doing nothing until it is stopped;
//! `--files OP ...` is a workspace file operation the host runs in that container
//! (`files.rs`).
//!
//! Standard library only (see Cargo.toml); the few libc calls std lacks are declared here.

// Those libc calls are foreign functions, so calling them is `unsafe`; each call below
// says what it relies on.
#![allow(unsafe_code)]

// `SigAction` and `SigInfo` below spell out glibc's (and musl's) layouts on 64-bit x86 and
// Arm Linux. Elsewhere the kernel would read and write other bytes than we declare.
#[cfg(not(all(
    target_os = "linux",
    any(target_env = "gnu", target_env = "musl"),
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
compile_error!(
    "skillhost-init declares the C library's sigaction and siginfo layouts for 64-bit x86 and Arm Linux only"
);

mod files;
mod recycle;

use std::io::Write;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

extern "C" {
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
    fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
    fn sigaction(signum: i32, act: *const SigAction, old: *mut SigAction) -> i32;
    fn kill(pid: i32, sig: i32) -> i32;
    fn read(fd: i32, buf: *mut u8, count: usize) -> isize;
    fn pause() -> i32;
    fn _exit(code: i32) -> !;
}

/// glibc's `struct sigaction` on 64-bit Linux.
#[repr(C)]
struct SigAction {
    handler: usize,
    mask: [u64; 16],
    flags: i32,
    restorer: usize,
}

/// The head of `siginfo_t` as the kernel fills it for a signal sent with kill().
#[repr(C)]
struct SigInfo {
    signo: i32,
    errno: i32,
    code: i32,
    _pad: i32,
    pid: i32,
    uid: u32,
}

// What the C library's headers say these are on the targets allowed above.
const _: () = assert!(std::mem::size_of::<SigAction>() == 152);
const _: () = assert!(std::mem::offset_of!(SigAction, flags) == 136);
const _: () = assert!(std::mem::offset_of!(SigInfo, pid) == 16);

const SA_SIGINFO: i32 = 4;

const PR_SET_DUMPABLE: i32 = 4;
const EINTR: i32 = 4;
/// SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGTERM: what `docker stop` and `docker
/// kill -s` send to PID 1, which ignores them unless it has a handler.
const FORWARDED: [i32; 6] = [1, 2, 3, 10, 12, 15];
/// The key is 32 hex digits; anything longer is not a key.
const KEY_LEN: usize = 32;
/// Exit codes of the init itself, as Docker uses them for failures before the command.
const EXIT_INIT_FAILED: u8 = 125;
const EXIT_CANNOT_EXECUTE: u8 = 126;
const EXIT_NOT_FOUND: u8 = 127;
/// Set to `1` to start the command before the key arrives.
const PRESTART_VAR: &str = "SKILLHOST_INIT_PRESTART";

static CHILD: AtomicI32 = AtomicI32::new(0);
/// The last forwarded signal whose sender was outside the container.
static OUTSIDE_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// A forwarded signal that arrived before the key was read: the wait for it gives up.
static EARLY_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Set once the key is read.
static KEY_READ: AtomicBool = AtomicBool::new(false);

extern "C" fn forward(sig: i32, info: *const SigInfo, _context: *mut u8) {
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t, whose head `SigInfo`
    // declares; a null pointer is checked first all the same.
    if !info.is_null() && from_outside(unsafe { &*info }) {
        OUTSIDE_SIGNAL.store(sig, Ordering::SeqCst);
    }
    let child = CHILD.load(Ordering::SeqCst);
    // Before the key, the stop ends the wait for it.
    if !KEY_READ.load(Ordering::SeqCst) {
        EARLY_SIGNAL.store(sig, Ordering::SeqCst);
    }
    // Before the child exists there is no one to pass it to; kill(0) would hit our group.
    if child > 0 {
        // SAFETY: kill is async-signal-safe and takes plain integers.
        unsafe { kill(child, sig) };
    }
}

/// `si_code` of a signal sent with kill() and of one the kernel sent itself.
const SI_USER: i32 = 0;
const SI_KERNEL: i32 = 0x80;

/// Whether a signal came from outside the container: the engine's kill() shows as
/// SI_USER from pid 0 (a sender outside this PID namespace). A process of the skill
/// signalling PID 1 with kill() shows its own pid; with rt_sigqueueinfo() it may write
/// any pid, 0 included, but the kernel lets it choose only a negative `si_code`
/// (SI_QUEUE and the like), never SI_USER or SI_KERNEL.
fn from_outside(info: &SigInfo) -> bool {
    matches!(info.code, SI_USER | SI_KERNEL) && info.pid == 0
}

/// An SA_SIGINFO handler.
type Handler = extern "C" fn(i32, *const SigInfo, *mut u8);

/// Install `handler` for each of `signals`. No SA_RESTART: a blocking read of stdin must
/// return EINTR to notice a stop; every other blocking call here retries on EINTR.
fn install(handler: Handler, signals: impl IntoIterator<Item = i32>) {
    let action = SigAction {
        handler: handler as usize,
        mask: [0; 16],
        flags: SA_SIGINFO,
        restorer: 0,
    };
    for sig in signals {
        // SAFETY: `action` is a valid `struct sigaction` (layout asserted above) that
        // outlives the call, and `handler` has the SA_SIGINFO handler's signature; a null
        // `old` asks for nothing back.
        unsafe { sigaction(sig, &action, std::ptr::null_mut()) };
    }
}

fn main() -> ExitCode {
    // Before the key is in memory: no one of the same user may read this process.
    // SAFETY: PR_SET_DUMPABLE takes integer arguments only.
    unsafe { prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) };
    // The host hands the engine non-zero numeric ids; this is the last line should an
    // engine still have given root's user or group (an image's /etc/group, say).
    match std::fs::read_to_string("/proc/self/status") {
        Ok(status) => {
            if let Some(line) = root_identity(&status) {
                return fail(&format!("refusing to run the skill with id 0 ({line})"));
            }
        }
        Err(e) => return fail(&format!("cannot read /proc/self/status: {e}")),
    }
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match argv.first().map(String::as_str) {
        None => return fail("no command to run"),
        Some("--files") => return files::main(&argv[1..]),
        Some("--hold") => hold(),
        Some(_) => {}
    }
    let prestart = std::env::var_os(PRESTART_VAR).is_some_and(|v| v == "1");
    if std::env::var_os(recycle::RECYCLE_VAR).is_some_and(|v| v == "1") {
        return recycle::main(&argv, prestart);
    }
    // Installed before the key is read: a stop that comes first ends the wait for it.
    install(forward, FORWARDED);
    let (key, spawned) = if prestart {
        let spawned = spawn(&argv, true);
        match read_key() {
            Ok(key) => (key, spawned.map(pass_stdin)),
            Err(message) => {
                if let Ok(child) = &spawned {
                    // SAFETY: kill takes plain integers; the child is ours and unreaped.
                    unsafe { kill(child.id() as i32, 9) };
                }
                return fail(&message);
            }
        }
    } else {
        let key = match read_key() {
            Ok(key) => key,
            Err(message) => return fail(&message),
        };
        (key, spawn(&argv, false))
    };
    let code = match spawned {
        Ok(child) => reap_until(child.id() as i32),
        Err(code) => code,
    };
    let outside = OUTSIDE_SIGNAL.load(Ordering::SeqCst);
    let trailer = trailer(&key, code, oom_kills(), peak_memory(), outside);
    // stderr first: the host finishes when it has both, so all of stderr is in by then.
    let _ = std::io::stderr().write_all(&trailer);
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(&trailer).and_then(|()| stdout.flush());
    ExitCode::from(code)
}

extern "C" fn exit_now(_sig: i32, _info: *const SigInfo, _context: *mut u8) {
    // SAFETY: _exit is async-signal-safe and ends the process at once.
    unsafe { _exit(0) }
}

/// `--hold`: do nothing until stopped. As PID 1 the kernel would ignore a SIGTERM with no
/// handler, so one is installed that ends the process.
fn hold() -> ! {
    install(exit_now, FORWARDED);
    loop {
        // SAFETY: pause takes no arguments; it returns after each caught signal.
        unsafe { pause() };
    }
}

/// The line of `/proc/self/status` that gives this process uid 0 or gid 0, as its real,
/// effective, saved or filesystem id or as a supplementary group.
fn root_identity(status: &str) -> Option<&str> {
    status.lines().find(|line| {
        let Some((name, ids)) = line.split_once(':') else {
            return false;
        };
        matches!(name, "Uid" | "Gid" | "Groups") && ids.split_whitespace().any(|id| id == "0")
    })
}

/// Start the command (with a pipe for stdin when `piped`), recorded for the signal
/// handler; the exit code a shell would give when it cannot start.
fn spawn(argv: &[String], piped: bool) -> Result<Child, u8> {
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .env_remove(PRESTART_VAR)
        .env_remove(recycle::RECYCLE_VAR);
    if piped {
        command.stdin(Stdio::piped());
    }
    match command.spawn() {
        Ok(child) => {
            CHILD.store(child.id() as i32, Ordering::SeqCst);
            Ok(child)
        }
        Err(e) => {
            eprintln!("skillhost-init: cannot run {}: {e}", argv[0]);
            Err(match e.kind() {
                std::io::ErrorKind::NotFound => EXIT_NOT_FOUND,
                _ => EXIT_CANNOT_EXECUTE,
            })
        }
    }
}

/// Copy the rest of stdin (the request, after the key) into a prestarted child's pipe,
/// closing it at the end, from a thread of its own: this one reaps.
fn pass_stdin(mut child: Child) -> Child {
    if let Some(mut pipe) = child.stdin.take() {
        std::thread::spawn(move || {
            // A child that stops reading (it exited) ends the copy; nothing to report.
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut pipe);
        });
    }
    child
}

fn fail(message: &str) -> ExitCode {
    eprintln!("skillhost-init: {message}");
    // Stopped before the key: exit as a process ended by that signal would.
    match EARLY_SIGNAL.load(Ordering::SeqCst) {
        0 => ExitCode::from(EXIT_INIT_FAILED),
        sig => ExitCode::from((128 + sig) as u8),
    }
}

/// The first line of stdin, read a byte at a time so not one byte of the skill's input
/// is taken with it.
fn read_key() -> Result<String, String> {
    let mut key = Vec::with_capacity(KEY_LEN);
    loop {
        let mut byte = 0u8;
        // SAFETY: `byte` is one writable byte, and the count is 1.
        match unsafe { read(0, &mut byte, 1) } {
            1 if byte == b'\n' => break,
            1 if key.len() < KEY_LEN => key.push(byte),
            1 => return Err("the first line of stdin is longer than a key".into()),
            0 => return Err("stdin ended before the key line".into()),
            _ if last_errno() == EINTR => match EARLY_SIGNAL.load(Ordering::SeqCst) {
                0 => continue,
                sig => return Err(format!("stopped by signal {sig} before the key arrived")),
            },
            _ => {
                return Err(format!(
                    "cannot read stdin: {}",
                    std::io::Error::last_os_error()
                ))
            }
        }
    }
    match String::from_utf8(key) {
        Ok(key) if key.len() == KEY_LEN && key.bytes().all(|b| b.is_ascii_hexdigit()) => {
            KEY_READ.store(true, Ordering::SeqCst);
            Ok(key)
        }
        _ => Err("the first line of stdin is not a key".into()),
    }
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Reap every child that ends, orphans included, until `child` does; its exit code the
/// way a shell reports it.
fn reap_until(child: i32) -> u8 {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a writable int that outlives the call.
        let pid = unsafe { waitpid(-1, &mut status, 0) };
        if pid == child {
            return exit_code(status);
        }
        if pid < 0 && last_errno() != EINTR {
            eprintln!(
                "skillhost-init: waiting for the command: {}",
                std::io::Error::last_os_error()
            );
            return EXIT_INIT_FAILED;
        }
    }
}

/// A wait status as an exit code: the code itself, or 128 + the signal that killed it.
fn exit_code(status: i32) -> u8 {
    let signal = status & 0x7f;
    if signal == 0 {
        ((status >> 8) & 0xff) as u8
    } else {
        (128 + signal) as u8
    }
}

/// How many processes of this container the kernel killed for memory: cgroup v2's
/// `memory.events`, else cgroup v1's `memory.oom_control`; -1 when neither is readable.
fn oom_kills() -> i64 {
    let sources = [
        "/sys/fs/cgroup/memory.events",
        "/sys/fs/cgroup/memory/memory.oom_control",
    ];
    sources
        .iter()
        .find_map(|path| {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|t| oom_kill_count(&t))
        })
        .unwrap_or(-1)
}

/// The most memory the container's cgroup was charged at once: cgroup v2's `memory.peak`
/// (kernel 5.19 and later), else cgroup v1's `memory.max_usage_in_bytes`; -1 when neither.
fn peak_memory() -> i64 {
    let sources = [
        "/sys/fs/cgroup/memory.peak",
        "/sys/fs/cgroup/memory/memory.max_usage_in_bytes",
    ];
    sources
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok()?.trim().parse().ok())
        .unwrap_or(-1)
}

fn oom_kill_count(text: &str) -> Option<i64> {
    text.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        (fields.next() == Some("oom_kill"))
            .then(|| fields.next()?.parse().ok())
            .flatten()
    })
}

fn trailer(key: &str, code: u8, oom_kills: i64, peak_bytes: i64, outside: i32) -> Vec<u8> {
    format!("\0skillhost-exit:{key}:{code}:{oom_kills}:{peak_bytes}:{outside}\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(code: i32, pid: i32) -> SigInfo {
        SigInfo {
            signo: 15,
            errno: 0,
            code,
            _pad: 0,
            pid,
            uid: 0,
        }
    }

    #[test]
    fn root_in_any_id_or_group_is_found() {
        let ok = "Name:\tinit\nUid:\t10001\t10001\t10001\t10001\nGid:\t10001\t10001\t10001\t10001\nGroups:\t10001 \nNgid:\t0\n";
        assert_eq!(root_identity(ok), None, "Ngid is no group");
        assert_eq!(
            root_identity(&ok.replace("Groups:\t10001", "Groups:\t10001 0")),
            Some("Groups:\t10001 0 ")
        );
        assert!(root_identity(&ok.replace("Gid:\t10001\t10001", "Gid:\t0\t10001")).is_some());
        assert!(root_identity(&ok.replace("Uid:\t10001", "Uid:\t0")).is_some());
        assert_eq!(root_identity("Groups:\t\n"), None);
    }

    #[test]
    fn only_kill_from_another_pid_namespace_is_the_engines() {
        assert!(from_outside(&info(SI_USER, 0)), "docker stop");
        assert!(from_outside(&info(SI_KERNEL, 0)));
        assert!(!from_outside(&info(SI_USER, 7)), "kill(1) from the skill");
        assert!(
            !from_outside(&info(-1, 0)),
            "rt_sigqueueinfo, SI_QUEUE, pid 0"
        );
        assert!(!from_outside(&info(-6, 0)), "tgkill");
    }

    #[test]
    fn wait_statuses_become_shell_exit_codes() {
        assert_eq!(exit_code(0), 0);
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(9), 137, "SIGKILL");
        assert_eq!(exit_code(15 | 0x80), 143, "SIGTERM with a core flag");
    }

    #[test]
    fn the_oom_kill_line_is_found_in_both_cgroup_versions() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        let v2 = "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kill_count(v1), Some(2));
        assert_eq!(oom_kill_count(v2), Some(1));
        assert_eq!(oom_kill_count("oom_kill_disable 0\nunder_oom 0\n"), None);
    }

    #[test]
    fn the_trailer_is_one_line_starting_with_nul() {
        let key = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            trailer(key, 143, -1, 4096, 15),
            format!("\0skillhost-exit:{key}:143:-1:4096:15\n").into_bytes()
        );
    }
}
