"""Exceptions: every HTTP problem names what happened. A finished run, whatever its
status, is a result, not an exception (`InvocationResult.raise_for_status` makes one)."""

from __future__ import annotations

from typing import Optional

from ._models import InvocationResult


class SkillhostError(Exception):
    """Base class of every error this client raises."""


class ServiceUnreachable(SkillhostError):
    """The service could not be reached, or the connection broke before an answer.

    `not_sent` is True when no connection was made (refused, or the connect timed out):
    the request never reached a service, so the call did not run and sending it again is
    safe, e.g. while a node's skillhost restarts. When False the call may have run."""

    def __init__(self, server: str, reason: str, *, not_sent: bool = False) -> None:
        super().__init__(f"cannot reach skillhost at {server}: {reason}")
        self.server = server
        self.reason = reason
        self.not_sent = not_sent


class ServiceError(SkillhostError):
    """The service answered with an error of its own (not an invocation's result)."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status_code} {code}: {message}")
        self.status_code = status_code
        self.code = code
        self.message = message


class Unauthorized(ServiceError):
    """401: the bearer token is missing or not in the service's tokens file."""


class NotFound(ServiceError):
    """404 for something that is not an invocation: a skill or an asynchronous invocation."""


class InvocationFailed(SkillhostError):
    """An invocation that did not run to an answer; `result` holds the service's result."""

    def __init__(self, status_code: int, result: InvocationResult) -> None:
        error = result.error
        detail = f"{error.code}: {error.message}" if error else result.status.value
        super().__init__(f"{result.skill}.{result.action}: HTTP {status_code} {detail}")
        self.status_code = status_code
        self.result = result

    @property
    def code(self) -> Optional[str]:
        return self.result.error.code if self.result.error else None


class Rejected(InvocationFailed):
    """400/404/413/415/422: the call was refused before anything ran (unknown skill or
    action, bad arguments, bad options, a body too large)."""


class SessionStateReset(Rejected):
    """409 `session_state_reset`: the process session's process was lost before this call
    (the service restarted, or the process died between calls). Nothing ran; the session
    goes on with its files and none of its variables: set them up again and call again."""


class Overloaded(InvocationFailed):
    """429: the service is at its limits; retry after `retry_after` seconds."""

    def __init__(self, status_code: int, result: InvocationResult, retry_after: float) -> None:
        super().__init__(status_code, result)
        self.retry_after = retry_after


class Unavailable(InvocationFailed):
    """503: the engine or the host failed, or the service is shutting down.

    With code `host_shutting_down` the call did not run, and `retry_after` says how many
    seconds to wait: by then that process no longer listens, and a new connection reaches
    another task (or is refused with `ServiceUnreachable.not_sent`)."""

    def __init__(
        self, status_code: int, result: InvocationResult, retry_after: Optional[float] = None
    ) -> None:
        super().__init__(status_code, result)
        self.retry_after = retry_after


class SkillFailed(SkillhostError):
    """Raised by `InvocationResult.raise_for_status` for a run that did not return an output."""

    def __init__(self, result: InvocationResult) -> None:
        error = result.error
        detail = f" {error.code}: {error.message}" if error else ""
        super().__init__(f"{result.skill}.{result.action}: {result.status.value}{detail}")
        self.result = result
