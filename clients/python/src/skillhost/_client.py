"""`Client` (sync) and `AsyncClient` (asyncio) for `skillhost serve`, over its unix socket
(`unix:/path`) or TCP (`http://host:port`, with a bearer token)."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from typing import (
    Any,
    AsyncIterator,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    Union,
)
from urllib.parse import quote

import httpx
from httpx_sse import aconnect_sse, connect_sse

from ._errors import (
    NotFound,
    Overloaded,
    Rejected,
    ServiceError,
    ServiceUnreachable,
    SessionStateReset,
    SkillhostError,
    Unauthorized,
    Unavailable,
)
from ._tools import ToolResult, split_tool_name, tool_definitions, tool_result
from ._models import (
    FileEntry,
    Invocation,
    InvocationResult,
    InvocationState,
    Progress,
    SessionInfo,
    SkillInfo,
)

ProgressCallback = Callable[[Progress], None]
Event = Union[Progress, InvocationResult]


def default_server() -> str:
    """`SKILLHOST_SERVER`, or the socket `skillhost serve` uses by default."""
    server = os.environ.get("SKILLHOST_SERVER")
    if server:
        return server
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return f"unix:{os.path.join(runtime, 'skillhost', 'skillhost.sock')}"
    # By the numeric uid, as the server names it: $USER is unset under many service
    # managers and in containers.
    return f"unix:{os.path.join(tempfile.gettempdir(), f'skillhost-{os.getuid()}', 'skillhost.sock')}"


def _endpoint(server: str) -> Tuple[str, Optional[str]]:
    """The base URL and, for a unix socket, its path."""
    if server.startswith("unix:"):
        path = server[len("unix:") :]
        if not path:
            raise ValueError("unix: needs the socket's path, e.g. unix:/run/skillhost.sock")
        return "http://skillhost", path
    if server.startswith("http://") or server.startswith("https://"):
        return server.rstrip("/"), None
    raise ValueError(f"{server!r} is not a server address: use unix:PATH or http://HOST:PORT")


def _invoke_path(skill: str, action: str) -> str:
    return f"/v1/skills/{quote(skill, safe='')}/actions/{quote(action, safe='')}:invoke"


def _session_path(id: str, *rest: str) -> str:
    """`/v1/sessions/{id}` and more segments, each encoded (a file path's `/` kept)."""
    return "/".join([f"/v1/sessions/{quote(id, safe='')}", *(quote(r, safe="/:") for r in rest)])


def _session_body(
    skill: str,
    idle_timeout_ms: Optional[int],
    max_lifetime_ms: Optional[int],
    env: Optional[Mapping[str, str]],
) -> Dict[str, Any]:
    body: Dict[str, Any] = {"skill": skill}
    if idle_timeout_ms is not None:
        body["idle_timeout_ms"] = idle_timeout_ms
    if max_lifetime_ms is not None:
        body["max_lifetime_ms"] = max_lifetime_ms
    if env:
        body["env"] = dict(env)
    return body


def _ok(response: httpx.Response, *expected: int) -> httpx.Response:
    """The response when its status is one of `expected`; else the service's error."""
    if response.status_code not in expected:
        raise _service_error(response)
    return response


def _invoke_body(
    args: Optional[Mapping[str, Any]], timeout_ms: Optional[int], env: Optional[Mapping[str, str]]
) -> Dict[str, Any]:
    body: Dict[str, Any] = {"args": dict(args) if args is not None else {}}
    if timeout_ms is not None:
        body["timeout_ms"] = timeout_ms
    if env:
        body["env"] = dict(env)
    return body


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ServiceError(
            response.status_code, "unreadable", f"the body is not JSON: {response.text[:200]!r}"
        ) from None


def _service_error(response: httpx.Response) -> SkillhostError:
    data = _json(response)
    error = data.get("error") if isinstance(data, dict) else None
    code = error.get("code", "unknown") if isinstance(error, dict) else "unknown"
    message = error.get("message", response.text) if isinstance(error, dict) else response.text
    kind = {401: Unauthorized, 404: NotFound}.get(response.status_code, ServiceError)
    return kind(response.status_code, code, message)


def _result_of(response: httpx.Response) -> InvocationResult:
    """The result of an invoke response, or the exception its HTTP status stands for."""
    data = _json(response)
    if not (isinstance(data, dict) and "status" in data and "skill" in data):
        raise _service_error(response)
    result = InvocationResult.from_json(data)
    status = response.status_code
    if status == 200:
        return result
    retry = response.headers.get("retry-after")
    retry_after = float(retry) if retry is not None and retry.isdigit() else None
    if status == 429:
        raise Overloaded(status, result, 1.0 if retry_after is None else retry_after)
    if status >= 500:
        raise Unavailable(status, result, retry_after)
    if result.error is not None and result.error.code == "session_state_reset":
        raise SessionStateReset(status, result)
    raise Rejected(status, result)


def _event(sse: Any) -> Optional[Event]:
    if sse.event == "progress":
        return Progress.from_json(json.loads(sse.data))
    if sse.event == "result":
        return InvocationResult.from_json(json.loads(sse.data))
    return None


def _is_stream(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith("text/event-stream")


def _not_a_stream(response: httpx.Response) -> SkillhostError:
    """The error of a call that answered with JSON instead of events (429, 401, ...)."""
    try:
        _result_of(response)
    except SkillhostError as e:
        return e
    return ServiceError(response.status_code, "unexpected", "a result without an event stream")


#: The longest wait between two sends of a request that reached no service.
MAX_BACKOFF = 5.0

#: 503 codes of a service that did not run the request: it is shutting down, or still
#: starting (pulling its images).
_NOT_RUN = ("host_shutting_down", "host_starting")


def _retry_wait(outcome: Union[httpx.Response, ServiceUnreachable], attempt: int,
                backoff: float) -> Optional[float]:
    """Seconds to wait before sending a request again, when the service proves it did not
    run it: no connection was made (`not_sent`), or the service answered 503
    `host_shutting_down` or `host_starting` (after its `Retry-After`). None for anything
    else, which is the caller's to judge."""
    if isinstance(outcome, ServiceUnreachable):
        return min(backoff * 2**attempt, MAX_BACKOFF) if outcome.not_sent else None
    if outcome.status_code != 503:
        return None
    try:
        data = outcome.json()
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if not (isinstance(error, dict) and error.get("code") in _NOT_RUN):
        return None
    retry = outcome.headers.get("retry-after", "1")
    return float(retry) if retry.isdigit() else 1.0


def _next_wait(outcome: Union[httpx.Response, ServiceUnreachable], attempt: int,
               retries: int, backoff: float) -> Optional[float]:
    """The wait before attempt `attempt + 1`, or None when `outcome` (a response) is the
    answer; an unreachable service that is not to be tried again is raised."""
    wait = _retry_wait(outcome, attempt, backoff)
    if wait is not None and attempt < retries:
        return wait
    if isinstance(outcome, ServiceUnreachable):
        raise outcome
    return None


def _unreachable(server: str, error: httpx.TransportError) -> ServiceUnreachable:
    not_sent = isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout))
    unreachable = ServiceUnreachable(server, str(error) or type(error).__name__,
                                     not_sent=not_sent)
    unreachable.__cause__ = error
    return unreachable


