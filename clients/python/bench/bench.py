"""`print(1+1)` from Python: skillhost's python skill through the Python client, against a
hardened `docker run` of `python3 -c 'print(1+1)'` and, where it installs from PyPI,
llm-sandbox running the same code in a fresh session, all on the same local python image
and in the same run. Then sessions: opening a python session (a spare, on the unix
socket), one step `x += 1` in it, and llm-sandbox's session (open, one run, close).

    python3 -m venv /tmp/bench-venv
    /tmp/bench-venv/bin/pip install ./clients/python 'llm-sandbox[docker]'
    cargo build --release -p skillhost
    /tmp/bench-venv/bin/python clients/python/bench/bench.py [--rounds N]

It starts its own `skillhost serve` (the release binary) with `--prewarm python=2`,
prints a Markdown table, and removes what it made (the service's containers, and the
image tag it derives for llm-sandbox, which runs `python` where the image has `python3`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Optional

from skillhost import Client

REPO = Path(__file__).resolve().parents[3]
BINARY = REPO / "target" / "release" / "skillhost"
IMAGE = "skillhost/python:latest"
LLM_SANDBOX_IMAGE = "skillhost-bench/llm-sandbox-python:latest"
CODE = "print(1+1)"


def percentile(samples: List[float], p: int) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) * p // 100, len(ordered) - 1)]


def timed(fn: Callable[[], None]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def docker_run() -> None:
    """The baseline: the python skill's limits and hardening, on the same image."""
    out = subprocess.run(
        ["docker", "run", "--rm", "-i", "--user", "10001:10001", "--cap-drop", "ALL",
         "--security-opt", "no-new-privileges:true", "--read-only",
         "--memory", "256m", "--memory-swap", "256m", "--cpus", "1", "--pids-limit", "64",
         "--tmpfs", "/tmp:rw,noexec,nosuid,nodev,size=64m", "--network", "none",
         "--init", "--log-driver", "none", "--label", "io.skillhost.managed=true",
         IMAGE, "python3", "-c", CODE],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "2", out


class Service:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="skillhost-bench-"))
        self.socket = self.dir / "s.sock"
        self.process = subprocess.Popen(
            [str(BINARY), "--skills-dir", str(REPO / "skills"), "--format", "json", "serve",
             "--socket", str(self.socket), "--prewarm", "python=2"],
            cwd=self.dir, stdout=subprocess.PIPE, text=True,
        )
        text = ""
        while True:
            line = self.process.stdout.readline()
            assert line, "skillhost serve exited"
            text += line
            try:
                json.loads(text)
                break
            except ValueError:
                continue

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def gauge_reaches(client: Client, gauge: str, count: int = 2) -> None:
    """Wait until the service's `gauge` for the python skill is `count`."""
    line = f'{gauge}{{skill="python"}} {count}'
    deadline = time.monotonic() + 120
    while line not in client._http.get("/metrics").text:
        assert time.monotonic() < deadline, f"{gauge} of python did not reach {count}"
        time.sleep(0.02)


def pool_full(client: Client) -> None:
    gauge_reaches(client, "skillhost_prewarm_ready")


def spares_full(client: Client) -> None:
    gauge_reaches(client, "skillhost_session_spares_ready")


def sessions(client: Client, rounds: int) -> List[tuple]:
    """Opening a python session (from the spares), and one step in one."""
    opened: List[float] = []
    for _ in range(rounds):
        spares_full(client)
        started = time.perf_counter()
        session = client.session("python")
        opened.append((time.perf_counter() - started) * 1000)
        session.close()
    spares_full(client)
    steps: List[float] = []
    with client.session("python") as session:
        session.invoke("run", {"code": "x = 0"}).raise_for_status()
        for i in range(rounds * 5):
            started = time.perf_counter()
            result = session.invoke("run", {"code": "x += 1"})
            steps.append((time.perf_counter() - started) * 1000)
            assert result.ok and result.path.value == "session", result
        assert session.invoke("run", {"code": "print(x)"}).output["stdout"] == f"{rounds * 5}\n"
    return [("skillhost: open a python session (a spare), unix socket", opened),
            ("skillhost: one step `x += 1` in a python session, HTTP", steps)]


