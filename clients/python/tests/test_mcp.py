"""skillhost as an MCP server, driven by the official MCP SDK from PyPI: `skillhost mcp`
on stdio (with a host of its own, and bridged to a service), and a real `skillhost
serve`'s `/mcp` over TCP with a bearer token."""

from __future__ import annotations

import json
import subprocess
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, List, Optional

import anyio
import httpx2
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from conftest import BINARY, REPO, make_token, wait_for

META = "io.skillhost/invocation"


@asynccontextmanager
async def stdio(*args: str) -> AsyncIterator[ClientSession]:
    """An initialized MCP session with `skillhost ARGS... mcp` as its stdio server."""
    params = StdioServerParameters(command=str(BINARY), args=[*args])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


@asynccontextmanager
async def over_http(url: str, token: Optional[str]) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        async with streamable_http_client(url, http_client=http) as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def text(result) -> str:
    return result.content[0].text


def test_stdio_lists_every_action_as_a_tool_and_calls_it(skills: Path, probe: str):
    async def main():
        async with stdio("--skills-dir", str(skills), "mcp") as session:
            tools = {t.name: t for t in (await session.list_tools()).tools}
            assert f"{probe}__echo" in tools and f"{probe}__contract" in tools
            echo = tools[f"{probe}__echo"]
            assert echo.input_schema["required"] == ["data"]
            assert echo.output_schema is None
            assert tools[f"{probe}__contract"].output_schema["required"] == ["n"]
            # The probe has no network and a read-write workspace.
            assert echo.annotations.open_world_hint is False
            assert echo.annotations.read_only_hint is False
            assert echo.annotations.destructive_hint is True
            for name in tools:
                assert len(name) <= 64, name

            ran = await session.call_tool(f"{probe}__echo", {"data": "hi"})
            assert not ran.is_error
            assert ran.structured_content == {"data": "hi", "len": 2}
            assert json.loads(text(ran)) == ran.structured_content
            assert ran.meta[META]["status"] == "ok" and ran.meta[META]["path"] == "cold"
            assert ran.meta[META]["id"]

            reports: List[tuple] = []

            async def on_progress(progress, total, message):
                reports.append((progress, total, message))

            counted = await session.call_tool(f"{probe}__ok", {}, progress_callback=on_progress)
            assert not counted.is_error
            assert reports == [(50.0, 100.0, "halfway")]

            with pytest.raises(MCPError, match="no tool named"):
                await session.call_tool(f"{probe}__missing", {})

    anyio.run(main)


def test_every_status_but_ok_is_a_tool_error_the_model_can_read(skills: Path, probe: str):
    cases = [
        ("echo", {"data": 5}, "rejected", "invalid_args"),
        ("fail", {}, "skill_error", None),
        ("alloc", {"mb": 512}, "memory_limit", "memory_limit"),
        ("flood", {}, "output_limit", "output_limit"),
        ("garbage", {}, "protocol_error", None),
        ("exit_silently", {}, "protocol_error", "protocol_error"),
        ("term_pid1", {}, "crashed", None),
        ("sleep", {"seconds": 30}, "timeout", "timeout"),
    ]

    async def main():
        async with stdio("--skills-dir", str(skills), "mcp") as session:
            for action, args, status, code in cases:
                result = await session.call_tool(f"{probe}__{action}", args)
                assert result.is_error, action
                assert text(result).startswith(f"{status} ("), (action, text(result))
                assert result.meta[META]["status"] == status
                if code:
                    assert result.meta[META]["code"] == code, action
                assert result.structured_content is None

    anyio.run(main)


