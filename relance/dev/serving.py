"""Serve an ASGI app with uvicorn inside an already-running event loop (dev sink, tests).

The socket is bound before uvicorn starts, so port 0 gives a free port and a busy port fails
at once with OSError (uvicorn would call sys.exit). Signal handling is left to whoever owns
the loop.
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
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(1024)
    return sock


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
