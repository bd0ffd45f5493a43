"""Engine, schema metadata, units of work and the few dialect helpers.

Reads run on a pooled connection in the caller's thread. Writes that must be
durable before an answer (anything that moves money) go through
:class:`WriteBatcher`: concurrent requests share one database transaction, each in
its own savepoint, and every caller is answered only after that commit (group
commit; see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import namedtuple
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    MetaData,
    Table,
    cast,
    create_engine,
    event,
    exc,
    func,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.expression import ClauseElement

log = logging.getLogger("reload.db")
T = TypeVar("T")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Timestamps are integer microseconds since the Unix epoch, UTC: exact, sortable and
# bucketed by plain integer division on every engine.
Timestamp = BigInteger


def now_us() -> int:
    return time.time_ns() // 1000


def to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_us(micros: int) -> datetime:
    """Exact (integer arithmetic, no float seconds)."""
    return _EPOCH + timedelta(microseconds=micros)


_SECOND_TEXT: tuple[int, str] = (0, "1970-01-01T00:00:00")


def rfc3339(micros: int | None) -> str | None:
    """``2026-11-27T03:52:53.123456Z`` (no fraction when it is zero). The text of the
    last second is kept: the records of a batch share it, and formatting a datetime
    is a good part of answering a report."""
    global _SECOND_TEXT
    if micros is None:
        return None
    seconds, fraction = divmod(micros, 1_000_000)
    known = _SECOND_TEXT
    if known[0] == seconds:
        prefix = known[1]
    else:
        prefix = from_us(seconds * 1_000_000).isoformat().removesuffix("+00:00")
        _SECOND_TEXT = (seconds, prefix)
    return f"{prefix}.{fraction:06d}Z" if fraction else f"{prefix}Z"


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and use psycopg 3 for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, *, pool_size: int = 8, immediate: bool = True) -> Engine:
    """An engine for ``url``. On SQLite, ``immediate`` transactions take the write
    lock at BEGIN (for writers: no deadlock-prone lock upgrade); readers use
    deferred ones and never wait for a writer thanks to WAL."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=32,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling breaks SAVEPOINT; take it over.
        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql(begin))
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=32, pool_pre_ping=True)


def _ensure_sqlite_dir(url: str) -> None:
    path = url.split("///", 1)[-1] if "///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def is_sqlite(engine_or_conn: Engine | Connection) -> bool:
    return engine_or_conn.dialect.name == "sqlite"


def insert_ignore(conn: Connection, table: Table, **values: Any) -> None:
    """INSERT that does nothing when the primary key or a unique key exists."""
    if is_sqlite(conn):
        conn.execute(sqlite_insert(table).values(**values).on_conflict_do_nothing())
    else:
        conn.execute(pg_insert(table).values(**values).on_conflict_do_nothing())


def upsert_add(
    conn: Connection,
    table: Table,
    rows: list[dict[str, Any]],
    *,
    key: Sequence[str],
    add: Sequence[str],
) -> None:
    """INSERT each row, or, when its primary key exists, add its ``add`` columns to
    the stored ones (``ON CONFLICT DO UPDATE SET c = c + excluded.c``)."""
    if not rows:
        return
    cache_key = (table.name, conn.dialect.name, tuple(key), tuple(add))
    statement = _UPSERTS.get(cache_key)
    if statement is None:
        # Built once: building a statement costs more than running it.
        insert = sqlite_insert(table) if is_sqlite(conn) else pg_insert(table)
        statement = insert.on_conflict_do_update(
            index_elements=list(key),
            set_={name: table.c[name] + insert.excluded[name] for name in add},
        )
        _UPSERTS[cache_key] = statement
    conn.execute(statement, rows)


_UPSERTS: dict[tuple[Any, ...], Any] = {}


def floor_int(conn: Connection, value: Any) -> Any:
    """FLOOR of a non-negative float, as an integer, alike on both engines (a CAST
    truncates on SQLite but rounds on PostgreSQL)."""
    if is_sqlite(conn):
        return cast(value, BigInteger)
    return cast(func.floor(value), BigInteger)