def llm_sandbox_open_run_close() -> Optional[Callable[[], float]]:
    """llm-sandbox's session, whole: open, one run, close."""
    try:
        from llm_sandbox import SandboxSession
    except ImportError:
        return None

    def run() -> float:
        started = time.perf_counter()
        with SandboxSession(lang="python", image=LLM_SANDBOX_IMAGE, keep_template=True,
                            skip_environment_setup=True, verbose=False) as session:
            assert session.run("x = 1\nprint(x + 1)").stdout.strip() == "2"
        return (time.perf_counter() - started) * 1000

    return run


def llm_sandbox_session() -> Optional[Callable[[], float]]:
    """One fresh llm-sandbox session running CODE: the time to its result; the whole
    session (with its close) is returned by the call's own timing."""
    try:
        from llm_sandbox import SandboxSession
    except ImportError:
        return None
    # llm-sandbox runs `python`; the image has `python3`. Nothing else differs.
    build = subprocess.run(
        ["docker", "build", "-q", "-t", LLM_SANDBOX_IMAGE, "-"],
        input=f"FROM {IMAGE}\nUSER root\nRUN ln -sf /usr/bin/python3 /usr/local/bin/python\n",
        capture_output=True, text=True,
    )
    if build.returncode != 0:
        print(f"llm-sandbox skipped: cannot derive its image: {build.stderr}")
        return None

    def run() -> float:
        started = time.perf_counter()
        with SandboxSession(lang="python", image=LLM_SANDBOX_IMAGE, keep_template=True,
                            skip_environment_setup=True, verbose=False) as session:
            result = session.run(CODE)
            to_result = (time.perf_counter() - started) * 1000
            assert result.stdout.strip() == "2", result
        return to_result

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--llm-sandbox-rounds", type=int, default=5)
    args = parser.parse_args()

    service = Service()
    client = Client(f"unix:{service.socket}")
    try:
        client.invoke("python", "run", {"code": CODE}).raise_for_status()  # builds the image
        pool_full(client)
        docker, ours = [], []
        for _ in range(args.rounds):
            docker.append(timed(docker_run))

            def call() -> None:
                result = client.invoke("python", "run", {"code": CODE}).raise_for_status()
                assert result.output["stdout"].strip() == "2", result
                assert result.path.value == "prewarmed", result.path

            ours.append(timed(call))
            pool_full(client)

        sandbox = llm_sandbox_session()
        to_result, whole = [], []
        if sandbox is not None:
            for _ in range(args.llm_sandbox_rounds):
                started = time.perf_counter()
                to_result.append(sandbox())
                whole.append((time.perf_counter() - started) * 1000)

        session_rows = sessions(client, args.rounds)
        whole_session = llm_sandbox_open_run_close() if sandbox is not None else None
        if whole_session is not None:
            session_rows.append(("llm-sandbox: a session (open, one run, close)",
                                  [whole_session() for _ in range(args.llm_sandbox_rounds)]))

        base = statistics.median(docker)
        print(f"\n`print(1+1)` on {IMAGE}; {args.rounds} rounds "
              f"({args.llm_sandbox_rounds} for llm-sandbox)\n")
        print("| | median ms | p95 ms | median / docker run |")
        print("|---|---:|---:|---:|")
        rows = [("docker run --rm -i python3 -c (hardened), whole process", docker),
                ("skillhost python skill, Python client, prewarmed", ours)]
        if to_result:
            rows += [("llm-sandbox, fresh session, to the result", to_result),
                     ("llm-sandbox, fresh session, with its close", whole)]
        for name, samples in rows:
            median = statistics.median(samples)
            print(f"| {name} | {median:.1f} | {percentile(samples, 95):.1f} | {median / base:.3f}x |")
        print(f"\nSessions; {args.rounds} opens, {args.rounds * 5} steps\n")
        print("| | median ms | p95 ms |")
        print("|---|---:|---:|")
        for name, samples in session_rows:
            print(f"| {name} | {statistics.median(samples):.1f} | {percentile(samples, 95):.1f} |")
    finally:
        client.close()
        service.stop()
        subprocess.run(["docker", "rmi", "-f", LLM_SANDBOX_IMAGE], capture_output=True)


if __name__ == "__main__":
    main()
