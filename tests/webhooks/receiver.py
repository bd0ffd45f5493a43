"""A real webhook receiver on loopback: an HTTP server in a thread that checks
each signature the way a developer's app would, and can be told to fail."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Receipt:
    headers: dict[str, str]
    body: bytes
    signature_ok: bool | None
    status: int

    @property
    def id(self) -> str:
        return self.headers.get("x-webhook-id", "")

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body, parse_float=Decimal)


@dataclass
class Receiver:
    """Answers 200 unless told otherwise: ``fail_first`` 500s per delivery id,
    ``delay`` seconds before answering. ``secret`` checks X-Webhook-Signature."""

    secret: str | None = None
    fail_first: int = 0
    delay: float = 0.0
    port: int = 0
    receipts: list[Receipt] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {key.lower(): value for key, value in self.headers.items()}
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver.answer(headers, body)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"no")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        signature_ok = None
        if self.secret is not None:
            expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            signature_ok = hmac.compare_digest(expected, headers.get("x-webhook-signature", ""))
        with self.lock:
            seen = sum(1 for r in self.receipts if r.id == headers.get("x-webhook-id"))
            status = 500 if seen < self.fail_first else 200
            self.receipts.append(Receipt(headers, body, signature_ok, status))
        return status

    def accepted(self) -> list[Receipt]:
        with self.lock:
            return [r for r in self.receipts if r.status == 200]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(condition: Any, timeout: float = 15.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for a condition")
        time.sleep(interval)