def is_retryable(error: BaseException) -> bool:
    """Serialization failures and deadlocks (PostgreSQL), busy database (SQLite)."""
    if not isinstance(error, exc.DBAPIError):
        return False
    orig = error.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in ("40001", "40P01", "55P03"):  # serialization, deadlock, lock timeout
        return True
    return "database is locked" in str(orig)


def driver_cursor(conn: Connection) -> Any:
    """A cursor of the DBAPI connection under ``conn``, inside its transaction."""
    return conn.connection.driver_connection.cursor()  # type: ignore[union-attr]


class Prepared:
    """A hot-path statement, compiled once per dialect and set of parameter names and
    run straight on the DBAPI cursor of the unit of work's connection (so inside its
    transaction and savepoint).

    SQLAlchemy's per-execution work (cache key, execution context, result object)
    costs several times what SQLite spends on a one-row INSERT. Only plain statements
    whose columns need no type conversion (integers, strings, floats; a boolean read
    back is 0 or 1 on SQLite) and no Python-side defaults belong here. Driver errors
    come out as SQLAlchemy's exceptions, as from ``Connection.execute``.
    """

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, frozenset[str]], tuple[str, tuple[str, ...] | None]] = {}
        self._rows: dict[tuple[str, ...], Any] = {}

    def _sql(self, conn: Connection, names: frozenset[str]) -> tuple[str, tuple[str, ...] | None]:
        key = (conn.dialect.name, names)
        found = self._compiled.get(key)
        if found is None:
            # An INSERT lists exactly the columns given, like Connection.execute.
            columns = sorted(names) if isinstance(self.statement, Insert) else None
            compiled = self.statement.compile(dialect=conn.dialect, column_keys=columns)
            assert isinstance(compiled, SQLCompiler)
            order = tuple(compiled.positiontup or ()) if compiled.positional else None
            found = self._compiled[key] = (compiled.string, order)
        return found

    def execute(self, conn: Connection, params: dict[str, Any]) -> Any:
        """Run with one set of parameters; the DBAPI cursor (for RETURNING rows)."""
        sql, order = self._sql(conn, frozenset(params))
        args: Any = params if order is None else tuple(params[name] for name in order)
        return _run_raw(conn, sql, args, many=False)

    def first(self, conn: Connection, params: dict[str, Any]) -> Any | None:
        """The first row of a SELECT, its columns as attributes (by their labels)."""
        cursor = self.execute(conn, params)
        try:
            row = cursor.fetchone()
            names = tuple(column[0] for column in cursor.description)
        finally:
            cursor.close()
        if row is None:
            return None
        row_type = self._rows.get(names)
        if row_type is None:
            row_type = self._rows[names] = namedtuple("Row", names, rename=True)
        return row_type(*row)

    def execute_many(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Run once per parameter set; every set has the same names."""
        if not rows:
            return
        sql, order = self._sql(conn, frozenset(rows[0]))
        args: Any = rows if order is None else [tuple(row[name] for name in order) for row in rows]
        _run_raw(conn, sql, args, many=True)


def _run_raw(conn: Connection, sql: str, args: Any, *, many: bool) -> Any:
    dbapi_error: type[Exception] = conn.dialect.loaded_dbapi.Error
    cursor = driver_cursor(conn)
    try:
        if many:
            cursor.executemany(sql, args)
        else:
            cursor.execute(sql, args)
    except dbapi_error as error:
        cursor.close()
        raise exc.DBAPIError.instance(
            sql, args, error, dbapi_error, dialect=conn.dialect, ismulti=many
        ) from error
    return cursor


# Deferred increments: hot rows that every charge credits (an organization's
# earnings, the platform's fees) are summed over a whole batch and written once, in
# a fixed order, just before the commit. That keeps their row locks short and
# ordered, so concurrent batches neither queue on nor deadlock over them.
_JOB_KEY = "reload_job_deferred"
_BATCH_KEY = "reload_batch_deferred"
_deferred_appliers: list[Callable[[Connection, dict[str, int]], None]] = []


def on_flush_deferred(applier: Callable[[Connection, dict[str, int]], None]) -> None:
    """Register the function that writes deferred increments (the ledger's)."""
    if applier not in _deferred_appliers:
        _deferred_appliers.append(applier)


def defer_increment(conn: Connection, key: str, amount: int) -> None:
    pending: dict[str, int] = conn.info.setdefault(_JOB_KEY, {})
    pending[key] = pending.get(key, 0) + amount


def _job_finished(conn: Connection, committed: bool) -> None:
    pending: dict[str, int] = conn.info.pop(_JOB_KEY, {})
    if committed and pending:
        batch: dict[str, int] = conn.info.setdefault(_BATCH_KEY, {})
        for key, amount in pending.items():
            batch[key] = batch.get(key, 0) + amount


def _flush_deferred(conn: Connection) -> None:
    _job_finished(conn, committed=True)
    batch: dict[str, int] = conn.info.pop(_BATCH_KEY, {})
    if batch:
        for applier in _deferred_appliers:
            applier(conn, batch)


def _reset_deferred(conn: Connection) -> None:
    conn.info.pop(_JOB_KEY, None)
    conn.info.pop(_BATCH_KEY, None)


@dataclass(slots=True)
class _Job:
    """A unit of work and whoever waits for it: a thread (``future``) or a
    coroutine (``waiter`` on ``loop``, settled from the writer thread through the
    loop: no thread-safe future or lock per request)."""

    work: Callable[[Connection], Any]
    future: Future[Any] | None = None
    waiter: asyncio.Future[Any] | None = None
    loop: asyncio.AbstractEventLoop | None = None


def _settle_waiters(settled: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for waiter, ok, value in settled:
        if waiter.cancelled():
            continue  # the caller went away; the unit of work stands
        if ok:
            waiter.set_result(value)
        else:
            waiter.set_exception(value)


class WriteBatcher:
    """Group commit: many units of work, one transaction, one commit.

    Each job runs inside its own SAVEPOINT so that a job that raises is rolled back
    alone and its exception goes to its caller; the others commit together. A
    retryable failure of the whole transaction (deadlock, serialization) replays
    the batch one job at a time.
    """

    def __init__(self, engine: Engine, *, max_batch: int = 256, workers: int = 1) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"reload-writer-{i}", daemon=True)
            for i in range(workers)
        ]
        self._started = False
        self.batches = 0
        self.jobs = 0

    def start(self) -> None:
        if not self._started:
            self._started = True
            for thread in self._threads:
                thread.start()

    def stop(self) -> None:
        if self._started:
            for _ in self._threads:
                self._queue.put(None)
            for thread in self._threads:
                thread.join(timeout=10)
            self._started = False

    def submit(self, work: Callable[[Connection], T]) -> Future[T]:
        future: Future[T] = Future()
        self._queue.put(_Job(work, future=future))
        return future

    def run(self, work: Callable[[Connection], T]) -> T:
        """Run a unit of work and wait for its commit (from a plain thread)."""
        return self.submit(work).result()

    async def run_async(self, work: Callable[[Connection], T]) -> T:
        """Run a unit of work and await its commit (from the event loop)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(work, waiter=waiter, loop=loop))
        return await waiter

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)
                    break
                batch.append(job)
            self._execute(batch)

    def _execute(self, batch: list[_Job]) -> None:
        try:
            results = self._transaction(batch)
        except Exception as error:  # the commit itself failed
            if len(batch) > 1 or is_retryable(error):
                log.warning("batch of %d failed (%s); replaying one by one", len(batch), error)
                for job in batch:
                    self._execute_single(job)
                return
            self._settle([(batch[0], False, error)])
            return
        self._settle([(job, ok, value) for job, (ok, value) in zip(batch, results, strict=True)])

    def _execute_single(self, job: _Job, attempts: int = 5) -> None:
        for attempt in range(attempts):
            try:
                ((ok, value),) = self._transaction([job])
            except Exception as error:
                if is_retryable(error) and attempt + 1 < attempts:
                    time.sleep(0.005 * (2**attempt))
                    continue
                self._settle([(job, False, error)])
                return
            self._settle([(job, ok, value)])
            return

    @staticmethod
    def _settle(settled: list[tuple[_Job, bool, Any]]) -> None:
        """Hand each result to its waiter: one wake-up per event loop and batch."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for job, ok, value in settled:
            if job.waiter is not None and job.loop is not None:
                by_loop.setdefault(job.loop, []).append((job.waiter, ok, value))
            elif job.future is not None and job.future.set_running_or_notify_cancel():
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)
        for loop, waiters in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_waiters, waiters)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                log.warning("%d results had no event loop to go to", len(waiters))

    def _transaction(self, batch: list[_Job]) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        self.batches += 1
        self.jobs += len(batch)
        with self.engine.connect() as conn:
            _reset_deferred(conn)
            try:
                with conn.begin():
                    if len(batch) > 1 and not is_sqlite(conn):
                        # A batch of another server process may hold a row this one
                        # needs while waiting for one of ours: give up quickly and
                        # replay one unit at a time (which cannot form such a cycle)
                        # instead of waiting for the deadlock detector.
                        conn.exec_driver_sql("SET LOCAL lock_timeout = '200ms'")
                    if len(batch) == 1:
                        # No savepoint needed: a failure rolls the whole thing back.
                        try:
                            value = batch[0].work(conn)
                        except Exception as error:
                            if is_retryable(error):
                                raise
                            conn.rollback()
                            return [(False, error)]
                        _flush_deferred(conn)
                        return [(True, value)]
                    # Savepoints straight on the driver: SQLAlchemy's nested
                    # transactions cost a quarter of the writer's time per report.
                    cursor = driver_cursor(conn)
                    for job in batch:
                        cursor.execute("SAVEPOINT reload_job")
                        try:
                            value = job.work(conn)
                        except Exception as error:
                            cursor.execute("ROLLBACK TO SAVEPOINT reload_job")
                            cursor.execute("RELEASE SAVEPOINT reload_job")
                            _job_finished(conn, committed=False)
                            if is_retryable(error):
                                raise
                            results.append((False, error))
                        else:
                            cursor.execute("RELEASE SAVEPOINT reload_job")
                            _job_finished(conn, committed=True)
                            results.append((True, value))
                    _flush_deferred(conn)
            finally:
                _reset_deferred(conn)
        return results


