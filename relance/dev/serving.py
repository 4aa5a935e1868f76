"""Serve an ASGI app with uvicorn inside an already-running event loop (dev sink, tests).

The socket is bound before uvicorn starts, so port 0 gives a free port and a busy port fails
at once with OSError (uvicorn would call sys.exit). Signal handling is left to whoever owns
the loop.

The socket says it is TCP (``IPPROTO_TCP``), and that matters: asyncio turns Nagle's algorithm
off (``TCP_NODELAY``) on the connections of a TCP socket only, and with it on, a response's last
bytes waited for the client's delayed acknowledgement: about 40 ms per request on a kept-alive
connection, where the same app under ``uvicorn --host`` answered in about 1 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import uvicorn


class _Server(uvicorn.Server):
    def capture_signals(self):
        return contextlib.nullcontext()


def listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(1024)
    return sock


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` different ports free now, for servers another process will bind. All are held
    open until the last is picked: asked one at a time, the system may hand out the same free
    port twice (the API and Temporal once got the same one, and the API never started)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports


class ServedApp:
    def __init__(
        self,
        app,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        lifespan: str = "off",
        sock: socket.socket | None = None,
    ) -> None:
        self.sock = sock or listening_socket(host, port)
        host = self.sock.getsockname()[0]
        self.host, self.port = host, self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(
            app, lifespan=lifespan, log_level="warning", timeout_graceful_shutdown=2
        )
        self._server = _Server(config)
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self.sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # re-raise why it died
                raise RuntimeError(f"the server on {self.url} stopped during start-up")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout=5)
            self._task = None
        self.sock.close()
