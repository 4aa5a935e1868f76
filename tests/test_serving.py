"""The servers the tests and the dev tools run in-process (relance/dev/serving.py: the live
stack's API, the dev mail inbox and SMS endpoint)."""

from __future__ import annotations

import socket

import httpx
from fastapi import FastAPI

from relance.dev.serving import ServedApp, free_ports


async def test_a_kept_alive_connection_gets_each_answer_at_once():
    """Nagle's algorithm is off on every connection the server accepts: with it on, the end of
    each answer waited for the client's delayed acknowledgement (about 40 ms a request)."""
    app = FastAPI()

    @app.post("/echo")
    def echo(body: dict) -> dict:
        return body

    served = ServedApp(app)
    await served.start()
    try:
        async with httpx.AsyncClient(base_url=served.url) as client:
            for n in range(3):  # the same connection each time
                assert (await client.post("/echo", json={"n": n})).json() == {"n": n}
            connections = list(served._server.server_state.connections)
            assert connections, "the client's connection is open"
            for connection in connections:
                sock = connection.transport.get_extra_info("socket")
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        await served.stop()


def test_the_ports_picked_for_a_stack_are_all_different():
    """Five servers of `make run` (Temporal, its UI, the mail sink's two, the API) each get
    their own port, however many are asked for at once."""
    ports = free_ports(200)
    assert len(set(ports)) == 200
