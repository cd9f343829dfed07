"""A real `skillhost serve` (the repository's binary) over the probe fixture skill and the
real Docker Engine: no mock of the service, none of Docker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, List, Tuple

import pytest

REPO = Path(__file__).resolve().parents[3]
BINARY = Path(os.environ.get("SKILLHOST_BIN", REPO / "target" / "debug" / "skillhost"))
PROBE = f"it-py-probe-{os.getpid()}"


def wait_for(condition: Callable[[], bool], what: str, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {limit}s"
        time.sleep(0.05)


def make_token(directory: Path, name: str = "py") -> Tuple[str, Path]:
    """A new bearer token, and a tokens file in `directory` that holds its entry."""
    made = subprocess.run([str(BINARY), "token", name], capture_output=True, text=True, check=True)
    entry = "\n".join(l for l in made.stderr.splitlines() if not l.startswith("#"))
    tokens = directory / "tokens.toml"
    tokens.write_text(entry + "\n")
    return made.stdout.strip(), tokens


class Service:
    """One `skillhost serve` process."""

    def __init__(self, skills: Path, flags: List[str]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="skillhost-py-"))
        self.socket = self.dir / "s.sock"
        self.process = subprocess.Popen(
            [str(BINARY), "--skills-dir", str(skills), "--format", "json", "serve",
             "--socket", str(self.socket), *flags],
            cwd=self.dir,
            stdout=subprocess.PIPE,
            text=True,
        )
        text = ""
        assert self.process.stdout is not None
        while True:
            line = self.process.stdout.readline()
            assert line, "skillhost serve exited before listening; see its stderr"
            text += line
            try:
                started = json.loads(text)
                break
            except ValueError:
                continue
        self.instance: str = started["instance"]
        self.tcp = next((e for e in started["listening"] if e.startswith("http://")), None)
        self.server = f"unix:{self.socket}"

    def containers(self) -> int:
        out = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=io.skillhost.instance={self.instance}"],
            capture_output=True, text=True, check=True,
        ).stdout
        return len(out.split())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        ids = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=io.skillhost.instance={self.instance}"],
            capture_output=True, text=True,
        ).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def skills() -> Iterator[Path]:
    """The probe fixture, renamed to this run's own skill; its image is removed at the end."""
    assert BINARY.exists(), f"{BINARY} is missing: run `cargo build -p skillhost` first"
    subprocess.run([str(BINARY), "images", "build"], cwd=REPO, check=True, capture_output=True)
    root = Path(tempfile.mkdtemp(prefix="skillhost-py-skills-"))
    shutil.copytree(REPO / "host" / "tests" / "fixtures" / "probe", root / PROBE)
    manifest = root / PROBE / "skill.yaml"
    manifest.write_text(manifest.read_text().replace("name: FIXTURE", f"name: {PROBE}"))
    try:
        yield root
    finally:
        images = subprocess.run(
            ["docker", "images", "-q", "--filter", f"label=io.skillhost.skill={PROBE}"],
            capture_output=True, text=True,
        ).stdout.split()
        if images:
            subprocess.run(["docker", "rmi", "-f", *set(images)], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def service(skills: Path) -> Iterator[Service]:
    """The service most tests share, with its probe image built once."""
    svc = Service(skills, [])
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture
def start_service(skills: Path) -> Iterator:
    """A factory for services with their own flags, stopped after the test."""
    started: List[Service] = []

    def start(*flags: str) -> Service:
        svc = Service(skills, list(flags))
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.stop()


@pytest.fixture
def probe() -> str:
    return PROBE


@pytest.fixture(scope="session")
def bundled_service() -> Iterator[Service]:
    """A service over the repository's bundled skills (python and shell take sessions);
    the images this run built for any of them are removed at the end."""
    assert BINARY.exists(), f"{BINARY} is missing: run `cargo build -p skillhost` first"
    subprocess.run([str(BINARY), "images", "build"], cwd=REPO, check=True, capture_output=True)
    listed = json.loads(subprocess.run(
        [str(BINARY), "--skills-dir", str(REPO / "skills"), "--format", "json", "list"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout)
    built_here = [s["image"] for s in listed["skills"] if not s["present"]]
    svc = Service(REPO / "skills", [])
    try:
        yield svc
    finally:
        svc.stop()
        volumes = subprocess.run(
            ["docker", "volume", "ls", "-q", "--filter", f"label=io.skillhost.instance={svc.instance}"],
            capture_output=True, text=True,
        ).stdout.split()
        if volumes:
            subprocess.run(["docker", "volume", "rm", "-f", *volumes], capture_output=True)
        if built_here:
            subprocess.run(["docker", "rmi", "-f", *built_here], capture_output=True)
