"""The delivery worker: sends the outbox, at least once, to every endpoint.

It runs as a thread inside ``reload serve`` (unless ``RELOAD_WEBHOOK_WORKER=false``)
and as ``reload worker``; any number of them may run against one database.

A round: look (read-only) for due deliveries; if there are some, claim a batch in one
short write transaction -- a conditional ``UPDATE ... SET locked_until`` that only
takes rows nobody holds, so two workers never send one delivery at the same time
(PostgreSQL also skips rows another worker is claiming at that instant, ``SKIP
LOCKED``) -- then POST them in parallel and record each attempt. A failure (timeout,
connection error, any answer but 2xx) is retried with exponential backoff and jitter
until the retry window ends, then the delivery is marked failed. A worker killed
mid-send loses nothing: its claim expires after the lease and another worker (or the
same one, restarted) sends the delivery again.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import Connection, Select, and_, insert, or_, select, update

from .. import db, jsonbody
from ..config import Settings
from ..db import Database
from ..ids import new_id
from .models import attempts, deliveries, endpoints
from .service import endpoint_secret, sign

log = logging.getLogger("reload.webhooks")
USER_AGENT = "Reload-Webhooks/1"
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Policy:
    """How a worker polls and retries; all durations in seconds."""

    poll: float = 1.0
    backoff: float = 10.0
    backoff_max: float = 3600.0
    retry_window: float = 24 * 3600.0
    timeout: float = 10.0
    concurrency: int = 8

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            poll=settings.webhook_poll_seconds,
            backoff=settings.webhook_backoff_seconds,
            backoff_max=settings.webhook_backoff_max_seconds,
            retry_window=settings.webhook_retry_hours * 3600,
            timeout=settings.webhook_timeout_seconds,
            concurrency=settings.webhook_concurrency,
        )

    @property
    def lease_us(self) -> int:
        # Longer than any send can take (the timeout), with room for the bookkeeping.
        return int((self.timeout * 3 + 30) * 1_000_000)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds before the next try after failed attempt number ``attempt`` (1, 2..):
        a random point between the base and an exponential ceiling (jitter keeps
        many failing deliveries from retrying in lockstep)."""
        ceiling = min(self.backoff_max, self.backoff * 2 ** min(attempt - 1, 40))
        return rng.uniform(min(self.backoff, ceiling), ceiling)


@dataclass(frozen=True)
class Claimed:
    id: str
    endpoint_id: str
    url: str
    secret_nonce: str
    event: str
    payload: str
    attempts: int
    created_at: int
    give_up_at: int | None
    token: str


@dataclass(frozen=True)
class Result:
    status_code: int | None
    latency_ms: float
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


# --- claiming -------------------------------------------------------------------


def _free(now: int) -> Any:
    return or_(deliveries.c.locked_until.is_(None), deliveries.c.locked_until < now)


def _due(now: int) -> Select[Any]:
    return (
        select(deliveries.c.id)
        .join(endpoints, endpoints.c.id == deliveries.c.endpoint_id)
        .where(
            and_(
                deliveries.c.status == "pending",
                deliveries.c.next_attempt_at <= now,
                _free(now),
                endpoints.c.enabled,
                endpoints.c.deleted_at.is_(None),
            )
        )
        .order_by(deliveries.c.next_attempt_at)
    )


def _skip_locked(conn: Connection, query: Select[Any]) -> Select[Any]:
    """Dialect helper: on PostgreSQL, pass over rows another worker's claim holds
    locked right now instead of waiting for them (SQLite has one writer anyway)."""
    if db.is_sqlite(conn):
        return query
    return query.with_for_update(skip_locked=True, of=deliveries)


def has_due(conn: Connection, now: int) -> bool:
    return conn.execute(_due(now).limit(1)).first() is not None


