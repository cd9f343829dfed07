"""The python skill: run untrusted Python code, speaking skillhost protocol v1.

One request line arrives on stdin; one result frame leaves on stdout. The code runs in
a child process whose output is captured up to a bound, so a flood from the code is
truncated here rather than breaking the protocol.
"""

import base64
import json
import os
import subprocess
import sys
import threading

CAPTURE_LIMIT = 1 << 20  # bytes kept per stream
FILE_LIMIT = 256 << 10  # bytes returned per file
MAX_FILES = 64


def send(frame):
    sys.stdout.write(json.dumps(frame) + "\n")
    sys.stdout.flush()


def fail(request_id, code, message):
    send({"type": "result", "id": request_id, "ok": False,
          "error": {"code": code, "message": message}})


def capture(pipe, sink):
    """Read a pipe to its end, keeping at most CAPTURE_LIMIT bytes."""
    kept = bytearray()
    dropped = False
    while True:
        chunk = pipe.read(65536)
        if not chunk:
            break
        room = CAPTURE_LIMIT - len(kept)
        kept.extend(chunk[:room])
        dropped = dropped or len(chunk) > room
    sink.append((bytes(kept), dropped))


def inside(workdir, name):
    path = os.path.normpath(os.path.join(workdir, name))
    return path if path.startswith(workdir + os.sep) else None


def snapshot(workdir):
    seen = {}
    for root, _dirs, names in os.walk(workdir):
        for name in names:
            path = os.path.join(root, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            seen[path] = (st.st_mtime_ns, st.st_size)
    return seen


def encode(path):
    with open(path, "rb") as f:
        data = f.read(FILE_LIMIT + 1)
    truncated = len(data) > FILE_LIMIT
    data = data[:FILE_LIMIT]
    try:
        return {"content": data.decode("utf-8"), "encoding": "utf-8", "truncated": truncated}
    except UnicodeDecodeError:
        return {"content": base64.b64encode(data).decode("ascii"), "encoding": "base64",
                "truncated": truncated}


def run(request):
    request_id = request["id"]
    args = request.get("args") or {}
    code = args.get("code")
    if not isinstance(code, str):
        return fail(request_id, "invalid_args", "code must be a string")
    workdir = "/workspace" if os.access("/workspace", os.W_OK) else "/tmp/work"
    os.makedirs(workdir, exist_ok=True)
    for name, content in (args.get("files") or {}).items():
        path = inside(workdir, name)
        if path is None:
            return fail(request_id, "invalid_args", f"file {name!r} is outside the work directory")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(content)
    before = snapshot(workdir)

    # Leave a second for the answer: past the deadline the host kills everything.
    deadline_ms = request.get("deadline_ms")
    timeout = max(0.5, deadline_ms / 1000 - 1.0) if deadline_ms else None
    child = subprocess.Popen([sys.executable, "-c", code], cwd=workdir,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = [], []
    readers = [threading.Thread(target=capture, args=(child.stdout, out)),
               threading.Thread(target=capture, args=(child.stderr, err))]
    for reader in readers:
        reader.start()
    try:
        child.stdin.write(args.get("stdin", "").encode("utf-8"))
        child.stdin.close()
    except BrokenPipeError:
        pass
    timed_out = False
    try:
        exit_code = child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        child.kill()
        exit_code = child.wait()
    for reader in readers:
        reader.join()

    files = {}
    for path, stamp in sorted(snapshot(workdir).items()):
        if before.get(path) != stamp and len(files) < MAX_FILES:
            files[os.path.relpath(path, workdir)] = encode(path)
    (stdout, out_dropped), (stderr, err_dropped) = out[0], err[0]
    send({"type": "result", "id": request_id, "ok": True, "output": {
        "stdout": stdout.decode("utf-8", "replace"),
        "stderr": stderr.decode("utf-8", "replace"),
        "exit_code": exit_code,
        "timed_out": timed_out,
        "truncated": out_dropped or err_dropped,
        "files": files,
    }})


def main():
    line = sys.stdin.readline()
    try:
        request = json.loads(line)
        request_id = request["id"]
    except (ValueError, KeyError, TypeError) as e:
        return fail("", "bad_request", f"malformed request: {e}")
    if str(request.get("protocol", "")).split(".")[0] != "1":
        return fail(request_id, "unsupported_protocol", "this skill speaks protocol 1.x")
    if request.get("action") != "run":
        return fail(request_id, "unknown_action", f"no action {request.get('action')!r}; this skill has: run")
    run(request)


if __name__ == "__main__":
    main()
