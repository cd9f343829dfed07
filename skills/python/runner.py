"""The python skill: run untrusted Python code, speaking skillhost protocol v1.

One request line arrives on stdin; one result frame leaves on stdout: `ok` when the code
finished normally (exit 0), otherwise a failure whose code says what happened
(`code_exit`, `code_timeout`, `code_memory`, `code_killed`, `code_output_limit`) and
whose details are the same output. The code runs in a child process, in a process group of its own, whose output is captured up to a bound.
The answer never waits on more than the code's own run: when its main process ends, the
rest of its group gets a short grace and is then killed; when a capture bound is full,
or the time is up, the whole group is killed at once, and what was printed is kept.

The manifest prestarts this runner: it waits on stdin with its imports done, and the
child is a fork of it that runs the code as `python3 -c` would, so no interpreter starts
on the request's path. With PYTHONHASHSEED given, which only a new interpreter honours,
the child execs `python3 -c` instead.

Figures the code leaves open in matplotlib (shown or not) come back as PNG images in
`images`. A skill may name modules in SKILLHOST_PYTHON_PRELOAD (python-data does:
pandas, matplotlib, ...): a prestarted runner imports them while it waits, so the code's
own `import` of them costs nothing.

In a `process` session (SKILLHOST_MODE=serve), the runner answers request after request
and runs each `code` in itself, in one `__main__` namespace, like a notebook's cells:
variables, imports and functions stay for the next request. See `Session`.
"""

import atexit
import base64
import builtins
import json
import os
import select
import signal
import stat
import sys
import threading
import time
import types

CAPTURE_LIMIT = 1 << 20  # bytes kept per stream
FILE_LIMIT = 256 << 10  # bytes returned per file
MAX_FILES = 64
MAX_IMAGES = 16
IMAGE_LIMIT = 2 << 20  # bytes of PNG per image
# After the code's main process ends, how long what it started may still write.
GRACE = 0.2
# After the group is killed, how long to wait for the pipes to close (a process that
# left the group with setsid() can hold them open; it is not waited for).
DRAIN = 0.2


def send(frame):
    sys.stdout.write(json.dumps(frame) + "\n")
    sys.stdout.flush()


def fail(request_id, code, message):
    send({"type": "result", "id": request_id, "ok": False,
          "error": {"code": code, "message": message}})


def inside(workdir, name):
    path = os.path.normpath(os.path.join(workdir, name))
    return path if path.startswith(workdir + os.sep) else None


def snapshot(workdir):
    seen = {}
    for root, _dirs, names in os.walk(workdir):
        for name in names:
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            # Only regular files: a FIFO, socket, device or link (to /dev/zero, say)
            # would block or never end the read.
            if stat.S_ISREG(st.st_mode):
                seen[path] = (st.st_mtime_ns, st.st_size)
    return seen


def encode(path):
    # Not following a link and not blocking; checked again, as the name may have become
    # a FIFO since it was listed.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = f.read(FILE_LIMIT + 1)
    truncated = len(data) > FILE_LIMIT
    data = data[:FILE_LIMIT]
    try:
        return {"content": data.decode("utf-8"), "encoding": "utf-8", "truncated": truncated}
    except UnicodeDecodeError:
        return {"content": base64.b64encode(data).decode("ascii"), "encoding": "base64",
                "truncated": truncated}


def file_bytes(name, content):
    """A request file's bytes: a string is UTF-8 text, `{"base64": ...}` any bytes; a
    ValueError naming the file otherwise."""
    if isinstance(content, str):
        return content.encode("utf-8")
    if isinstance(content, dict) and set(content) == {"base64"} and isinstance(content["base64"], str):
        try:
            return base64.b64decode(content["base64"], validate=True)
        except ValueError:
            raise ValueError(f"file {name!r}: its base64 is not valid") from None
    raise ValueError(f"file {name!r}: give a string (UTF-8 text) or {{\"base64\": \"...\"}}")


def write_files(workdir, files):
    """Write the request's files; a message when one is outside the work directory or
    its content is neither text nor base64."""
    for name, content in files.items():
        path = inside(workdir, name)
        if path is None:
            return f"file {name!r} is outside the work directory"
        try:
            data = file_bytes(name, content)
        except ValueError as e:
            return str(e)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    return None


