"""Sessions through the Python client, against a real `skillhost serve` of the bundled
python and shell skills and the real engine."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess

import pytest

from skillhost import (
    AsyncClient,
    Client,
    InvocationPath,
    NotFound,
    SessionKind,
    Status,
)


def session_remains(id: str) -> int:
    """Containers and volumes of session `id` left on the engine."""
    containers = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=io.skillhost.session={id}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    volumes = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", f"label=io.skillhost.session={id}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    return len(containers) + len(volumes)


def test_a_python_session_keeps_variables_and_files(bundled_service):
    with Client(bundled_service.server) as client:
        with client.session("python") as session:
            assert session.info.mode is SessionKind.PROCESS
            session.invoke("run", {"code": "x = 1"}).raise_for_status()
            session.invoke("run", {"code": "x += 1"}).raise_for_status()
            result = session.invoke("run", {"code": "print(x)"})
            assert result.output["stdout"] == "2\n"
            assert result.path is InvocationPath.SESSION
            assert result.session_id == session.id and not result.state_reset

            data = os.urandom(1 << 20)
            session.files.write("in/data.bin", data)
            digest = session.invoke("run", {"code": (
                "import hashlib\n"
                "print(hashlib.sha256(open('in/data.bin','rb').read()).hexdigest())"
            )})
            assert digest.output["stdout"].strip() == hashlib.sha256(data).hexdigest()
            assert session.files.read("in/data.bin") == data
            names = {f.path: f.kind for f in session.files.list()}
            assert names["in"] == "directory" and names["in/data.bin"] == "file"
            session.files.delete("in/data.bin")
            with pytest.raises(NotFound) as missing:
                session.files.read("in/data.bin")
            assert missing.value.code == "file_not_found"
            assert [s.id for s in client.sessions()] == [session.id]
            again = client.get_session(session.id)
            assert again.invoke("run", {"code": "print(x * 21)"}).output["stdout"] == "42\n"
            id = session.id
    assert session_remains(id) == 0


def test_a_session_ends_when_its_block_raises(bundled_service):
    with Client(bundled_service.server) as client:
        with pytest.raises(RuntimeError):
            with client.session("shell") as session:
                id = session.id
                raise RuntimeError("the agent failed")
        assert client.sessions() == []
        with pytest.raises(NotFound) as gone:
            client.get_session(id)
        assert gone.value.code == "unknown_session"
    assert session_remains(id) == 0


def test_the_async_client_has_the_same_sessions(bundled_service):
    async def run() -> str:
        async with AsyncClient(bundled_service.server) as client:
            async with client.session("shell", idle_timeout_ms=60_000) as session:
                await session.files.write("note.txt", b"async\n")
                result = await session.invoke("run", {"command": "cat note.txt; echo more >> note.txt"})
                assert result.status is Status.OK and result.output["stdout"] == "async\n"
                assert await session.files.read("note.txt") == b"async\nmore\n"
                info = await session.keep_alive()
                assert info.idle_timeout_ms == 60_000
                return session.id

    id = asyncio.run(run())
    assert session_remains(id) == 0


def test_plain_calls_of_a_recycling_skill_are_recycled_and_find_nothing_of_the_last(bundled_service):
    """The bundled python skill opts in to `run.recycle`: plain calls reuse a container
    (the same hostname) and each finds /tmp as the runner leaves it for a fresh call;
    a call with its own env gets a container of its own."""
    probe = (
        "import os, socket\n"
        "left = sorted(e for e in os.listdir('/tmp') if e != 'work' and not e.startswith('.skillhost-'))\n"
        "open('/tmp/mine', 'w').write('x')\n"
        "print(socket.gethostname(), left)\n"
    )
    with Client(bundled_service.server) as client:
        first = client.invoke("python", "run", {"code": probe})
        second = client.invoke("python", "run", {"code": probe})
        for result in (first, second):
            result.raise_for_status()
            assert result.path is InvocationPath.RECYCLED
            assert result.stats.peak_memory_bytes is None
        host_1, left_1 = first.output["stdout"].split(" ", 1)
        host_2, left_2 = second.output["stdout"].split(" ", 1)
        assert host_1 == host_2, "the same container served both"
        assert left_1.strip() == left_2.strip() == "[]"
        own = client.invoke("python", "run", {"code": "print(1)"}, env={"LANG": "C.UTF-8"})
        own.raise_for_status()
        assert own.path is not InvocationPath.RECYCLED