class Client:
    """A synchronous client. Use it as a context manager, or call `close()`.

    `server` is `unix:PATH` or `http://HOST:PORT` (default: `SKILLHOST_SERVER`, else the
    service's default socket); `token` is the bearer token for TCP (default:
    `SKILLHOST_TOKEN`); `timeout` bounds each HTTP exchange in seconds (a call's own
    deadline is the skill's, or `timeout_ms`). A request the service provably did not
    run (no connection was made, or the service answered 503 `host_shutting_down` or
    `host_starting`) is sent again up to `retries` times, after `backoff` seconds
    doubling (at most `MAX_BACKOFF`), or the service's `Retry-After`; a streamed call
    (`events`, or `invoke` with `on_progress`) is not.
    """

    def __init__(
        self,
        server: Optional[str] = None,
        *,
        token: Optional[str] = None,
        timeout: Optional[float] = 600.0,
        retries: int = 3,
        backoff: float = 0.1,
    ) -> None:
        self.retries = retries
        self.backoff = backoff
        self.server = server or default_server()
        base_url, uds = _endpoint(self.server)
        token = token if token is not None else os.environ.get("SKILLHOST_TOKEN")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=base_url,
            transport=httpx.HTTPTransport(uds=uds) if uds else None,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
        )

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
                wait = _next_wait(response, attempt, self.retries, self.backoff)
            except httpx.TransportError as e:
                wait = _next_wait(_unreachable(self.server, e), attempt, self.retries,
                                  self.backoff)
            if wait is None:
                return response
            time.sleep(wait)
            attempt += 1

    def invoke(
        self,
        skill: str,
        action: str,
        args: Optional[Mapping[str, Any]] = None,
        *,
        timeout_ms: Optional[int] = None,
        env: Optional[Mapping[str, str]] = None,
        on_progress: Optional[ProgressCallback] = None,
    ) -> InvocationResult:
        """Run an action and return its result, whatever its status. Raises `Rejected`,
        `Overloaded` or `Unavailable` when the call did not run to an answer."""
        body = _invoke_body(args, timeout_ms, env)
        return self._invoke_at(_invoke_path(skill, action), body, on_progress)

    def _invoke_at(
        self, path: str, body: Dict[str, Any], on_progress: Optional[ProgressCallback]
    ) -> InvocationResult:
        if on_progress is None:
            return _result_of(self._request("POST", path, json=body))
        for event in self._events_at(path, body):
            if isinstance(event, Progress):
                on_progress(event)
            else:
                return event
        raise ServiceUnreachable(self.server, "the event stream ended before the result")

    def events(
        self,
        skill: str,
        action: str,
        args: Optional[Mapping[str, Any]] = None,
        *,
        timeout_ms: Optional[int] = None,
        env: Optional[Mapping[str, str]] = None,
    ) -> Iterator[Event]:
        """Progress frames as they arrive, then the result (the last item). Leaving the
        loop early closes the connection, which cancels the call."""
        return self._events_at(_invoke_path(skill, action), _invoke_body(args, timeout_ms, env))

    def _events_at(self, path: str, body: Dict[str, Any]) -> Iterator[Event]:
        try:
            with connect_sse(
                self._http,
                "POST",
                path,
                json=body,
                headers={"accept": "text/event-stream"},
            ) as source:
                if not _is_stream(source.response):
                    source.response.read()
                    raise _not_a_stream(source.response)
                for sse in source.iter_sse():
                    event = _event(sse)
                    if event is not None:
                        yield event
                    if isinstance(event, InvocationResult):
                        return
        except httpx.TransportError as e:
            raise _unreachable(self.server, e) from e
        raise ServiceUnreachable(self.server, "the event stream ended before the result")

    def submit(
        self,
        skill: str,
        action: str,
        args: Optional[Mapping[str, Any]] = None,
        *,
        timeout_ms: Optional[int] = None,
        env: Optional[Mapping[str, str]] = None,
    ) -> Invocation:
        """Start an action without waiting (`Prefer: respond-async`)."""
        response = self._request(
            "POST",
            _invoke_path(skill, action),
            json=_invoke_body(args, timeout_ms, env),
            headers={"prefer": "respond-async"},
        )
        if response.status_code == 202:
            return Invocation.from_json(_json(response))
        _result_of(response)
        raise ServiceError(response.status_code, "unexpected", response.text[:200])

    def invocation(self, id: str) -> Invocation:
        """Where an asynchronous invocation stands."""
        response = self._request("GET", f"/v1/invocations/{quote(id, safe='')}")
        if response.status_code != 200:
            raise _service_error(response)
        return Invocation.from_json(_json(response))

    def cancel(self, id: str) -> Invocation:
        """Cancel a running invocation (its container is removed), or forget a finished one."""
        response = self._request("DELETE", f"/v1/invocations/{quote(id, safe='')}")
        if response.status_code != 200:
            raise _service_error(response)
        return Invocation.from_json(_json(response))

    def wait(self, id: str, *, poll: float = 0.1, timeout: Optional[float] = None) -> InvocationResult:
        """Poll an asynchronous invocation until it ends; its result."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            invocation = self.invocation(id)
            if invocation.state is not InvocationState.RUNNING and invocation.result:
                return invocation.result
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"invocation {id} still running after {timeout}s")
            time.sleep(poll)

    def skills(self) -> List[SkillInfo]:
        """Every skill the service runs, with its actions' schemas."""
        response = self._request("GET", "/v1/skills")
        if response.status_code != 200:
            raise _service_error(response)
        return [SkillInfo.from_json(s) for s in _json(response)["skills"]]

    def skill(self, name: str) -> SkillInfo:
        """One skill; `NotFound` when there is none of that name."""
        response = self._request("GET", f"/v1/skills/{quote(name, safe='')}")
        if response.status_code != 200:
            raise _service_error(response)
        return SkillInfo.from_json(_json(response))

    def tools(self, format: str = "generic") -> List[Dict[str, Any]]:
        """Every action of every skill as a tool definition for a model, in `format`:
        `generic`, `openai`, `anthropic` or `mcp` (see `skillhost.FORMATS`)."""
        return tool_definitions(self.skills(), format)

    def call_tool(self, name: str, arguments: Optional[Mapping[str, Any]] = None) -> ToolResult:
        """Run a model's tool call (`skill__action` with its arguments): what the model
        should see, and the full result. A refusal (bad arguments, say) is an error the
        model can read, not an exception; an overloaded or unavailable service raises."""
        skill, action = split_tool_name(name)
        try:
            return tool_result(self.invoke(skill, action, arguments or {}))
        except Rejected as refused:
            return tool_result(refused.result)

    def ready(self) -> Tuple[bool, List[str]]:
        """Whether the service takes calls, and if not, why."""
        response = self._request("GET", "/readyz")
        data = _json(response)
        return bool(data.get("ready")), list(data.get("problems", []))

    def session(
        self,
        skill: str,
        *,
        idle_timeout_ms: Optional[int] = None,
        max_lifetime_ms: Optional[int] = None,
        env: Optional[Mapping[str, str]] = None,
    ) -> "Session":
        """Make a session of `skill` (its manifest declares `run.session`). Use it as a
        context manager: the session ends when the block does, also on an exception."""
        body = _session_body(skill, idle_timeout_ms, max_lifetime_ms, env)
        response = _ok(self._request("POST", "/v1/sessions", json=body), 201)
        return Session(self, SessionInfo.from_json(_json(response)))

    def get_session(self, id: str) -> "Session":
        """An open session of this caller, by id (to reconnect); `NotFound` otherwise."""
        response = _ok(self._request("GET", _session_path(id)), 200)
        return Session(self, SessionInfo.from_json(_json(response)))

    def sessions(self) -> List[SessionInfo]:
        """This caller's open sessions, oldest first."""
        response = _ok(self._request("GET", "/v1/sessions"), 200)
        return [SessionInfo.from_json(s) for s in _json(response)["sessions"]]


