"""A small HTTP/1.1 load generator: keep-alive connections over asyncio streams.

Lighter than a full HTTP client, so on a 2-core machine the server, not the generator, is
what gets measured. Each connection sends one request at a time (no pipelining).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies_ms: list[float]
    statuses: dict[int, int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


@dataclass
class Request:
    path: str
    method: str = "GET"
    body: bytes = b""
    headers: dict[str, str] | None = None

    def encode(self, host: str) -> bytes:
        lines = [
            f"{self.method} {self.path} HTTP/1.1",
            f"Host: {host}",
            "User-Agent: relance-bench",
        ]
        lines += [f"{k}: {v}" for k, v in (self.headers or {}).items()]
        if self.body or self.method != "GET":
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


async def _connection(
    host: str, port: int, requests: list[Request], latencies: list[float], statuses: dict[int, int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for request in requests:
            started = time.perf_counter()
            writer.write(request.encode(host))
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def run_load(base_url: str, requests: list[Request | str], *, concurrency: int) -> LoadResult:
    """Send every request once (a str is a GET of that path), over ``concurrency`` keep-alive connections."""
    parts = urlsplit(base_url)
    requests = [Request(r) if isinstance(r, str) else r for r in requests]
    shares = [requests[i::concurrency] for i in range(concurrency)]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _connection(parts.hostname, parts.port, share, latencies, statuses)
            for share in shares
            if share
        )
    )
    return LoadResult(len(requests), time.perf_counter() - started, latencies, statuses)
