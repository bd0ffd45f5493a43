"""Load and concurrency: many clients charging the same few users at once.

32 concurrent clients (4 processes of 8 threads) charge and refund three users whose
balances run out during the run, and now and then race on idempotency keys that all
of them share. Nothing may answer 5xx (PostgreSQL deadlocks and serialization
failures are retried inside the server), no balance may pass its floor, and every
balance must be exactly what the answers add up to (no lost update).
"""

from __future__ import annotations

import time

import pytest

from tests.reliability.audit import audit, load_answers, write_figures
from tests.reliability.harness import seed, start_clients, wait_clients
from tests.reliability.servers import ServerProcess

CLIENTS = 4
THREADS = 8
PER_THREAD = 75
BALANCE = "20"


def load_run(database_url, workdir, *, workers: int, servers: int, name: str) -> None:
    tenants = seed(database_url, 3, BALANCE)
    processes = [
        ServerProcess(database_url, workdir / f"server-{n}.log", workers=workers)
        for n in range(servers)
    ]
    for server in processes:
        server.start()
    (workdir / "stop").touch()  # every thread does exactly PER_THREAD requests
    started = time.monotonic()
    try:
        clients, outputs, _ = start_clients(
            workdir,
            processes,
            tenants,
            clients=CLIENTS,
            seed_value=7,
            threads=THREADS,
            min_requests=PER_THREAD,
            max_requests=PER_THREAD,
            shared_keys=20,
            shared_share=0.1,
        )
        wait_clients(clients, workdir)
    finally:
        for server in processes:
            server.stop()
    seconds = time.monotonic() - started
    answers = load_answers(outputs)
    assert len(answers) == CLIENTS * THREADS * PER_THREAD
    figures = audit(database_url, answers, tenants, BALANCE)
    assert figures.usage_failed_402 > 0, "the balances never ran out: the floor was not tested"
    assert figures.shared_key_requests > 0
    write_figures(
        name,
        figures,
        concurrency=CLIENTS * THREADS,
        servers=servers,
        workers=workers,
        seconds=round(seconds, 1),
        requests_per_second=round(len(answers) / seconds),
    )


def test_concurrent_clients_on_one_server(backend, database_url, tmp_path):
    load_run(database_url, tmp_path, workers=1, servers=1, name=f"load-{backend}")


@pytest.mark.parametrize("backend", ["postgresql"])
def test_concurrent_clients_on_worker_processes_sharing_postgresql(backend, database_url, tmp_path):
    load_run(database_url, tmp_path, workers=3, servers=1, name="load-postgresql-3-workers")


@pytest.mark.parametrize("backend", ["postgresql"])
def test_concurrent_clients_on_separate_servers_sharing_postgresql(backend, database_url, tmp_path):
    load_run(database_url, tmp_path, workers=1, servers=2, name="load-postgresql-2-servers")


class _Deadlock(Exception):
    sqlstate = "40P01"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_deadlock_that_outlasts_every_retry_is_503_not_500(backend, settings):
    from sqlalchemy import exc
    from starlette.testclient import TestClient

    from reload_billing.app import create_app

    app = create_app(settings)
    calls = []

    def deadlocked():
        calls.append(1)
        raise exc.OperationalError("UPDATE ledger_accounts ...", {}, _Deadlock("deadlock detected"))

    def broken():
        raise exc.OperationalError("SELECT 1", {}, Exception("something else"))

    app.add_api_route("/v1/tp/test-deadlock", deadlocked)
    app.add_api_route("/v1/tp/test-broken", broken)
    client = TestClient(app, raise_server_exceptions=False)
    busy = client.get("/v1/tp/test-deadlock")
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert busy.json()["error"]["code"] == "service_unavailable"
    assert client.get("/v1/tp/test-broken").status_code == 500  # other failures stay bugs