def claim(conn: Connection, now: int, lease_us: int, limit: int) -> list[Claimed]:
    """Take up to ``limit`` due deliveries for this worker until ``now + lease``."""
    candidates = list(conn.execute(_skip_locked(conn, _due(now).limit(limit))).scalars())
    if not candidates:
        return []
    token = new_id("lck")
    taken = list(
        conn.execute(
            update(deliveries)
            .where(
                and_(
                    deliveries.c.id.in_(candidates),
                    deliveries.c.status == "pending",
                    _free(now),
                )
            )
            .values(locked_until=now + lease_us, lock_token=token)
            .returning(deliveries.c.id)
        ).scalars()
    )
    if not taken:
        return []
    rows = conn.execute(
        select(
            deliveries.c.id,
            deliveries.c.endpoint_id,
            deliveries.c.event,
            deliveries.c.payload,
            deliveries.c.attempts,
            deliveries.c.created_at,
            deliveries.c.give_up_at,
            endpoints.c.url,
            endpoints.c.secret_nonce,
        )
        .join(endpoints, endpoints.c.id == deliveries.c.endpoint_id)
        .where(deliveries.c.id.in_(taken))
        .order_by(deliveries.c.next_attempt_at)
    ).all()
    return [
        Claimed(
            id=row.id,
            endpoint_id=row.endpoint_id,
            url=row.url,
            secret_nonce=row.secret_nonce,
            event=row.event,
            payload=row.payload,
            attempts=row.attempts,
            created_at=row.created_at,
            give_up_at=row.give_up_at,
            token=token,
        )
        for row in rows
    ]


def record(
    conn: Connection,
    delivery: Claimed,
    result: Result,
    *,
    now: int,
    policy: Policy,
    rng: random.Random,
) -> str:
    """Keep the attempt and move the delivery on; returns its new status."""
    conn.execute(
        insert(attempts).values(
            delivery_id=delivery.id,
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            error=result.error,
            created_at=now,
        )
    )
    attempt = delivery.attempts + 1
    if result.ok:
        conn.execute(
            update(deliveries)
            .where(and_(deliveries.c.id == delivery.id, deliveries.c.status == "pending"))
            .values(
                status="delivered",
                attempts=attempt,
                delivered_at=now,
                last_status_code=result.status_code,
                last_error=None,
                locked_until=None,
                lock_token=None,
            )
        )
        return "delivered"
    deadline = delivery.give_up_at or delivery.created_at + int(policy.retry_window * 1_000_000)
    if now >= deadline:
        status, next_at = "failed", now
    else:
        status = "pending"
        next_at = min(now + int(policy.delay(attempt, rng) * 1_000_000), deadline)
    conn.execute(
        update(deliveries)
        .where(and_(deliveries.c.id == delivery.id, deliveries.c.lock_token == delivery.token))
        .values(
            status=status,
            attempts=attempt,
            next_attempt_at=next_at,
            last_status_code=result.status_code,
            last_error=result.error,
            locked_until=None,
            lock_token=None,
        )
    )
    return status


def expire_held(conn: Connection, now: int, retry_us: int) -> int:
    """Deliveries that waited for a disabled endpoint past their window: failed."""
    result = conn.execute(
        update(deliveries)
        .where(
            and_(
                deliveries.c.status == "pending",
                _free(now),
                deliveries.c.endpoint_id.in_(select(endpoints.c.id).where(~endpoints.c.enabled)),
                or_(
                    deliveries.c.give_up_at < now,
                    and_(
                        deliveries.c.give_up_at.is_(None),
                        deliveries.c.created_at < now - retry_us,
                    ),
                ),
            )
        )
        .values(status="failed", last_error="retry window ended before the endpoint was enabled")
    )
    return int(result.rowcount or 0)


# --- sending --------------------------------------------------------------------


def body_for(delivery: Claimed, sent_at: int) -> bytes:
    """The signed body: the stored event plus ``sentAt``, the time of this attempt
    (receivers refuse old ``sentAt`` to stop replays; retries carry a fresh one)."""
    stored = json.loads(delivery.payload, parse_float=Decimal)
    event = {
        "id": stored["id"],
        "event": stored["event"],
        "timestamp": stored["timestamp"],
        "sentAt": db.rfc3339(sent_at),
        "data": stored["data"],
    }
    return jsonbody.dumps(event)


