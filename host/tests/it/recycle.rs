//! Recycled containers against the real engine: a call of the bundled python skill tries
//! to leave something behind in every way a process of the skill's user can, and the next
//! call, in the same container (the same hostname), looks for it and finds nothing. A
//! fork bomb, an OOM, a timeout and a signal to PID 1 each retire the container: the next
//! call has another; so does the host's deadline. Calls with their own environment go
//! cold.

use crate::common;

use std::time::Duration;

use common::{
    cleanup_if_built_now, copy_fixture, unique_name, workspace_root, BundledImage, ImageCleanup,
};
use serde_json::{json, Value};
use skillhost::{
    Host, HostConfig, InvocationPath, InvocationResult, InvokeOptions, RecyclePolicy, Status,
};

async fn bundled() -> Host {
    Host::new(HostConfig::new(vec![workspace_root().join("skills")]))
        .await
        .unwrap()
}

async fn python(host: &Host, code: &str, seconds: u64) -> InvocationResult {
    let options = InvokeOptions::default().timeout(Duration::from_secs(seconds));
    host.invoke_with("python", "run", json!({ "code": code }), options)
        .await
}

/// The hostname of the container a call ran in (a recycled container keeps its own).
const HOSTNAME: &str = "import socket\nprint(socket.gethostname())\n";

/// Run `code` and then, in the container it ran in or another, ask its hostname.
async fn hostname_after(host: &Host, code: &str, seconds: u64) -> (InvocationResult, String) {
    let result = python(host, code, seconds).await;
    let next = python(host, HOSTNAME, 20).await;
    assert_eq!(next.status, Status::Ok, "{next:?}");
    assert_eq!(next.path, InvocationPath::Recycled);
    (result, stdout(&next.output.unwrap()))
}

fn stdout(output: &Value) -> String {
    output["stdout"].as_str().unwrap().trim().to_string()
}

/// What the hostile call leaves behind: files in every writable place (a mode-000 file in
/// a mode-000 directory among them), a background process, a setsid double fork, a
/// process that ignores SIGTERM, a pending alarm, an abstract unix socket listener, SysV
/// shared memory, a semaphore set and a message queue, a POSIX message queue.
const PLANT: &str = r#"
import ctypes, os, signal, socket, subprocess, sys, time
libc = ctypes.CDLL(None, use_errno=True)
for place in ["/tmp", "/dev/shm"]:
    with open(f"{place}/left-behind", "w") as f:
        f.write("secret")
os.makedirs("/tmp/locked/inner")
open("/tmp/locked/inner/hidden", "w").write("secret")
os.chmod("/tmp/locked/inner/hidden", 0)
os.chmod("/tmp/locked/inner", 0)
os.chmod("/tmp/locked", 0)
IPC_CREAT = 0o1000
assert libc.shmget(0x5eed, 4096, IPC_CREAT | 0o600) >= 0, ctypes.get_errno()
assert libc.semget(0x5eed, 1, IPC_CREAT | 0o600) >= 0, ctypes.get_errno()
assert libc.msgget(0x5eed, IPC_CREAT | 0o600) >= 0, ctypes.get_errno()
libc.mq_open.restype = ctypes.c_int
assert libc.mq_open(b"/left-behind", os.O_CREAT | os.O_RDWR, 0o600, None) >= 0, ctypes.get_errno()
children = r'''
import os, signal, socket, time
# A listener on an abstract unix socket.
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("\0skillhost-left-behind")
s.listen(1)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
def ring(*_):
    open("/tmp/alarm-rang", "w").write("late")
signal.signal(signal.SIGALRM, ring)
signal.alarm(2)
while True:
    time.sleep(0.1)
'''
subprocess.Popen([sys.executable, "-c", children], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            open("/tmp/double-fork", "w").write(str(time.time()))
            time.sleep(0.05)
    os._exit(0)
os.wait()
time.sleep(0.3)
print(len(os.listdir("/proc")))
"#;

/// Looks for all of it after the alarm would have rung; prints what it found.
const LOOK: &str = r#"
import ctypes, json, os, socket, time
libc = ctypes.CDLL(None, use_errno=True)
time.sleep(2.5)
found = {}
for place in ["/tmp", "/dev/shm", "/dev/mqueue", "/tmp/work"]:
    # The runner's own, for this call: its work directory and where figures go.
    entries = [e for e in os.listdir(place) if e != "work" and not e.startswith(".skillhost-figures-")]
    if entries:
        found[place] = entries
others = [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, os.getpid(), os.getppid())]
mine = set()
for p in others:
    try:
        mine.add(open(f"/proc/{p}/cmdline").read().replace("\0", " "))
    except OSError:
        pass
