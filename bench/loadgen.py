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
    """Send every request once (a str is a GET of that path), over ``concurrency`` keep-alive
    connections."""
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


@dataclass
class PacedResult:
    """What a fixed-rate run sent: per request, when it went out (wall clock) and how long its
    answer took, by the path's kind (the caller's ``kind_of``)."""

    sent_at: dict[str, float]  # request key -> time.time() when it was written
    latencies_ms: dict[str, list[float]]  # kind -> latencies
    statuses: dict[int, int]
    seconds: float
    late: int  # requests that went out more than 100 ms after their turn (the generator lagged)


async def run_paced(
    base_url: str,
    requests: list[tuple[str, str, Request]],
    *,
    rate: float,
    connections: int,
    on_tick=None,
) -> PacedResult:
    """Send ``requests`` (key, kind, request) at ``rate`` per second, whatever the answers take
    (an open loop, as a campaign's opens arrive), over up to ``connections`` keep-alive
    connections. ``on_tick(sent)`` is called about every 0.5 s with the requests sent so far,
    by kind."""
    parts = urlsplit(base_url)
    host = parts.hostname
    queue: asyncio.Queue = asyncio.Queue()
    sent_at: dict[str, float] = {}
    latencies: dict[str, list[float]] = {}
    statuses: dict[int, int] = {}
    sent: dict[str, int] = {}
    late = 0

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, parts.port)
        try:
            while (item := await queue.get()) is not None:
                key, kind, request = item
                started = time.perf_counter()
                sent_at[key] = time.time()
                sent[kind] = sent.get(kind, 0) + 1
                writer.write(request.encode(host))
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    # At a low rate a connection idles longer than the server's keep-alive
                    # (uvicorn: 5 s) and is closed under it: open another and send again.
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, parts.port)
                    started = time.perf_counter()
                    sent_at[key] = time.time()
                    writer.write(request.encode(host))
                    head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                latencies.setdefault(kind, []).append((time.perf_counter() - started) * 1000)
                status = int(head.split(b" ", 2)[1])
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    started = time.perf_counter()
    next_tick = started
    for i, item in enumerate(requests):
        due = started + i / rate
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)
        elif now - due > 0.1 and queue.qsize() > 0:
            late += 1
        queue.put_nowait(item)
        if on_tick is not None and time.perf_counter() >= next_tick:
            next_tick += 0.5
            on_tick(sent)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return PacedResult(sent_at, latencies, statuses, time.perf_counter() - started, late)
