"""Throughput of one skillhost node: one action called back to back by CONCURRENCY
callers, each on its own keep-alive connection, for SECONDS, through one address (the
node's published port with a token, or its unix socket), standard library only.

    python3 deploy/swarm/bench_node.py http://127.0.0.1:8080 --token T echo-serve say
    python3 deploy/swarm/bench_node.py unix:/proc/PID/root/tmp/skillhost/skillhost.sock echo-serve say

Prints one JSON line: calls/s, latency percentiles in ms, and any answer that was not 200.
The load runs on the same machine as the node, so both share its cores: compare the
addresses with each other, not with another machine's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import re
import time
from typing import Awaitable, Callable, List, Tuple

Opener = Callable[[], Awaitable[Tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
LENGTH = re.compile(rb"(?im)^content-length: *(\d+)\r$")


async def caller(opener: Opener, request: bytes, deadline: float,
                 latencies: List[float], failures: List[int]) -> None:
    reader, writer = await opener()
    try:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = LENGTH.search(head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                failures.append(status)
    finally:
        writer.close()


def percentile(sorted_values: List[float], p: float) -> float:
    index = min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))
    return sorted_values[index] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("server", help="http://HOST:PORT or unix:PATH")
    parser.add_argument("skill")
    parser.add_argument("action")
    parser.add_argument("--args", default='{"text": "hi"}', help="the call's arguments, JSON")
    parser.add_argument("--token", default=None, help="bearer token (TCP)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    options = parser.parse_args()

    if options.server.startswith("unix:"):
        opener: Opener = functools.partial(asyncio.open_unix_connection,
                                           options.server[len("unix:"):])
        host = "skillhost"
    else:
        authority = options.server.split("//", 1)[1].rstrip("/")
        address, port = authority.rsplit(":", 1)
        opener = functools.partial(asyncio.open_connection, address, int(port))
        host = authority
    body = json.dumps({"args": json.loads(options.args)}).encode()
    auth = f"Authorization: Bearer {options.token}\r\n" if options.token else ""
    request = (
        f"POST /v1/skills/{options.skill}/actions/{options.action}:invoke HTTP/1.1\r\n"
        f"Host: {host}\r\n{auth}Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body

    # Warm the workers and connections up, then measure.
    await asyncio.gather(*(caller(opener, request, time.monotonic() + options.warmup, [], [])
                           for _ in range(options.concurrency)))
    latencies: List[float] = []
    failures: List[int] = []
    started = time.monotonic()
    await asyncio.gather(*(caller(opener, request, started + options.seconds, latencies, failures)
                           for _ in range(options.concurrency)))
    elapsed = time.monotonic() - started
    latencies.sort()
    print(json.dumps({
        "server": options.server,
        "concurrency": options.concurrency,
        "calls": len(latencies),
        "calls_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50), 3),
        "p99_ms": round(percentile(latencies, 99), 3),
        "not_200": len(failures),
    }))


if __name__ == "__main__":
    asyncio.run(main())
