"""`make bench`: charged usage reports over HTTP, beside the raw database rate.

For each database (SQLite, then PostgreSQL started from the installed binaries with
fsync on): seed an organization, an agent and many users with large balances, start
`reload serve` as its own process, drive it with wrk (concurrent connections, each
request a charged report with a fresh idempotency key, users in rotation) for a
fixed time, and report reports/s, p50/p99 latency and the server's peak memory.
In the same run, measure the same unit of work without HTTP: one commit per report,
and group-committed through the server's write batcher; and the raw commit rate of
a one-row insert.

    python bench/run.py [--seconds 20] [--connections 64] [--only sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Column, Integer, MetaData, String, Table, insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine  # noqa: E402

from reload_billing import migrate  # noqa: E402
from reload_billing.agents import service as agents  # noqa: E402
from reload_billing.db import Database, disposable  # noqa: E402
from reload_billing.ledger.service import Limits  # noqa: E402
from reload_billing.money import to_nanos  # noqa: E402
from reload_billing.oauth import service as oauth  # noqa: E402
from reload_billing.organizations import service as organizations  # noqa: E402
from reload_billing.testing import postgres  # noqa: E402
from reload_billing.usage import service as usage  # noqa: E402
from reload_billing.usage.schemas import UsageReport  # noqa: E402
from reload_billing.users import service as users  # noqa: E402

RELOAD = str(Path(sys.executable).parent / "reload")
COST = "0.0021"


def seed(url: str, n_users: int) -> dict[str, Any]:
    database = Database(url)
    password = "bench-password-1"

    def work(conn: Any) -> dict[str, Any]:
        org, secret = organizations.create_organization(
            conn, name="Bench", email="bench@example.com", password=password, environment="sandbox"
        )
        agent = agents.create_agent(conn, org.id, "Bench agent")
        tokens = []
        for i in range(n_users):
            user = users.create_user(
                conn, email=f"u{i}@bench.test", password=password, first_name="B", last_name="U"
            )
            users.credit(
                conn, user_id=user.id, amount=to_nanos(Decimal(1_000_000)), description="bench"
            )
            token = oauth.issue_direct(
                conn,
                organization_id=org.id,
                user_id=user.id,
                scopes=("identity", "usage_reporting", "payment"),
                agent_ids=None,
                limits=Limits(),
                ttl_days=30,
            )
            tokens.append(token["access_token"])
        return {
            "client_id": org.client_id,
            "client_secret": secret,
            "agent_id": agent.id,
            "tokens": tokens,
        }

    try:
        return database.write(work)
    finally:
        database.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


WRK_SCRIPT = """
local tokens = {%(tokens)s}
local counter = 0
function setup(thread)
  thread:set("prefix", "%(run)s-" .. tostring(math.random(1, 1e9)))
