"""The Python client against a real `skillhost serve` and the real engine."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
from conftest import make_token, wait_for
import pytest

import skillhost
from skillhost import (
    AsyncClient,
    Client,
    InvocationPath,
    InvocationState,
    Overloaded,
    Progress,
    Rejected,
    ServiceUnreachable,
    SkillFailed,
    Status,
    Unauthorized,
)


def test_invoke_returns_a_typed_result(service, probe):
    with Client(service.server) as client:
        result = client.invoke(probe, "echo", {"data": "hi"})
    assert result.status is Status.OK
    assert result.ok
    assert result.output == {"data": "hi", "len": 2}
    assert isinstance(result.path, InvocationPath)
    assert result.image and result.image.startswith(f"skill-{probe}:")
    assert result.duration_ms >= 0


def test_a_failed_run_is_a_result_and_raise_for_status_names_it(service, probe):
    with Client(service.server) as client:
        result = client.invoke(probe, "fail")
        timed_out = client.invoke(probe, "sleep", {"seconds": 30}, timeout_ms=300)
    assert result.status is Status.SKILL_ERROR
    assert result.error is not None and result.error.code == "probe_failed"
    with pytest.raises(SkillFailed, match="skill_error probe_failed"):
        result.raise_for_status()
    assert timed_out.status is Status.TIMEOUT


def test_progress_arrives_by_callback_and_as_events(service, probe):
    seen = []
    with Client(service.server) as client:
        result = client.invoke(probe, "ok", on_progress=seen.append)
        events = list(client.events(probe, "ok"))
    assert result.ok
    assert seen and seen[0].message == "halfway" and seen[0].fraction == 0.5
    assert isinstance(events[0], Progress)
    assert isinstance(events[-1], skillhost.InvocationResult) and events[-1].ok


def test_refusals_raise_exceptions_naming_what_was_wrong(service, probe):
    with Client(service.server) as client:
        with pytest.raises(Rejected) as unknown:
            client.invoke("no-such-skill", "x")
        with pytest.raises(Rejected) as bad_args:
            client.invoke(probe, "sleep", {"seconds": "long"})
        with pytest.raises(skillhost.NotFound):
            client.skill("no-such-skill")
    assert unknown.value.status_code == 404 and unknown.value.code == "unknown_skill"
    assert bad_args.value.status_code == 422 and bad_args.value.code == "invalid_args"
    assert bad_args.value.result.status is Status.REJECTED


def test_skills_carry_their_schemas_as_tool_definitions(service, probe):
    with Client(service.server) as client:
        skills = {s.name: s for s in client.skills()}
        ready, problems = client.ready()
    assert ready and problems == []
    info = skills[probe]
    assert info.actions["sleep"].input["required"] == ["seconds"]
    tools = {t["name"]: t for t in info.tools()}
    assert tools[f"{probe}__sleep"]["parameters"]["required"] == ["seconds"]


def test_an_async_invocation_is_waited_for_or_cancelled(service, probe):
    with Client(service.server) as client:
        started = client.submit(probe, "sleep", {"seconds": 0.1})
        assert started.state is InvocationState.RUNNING
        result = client.wait(started.id, timeout=30)
        assert result.ok and result.id == started.id
        long = client.submit(probe, "sleep", {"seconds": 60})
        wait_for(lambda: service.containers() > 0, "the call's container")
        cancelled = client.cancel(long.id)
    assert cancelled.state is InvocationState.CANCELLED
    assert cancelled.result is not None and cancelled.result.error.code == "cancelled"
    wait_for(lambda: service.containers() == 0, "the cancelled call's container removal")


async def test_the_asyncio_client_invokes_streams_and_cancels(service, probe):
    async with AsyncClient(service.server) as client:
        results = await asyncio.gather(*(client.invoke(probe, "ok") for _ in range(4)))
        assert all(r.ok for r in results)
        events = [e async for e in client.events(probe, "ok")]
        assert isinstance(events[-1], skillhost.InvocationResult)
        task = asyncio.create_task(client.invoke(probe, "sleep", {"seconds": 60}))
        while service.containers() == 0:
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    wait_for(lambda: service.containers() == 0, "a cancelled caller's container removal")


def test_tcp_needs_the_token(start_service, probe, tmp_path):
    token, tokens = make_token(tmp_path)
    svc = start_service("--listen", "127.0.0.1:0", "--tokens", str(tokens))
    with Client(svc.tcp, token="skh_wrong") as client:
        with pytest.raises(Unauthorized, match="invalid_token"):
            client.invoke(probe, "ok")
    with Client(svc.tcp, token=token) as client:
        assert client.invoke(probe, "ok").ok


def test_overload_raises_with_the_time_to_retry(start_service, probe):
    svc = start_service("--max-in-flight", "1", "--queue", "0")
    with Client(svc.server) as client:
        slow = threading.Thread(target=lambda: client.invoke(probe, "sleep", {"seconds": 2}))
        slow.start()
        wait_for(lambda: svc.containers() > 0, "the first call's container")
        with pytest.raises(Overloaded) as overloaded:
            client.invoke(probe, "ok")
        slow.join()
    assert overloaded.value.status_code == 429
    assert overloaded.value.retry_after >= 1
    assert overloaded.value.code == "overloaded"


def test_an_unreachable_service_is_named_and_known_not_to_have_run_the_call(tmp_path):
    with Client(f"unix:{tmp_path / 'none.sock'}") as client:
        with pytest.raises(ServiceUnreachable, match="none.sock") as refused:
            client.invoke("echo", "say", {"text": "x"})
    assert refused.value.not_sent, "no connection was made: safe to send again"


def test_only_what_provably_did_not_run_is_sent_again():
    from skillhost._client import _retry_wait

    refused = ServiceUnreachable("unix:/x", "refused", not_sent=True)
    cut = ServiceUnreachable("unix:/x", "reset after sending", not_sent=False)
    assert _retry_wait(refused, 0, 0.1) == 0.1
    assert _retry_wait(refused, 3, 0.1) == pytest.approx(0.8), "the backoff doubles"
    assert _retry_wait(refused, 10, 0.1) == 5.0, "up to MAX_BACKOFF"
    assert _retry_wait(cut, 0, 0.1) is None, "it may have run"
    draining = httpx.Response(503, json={"status": "infrastructure_error", "error": {
        "code": "host_shutting_down", "message": "m"}}, headers={"retry-after": "2"})
    assert _retry_wait(draining, 0, 0.1) == 2.0, "after the service's Retry-After"
    starting = httpx.Response(503, json={"error": {"code": "host_starting", "message": "m"}},
                              headers={"retry-after": "1"})
    assert _retry_wait(starting, 0, 0.1) == 1.0, "a service still pulling its images"
    failed = httpx.Response(503, json={"status": "infrastructure_error", "error": {
        "code": "engine_error", "message": "m"}})
    assert _retry_wait(failed, 0, 0.1) is None, "the engine failed during the call"
    assert _retry_wait(httpx.Response(200, json={}), 0, 0.1) is None


def test_a_call_sent_before_the_service_listens_is_sent_again(start_service, probe, tmp_path):
    late = tmp_path / "late.sock"

    def start_later() -> None:
        time.sleep(0.3)
        late.symlink_to(start_service().socket)

    starter = threading.Thread(target=start_later)
    starter.start()
    with Client(f"unix:{late}", retries=8, backoff=0.1) as client:
        assert client.invoke(probe, "ok").ok
    starter.join()


def test_a_draining_service_is_retried_after_its_notice_then_named(start_service, probe):
    import signal

    svc = start_service("--drain-notice", "3s")
    svc.process.send_signal(signal.SIGTERM)
    with Client(svc.server) as client:
        wait_for(lambda: not client.ready()[0], "readiness to fall")
    started = time.monotonic()
    # Refused with a Retry-After of 4 s; by then the listener is closed, and the retries
    # of a refused connection run out.
    with Client(svc.server, retries=2, backoff=0.1) as client:
        with pytest.raises(ServiceUnreachable) as gone:
            client.invoke(probe, "ok")
    assert gone.value.not_sent
    assert time.monotonic() - started >= 3, "it waited for the notice"


def test_a_connection_cut_before_the_answer_may_have_run_the_call():
    # A server that accepts, reads the request and closes without answering.
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def cut() -> None:
        connection, _ = listener.accept()
        connection.recv(65536)
        connection.close()

    threading.Thread(target=cut, daemon=True).start()
    port = listener.getsockname()[1]
    with Client(f"http://127.0.0.1:{port}", token="t") as client:
        with pytest.raises(ServiceUnreachable) as cut_off:
            client.invoke("echo", "say", {"text": "x"})
    listener.close()
    assert not cut_off.value.not_sent, "the request was sent: it may have run"


def test_a_result_names_the_destinations_an_allowlisted_skill_could_reach():
    base = {"id": "i", "skill": "s", "action": "a", "status": "ok", "path": "cold"}
    allowed = skillhost.InvocationResult.from_json(
        {**base, "egress": {"allowed": ["api.example.com:443", "*.pypi.org:443"]}}
    )
    assert allowed.egress_allowed == ["api.example.com:443", "*.pypi.org:443"]
    assert allowed.egress_denied == {}
    plain = skillhost.InvocationResult.from_json(base)
    assert plain.egress_allowed is None and plain.egress_denied is None


def test_a_result_counts_what_the_egress_proxy_refused():
    base = {"id": "i", "skill": "s", "action": "a", "status": "ok", "path": "cold"}
    egress = {
        "allowed": ["api.example.com:443"],
        "denied": [
            {"destination": "evil.test:443", "count": 2},
            {"destination": "169.254.169.254:80", "count": 1},
        ],
    }
    result = skillhost.InvocationResult.from_json({**base, "egress": egress})
    assert result.egress_denied == {"evil.test:443": 2, "169.254.169.254:80": 1}