# The runner and this code's process are expected; anything else was left behind.
strays = [c for c in mine if "left-behind" in c or "double" in c or "sleep" in c or "signal" in c]
if strays:
    found["processes"] = strays
for kind in ["shm", "sem", "msg"]:
    rows = open(f"/proc/sysvipc/{kind}").read().splitlines()[1:]
    if rows:
        found[kind] = rows
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect("\0skillhost-left-behind")
    found["socket"] = "connected"
except OSError:
    pass
print(json.dumps(found))
"#;

#[tokio::test]
async fn nothing_a_call_leaves_behind_reaches_the_next_in_the_same_container() {
    let _cleanup: BundledImage = cleanup_if_built_now("python");
    let host = bundled().await;
    let first = python(&host, &format!("{HOSTNAME}{PLANT}"), 20).await;
    assert_eq!(first.status, Status::Ok, "{first:?}");
    assert_eq!(first.path, InvocationPath::Recycled);
    let planted_in = stdout(first.output.as_ref().unwrap());
    let planted_in = planted_in.lines().next().unwrap().to_string();

    let look = python(&host, &format!("{HOSTNAME}{LOOK}"), 20).await;
    assert_eq!(look.status, Status::Ok, "{look:?}");
    assert_eq!(look.path, InvocationPath::Recycled);
    let out = stdout(look.output.as_ref().unwrap());
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some(planted_in.as_str()),
        "the same container"
    );
    assert_eq!(lines.next(), Some("{}"), "found what the call before left");

    // A tmpfs filled to ENOSPC is empty and usable again.
    let fill = "import errno\ntry:\n    with open('/tmp/fill', 'wb') as f:\n        while True:\n            f.write(b'x' * 1048576)\nexcept OSError as e:\n    assert e.errno == errno.ENOSPC, e\n    print('full')\n";
    let (filled, next_in) = hostname_after(&host, fill, 20).await;
    assert_eq!(stdout(&filled.output.unwrap()), "full");
    assert_eq!(next_in, planted_in, "still the same container");
    let reuse = "import os\nleft = [e for e in os.listdir('/tmp') if e != 'work' and not e.startswith('.skillhost-figures-')]\nassert left == [], left\nopen('/tmp/again', 'wb').write(b'y' * (32 << 20))\nprint('ok')\n";
    let again = python(&host, reuse, 20).await;
    assert_eq!(again.status, Status::Ok, "{again:?}");
    host.shutdown().await;
}

#[tokio::test]
async fn a_fork_bomb_an_oom_and_a_signal_to_pid_1_each_retire_the_container() {
    let _cleanup: BundledImage = cleanup_if_built_now("python");
    let host = bundled().await;
    let first = python(&host, HOSTNAME, 20).await;
    let mut before = stdout(&first.output.unwrap());
    let cases = [
        (
            "fork bomb",
            "import os\nfor _ in range(200):\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
            20,
        ),
        ("oom", "x = bytearray(400 << 20)\n", 20),
        (
            "signal to PID 1",
            "import os, signal\nos.kill(1, signal.SIGTERM)\nprint('sent')\n",
            20,
        ),
    ];
    for (name, code, seconds) in cases {
        let (result, after) = hostname_after(&host, code, seconds).await;
        assert_eq!(result.path, InvocationPath::Recycled, "{name}");
        assert_ne!(
            after, before,
            "{name}: the container was not retired ({result:?})"
        );
        if name == "oom" {
            let error = result.error.as_ref().unwrap();
            assert_eq!(error.code, "code_memory", "{name}: {result:?}");
        }
        before = after;
    }
    host.shutdown().await;
}