end
request = function()
  counter = counter + 1
  local token = tokens[(counter %% #tokens) + 1]
  local body = '{"aiAgentId":"%(agent)s","description":"Answered a question","usageType":"token_usage",' ..
    '"totalCost":%(cost)s,"llmModel":"gpt-4o","llmProvider":"openai","inputTokens":1200,"outputTokens":150,' ..
    '"chargeUser":true,"idempotencyKey":"' .. prefix .. "-" .. counter .. '"}'
  return wrk.format("POST", "/v1/tp/usage", {
    ["Authorization"] = "%(auth)s",
    ["X-Access-Token"] = token,
    ["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests":%%d,"seconds":%%f,"p50":%%f,"p99":%%f,"non2xx":%%d,"errors":%%d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def http_run(
    url: str,
    seed_data: dict[str, Any],
    seconds: int,
    connections: int,
    env: dict[str, str],
    workers: int = 1,
) -> dict[str, Any]:
    import base64

    port = free_port()
    server = subprocess.Popen(
        [RELOAD, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
        env={**env, "RELOAD_DATABASE_URL": url, "RELOAD_LOG_LEVEL": "warning"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "server did not start: " + (server.stderr.read() if server.stderr else "")
                )
            time.sleep(0.2)
        auth = (
            "Basic "
            + base64.b64encode(
                f"{seed_data['client_id']}:{seed_data['client_secret']}".encode()
            ).decode()
        )
        script = WRK_SCRIPT % {
            "tokens": ",".join(f'"{t}"' for t in seed_data["tokens"]),
            "agent": seed_data["agent_id"],
            "cost": COST,
            "auth": auth,
            "run": secrets.token_hex(4),
        }
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
            handle.write(script)
        # warm-up, then the measured run
        subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                "-d2s",
                "-s",
                handle.name,
                f"http://127.0.0.1:{port}",
            ],
            capture_output=True,
            check=True,
        )
        result = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                f"-d{seconds}s",
                "--timeout",
                "10s",
                "-s",
                handle.name,
                f"http://127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        os.unlink(handle.name)
        line = next(x for x in result.stdout.splitlines() if x.startswith("WRKJSON "))
        stats = json.loads(line[len("WRKJSON ") :])
        stats["reports_per_s"] = (stats["requests"] - stats["non2xx"]) / stats["seconds"]
        stats["peak_rss_mib"] = peak_rss_mib(server.pid) + sum(
            peak_rss_mib(int(child)) for child in _children(server.pid)
        )
        return stats
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def _children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


def _unit_of_work(seed_data: dict[str, Any], token: str, key: str):
    report = UsageReport.model_validate(
        {
            "aiAgentId": seed_data["agent_id"],
            "description": "Answered a question",
            "usageType": "token_usage",
            "totalCost": Decimal(COST),
            "llmModel": "gpt-4o",
            "llmProvider": "openai",
            "inputTokens": 1200,
            "outputTokens": 150,
            "chargeUser": True,
            "idempotencyKey": key,
        }
    )

    def work(conn: Any) -> Any:
        # exactly what POST /v1/tp/usage runs in its unit of work
        organization, context, prefetched = usage.authenticate(
            conn,
            client_id=seed_data["client_id"],
            client_secret=seed_data["client_secret"],
            access_token=token,
            agent_id=seed_data["agent_id"],
            idempotency_key=key,
        )
        return usage.report_usage(
            conn, organization, context, report, fee_percent=Decimal(5), prefetched=prefetched
        )

    return work


def direct_runs(url: str, seed_data: dict[str, Any], seconds: float) -> dict[str, float]:
    """The same unit of work without HTTP: one commit each, then group-committed."""
    results: dict[str, float] = {}
    database = Database(url)
    database.start()
    tokens = seed_data["tokens"]
    run = secrets.token_hex(4)
    try:
        count = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            database.write(
                _unit_of_work(seed_data, tokens[count % len(tokens)], f"{run}-s-{count}")
            )
            count += 1
        results["one_commit_per_report_per_s"] = count / (time.perf_counter() - started)

        stop = time.perf_counter() + seconds
        counts = [0] * 64

        def submitter(index: int) -> None:
            n = 0
            while time.perf_counter() < stop:
                database.writer.run(
                    _unit_of_work(
                        seed_data, tokens[(index + n) % len(tokens)], f"{run}-b-{index}-{n}"
                    )
                )
                n += 1
            counts[index] = n

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=64) as pool:
            list(pool.map(submitter, range(64)))
        results["group_commit_per_s"] = sum(counts) / (time.perf_counter() - started)
    finally:
        database.close()
    return results


def raw_commit_rate(url: str, seconds: float) -> float:
    """The database's own limit: one-row INSERT + COMMIT, one after another."""
    engine = Database(url).engine
    meta = MetaData()
    table = Table(
        f"bench_raw_{secrets.token_hex(3)}",
        meta,
        Column("id", Integer, primary_key=True),
        Column("v", String(20)),
    )
    meta.create_all(engine)
    count = 0
    started = time.perf_counter()
    with engine.connect() as conn:
        while time.perf_counter() - started < seconds:
            with conn.begin():
                conn.execute(insert(table).values(v="x"))
            count += 1
    rate = count / (time.perf_counter() - started)
    meta.drop_all(engine)
    engine.dispose()
    return rate


def bench_backend(
    name: str, url: str, args: argparse.Namespace, env: dict[str, str]
) -> dict[str, Any]:
    migrate.upgrade(url)
    seed_data = seed(url, args.users)
    print(
        f"[{name}] seeded {args.users} users; HTTP run {args.seconds}s x {args.connections} connections",
        flush=True,
    )
    runs = [
        http_run(url, seed_data, args.seconds, args.connections, env, args.workers)
        for _ in range(args.repeat)
    ]
    http = sorted(runs, key=lambda r: r["reports_per_s"])[len(runs) // 2]
    direct = direct_runs(url, seed_data, args.direct_seconds)
    raw = raw_commit_rate(url, 3)
    return {
        "backend": name,
        "server_processes": args.workers,
        "connections": args.connections,
        "http_reports_per_s": round(http["reports_per_s"]),
        "http_p50_ms": round(http["p50"], 2),
        "http_p99_ms": round(http["p99"], 2),
        "http_non2xx": http["non2xx"],
        "http_errors": http["errors"],
        "server_peak_rss_mib": round(http["peak_rss_mib"], 1),
        "runs_reports_per_s": [round(r["reports_per_s"]) for r in runs],
        "direct_one_commit_per_s": round(direct["one_commit_per_report_per_s"]),
        "direct_group_commit_per_s": round(direct["group_commit_per_s"]),
        "raw_insert_commit_per_s": round(raw),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--direct-seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--json", type=Path, default=ROOT / ".bench" / "hot_path.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk (make bench installs it)")
    env = {**os.environ, "RELOAD_SECRET_KEY": "bench", "RELOAD_ENVIRONMENT": "sandbox"}
    results = []
    workdir = Path(tempfile.mkdtemp(prefix="reload-bench-"))
    try:
        if args.only in (None, "sqlite"):
            results.append(bench_backend("sqlite", f"sqlite:///{workdir}/bench.db", args, env))
        if args.only in (None, "postgresql"):
            server = postgres.start(fsync=True)
            try:
                admin = disposable(server.url())
                from sqlalchemy import text

                with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(text("CREATE DATABASE bench"))
                admin.dispose()
                results.append(bench_backend("postgresql", server.url("bench"), args, env))
            finally:
                server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "args": vars(args) | {"json": str(args.json)},
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print()
    print(
        "| database | reports/s (HTTP) | p50 ms | p99 ms | server peak RSS MiB | same work, 1 commit each /s | same work, group commit /s | raw 1-row commits/s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['backend']} | {r['http_reports_per_s']} | {r['http_p50_ms']} | {r['http_p99_ms']} | {r['server_peak_rss_mib']} | "
            f"{r['direct_one_commit_per_s']} | {r['direct_group_commit_per_s']} | {r['raw_insert_commit_per_s']} |"
        )


if __name__ == "__main__":
    main()
