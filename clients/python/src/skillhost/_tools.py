"""Skill actions as tools for a model, and a model's tool call back to an invocation.

A tool's name is `{skill}__{action}` (two underscores): skill names are `[a-z0-9-]` and
never hold `__`, so the name splits back without doubt. Every chat API takes it
(`^[a-zA-Z0-9_-]{1,64}$`) when the two together fit in 64 characters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

from ._models import InvocationResult, SkillInfo

#: The shapes `tools(format=...)` gives.
FORMATS = ("generic", "openai", "anthropic", "mcp")

SEPARATOR = "__"


def tool_name(skill: str, action: str) -> str:
    return f"{skill}{SEPARATOR}{action}"


def split_tool_name(name: str) -> Tuple[str, str]:
    """The skill and action a tool name stands for; `ValueError` for any other name."""
    skill, sep, action = name.partition(SEPARATOR)
    if not sep or not skill or not action:
        raise ValueError(f"{name!r} is not a skillhost tool name (skill__action)")
    return skill, action


def tool_definitions(skills: List[SkillInfo], format: str) -> List[Dict[str, Any]]:
    """Every action of `skills` as a tool definition in `format`:

    - `generic`: `{"name", "description", "parameters"}`;
    - `openai`: `{"type": "function", "function": {"name", "description", "parameters"}}`
      (Chat Completions' tools);
    - `anthropic`: `{"name", "description", "input_schema"}` (the Messages API's tools);
    - `mcp`: `{"name", "description", "inputSchema"}`, with `outputSchema` where the
      action declares an output and the manifest's `annotations` (an MCP server's
      `tools/list`).

    The same shapes as the service's `GET /v1/tools?format=...`.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown tool format {format!r}: use one of {', '.join(FORMATS)}")
    tools = []
    for skill in skills:
        for action, info in skill.actions.items():
            name = tool_name(skill.name, action)
            description = info.description or skill.description
            schema = info.input or {"type": "object"}
            if format == "openai":
                tools.append({"type": "function", "function": {
                    "name": name, "description": description, "parameters": schema}})
            elif format == "anthropic":
                tools.append({"name": name, "description": description, "input_schema": schema})
            elif format == "mcp":
                tool = {"name": name, "description": description, "inputSchema": schema}
                if info.output is not None:
                    tool["outputSchema"] = info.output
                if info.annotations:
                    tool["annotations"] = info.annotations
                tools.append(tool)
            else:
                tools.append({"name": name, "description": description, "parameters": schema})
    return tools


@dataclass(frozen=True)
class ToolResult:
    """What a tool call gives: `text` for the model (the output as JSON, or what went
    wrong), `is_error` when the call did not succeed, and the full `result` for the
    program."""

    text: str
    is_error: bool
    result: InvocationResult


def tool_result(result: InvocationResult) -> ToolResult:
    """The model's view of `result`: its output, or its status, code and message, which a
    model can read and correct its call by (bad arguments name each violation)."""
    if result.ok:
        return ToolResult(json.dumps(result.output), False, result)
    error = result.error
    text = f"{result.status.value} ({error.code}): {error.message}" if error else result.status.value
    if error is not None and error.details is not None:
        # A code runner's stdout, stderr and exit code, say: what the model needs to see why.
        text += "\n\n" + json.dumps(error.details)
    return ToolResult(text, True, result)
