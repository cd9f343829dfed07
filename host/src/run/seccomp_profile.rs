//! The seccomp profile every skill container runs under: an allowlist of our own.
//!
//! Docker's default profile permits `ptrace` on kernels 4.8 and later, so a skill could
//! attach to another process of its own container. This profile denies every syscall it
//! does not name (EPERM), so syscalls added to future kernels are refused until reviewed.
//! It names only the native architecture: 32-bit and x32 entry points are refused too.

use std::sync::LazyLock;

use serde_json::{json, Value};

/// The `security_opt` entry that applies [`PROFILE_JSON`].
pub static SECURITY_OPT: LazyLock<String> = LazyLock::new(|| format!("seccomp={}", *PROFILE_JSON));

/// The profile as the engine expects it in `HostConfig.SecurityOpt`.
pub static PROFILE_JSON: LazyLock<String> = LazyLock::new(|| profile().to_string());

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// Namespace flags of clone(2): CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID,
/// NEWNET. A clone asking for any of them is refused, like unshare(2) and setns(2).
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// The setuid and setgid bits of a file mode. No call may set them: a file a skill
/// leaves in a workspace must not run with its owner's rights on the host.
const SET_ID_BITS: u64 = 0o6000;

/// Calls that take a file mode, with the index of the mode argument. Each is allowed
/// only when the mode asks for neither set-id bit; asked with one, it fails EPERM.
/// (mkdir and mkdirat need no rule: the kernel drops those bits from a directory's mode.)
const MODE_ARGUMENT: &[(&str, u32)] = &[
    ("chmod", 1),
    ("creat", 1),
    ("fchmod", 1),
    ("fchmodat", 2),
    ("mknod", 1),
    ("mknodat", 2),
    ("open", 2),
    ("openat", 3),
];

/// personality(2) values that only select harmless execution domains, and the query.
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// Syscalls a process may make freely. Everything absent is refused; notably: ptrace,
/// process_vm_readv/writev, kcmp, pidfd_getfd, process_madvise (reading or steering other
/// processes); mount and the new mount API, pivot_root, chroot, unshare, setns (changing
/// the filesystem view or namespaces); keyctl, add_key, request_key (the kernel keyring
/// is not namespaced); bpf, perf_event_open, userfaultfd, io_uring_* (large kernel attack
/// surface); open_by_handle_at, name_to_handle_at (escape through file handles);
/// module, kexec, reboot, swap, clock, quota, syslog and NUMA policy calls.
pub const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "arch_prctl",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chown",
    "clock_getres",
    "clock_gettime",
    "clock_nanosleep",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchown",
    "fchownat",
    "fcntl",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstatfs",
    "fsync",
    "ftruncate",
    "futex",
    "futex_waitv",
    "futimesat",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getgroups",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresuid",
    "getrlimit",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "gettid",
    "gettimeofday",
    "getuid",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_setup",
    "io_submit",
    "ioctl",
    "ioprio_get",
    "ioprio_set",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedsend",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "nanosleep",
    "newfstatat",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recvfrom",
    "recvmmsg",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_tgsigqueueinfo",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "sendfile",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setdomainname",
    "setfsgid",
    "setfsuid",
    "setgid",
    "setgroups",
    "sethostname",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setresgid",
    "setresuid",
    "setreuid",
    "setrlimit",
    "setsid",
    "setsockopt",
    "setuid",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "socket",
    "socketpair",
    "splice",
    "stat",
    "statfs",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_settime",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_settime",
    "times",
    "tkill",
    "truncate",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "write",
    "writev",
];

fn profile() -> Value {
    let personality_rules = PERSONALITIES.iter().map(|value| {
        json!({
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}],
        })
    });
    let mut syscalls = vec![
        json!({"names": ALLOWED, "action": "SCMP_ACT_ALLOW"}),
        json!({
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{
                "index": 0,
                "value": CLONE_NAMESPACE_FLAGS,
                "valueTwo": 0,
                "op": "SCMP_CMP_MASKED_EQ",
            }],
        }),
        // clone3 passes its flags in memory, which seccomp cannot read: answer ENOSYS so
        // the C library falls back to clone, whose flags are checked above. openat2
        // likewise passes its mode in memory: ENOSYS sends callers to openat, whose mode
        // is checked below.
        json!({"names": ["clone3", "openat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}),
    ];
    syscalls.extend(personality_rules);
    syscalls.extend(MODE_ARGUMENT.iter().map(|(name, index)| {
        json!({
            "names": [name],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": index, "value": SET_ID_BITS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
        })
    }));
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "syscalls": syscalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_refuses_by_default() {
        let p: Value = serde_json::from_str(&PROFILE_JSON).unwrap();
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(p["defaultErrnoRet"], EPERM);
        assert!(SECURITY_OPT.starts_with("seccomp={"));
    }

    #[test]
    fn dangerous_syscalls_are_not_allowed() {
        for name in [
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "kcmp",
            "pidfd_getfd",
            "mount",
            "umount2",
            "pivot_root",
            "chroot",
            "unshare",
            "setns",
            "keyctl",
            "add_key",
            "bpf",
            "perf_event_open",
            "userfaultfd",
            "io_uring_setup",
            "open_by_handle_at",
            "init_module",
            "kexec_load",
            "reboot",
            "clone3",
            "personality",
        ] {
            assert!(!ALLOWED.contains(&name), "{name} must not be allowed");
        }
    }

    #[test]
    fn what_ordinary_programs_need_is_allowed() {
        for name in [
            "read",
            "write",
            "execve",
            "mmap",
            "futex",
            "exit_group",
            "wait4",
            "rt_sigaction",
            "getrandom",
            "epoll_wait",
            "pipe2",
            "socket",
            "statx",
            "rseq",
        ] {
            assert!(ALLOWED.contains(&name), "{name} must be allowed");
        }
    }

    #[test]
    fn calls_that_take_a_mode_are_allowed_only_without_set_id_bits() {
        let p: Value = serde_json::from_str(&PROFILE_JSON).unwrap();
        for (name, index) in MODE_ARGUMENT {
            assert!(
                !ALLOWED.contains(name),
                "{name} is allowed whatever its mode"
            );
            let rules: Vec<&Value> = p["syscalls"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|rule| rule["names"].as_array().unwrap().iter().any(|n| n == name))
                .collect();
            assert_eq!(rules.len(), 1, "{name}: {rules:?}");
            assert_eq!(
                rules[0]["args"],
                json!([{"index": index, "value": 0o6000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]),
                "{name}"
            );
        }
        assert!(!ALLOWED.contains(&"openat2") && !ALLOWED.contains(&"fchmodat2"));
    }

    #[test]
    fn the_allowlist_is_sorted_and_unique() {
        assert!(ALLOWED.windows(2).all(|w| w[0] < w[1]));
    }
}
