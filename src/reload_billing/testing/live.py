"""A real Reload server on loopback, in a thread of the calling process."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import uvicorn

from ..app import create_app
from ..config import Settings


@dataclass
class LiveServer:
    url: str
    database_url: str
    settings: Settings
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def start(settings: Settings) -> LiveServer:
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets (else Nagle
    # and delayed ACKs add 40 ms to answers on kept-alive connections).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = settings.model_copy(update={"base_url": f"http://127.0.0.1:{port}"})
    config = uvicorn.Config(
        create_app(settings),
        log_level="warning",
        access_log=False,
        lifespan="on",
        loop="asyncio",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    return LiveServer(f"http://127.0.0.1:{port}", settings.database_url, settings, server, thread)