class Session:
    """An open session: `invoke` runs in it, `files` reads and writes its workspace.
    `close()` (or leaving the `with` block) ends it; so does its idle timeout."""

    def __init__(self, client: Client, info: SessionInfo) -> None:
        self.client = client
        self.info = info
        self.id = info.id
        self.files = SessionFiles(self)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def invoke(
        self,
        action: str,
        args: Optional[Mapping[str, Any]] = None,
        *,
        timeout_ms: Optional[int] = None,
        on_progress: Optional[ProgressCallback] = None,
    ) -> InvocationResult:
        """Run an action in the session; see `Client.invoke`. `SessionStateReset` when a
        process session's process was lost before this call (nothing ran)."""
        path = _session_path(self.id, "actions", f"{action}:invoke")
        return self.client._invoke_at(path, _invoke_body(args, timeout_ms, None), on_progress)

    def keep_alive(self) -> SessionInfo:
        """Reset the idle clock; the new deadlines."""
        response = _ok(self.client._request("POST", _session_path(self.id, "keepalive")), 200)
        self.info = SessionInfo.from_json(_json(response))
        return self.info

    def close(self) -> None:
        """End the session (its containers and workspace are removed); one already gone
        (expired) is not an error."""
        response = self.client._request("DELETE", _session_path(self.id))
        if response.status_code not in (204, 404):
            raise _service_error(response)


