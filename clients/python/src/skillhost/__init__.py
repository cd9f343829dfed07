"""Python client for `skillhost serve`: run untrusted skills in hardened Docker containers.

    from skillhost import Client

    with Client() as client:  # SKILLHOST_SERVER, or the service's default socket
        result = client.invoke("echo", "say", {"text": "hi"})
        print(result.status, result.output)

        with client.session("python") as session:  # variables and files persist
            session.invoke("run", {"code": "x = 41"})
            print(session.invoke("run", {"code": "print(x + 1)"}).output["stdout"])
            session.files.write("data.csv", b"a,b\n1,2\n")
"""

from ._client import (
    AsyncClient,
    AsyncSession,
    AsyncSessionFiles,
    Client,
    Session,
    SessionFiles,
    default_server,
)
from ._errors import (
    InvocationFailed,
    NotFound,
    Overloaded,
    Rejected,
    ServiceError,
    ServiceUnreachable,
    SessionStateReset,
    SkillFailed,
    SkillhostError,
    Unauthorized,
    Unavailable,
)
from ._tools import FORMATS, ToolResult, split_tool_name, tool_name
from ._models import (
    ActionInfo,
    FileEntry,
    Invocation,
    InvocationError,
    InvocationPath,
    InvocationResult,
    InvocationState,
    Progress,
    SessionInfo,
    SessionKind,
    SkillInfo,
    Stats,
    Status,
)

__all__ = [
    "FORMATS",
    "ActionInfo",
    "AsyncClient",
    "AsyncSession",
    "AsyncSessionFiles",
    "Client",
    "FileEntry",
    "Invocation",
    "InvocationError",
    "InvocationFailed",
    "InvocationPath",
    "InvocationResult",
    "InvocationState",
    "NotFound",
    "Overloaded",
    "Progress",
    "Rejected",
    "ServiceError",
    "ServiceUnreachable",
    "Session",
    "SessionFiles",
    "SessionInfo",
    "SessionKind",
    "SessionStateReset",
    "SkillFailed",
    "SkillInfo",
    "SkillhostError",
    "Stats",
    "Status",
    "ToolResult",
    "Unauthorized",
    "Unavailable",
    "default_server",
    "split_tool_name",
    "tool_name",
]