#[tokio::test]
async fn calls_with_their_own_env_are_not_recycled_and_echo_is() {
    let _python: BundledImage = cleanup_if_built_now("python");
    let _echo: BundledImage = cleanup_if_built_now("echo");
    // Two echo containers started ahead, as `serve --prewarm echo=2` does.
    let config = HostConfig::new(vec![workspace_root().join("skills")])
        .prewarm([("echo".to_string(), 2)].into());
    let host = Host::new(config).await.unwrap();
    let options =
        InvokeOptions::default().env([("LANG".to_string(), "C.UTF-8".to_string())].into());
    let with_env = host
        .invoke_with("python", "run", json!({"code": "print(1)"}), options)
        .await;
    assert_eq!(with_env.status, Status::Ok, "{with_env:?}");
    assert_ne!(with_env.path, InvocationPath::Recycled);
    host.prewarm("echo").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while host.idle_recycled("echo") < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no echo started ahead"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..3 {
        let said = host.invoke("echo", "say", json!({"text": "hi"})).await;
        assert_eq!(said.status, Status::Ok, "{said:?}");
        assert_eq!(said.path, InvocationPath::Recycled);
        assert_eq!(said.stats.peak_memory_bytes, None, "no per-call peak");
    }
    assert_eq!(
        host.idle_recycled("echo"),
        2,
        "the two started ahead served all three"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn per_caller_recycling_keeps_each_callers_calls_in_containers_of_their_own() {
    let _cleanup: BundledImage = cleanup_if_built_now("python");
    let config =
        HostConfig::new(vec![workspace_root().join("skills")]).recycle(RecyclePolicy::PerCaller);
    let host = Host::new(config).await.unwrap();
    let mut seen = Vec::new();
    for caller in ["alice", "bob", "alice", "bob"] {
        let options = InvokeOptions::default().caller(caller);
        let result = host
            .invoke_with("python", "run", json!({ "code": HOSTNAME }), options)
            .await;
        assert_eq!(
            (result.status, result.path),
            (Status::Ok, InvocationPath::Recycled),
            "{result:?}"
        );
        seen.push(stdout(&result.output.unwrap()));
    }
    assert_eq!(seen[0], seen[2], "alice's calls share her container");
    assert_eq!(seen[1], seen[3], "bob's too");
    assert_ne!(seen[0], seen[1], "alice and bob never share one");
    host.shutdown().await;
}

#[tokio::test]
async fn a_call_past_the_hosts_deadline_retires_its_container() {
    let cleanup = ImageCleanup::default();
    let name = unique_name("recycled-deadline");
    let dir = copy_fixture("probe", &name);
    let manifest = dir.path().join(&name).join("skill.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace(
            "  network: none\n",
            "  network: none\n  recycle: {containers: 1}\n",
        ),
    )
    .unwrap();
    let host = Host::new(HostConfig::new(vec![dir.path().to_path_buf()]))
        .await
        .unwrap();
    let first = host.invoke(&name, "ok", json!({})).await;
    cleanup.add(first.image.clone().unwrap());
    assert_eq!(
        (first.status, first.path),
        (Status::Ok, InvocationPath::Recycled),
        "{first:?}"
    );
    assert_eq!(host.idle_recycled(&name), 1);
    let options = InvokeOptions::default().timeout(Duration::from_secs(2));
    let slow = host
        .invoke_with(&name, "sleep", json!({"seconds": 30}), options)
        .await;
    assert_eq!(
        (slow.status, slow.path),
        (Status::Timeout, InvocationPath::Recycled),
        "{slow:?}"
    );
    assert_eq!(host.idle_recycled(&name), 0, "retired, not kept");
    let again = host.invoke(&name, "ok", json!({})).await;
    assert_eq!(again.status, Status::Ok, "{again:?}");
    host.shutdown().await;
}
