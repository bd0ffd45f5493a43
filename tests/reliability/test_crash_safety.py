"""Crash safety: SIGKILL the server while clients charge and refund, then audit.

Client processes post charged usage reports and refunds, each with its own
idempotency key, against real ``reload serve`` processes. The server is killed with
SIGKILL at random moments (no shutdown, no flush) and restarted; the clients retry
with the same keys until they get an answer. Afterwards every answer is held
against the database (:func:`tests.reliability.audit.audit`).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.reliability.audit import audit, load_answers, write_figures
from tests.reliability.harness import crash_loop, seed, start_clients, wait_clients
from tests.reliability.servers import ServerProcess

KILLS = 6
CLIENTS = 4
BALANCE = "15"


def crash_run(database_url: str, workdir: Path, *, servers: int, name: str) -> None:
    rng = random.Random()
    seed_value = rng.randrange(1 << 30)
    tenants = seed(database_url, 3, BALANCE)
    processes_ = [
        ServerProcess(database_url, workdir / f"server-{n}.log") for n in range(servers)
    ]
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