class SessionFiles:
    """A session's workspace: whole files in and out, as bytes."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def write(self, path: str, data: bytes) -> None:
        """Write `data` to `path` (relative; missing directories are made)."""
        path = _session_path(self._session.id, "files", path)
        _ok(self._session.client._request("PUT", path, content=data), 204)

    def read(self, path: str) -> bytes:
        """The bytes of the regular file at `path`; a link, FIFO or device is refused."""
        path = _session_path(self._session.id, "files", path)
        return _ok(self._session.client._request("GET", path), 200).content

    def list(self) -> List[FileEntry]:
        """Every entry of the workspace, depth first."""
        path = _session_path(self._session.id, "files")
        listing = _json(_ok(self._session.client._request("GET", path), 200))
        return [FileEntry.from_json(f) for f in listing["files"]]

    def delete(self, path: str) -> None:
        """Remove a file, a link or an empty directory."""
        path = _session_path(self._session.id, "files", path)
        _ok(self._session.client._request("DELETE", path), 204)


class AsyncClient:
    """The asyncio twin of `Client`, with the same methods as coroutines."""

    def __init__(
        self,
        server: Optional[str] = None,
        *,
        token: Optional[str] = None,
        timeout: Optional[float] = 600.0,
        retries: int = 3,
        backoff: float = 0.1,
    ) -> None:
        self.retries = retries
        self.backoff = backoff
        self.server = server or default_server()
        base_url, uds = _endpoint(self.server)
        token = token if token is not None else os.environ.get("SKILLHOST_TOKEN")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=base_url,
            transport=httpx.AsyncHTTPTransport(uds=uds) if uds else None,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
        )

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._http.request(method, path, **kwargs)
                wait = _next_wait(response, attempt, self.retries, self.backoff)
            except httpx.TransportError as e:
                wait = _next_wait(_unreachable(self.server, e), attempt, self.retries,
                                  self.backoff)
            if wait is None:
                return response
            await asyncio.sleep(wait)
            attempt += 1

    async def invoke(
        self,
        skill: str,
        action: str,
        args: Optional[Mapping[str, Any]] = None,
        *,
        timeout_ms: Optional[int] = None,
        env: Optional[Mapping[str, str]] = None,
        on_progress: Optional[ProgressCallback] = None,
    ) -> InvocationResult:
        """See `Client.invoke`. Cancelling the task closes the connection, which cancels
        the call and removes its container."""
        body = _invoke_body(args, timeout_ms, env)
        return await self._invoke_at(_invoke_path(skill, action), body, on_progress)

    async def _invoke_at(
        self, path: str, body: Dict[str, Any], on_progress: Optional[ProgressCallback]
    ) -> InvocationResult:
        if on_progress is None:
            return _result_of(await self._request("POST", path, json=body))
        async for event in self._events_at(path, body):
            if isinstance(event, Progress):
                on_progress(event)
            else:
                return event
        raise ServiceUnreachable(self.server, "the event stream ended before the result")

    async def events(
        self,
        skill: str,
        action: str,
        args: Optional[Mapping[str, Any]] = None,
        *,
        timeout_ms: Optional[int] = None,
        env: Optional[Mapping[str, str]] = None,
    ) -> AsyncIterator[Event]:
        """See `Client.events`."""
        path, body = _invoke_path(skill, action), _invoke_body(args, timeout_ms, env)
        async for event in self._events_at(path, body):
            yield event

    async def _events_at(self, path: str, body: Dict[str, Any]) -> AsyncIterator[Event]:
        try:
            async with aconnect_sse(
                self._http,
                "POST",
                path,
                json=body,
                headers={"accept": "text/event-stream"},
            ) as source:
                if not _is_stream(source.response):
                    await source.response.aread()
                    raise _not_a_stream(source.response)
                async for sse in source.aiter_sse():
                    event = _event(sse)
                    if event is not None:
                        yield event
                    if isinstance(event, InvocationResult):
                        return
        except httpx.TransportError as e:
            raise _unreachable(self.server, e) from e
        raise ServiceUnreachable(self.server, "the event stream ended before the result")

    async def submit(
        self,
        skill: str,
        action: str,
        args: Optional[Mapping[str, Any]] = None,
        *,
        timeout_ms: Optional[int] = None,
        env: Optional[Mapping[str, str]] = None,
    ) -> Invocation:
        """See `Client.submit`."""
        response = await self._request(
            "POST",
            _invoke_path(skill, action),
            json=_invoke_body(args, timeout_ms, env),
            headers={"prefer": "respond-async"},
        )
        if response.status_code == 202:
            return Invocation.from_json(_json(response))
        _result_of(response)
        raise ServiceError(response.status_code, "unexpected", response.text[:200])

    async def invocation(self, id: str) -> Invocation:
        """See `Client.invocation`."""
        response = await self._request("GET", f"/v1/invocations/{quote(id, safe='')}")
        if response.status_code != 200:
            raise _service_error(response)
        return Invocation.from_json(_json(response))

    async def cancel(self, id: str) -> Invocation:
        """See `Client.cancel`."""
        response = await self._request("DELETE", f"/v1/invocations/{quote(id, safe='')}")
        if response.status_code != 200:
            raise _service_error(response)
        return Invocation.from_json(_json(response))

    async def wait(
        self, id: str, *, poll: float = 0.1, timeout: Optional[float] = None
    ) -> InvocationResult:
        """See `Client.wait`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            invocation = await self.invocation(id)
            if invocation.state is not InvocationState.RUNNING and invocation.result:
                return invocation.result
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"invocation {id} still running after {timeout}s")
            await asyncio.sleep(poll)

    async def skills(self) -> List[SkillInfo]:
        """See `Client.skills`."""
        response = await self._request("GET", "/v1/skills")
        if response.status_code != 200:
            raise _service_error(response)
        return [SkillInfo.from_json(s) for s in _json(response)["skills"]]

    async def skill(self, name: str) -> SkillInfo:
        """See `Client.skill`."""
        response = await self._request("GET", f"/v1/skills/{quote(name, safe='')}")
        if response.status_code != 200:
            raise _service_error(response)
        return SkillInfo.from_json(_json(response))

    async def tools(self, format: str = "generic") -> List[Dict[str, Any]]:
        """See `Client.tools`."""
        return tool_definitions(await self.skills(), format)

    async def call_tool(
        self, name: str, arguments: Optional[Mapping[str, Any]] = None
    ) -> ToolResult:
        """See `Client.call_tool`."""
        skill, action = split_tool_name(name)
        try:
            return tool_result(await self.invoke(skill, action, arguments or {}))
        except Rejected as refused:
            return tool_result(refused.result)

    async def ready(self) -> Tuple[bool, List[str]]:
        """See `Client.ready`."""
        response = await self._request("GET", "/readyz")
        data = _json(response)
        return bool(data.get("ready")), list(data.get("problems", []))

    def session(
        self,
        skill: str,
        *,
        idle_timeout_ms: Optional[int] = None,
        max_lifetime_ms: Optional[int] = None,
        env: Optional[Mapping[str, str]] = None,
    ) -> "AsyncSession":
        """A session of `skill`, made when entered: `async with client.session(...) as s:`
        (or `await client.session(...).open()`); it ends when the block does."""
        return AsyncSession(self, _session_body(skill, idle_timeout_ms, max_lifetime_ms, env))

    async def get_session(self, id: str) -> "AsyncSession":
        """See `Client.get_session`."""
        response = _ok(await self._request("GET", _session_path(id)), 200)
        session = AsyncSession(self, {})
        session._opened(SessionInfo.from_json(_json(response)))
        return session

    async def sessions(self) -> List[SessionInfo]:
        """See `Client.sessions`."""
        response = _ok(await self._request("GET", "/v1/sessions"), 200)
        return [SessionInfo.from_json(s) for s in _json(response)["sessions"]]