def test_mcp_over_tcp_needs_the_token_and_a_cancel_removes_the_container(start_service, probe, tmp_path):
    token, tokens = make_token(tmp_path)
    (tmp_path / "other").mkdir()
    other, other_tokens = make_token(tmp_path / "other", "other")
    tokens.write_text(tokens.read_text() + other_tokens.read_text())
    svc = start_service("--listen", "127.0.0.1:0", "--tokens", str(tokens))
    url = f"{svc.tcp}/mcp"
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"}}}
    accept = {"Accept": "application/json, text/event-stream"}
    refused = httpx2.post(url, json=initialize, headers=accept)
    assert refused.status_code == 401
    wrong = httpx2.post(url, json=initialize, headers={**accept, "Authorization": "Bearer skh_wrong"})
    assert wrong.status_code == 401
    # A browser page of another site is refused, token or not (DNS rebinding, CSRF).
    browser = httpx2.post(url, json=initialize, headers={
        **accept, "Authorization": f"Bearer {token}", "Origin": "http://evil.example"})
    assert browser.status_code == 403
    # An MCP session answers only the token that made it.
    made = httpx2.post(url, json=initialize, headers={**accept, "Authorization": f"Bearer {token}"})
    assert made.status_code == 200
    mcp_session = made.headers["mcp-session-id"]
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    in_session = {**accept, "mcp-session-id": mcp_session, "mcp-protocol-version": "2025-11-25"}
    theirs = httpx2.post(url, json=listing, headers={**in_session, "Authorization": f"Bearer {other}"})
    assert theirs.status_code == 404
    deleted = httpx2.delete(url, headers={**in_session, "Authorization": f"Bearer {other}"})
    assert deleted.status_code == 404
    ours = httpx2.post(url, json=listing, headers={**in_session, "Authorization": f"Bearer {token}"})
    assert ours.status_code == 200 and "tools" in ours.text

    async def main():
        async with over_http(url, token) as session:
            tools = [t.name for t in (await session.list_tools()).tools]
            assert f"{probe}__echo" in tools
            ran = await session.call_tool(f"{probe}__echo", {"data": "over tcp"})
            assert ran.structured_content["data"] == "over tcp"
            with pytest.raises(MCPError):
                # The SDK sends notifications/cancelled when it stops waiting.
                await session.call_tool(f"{probe}__sleep", {"seconds": 60}, read_timeout_seconds=2)
            wait_for(lambda: svc.containers() == 0, "the cancelled call's container removal")
            still = await session.call_tool(f"{probe}__echo", {"data": "after"})
            assert not still.is_error
        # `skillhost mcp --server` bridges stdio to the same /mcp, with the token.
        params = StdioServerParameters(command=str(BINARY), args=["mcp", "--server", svc.tcp],
                                       env={"SKILLHOST_TOKEN": token})
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as bridged:
                await bridged.initialize()
                ran = await bridged.call_tool(f"{probe}__echo", {"data": "bridged"})
                assert ran.structured_content["data"] == "bridged"
        # Without the token the bridge cannot start the conversation.
        params = StdioServerParameters(command=str(BINARY), args=["mcp", "--server", svc.tcp],
                                       env={"SKILLHOST_TOKEN": "skh_wrong"})
        with pytest.raises(Exception):
            async with stdio_client(params) as (read, write):
                async with ClientSession(read, write, read_timeout_seconds=20) as refused:
                    await refused.initialize()

    anyio.run(main)


def test_a_python_session_lasts_the_mcp_session_on_stdio_and_through_the_service(bundled_service):
    async def conversation(session: ClientSession) -> str:
        first = await session.call_tool("python__run", {"code": "x = 41\nopen('notes.txt', 'w').write('kept')"})
        assert not first.is_error, text(first)
        second = await session.call_tool("python__run", {"code": "print(x + 1, open('notes.txt').read())"})
        assert not second.is_error, text(second)
        assert json.loads(text(second))["stdout"] == "42 kept\n"
        assert second.meta[META]["path"] == "session"
        return second.meta[META]["session"]["id"]

    async def main():
        # Bridged to the service (which builds the image): its session ends with the MCP
        # session.
        async with stdio("mcp", "--server", bundled_service.server) as session:
            ended_early = await conversation(session)
            # The session ends under the conversation (as an idle timeout would end it):
            # the next call runs in a new one, and the model is told what was lost.
            subprocess.run([str(BINARY), "session", "end", ended_early, "--server",
                            bundled_service.server], check=True, capture_output=True)
            fresh = await session.call_tool("python__run", {"code": "print('fresh')"})
            assert not fresh.is_error, text(fresh)
            assert "ran in a new one" in text(fresh)
            opened = fresh.meta[META]["session"]["id"]
            assert opened != ended_early
            listed = subprocess.run(
                [str(BINARY), "--format", "json", "session", "list", "--server", bundled_service.server],
                capture_output=True, text=True, check=True).stdout
            assert opened in listed

        def ended() -> bool:
            listed = subprocess.run(
                [str(BINARY), "--format", "json", "session", "list", "--server", bundled_service.server],
                capture_output=True, text=True, check=True).stdout
            return opened not in listed

        wait_for(ended, "the MCP session's skillhost session ending with it")
        # A host of the stdio process's own.
        async with stdio("--skills-dir", str(REPO / "skills"), "mcp", "--no-build") as session:
            await conversation(session)

    anyio.run(main)
