"""Python client for `skillhost serve`: run untrusted skills in hardened Docker containers.

    from skillhost import Client

    with Client() as client:  # SKILLHOST_SERVER, or the service's default socket
        result = client.invoke("echo", "say", {"text": "hi"})
        print(result.status, result.output)
"""

from ._client import AsyncClient, Client, default_server
from ._errors import (
    InvocationFailed,
    NotFound,
    Overloaded,
    Rejected,
    ServiceError,
    ServiceUnreachable,
    SkillFailed,
    SkillhostError,
    Unauthorized,
    Unavailable,
)
from ._models import (
    ActionInfo,
    Invocation,
    InvocationError,
    InvocationPath,
    InvocationResult,
    InvocationState,
    Progress,
    SkillInfo,
    Stats,
    Status,
)

__all__ = [
    "ActionInfo",
    "AsyncClient",
    "Client",
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
    "SkillFailed",
    "SkillInfo",
    "SkillhostError",
    "Stats",
    "Status",
    "Unauthorized",
    "Unavailable",
    "default_server",
]