def cgroup_value(paths):
    """The first of `paths` (file, key) that reads: a key's number in a flat-keyed file,
    or a file's whole number (key None); None when none does."""
    for path, key in paths:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        try:
            if key is None:
                return int(text.strip())
            for line in text.splitlines():
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
        except ValueError:
            continue
    return None


def oom_kills():
    """How many processes the kernel has killed for memory in this container (cgroup v2
    or v1); None where the count cannot be read."""
    return cgroup_value([("/sys/fs/cgroup/memory.events", "oom_kill"),
                         ("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill")])


def memory_limit():
    return cgroup_value([("/sys/fs/cgroup/memory.max", None),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes", None)])


def last_line(text):
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def did_not_finish(output, timeout, ooms_before):
    """Why the code did not finish normally, as (code, message); None when it did
    (docs/results.md, "Code that did not finish normally")."""
    if output["timed_out"]:
        return "code_timeout", f"the code ran past its time ({timeout:.1f}s) and was stopped"
    if output["truncated"]:
        return ("code_output_limit", f"the code printed more than {CAPTURE_LIMIT >> 20} MiB "
                "on stdout or stderr and was stopped")
    exit_code = output["exit_code"]
    ooms_after = oom_kills()
    if ooms_before is not None and ooms_after is not None and ooms_after > ooms_before:
        limit = memory_limit()
        within = f" ({limit >> 20} MiB)" if limit and limit < 1 << 50 else ""
        return "code_memory", f"the code was killed for memory: it went past the skill's memory limit{within}"
    if exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return "code_killed", f"the code was killed by {name}"
    if exit_code > 0:
        message = f"the code exited with status {exit_code}"
        last = last_line(output["stderr"])
        return "code_exit", f"{message}: {last}" if last else message
    return None


def answer(request_id, output, timeout, ooms_before):
    """The result frame for the code's `output`: ok when it finished normally, else a
    failure whose details are the same output."""
    problem = did_not_finish(output, timeout, ooms_before)
    if problem is None:
        return {"type": "result", "id": request_id, "ok": True, "output": output}
    code, message = problem
    return {"type": "result", "id": request_id, "ok": False,
            "error": {"code": code, "message": message, "details": output}}


def changed_files(workdir, before):
    """The regular files created or changed since `before`, encoded, up to MAX_FILES."""
    files = {}
    for path, stamp in sorted(snapshot(workdir).items()):
        if before.get(path) != stamp and len(files) < MAX_FILES:
            encoded = encode(path)
            if encoded is not None:
                files[os.path.relpath(path, workdir)] = encoded
    return files


def preload():
    """Import the modules SKILLHOST_PYTHON_PRELOAD names, while the runner waits for its
    request: only when none is waiting yet (a prestarted container, made ahead), so a
    cold call whose request is already here does not pay for imports its code may not
    use. A module that cannot be imported is left for the code to find out."""
    names = [n for n in os.environ.get("SKILLHOST_PYTHON_PRELOAD", "").split(",") if n]
    if not names or select.select([0], [], [], 0)[0]:
        return
    import importlib
    import warnings
    for name in names:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importlib.import_module(name)
        except Exception:
            pass


def quiet_plots():
    """Agg cannot show a window: the code's `plt.show()` is not a warning, its figures
    come back as images."""
    import warnings
    warnings.filterwarnings("ignore", message=".*non-interactive, and thus cannot be shown")


def figures():
    """The figures matplotlib holds open, as PNG images, closed once taken; [] when the
    code did not use pyplot."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return []
    import io
    images = []
    for number in plt.get_fignums():
        figure = plt.figure(number)
        if len(images) < MAX_IMAGES:
            buffer = io.BytesIO()
            try:
                figure.savefig(buffer, format="png")
            except Exception as error:  # a figure the code broke: said, not fatal
                print(f"figure {number} could not be drawn: {error}", file=sys.stderr)
                plt.close(figure)
                continue
            data = buffer.getvalue()
            width, height = figure.canvas.get_width_height()
            if len(data) <= IMAGE_LIMIT:
                images.append({"format": "png", "width": width, "height": height,
                               "bytes": len(data), "base64": base64.b64encode(data).decode("ascii")})
        plt.close(figure)
    return images


def write_figures(directory):
    """In the code's process, at its end: its figures into `directory`, for the runner."""
    try:
        images = figures()
    except Exception:
        images = []
    if images:
        with open(os.path.join(directory, "images.json"), "w") as f:
            json.dump(images, f)


def read_figures(directory):
    try:
        with open(os.path.join(directory, "images.json")) as f:
            images = json.load(f)
    except (OSError, ValueError):
        images = []
    import shutil
    shutil.rmtree(directory, ignore_errors=True)
    return images


def kill_group(pgid):
    try:
        os.killpg(pgid, 9)
    except ProcessLookupError:
        pass


def supervise(pid, out_r, err_r, timeout):
    """Read the code's output while it runs; end its process group when its main process
    is done (after GRACE), when a capture bound is full, or at `timeout` seconds (None:
    however long it takes). Returns the output kept per stream, whether any was dropped,
    and whether the time ran out."""
    now = time.monotonic()
    deadline = None if timeout is None else now + timeout
    pidfd = os.pidfd_open(pid)
    kept = {out_r: bytearray(), err_r: bytearray()}
    open_pipes = {out_r, err_r}
    poller = select.poll()
    for fd in (out_r, err_r, pidfd):
        poller.register(fd, select.POLLIN)
    dropped = timed_out = main_done = killed = False
    stop_at = None  # once killed, or once the main process is done: stop reading then
    while open_pipes:
        now = time.monotonic()
        if stop_at is not None and now >= stop_at:
            if killed:
                break
            kill_group(pid)
            killed, stop_at = True, now + DRAIN
            continue
        if deadline is not None and now >= deadline and not killed:
            timed_out = True
            kill_group(pid)
            killed, stop_at = True, now + DRAIN
            continue
        limits = [t for t in (stop_at, None if killed else deadline) if t is not None]
        wait_ms = None if not limits else max(0, int((min(limits) - now) * 1000) + 1)
        for fd, _event in poller.poll(wait_ms):
            if fd == pidfd:
                poller.unregister(pidfd)
                main_done = True
                if stop_at is None:
                    stop_at = time.monotonic() + GRACE
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                poller.unregister(fd)
                open_pipes.discard(fd)
                continue
            room = CAPTURE_LIMIT - len(kept[fd])
            kept[fd].extend(chunk[:room])
            if len(chunk) > room and not dropped:
                # Full: nothing more of this run will be kept, so it need not go on.
                dropped = True
                kill_group(pid)
                killed, stop_at = True, time.monotonic() + DRAIN
    if not main_done:
        kill_group(pid)
    os.close(pidfd)
    for fd in (out_r, err_r):
        os.close(fd)
    return bytes(kept[out_r]), bytes(kept[err_r]), dropped, timed_out


def exit_status(exit):
    """The exit code `python3 -c` gives for a SystemExit."""
    if exit.code is None:
        return 0
    if isinstance(exit.code, int):
        return exit.code & 0xFF
    print(exit.code, file=sys.stderr)
    return 1


def run_child(code, workdir, stdin_r, out_w, err_w, parent_ends, figures_dir):
    """In the forked child: become `python3 -c CODE` in `workdir`, and never return."""
    status = 1
    try:
        os.setpgid(0, 0)
        os.chdir(workdir)
        for fd, target in ((stdin_r, 0), (out_w, 1), (err_w, 2)):
            os.dup2(fd, target)
        for fd in (stdin_r, out_w, err_w, *parent_ends):
            os.close(fd)
        if "PYTHONHASHSEED" in os.environ:
            os.execv(sys.executable, [sys.executable, "-c", code])
        sys.stdin = open(0, "r", encoding="utf-8", closefd=False)
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace",
                          buffering=1, closefd=False)
        sys.argv = ["-c"]
        sys.path.insert(0, "")
        main = types.ModuleType("__main__")
        main.__builtins__ = builtins
        sys.modules["__main__"] = main
        quiet_plots()
        try:
            exec(compile(code, "<string>", "exec"), main.__dict__)
            status = 0
        except SystemExit as exit:
            status = exit_status(exit)
        except BaseException as error:
            # As the interpreter prints it: from the code's frame, not this one's.
            # Imported here: a call whose code succeeds never pays for it.
            import traceback
            traceback.print_exception(type(error), error, error.__traceback__.tb_next)
            status = 1
        # What the interpreter does at exit: wait for threads, run atexit, flush.
        for thread in threading.enumerate():
            if thread is not threading.main_thread() and not thread.daemon:
                thread.join()
        # Before the atexit functions: matplotlib's closes every figure.
        write_figures(figures_dir)
        atexit._run_exitfuncs()
    except BaseException:
        try:
            import traceback
            traceback.print_exc()
        except BaseException:
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os._exit(status)


def run(request):
    request_id = request["id"]
    args = request.get("args") or {}
    code = args.get("code")
    if not isinstance(code, str):
        return fail(request_id, "invalid_args", "code must be a string")
    workdir = "/workspace" if os.access("/workspace", os.W_OK) else "/tmp/work"
    os.makedirs(workdir, exist_ok=True)
    written = write_files(workdir, args.get("files") or {})
    if written is not None:
        return fail(request_id, "invalid_args", written)
    before = snapshot(workdir)

    # Leave a second for the answer: past the deadline the host kills everything.
    deadline_ms = request.get("deadline_ms")
    timeout = max(0.5, deadline_ms / 1000 - 1.0) if deadline_ms else None
    ooms_before = oom_kills()
    import tempfile
    figures_dir = tempfile.mkdtemp(prefix=".skillhost-figures-", dir="/tmp")
    stdin_r, stdin_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        run_child(code, workdir, stdin_r, out_w, err_w, (stdin_w, out_r, err_r), figures_dir)
    try:
        # Set here as well, so the group exists before the parent may kill it.
        os.setpgid(pid, pid)
    except OSError:
        pass  # The child did it first, or has already exited.
    for fd in (stdin_r, out_w, err_w):
        os.close(fd)
    # Written from a thread: code that never reads its stdin must not block the runner.
    stdin_data = args.get("stdin", "").encode("utf-8")

    def feed():
        with os.fdopen(stdin_w, "wb") as child_stdin:
            try:
                child_stdin.write(stdin_data)
            except (BrokenPipeError, OSError):
                pass

    threading.Thread(target=feed, daemon=True).start()
    stdout, stderr, dropped, timed_out = supervise(pid, out_r, err_r, timeout)
    _, status = os.waitpid(pid, 0)
    exit_code = os.waitstatus_to_exitcode(status)

    send(answer(request_id, {
        "stdout": stdout.decode("utf-8", "replace"),
        "stderr": stderr.decode("utf-8", "replace"),
        "exit_code": exit_code,
        "timed_out": timed_out,
        "truncated": dropped,
        "files": changed_files(workdir, before),
        "images": read_figures(figures_dir),
    }, timeout, ooms_before))


class Timeout(BaseException):
    """Raised in a session's code when its time is up; not an Exception, so a bare
    `except Exception` in the code does not swallow it."""


class Session:
    """A `process` session: the code of every request runs in this process, in one
    namespace. The protocol keeps private copies of stdin and stdout; while code runs,
    its fds 1 and 2 are pipes whose output is captured, and fd 0 is /dev/null (its
    `stdin` argument is `sys.stdin`). A request's time is enforced by SIGALRM raising
    `Timeout` in the code; code that ignores it (a C call that never returns) is killed
    with the container by the host at the deadline, and the session's state with it."""

    def __init__(self):
        self.requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
        self.answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
        self.stderr_fd = os.dup(2)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1):
            os.dup2(devnull, fd)
        os.close(devnull)
        self.main = types.ModuleType("__main__")
        self.main.__builtins__ = builtins
        sys.modules["__main__"] = self.main
        sys.argv = [""]
        sys.path.insert(0, "")

    def send(self, frame):
        self.answers.write(json.dumps(frame) + "\n")
        self.answers.flush()

    def serve(self):
        import signal

        def alarm(_signum, _frame):
            raise Timeout()

        signal.signal(signal.SIGALRM, alarm)
        quiet_plots()
        for line in self.requests:
            request = parse(line)
            if isinstance(request, dict) and "frame" in request:
                self.send(request["frame"])
            else:
                self.send(self.run(request))

    def run(self, request):
        request_id = request["id"]
        args = request.get("args") or {}
        code = args.get("code")
        if not isinstance(code, str):
            return failure(request_id, "invalid_args", "code must be a string")
        workdir = "/workspace" if os.access("/workspace", os.W_OK) else "/tmp/work"
        os.makedirs(workdir, exist_ok=True)
        os.chdir(workdir)
        written = write_files(workdir, args.get("files") or {})
        if written is not None:
            return failure(request_id, "invalid_args", written)
        before = snapshot(workdir)
        deadline_ms = request.get("deadline_ms")
        timeout = max(0.5, deadline_ms / 1000 - 1.0) if deadline_ms else None
        ooms_before = oom_kills()
        stdout, stderr, dropped, timed_out, exit_code, images = self.execute(code, args.get("stdin", ""), timeout)
        return answer(request_id, {
            "stdout": stdout.decode("utf-8", "replace"),
            "stderr": stderr.decode("utf-8", "replace"),
            "exit_code": exit_code,
            "timed_out": timed_out,
            "truncated": dropped,
            "files": changed_files(workdir, before),
            "images": images,
        }, timeout, ooms_before)

    def execute(self, code, stdin, timeout):
        import io
        import signal

        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        capture = Capture(out_r, err_r)
        capture.start()
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.close(out_w)
        os.close(err_w)
        saved = (sys.stdin, sys.stdout, sys.stderr)
        sys.stdin = io.StringIO(stdin)
        # Line-buffered both: what the code prints interleaves with what its
        # subprocesses print as a notebook shows it.
        sys.stdout = open(1, "w", encoding="utf-8", buffering=1, closefd=False)
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)
        timed_out, exit_code = False, 0
        if timeout is not None:
            signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            exec(compile(code, "<cell>", "exec"), self.main.__dict__)
        except Timeout:
            timed_out, exit_code = True, 1
            print(f"Timeout: the code ran past its {timeout:.1f}s", file=sys.stderr)
        except SystemExit as exit:
            exit_code = exit_status(exit)
        except BaseException as error:
            import traceback
            traceback.print_exception(type(error), error, error.__traceback__.tb_next)
            exit_code = 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            try:
                images = figures()
            except BaseException:
                images = []
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except BaseException:
                    pass
            sys.stdin, sys.stdout, sys.stderr = saved
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 1)
            os.close(devnull)
            os.dup2(self.stderr_fd, 2)
        stdout, stderr, dropped = capture.finish()
        return stdout, stderr, dropped, timed_out, exit_code, images