class Database:
    """The engine, the write batcher and helpers for plain units of work."""

    def __init__(self, url: str, *, max_batch: int = 256, write_workers: int = 0) -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(self.url)
        self.read_engine = (
            make_engine(self.url, immediate=False) if is_sqlite(self.engine) else self.engine
        )
        if write_workers <= 0:
            # One writer thread per process: its batches never wait on each other.
            # (Several would lock users' rows in different orders and deadlock.)
            write_workers = 1
        self.writer = WriteBatcher(self.engine, max_batch=max_batch, workers=write_workers)

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite(self.engine)

    def start(self) -> None:
        self.writer.start()

    def close(self) -> None:
        self.writer.stop()
        self.engine.dispose()
        self.read_engine.dispose()

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with self.read_engine.connect() as conn:
            yield conn

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run a unit of work in its own transaction in the caller's thread (CLI,
        pages), retried on deadlock or serialization failure."""
        for attempt in range(6):
            try:
                with self.engine.begin() as conn:
                    _reset_deferred(conn)
                    result = work(conn)
                    _flush_deferred(conn)
                    return result
            except exc.DBAPIError as error:
                if not is_retryable(error) or attempt == 5:
                    raise
                time.sleep(0.01 * (2**attempt))
        raise AssertionError("unreachable")


def disposable(url: str) -> Engine:
    """An engine without a pool, for one-off commands."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
    return create_engine(url, poolclass=NullPool)
