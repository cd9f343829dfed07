"""The service's bodies as typed values: the same fields as the Rust `skillhost-api` crate."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional


class Status(str, enum.Enum):
    """How an invocation ended. Every failure has its own status."""

    OK = "ok"
    SKILL_ERROR = "skill_error"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    PROTOCOL_ERROR = "protocol_error"
    CRASHED = "crashed"
    REJECTED = "rejected"
    INFRASTRUCTURE_ERROR = "infrastructure_error"


class InvocationPath(str, enum.Enum):
    """How an invocation was served."""

    COLD = "cold"
    PREWARMED = "prewarmed"
    WARM = "warm"
    NATIVE = "native"
    SESSION = "session"
    RECYCLED = "recycled"


class InvocationState(str, enum.Enum):
    """Where an asynchronous invocation stands."""

    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class InvocationError:
    """Why an invocation did not succeed: a host code (see docs/results.md) or the skill's own."""

    code: str
    message: str
    details: Any = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "InvocationError":
        return cls(code=data["code"], message=data["message"], details=data.get("details"))


@dataclass(frozen=True)
class Stats:
    """Measurements of one invocation."""

    stdout_bytes: int = 0
    stderr_bytes: int = 0
    progress_frames: int = 0
    startup_ms: int = 0
    peak_memory_bytes: Optional[int] = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Stats":
        return cls(
            stdout_bytes=data.get("stdout_bytes", 0),
            stderr_bytes=data.get("stderr_bytes", 0),
            progress_frames=data.get("progress_frames", 0),
            startup_ms=data.get("startup_ms", 0),
            peak_memory_bytes=data.get("peak_memory_bytes"),
        )


@dataclass(frozen=True)
class InvocationResult:
    """The result of one invocation, as `skillhost invoke --format json` prints it."""

    id: str
    skill: str
    action: str
    status: Status
    path: InvocationPath
    image: Optional[str] = None
    output: Any = None
    error: Optional[InvocationError] = None
    exit_code: Optional[int] = None
    oom_killed: bool = False
    duration_ms: int = 0
    logs: str = ""
    logs_truncated: bool = False
    stats: Stats = field(default_factory=Stats)
    # For a skill with an egress allowlist: the destinations it was allowed to reach.
    egress_allowed: Optional[List[str]] = None
    # What its egress proxy refused on this call: destination ("host:port") -> requests.
    egress_denied: Optional[Dict[str, int]] = None
    # For a call in a session: its id, and whether the call cost a process session its
    # process (its variables are gone; its files are kept).
    session_id: Optional[str] = None
    state_reset: bool = False

    @property
    def ok(self) -> bool:
        """Whether the skill returned an output."""
        return self.status is Status.OK

    def raise_for_status(self) -> "InvocationResult":
        """Return self when ok; otherwise raise `SkillFailed` naming the status and code."""
        if not self.ok:
            from ._errors import SkillFailed

            raise SkillFailed(self)
        return self

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "InvocationResult":
        error = data.get("error")
        egress = data.get("egress")
        session = data.get("session") or {}
        return cls(
            id=data["id"],
            skill=data["skill"],
            action=data["action"],
            status=Status(data["status"]),
            path=InvocationPath(data.get("path", "cold")),
            image=data.get("image"),
            output=data.get("output"),
            error=InvocationError.from_json(error) if error else None,
            exit_code=data.get("exit_code"),
            oom_killed=data.get("oom_killed", False),
            duration_ms=data.get("duration_ms", 0),
            logs=data.get("logs", ""),
            logs_truncated=data.get("logs_truncated", False),
            stats=Stats.from_json(data.get("stats") or {}),
            egress_allowed=egress.get("allowed") if egress else None,
            egress_denied=(
                {d["destination"]: d["count"] for d in egress.get("denied", [])}
                if egress
                else None
            ),
            session_id=session.get("id"),
            state_reset=bool(session.get("state_reset", False)),
        )


@dataclass(frozen=True)
class Progress:
    """A progress frame from a running skill."""

    id: str
    message: str = ""
    fraction: Optional[float] = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Progress":
        return cls(id=data["id"], message=data.get("message", ""), fraction=data.get("fraction"))


@dataclass(frozen=True)
class ActionInfo:
    """One action of a skill, with its JSON Schemas."""

    description: str
    input: Optional[Dict[str, Any]] = None
    output: Optional[Dict[str, Any]] = None
    #: Its name as a tool (`skill__action`), as the service gives it.
    tool: Optional[str] = None
    #: The MCP tool annotations its manifest makes true (`readOnlyHint`,
    #: `destructiveHint`, `openWorldHint`).
    annotations: Optional[Dict[str, Any]] = None


@dataclass(frozen=True)
class SkillInfo:
    """One skill the service runs."""

    name: str
    version: str
    description: str
    actions: Dict[str, ActionInfo]
    hash: Optional[str] = None
    image: Optional[str] = None
    image_present: Optional[bool] = None
    problem: Optional[str] = None

    def tools(self, format: str = "generic") -> List[Dict[str, Any]]:
        """Each action as a tool definition for a model, in `format` (see
        `Client.tools`)."""
        from ._tools import tool_definitions

        return tool_definitions([self], format)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SkillInfo":
        return cls(
            name=data["name"],
            version=data["version"],
            description=data.get("description", ""),
            actions={
                name: ActionInfo(
                    description=a.get("description", ""),
                    input=a.get("input"),
                    output=a.get("output"),
                    tool=a.get("tool"),
                    annotations=a.get("annotations"),
                )
                for name, a in (data.get("actions") or {}).items()
            },
            hash=data.get("hash"),
            image=data.get("image"),
            image_present=data.get("image_present"),
            problem=data.get("problem"),
        )


@dataclass(frozen=True)
class Invocation:
    """An asynchronous invocation."""

    id: str
    skill: str
    action: str
    state: InvocationState
    result: Optional[InvocationResult] = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Invocation":
        result = data.get("result")
        return cls(
            id=data["id"],
            skill=data["skill"],
            action=data["action"],
            state=InvocationState(data["state"]),
            result=InvocationResult.from_json(result) if result else None,
        )


class SessionKind(str, enum.Enum):
    """What persists across a session's calls."""

    FILES = "files"
    PROCESS = "process"


@dataclass(frozen=True)
class SessionInfo:
    """A session: its skill, image, mode and deadlines (milliseconds since the epoch)."""

    id: str
    skill: str
    image: str
    mode: SessionKind
    created_at_ms: int
    idle_timeout_ms: int
    max_lifetime_ms: int
    idle_deadline_ms: int
    lifetime_deadline_ms: int
    workspace_bytes: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SessionInfo":
        return cls(
            id=data["id"],
            skill=data["skill"],
            image=data["image"],
            mode=SessionKind(data["mode"]),
            created_at_ms=data["created_at_ms"],
            idle_timeout_ms=data["idle_timeout_ms"],
            max_lifetime_ms=data["max_lifetime_ms"],
            idle_deadline_ms=data["idle_deadline_ms"],
            lifetime_deadline_ms=data["lifetime_deadline_ms"],
            workspace_bytes=data["workspace_bytes"],
        )


@dataclass(frozen=True)
class FileEntry:
    """One entry of a session's workspace. `kind` is file, directory, symlink, fifo,
    socket or device; only files are read. `mode` has no set-id bits."""

    path: str
    kind: str
    size: int
    mode: int
    modified_ms: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "FileEntry":
        return cls(
            path=data["path"],
            kind=data["kind"],
            size=data["size"],
            mode=data["mode"],
            modified_ms=data["modified_ms"],
        )
