"""Run traffic client processes against server processes, with or without crashes."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reload_billing.db import Database
from tests.conftest import Tenant, seed_tenant
from tests.reliability.servers import ROOT, ServerProcess


@dataclass
class Run:
    tenants: list[Tenant]
    answers: list[Path]
    kills: int
    seconds: float


def seed(database_url: str, count: int, balance: str) -> list[Tenant]:
    database = Database(database_url)
    try:
        return [seed_tenant(database, balance=balance) for _ in range(count)]
    finally:
        database.close()


def start_clients(
    workdir: Path,
    servers: list[ServerProcess],
    tenants: list[Tenant],
    *,
    clients: int,
    seed_value: int,
    **options: Any,
) -> tuple[list[subprocess.Popen[bytes]], list[Path], Path]:
    stop_file = workdir / "stop"
    processes = []
    outputs = []
    for number in range(clients):
        out = workdir / f"answers-{number}.jsonl"
        config = {
            "client": number,
            "seed": seed_value,
            "servers": [server.url for server in servers],
            "tenants": [asdict(t) for t in tenants],
            "out": str(out),
            "stop_file": str(stop_file),
            "min_requests": 100,
            "max_requests": 5000,
            "threads": 1,
            "refund_share": 0.25,
            **options,
        }
        path = workdir / f"client-{number}.json"
        path.write_text(json.dumps(config))
        log = (workdir / f"client-{number}.log").open("wb")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.reliability.traffic", str(path)],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        outputs.append(out)
    return processes, outputs, stop_file


def wait_clients(
    processes: list[subprocess.Popen[bytes]], workdir: Path, timeout: float = 180
) -> None:
    deadline = time.monotonic() + timeout
    for number, process in enumerate(processes):
        try:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"client {number} did not finish") from None
        log = (workdir / f"client-{number}.log").read_text()
        assert process.returncode == 0, f"client {number} failed:\n{log[-3000:]}"


def crash_loop(
    servers: list[ServerProcess],
    *,
    kills: int,
    rng: random.Random,
    gap: tuple[float, float] = (0.3, 1.5),
) -> int:
    """SIGKILL a random server ``kills`` times at random moments, restarting it each time."""
    done = 0
    while done < kills:
        time.sleep(rng.uniform(*gap))
        victim = rng.choice(servers)
        victim.kill()
        done += 1
        # Leave the clients hammering at a dead port for a moment, then restart.
        time.sleep(rng.uniform(0.0, 0.3))
        victim.start()
    return done
