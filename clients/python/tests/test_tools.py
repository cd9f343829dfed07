"""Skill actions as tools: each format's shape validated against the vendor's own types
(from PyPI: openai, anthropic, and the official MCP SDK), and a model's tool call
dispatched back to an invocation of a real `skillhost serve`."""

from __future__ import annotations

import json

import pytest
from pydantic import TypeAdapter

from skillhost import Client, FORMATS, Status, split_tool_name, tool_name


def test_each_format_is_what_its_api_takes(service, probe):
    from anthropic.types import ToolParam
    from mcp.types import Tool
    from openai.types.chat import ChatCompletionToolParam

    with Client(service.server) as client:
        shapes = {format: client.tools(format) for format in FORMATS}
    names = [t["name"] for t in shapes["generic"]]
    assert f"{probe}__echo" in names and len(names) == len(set(names))
    openai_tool = TypeAdapter(ChatCompletionToolParam)
    anthropic_tool = TypeAdapter(ToolParam)
    for tool in shapes["openai"]:
        openai_tool.validate_python(tool, strict=True)
    for tool in shapes["anthropic"]:
        anthropic_tool.validate_python(tool, strict=True)
    for tool in shapes["mcp"]:
        Tool.model_validate(tool, strict=True)
    by_name = {t["function"]["name"]: t["function"] for t in shapes["openai"]}
    assert by_name[f"{probe}__echo"]["parameters"]["required"] == ["data"]
    mcp = {t["name"]: t for t in shapes["mcp"]}
    assert "outputSchema" in mcp[f"{probe}__contract"], "a declared output is offered"
    assert "outputSchema" not in mcp[f"{probe}__echo"]
    for name in names:
        assert len(name) <= 64 and name.replace("_", "").replace("-", "").isalnum(), name
    assert mcp[f"{probe}__echo"]["annotations"] == {
        "readOnlyHint": False, "destructiveHint": True, "openWorldHint": False}


def test_the_service_gives_the_same_tools_as_the_client_makes(service):
    import httpx

    with Client(service.server) as client:
        skills = client.skills()
        made = {format: client.tools(format) for format in FORMATS}
    transport = httpx.HTTPTransport(uds=str(service.socket))
    with httpx.Client(transport=transport, base_url="http://localhost") as http:
        for format in FORMATS:
            served = http.get("/v1/tools", params={"format": format})
            assert served.status_code == 200
            assert served.json() == {"format": format, "tools": made[format]}, format
        unknown = http.get("/v1/tools", params={"format": "gemini"})
        assert unknown.status_code == 400
        assert "generic, openai, anthropic, mcp" in unknown.json()["error"]["message"]
    for skill in skills:
        for action, info in skill.actions.items():
            assert info.tool == tool_name(skill.name, action)


def test_a_tool_call_runs_and_a_refusal_is_an_error_the_model_can_read(service, probe):
    with Client(service.server) as client:
        ran = client.call_tool(tool_name(probe, "echo"), {"data": "hi"})
        assert not ran.is_error and ran.result.status is Status.OK
        assert json.loads(ran.text) == ran.result.output
        wrong = client.call_tool(f"{probe}__echo", {"data": 5})
        assert wrong.is_error and wrong.text.startswith("rejected (invalid_args)")
        failed = client.call_tool(f"{probe}__fail", {})
        assert failed.is_error and failed.result.status is Status.SKILL_ERROR
    with pytest.raises(ValueError):
        split_tool_name("no-separator")
    assert split_tool_name("python__run") == ("python", "run")
