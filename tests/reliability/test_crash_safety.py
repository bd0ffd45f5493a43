"""Crash safety: SIGKILL the server while clients charge and refund, then audit.

Client processes post charged usage reports and refunds, each with its own
idempotency key, against real ``reload serve`` processes. The server is killed with
SIGKILL at random moments (no shutdown, no flush) and restarted; the clients retry
with the same keys until they get an answer. Afterwards every answer is held
against the database (:func:`tests.reliability.audit.audit`).
"""

from __future__ import annotations

import random
import shutil
import time
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from reload_billing.db import Database
from reload_billing.ledger import service as ledger
from reload_billing.organizations.models import organizations
from tests.reliability.audit import audit, load_answers, write_figures
from tests.reliability.harness import crash_loop, seed, start_clients, wait_clients
from tests.reliability.servers import ServerProcess

KILLS = 6
CLIENTS = 4
BALANCE = "8"


def crash_run(database_url: str, workdir: Path, *, servers: int, name: str) -> None:
    rng = random.Random()
    seed_value = rng.randrange(1 << 30)
    tenants = seed(database_url, 3, BALANCE)
    processes_ = [ServerProcess(database_url, workdir / f"server-{n}.log") for n in range(servers)]
    for server in processes_:
        server.start()
    started = time.monotonic()
    clients, outputs, stop_file = start_clients(
        workdir, processes_, tenants, clients=CLIENTS, seed_value=seed_value
    )
    try:
        kills = crash_loop(processes_, kills=KILLS, rng=rng)
        stop_file.touch()
        wait_clients(clients, workdir)
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
        for server in processes_:
            server.stop()
    seconds = time.monotonic() - started
    answers = load_answers(outputs)
    figures = audit(database_url, answers, tenants, BALANCE)
    assert kills >= 5
    # The kills landed while requests were in flight: some had to be retried.
    assert figures.retried > 0, "no request was ever interrupted by a crash"
    write_figures(
        name,
        figures,
        kills=kills,
        servers=servers,
        clients=CLIENTS,
        seconds=round(seconds, 1),
        seed=seed_value,
    )


def test_sigkilled_server_loses_and_duplicates_nothing(backend, database_url, tmp_path):
    crash_run(database_url, tmp_path, servers=1, name=f"crash-{backend}")


@pytest.mark.parametrize("backend", ["postgresql"])
def test_two_servers_on_one_postgresql_survive_sigkills(backend, database_url, tmp_path):
    crash_run(database_url, tmp_path, servers=2, name="crash-postgresql-2-servers")


def _tamper_status(conn):
    from sqlalchemy import update

    from reload_billing.usage.models import usage_records

    record = conn.execute(
        select(usage_records.c.id).where(usage_records.c.status == "completed").limit(1)
    ).scalar_one()
    conn.execute(update(usage_records).where(usage_records.c.id == record).values(status="failed"))


def _tamper_second_charge(conn):
    from reload_billing.ledger.models import transactions
    from reload_billing.usage.models import usage_records

    row = conn.execute(
        select(usage_records).where(usage_records.c.charged.is_(True)).limit(1)
    ).first()
    ledger.charge(
        conn,
        billing_account_id=conn.execute(
            select(transactions.c.billing_account_id).where(
                transactions.c.usage_record_id == row.id
            )
        ).scalar(),
        earnings_account_id=conn.execute(
            select(organizations.c.earnings_account_id).where(
                organizations.c.id == row.organization_id
            )
        ).scalar_one(),
        amount=1,
        fee_percent=Decimal(5),
        usage_record_id=row.id,
        organization_id=row.organization_id,
        user_id=row.user_id,
        description="a second charge",
    )


def _tamper_move_a_nanodollar(conn):
    from reload_billing.users.models import users

    first, second = conn.execute(select(users.c.id).limit(2)).scalars().all()
    ledger.top_up(conn, billing_account_id=_account(conn, first), user_id=first, amount=1)
    posted = ledger.top_up(
        conn, billing_account_id=_account(conn, second), user_id=second, amount=1
    )
    assert posted.balance_after


def _account(conn, user_id):
    from reload_billing.users.models import users

    return conn.execute(
        select(users.c.billing_account_id).where(users.c.id == user_id)
    ).scalar_one()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_audit_catches_a_lost_or_doubled_charge(backend, database_url, tmp_path):
    """The checker itself: a clean run passes, and each kind of damage fails it."""
    tenants = seed(database_url, 2, "3")
    server = ServerProcess(database_url, tmp_path / "server.log")
    server.start()
    (tmp_path / "stop").touch()
    try:
        clients, outputs, _ = start_clients(
            tmp_path, [server], tenants, clients=1, seed_value=3, min_requests=80, max_requests=80
        )
        wait_clients(clients, tmp_path)
    finally:
        server.stop()
    answers = load_answers(outputs)
    audit(database_url, answers, tenants, "3")
    source = Path(database_url.removeprefix("sqlite:///"))
    for damage in (_tamper_status, _tamper_second_charge, _tamper_move_a_nanodollar):
        copy = tmp_path / f"{damage.__name__}.db"
        shutil.copy(source, copy)
        database = Database(f"sqlite:///{copy}")
        database.write(damage)
        database.close()
        with pytest.raises(AssertionError):
            audit(f"sqlite:///{copy}", answers, tenants, "3")
