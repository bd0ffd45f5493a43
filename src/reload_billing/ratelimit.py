"""In-process rate limits (per server process).

- :class:`RateLimiter`: a sliding window, for rare and costly actions (sign-in).
- :class:`TokenBuckets` and :class:`ClientRateLimit`: the developer API's limit per
  client, checked before routing so that a flood costs no database work. A client
  is known by its credentials (a hash of the ``Authorization`` header: client id
  and secret), so that someone who knows only a client id, which is public in
  OAuth links, cannot spend its owner's allowance; calls without credentials
  share one bucket per remote address.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import deque

from starlette.types import ASGIApp, Receive, Scope, Send

from . import jsonbody


class RateLimiter:
    def __init__(self, limit: int, window_seconds: float) -> None:
        self.limit = limit
        self.window = window_seconds
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        return self.retry_after(key) == 0

    def retry_after(self, key: str) -> float:
        """0 when ``key`` may go on now (and counts the hit); else seconds to wait."""
        if self.limit <= 0:
            return 0
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(0.001, hits[0] + self.window - now)
            hits.append(now)
            if len(self._hits) > 100_000:
                self._hits = {k: v for k, v in self._hits.items() if v}
            return 0


class TokenBuckets:
    """One token bucket per key: ``rate`` tokens a second, at most ``burst`` saved."""

    def __init__(self, rate: float, burst: int, *, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.max_keys = max_keys
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, last refill]
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when ``key`` may go on now (one token taken); else seconds until it may."""
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self.max_keys:
                    self._forget_full(now)
                bucket = self._buckets[key] = [float(self.burst), now]
            tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
            if tokens >= 1:
                bucket[0] = tokens - 1
                return 0.0
            bucket[0] = tokens
            return (1 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled (they hold nothing worth keeping)."""
        self._buckets = {
            key: bucket
            for key, bucket in self._buckets.items()
            if bucket[0] + (now - bucket[1]) * self.rate < self.burst
        }
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()


class ClientRateLimit:
    """ASGI: ``/v1/tp/*`` calls beyond the caller's allowance get 429 with Retry-After."""

    def __init__(self, app: ASGIApp, *, rate: float, burst: int, prefix: str = "/v1/tp/") -> None:
        self.app = app
        self.prefix = prefix
        self.buckets = TokenBuckets(rate, burst) if rate > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.buckets is None
            or scope["type"] != "http"
            or not scope["path"].startswith(self.prefix)
        ):
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(self._key(scope))
        if wait == 0:
            await self.app(scope, receive, send)
            return
        message = "too many requests for this client; retry after the Retry-After seconds"
        body = jsonbody.dumps(
            {
                "status": "error",
                "message": message,
                "error": {"code": "rate_limited", "message": message},
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(max(1, math.ceil(wait))).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _key(scope: Scope) -> str:
        for name, value in scope["headers"]:
            if name == b"authorization":
                return hashlib.sha256(value).hexdigest()
        client = scope.get("client")
        return f"address:{client[0] if client else '-'}"