def send(client: httpx.Client, delivery: Claimed, secret: str) -> Result:
    body = body_for(delivery, db.now_us())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Webhook-Event": delivery.event,
        "X-Webhook-Id": delivery.id,
        "X-Webhook-Signature": sign(secret, body),
    }
    started = time.perf_counter()
    try:
        response = client.post(delivery.url, content=body, headers=headers)
    except httpx.TimeoutException as error:
        return Result(None, _ms(started), f"timeout: {type(error).__name__}")
    except httpx.HTTPError as error:
        return Result(None, _ms(started), f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS])
    latency = _ms(started)
    if 200 <= response.status_code < 300:
        return Result(response.status_code, latency, None)
    excerpt = response.text[:200].strip()
    problem = f"HTTP {response.status_code}" + (f": {excerpt}" if excerpt else "")
    return Result(response.status_code, latency, problem[:MAX_ERROR_CHARS])


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


class DeliveryWorker:
    """Sends due deliveries; :meth:`run_once` is one round, :meth:`start` a thread."""

    def __init__(self, database: Database, settings: Settings, *, policy: Policy | None = None):
        self.database = database
        self.policy = policy or Policy.from_settings(settings)
        self.secret_key = settings.resolved_secret_key()
        self.client = httpx.Client(
            timeout=self.policy.timeout, follow_redirects=False, trust_env=False
        )
        self.pool = ThreadPoolExecutor(
            max_workers=self.policy.concurrency, thread_name_prefix="reload-webhook-send"
        )
        self.rng = random.Random()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_expiry = 0.0
        self.sent = 0

    def run_once(self) -> int:
        """One round: claim what is due and send it. Returns how many were tried."""
        now = db.now_us()
        self._expire(now)
        with self.database.read() as conn:
            if not has_due(conn, now):
                return 0
        claimed = self.database.write(
            lambda conn: claim(conn, now, self.policy.lease_us, self.policy.concurrency)
        )
        if claimed:
            list(self.pool.map(self._deliver, claimed))
        return len(claimed)

    def drain(self, timeout: float = 30.0) -> int:
        """Run rounds until nothing is due (what ``reload worker --once`` does)."""
        tried = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            count = self.run_once()
            if count == 0:
                break
            tried += count
        return tried

    def _deliver(self, delivery: Claimed) -> None:
        try:
            secret = endpoint_secret(self.secret_key, delivery.endpoint_id, delivery.secret_nonce)
            result = send(self.client, delivery, secret)
            status = self.database.write(
                lambda conn: record(
                    conn, delivery, result, now=db.now_us(), policy=self.policy, rng=self.rng
                )
            )
            self.sent += 1
            if result.ok:
                log.info("webhook %s %s delivered", delivery.id, delivery.event)
            else:
                log.warning("webhook %s attempt failed (%s): %s", delivery.id, status, result.error)
        except Exception:  # never let one delivery stop the worker; the lease expires
            log.exception("webhook %s: could not deliver", delivery.id)

    def _expire(self, now: int) -> None:
        if time.monotonic() - self._last_expiry < 60:
            return
        self._last_expiry = time.monotonic()
        retry_us = int(self.policy.retry_window * 1_000_000)
        self.database.write(lambda conn: expire_held(conn, now, retry_us))

    def run(self) -> None:
        """Rounds until :meth:`stop`: at once while there is work, else every poll."""
        while not self._stop.is_set():
            try:
                busy = self.run_once() > 0
            except Exception:
                log.exception("webhook worker round failed")
                busy = False
            if not busy:
                self._stop.wait(self.policy.poll)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="reload-webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.policy.timeout + 5)
            self._thread = None
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.client.close()
