"""The client looks for the service where `skillhost serve` binds by default, whatever
the environment says of the user: both name the socket by the numeric uid."""

from __future__ import annotations

import os
import subprocess

import pytest

from skillhost import Client
from skillhost._client import default_server

from conftest import BINARY


@pytest.mark.parametrize("user", [None, "someone-else"])
def test_the_client_and_the_server_agree_on_the_default_socket(monkeypatch, user):
    env = {k: v for k, v in os.environ.items()
           if k not in ("XDG_RUNTIME_DIR", "USER", "SKILLHOST_SERVER", "SKILLHOST_SOCKET")}
    if user:
        env["USER"] = user
    for name in ("XDG_RUNTIME_DIR", "SKILLHOST_SERVER", "USER"):
        monkeypatch.delenv(name, raising=False)
    if user:
        monkeypatch.setenv("USER", user)
    # The same environment for the server's side.
    expected = default_server()
    assert expected.endswith(f"skillhost-{os.getuid()}/skillhost.sock"), expected
    # `skillhost ready` reports the server it could not reach: the one it derived.
    ready = subprocess.run([str(BINARY), "ready"], env=env, capture_output=True, text=True)
    assert ready.returncode == 3, ready.stderr
    assert expected in ready.stdout + ready.stderr, (expected, ready.stderr)
    assert Client().server == expected