class Capture(threading.Thread):
    """Reads a session's code's stdout and stderr while it runs, keeping up to
    CAPTURE_LIMIT of each; once the code is done, reads on for GRACE at most, as what the
    code started may still hold the pipes."""

    def __init__(self, out_r, err_r):
        super().__init__(daemon=True)
        self.fds = (out_r, err_r)
        self.kept = {out_r: bytearray(), err_r: bytearray()}
        self.dropped = False
        self.stop_at = None

    def run(self):
        poller = select.poll()
        open_fds = set(self.fds)
        for fd in self.fds:
            poller.register(fd, select.POLLIN)
        while open_fds:
            if self.stop_at is not None and time.monotonic() >= self.stop_at:
                break
            for fd, _event in poller.poll(50):
                chunk = os.read(fd, 65536)
                if not chunk:
                    poller.unregister(fd)
                    open_fds.discard(fd)
                    continue
                room = CAPTURE_LIMIT - len(self.kept[fd])
                self.kept[fd].extend(chunk[:room])
                self.dropped |= len(chunk) > room

    def finish(self):
        self.stop_at = time.monotonic() + GRACE
        self.join()
        for fd in self.fds:
            os.close(fd)
        out, err = self.fds
        return bytes(self.kept[out]), bytes(self.kept[err]), self.dropped


def failure(request_id, code, message):
    return {"type": "result", "id": request_id, "ok": False,
            "error": {"code": code, "message": message}}


def parse(line):
    """A request, or {"frame": ...} with the failure to answer instead."""
    try:
        request = json.loads(line)
        request_id = request["id"]
    except (ValueError, KeyError, TypeError) as e:
        return {"frame": failure("", "bad_request", f"malformed request: {e}")}
    if str(request.get("protocol", "")).split(".")[0] != "1":
        return {"frame": failure(request_id, "unsupported_protocol", "this skill speaks protocol 1.x")}
    if request.get("action") != "run":
        return {"frame": failure(request_id, "unknown_action",
                                 f"no action {request.get('action')!r}; this skill has: run")}
    return request


def main():
    preload()
    if os.environ.get("SKILLHOST_MODE") == "serve":
        return Session().serve()
    request = parse(sys.stdin.readline())
    if "frame" in request:
        send(request["frame"])
    else:
        run(request)
    # The answer is out: skip the interpreter's teardown (with the scientific stack
    # imported, a tenth of a second or more of finalizers), which the call would wait for.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
