"""A live HTTP server on 127.0.0.1 for clients that need a real socket (CLI, SDKs, browser)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import uvicorn

from app.main import create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(make_container) -> Iterator[Callable[..., str]]:  # type: ignore[no-untyped-def]
    """`live_server(container=None) -> base_url`; servers stop at the end of the test."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(container=None) -> str:  # type: ignore[no-untyped-def]
        container = container or make_container()
        port = free_port()
        config = uvicorn.Config(create_app(container=container), host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)