class AsyncSession:
    """The asyncio twin of `Session`."""

    def __init__(self, client: AsyncClient, body: Dict[str, Any]) -> None:
        self.client = client
        self._body = body
        self.info: Optional[SessionInfo] = None
        self.id = ""
        self.files = AsyncSessionFiles(self)

    def _opened(self, info: SessionInfo) -> None:
        self.info = info
        self.id = info.id

    async def open(self) -> "AsyncSession":
        """Make the session (once)."""
        if not self.id:
            response = _ok(await self.client._request("POST", "/v1/sessions", json=self._body), 201)
            self._opened(SessionInfo.from_json(_json(response)))
        return self

    async def __aenter__(self) -> "AsyncSession":
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def invoke(
        self,
        action: str,
        args: Optional[Mapping[str, Any]] = None,
        *,
        timeout_ms: Optional[int] = None,
        on_progress: Optional[ProgressCallback] = None,
    ) -> InvocationResult:
        """See `Session.invoke`."""
        path = _session_path(self.id, "actions", f"{action}:invoke")
        body = _invoke_body(args, timeout_ms, None)
        return await self.client._invoke_at(path, body, on_progress)

    async def keep_alive(self) -> SessionInfo:
        """See `Session.keep_alive`."""
        path = _session_path(self.id, "keepalive")
        response = _ok(await self.client._request("POST", path), 200)
        self._opened(SessionInfo.from_json(_json(response)))
        return SessionInfo.from_json(_json(response))

    async def close(self) -> None:
        """See `Session.close`."""
        if not self.id:
            return
        response = await self.client._request("DELETE", _session_path(self.id))
        if response.status_code not in (204, 404):
            raise _service_error(response)


class AsyncSessionFiles:
    """The asyncio twin of `SessionFiles`."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def write(self, path: str, data: bytes) -> None:
        """See `SessionFiles.write`."""
        path = _session_path(self._session.id, "files", path)
        _ok(await self._session.client._request("PUT", path, content=data), 204)

    async def read(self, path: str) -> bytes:
        """See `SessionFiles.read`."""
        path = _session_path(self._session.id, "files", path)
        return _ok(await self._session.client._request("GET", path), 200).content

    async def list(self) -> List[FileEntry]:
        """See `SessionFiles.list`."""
        path = _session_path(self._session.id, "files")
        listing = _json(_ok(await self._session.client._request("GET", path), 200))
        return [FileEntry.from_json(f) for f in listing["files"]]

    async def delete(self, path: str) -> None:
        """See `SessionFiles.delete`."""
        path = _session_path(self._session.id, "files", path)
        _ok(await self._session.client._request("DELETE", path), 204)


__all__ = [
    "AsyncClient",
    "AsyncSession",
    "AsyncSessionFiles",
    "Client",
    "Session",
    "SessionFiles",
    "default_server",
]
