"""A tiny scripted HTTP server on loopback, for the SDK's transport behaviour.

Each request gets the next ``Reply`` of the script (the last one repeats): an
answer, an answer after a delay, or a dropped connection after the request was
read (what a client sees when the server committed but the answer was lost).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from reload_billing.client import _json


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body, parse_float=Decimal) if self.body else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out closed its socket: expected here


class Loopback:
    def __init__(self, script: list[Reply] | Callable[[Received], Reply]) -> None:
        self.script = script
        self.received: list[Received] = []
        self._lock = threading.Lock()
        loopback = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                received = Received(
                    self.command,
                    parts.path,
                    dict(parse_qsl(parts.query)),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                reply = loopback._next(received)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop:
                    self.close_connection = True
                    return
                if reply.body is None:
                    payload = b""
                elif isinstance(reply.body, bytes | str):
                    payload = reply.body.encode() if isinstance(reply.body, str) else reply.body
                else:
                    payload = _json.encode(reply.body)
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("X-Request-Id", f"req_{len(loopback.received)}")
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _handle

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def _next(self, received: Received) -> Reply:
        with self._lock:
            self.received.append(received)
            if callable(self.script):
                return self.script(received)
            index = min(len(self.received), len(self.script)) - 1
            return self.script[index]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def record_json(**overrides: Any) -> dict[str, Any]:
    """A usage record as the server writes it."""
    record: dict[str, Any] = {
        "id": "usg_1",
        "userId": "usr_1",
        "organizationId": "org_1",
        "aiAgentId": "agt_1",
        "description": "Answered a question",
        "totalCost": Decimal("0.000185"),
        "status": "completed",
        "charged": True,
        "chargedAmount": Decimal("0.000185"),
        "refundedAmount": 0,
        "failureReason": None,
        "idempotencyKey": "k",
        "transactions": [],
        "createdAt": "2025-03-01T12:00:00Z",
    }
    record.update(overrides)
    return record


def success(data: Any, **extra: Any) -> dict[str, Any]:
    return {"status": "success", "data": data, **extra}


def failure(
    code: str, message: str = "failed", param: str | None = None, **extra: Any
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if param:
        error["param"] = param
    return {"status": "error", "message": message, "error": error, **extra}
