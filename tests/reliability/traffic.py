"""A client process for the reliability tests: ``python -m tests.reliability.traffic CONFIG``.

It posts charged usage reports and refunds, each with its own idempotency key, and
retries a request with the same key until it gets an answer: through connection
errors (a killed server), ``409 idempotency_key_in_use``, ``429`` and ``503``. Every
final answer (status and body) is written as one JSON line, so that a checker can
hold the database to what the clients were told.

Config (JSON): ``client`` (number), ``seed``, ``servers`` (base URLs, taken in turn;
a client moves to the next one when a connection fails, like a load balancer), ``tenants`` (client
id, secret, access token, agent id), ``out``, ``stop_file``, ``min_requests``,
``max_requests``, ``threads``, ``refund_share``, ``shared_keys`` (how many keys all
clients share, to race on), ``shared_share``.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from reload_billing import jsonbody
from reload_billing.money import from_nanos, to_nanos

RETRY_STATUSES = {429, 502, 503, 504}
REQUEST_DEADLINE = 90.0


def nanos(amount: Any) -> int:
    """A JSON number of the answer (int or Decimal) in nano-dollars."""
    return to_nanos(Decimal(str(amount)))


def shared_body(key_number: int, tenants: list[dict[str, Any]]) -> tuple[int, Decimal]:
    """The one body every client sends with shared key ``key_number``."""
    return key_number % len(tenants), Decimal(key_number % 7 + 1) / 20


class Traffic:
    def __init__(self, config: dict[str, Any], thread: int, out: Any, lock: threading.Lock) -> None:
        self.config = config
        self.thread = thread
        self.out = out
        self.lock = lock
        self.random = random.Random(f"{config['seed']}-{config['client']}-{thread}")
        self.servers = list(config["servers"])
        self.server = self.random.randrange(len(self.servers))
        self.tenants = config["tenants"]
        self.clients = [
            httpx.Client(auth=(t["client_id"], t["client_secret"]), timeout=30)
            for t in self.tenants
        ]
        self.refundable: list[tuple[int, str, int]] = []  # tenant, record id, nanos left
        self.prefix = f"c{config['client']}t{thread}"

    def send(
        self, tenant: int, path: str, body: dict[str, Any] | None, headers: dict[str, str]
    ) -> dict[str, Any]:
        """POST until answered; returns status, body text, replay flag and attempts."""
        content = jsonbody.dumps(body) if body is not None else b""
        headers = {
            "Content-Type": "application/json",
            "X-Access-Token": self.tenants[tenant]["access_token"],
            **headers,
        }
        started = time.monotonic()
        attempts = 0
        # Round robin over the servers, like a load balancer: every server (and so
        # every crash) sees a share of each client's requests.
        self.server = (self.server + 1) % len(self.servers)
        while True:
            attempts += 1
            url = self.servers[self.server] + path
            try:
                response = self.clients[tenant].post(url, content=content, headers=headers)
            except httpx.TransportError:
                self.server = (self.server + 1) % len(self.servers)
                if time.monotonic() - started > REQUEST_DEADLINE:
                    return {"status": None, "body": "", "replayed": False, "attempts": attempts}
                time.sleep(0.02 + self.random.random() * 0.05)
                continue
            retry = response.status_code in RETRY_STATUSES or (
                response.status_code == 409 and "idempotency_key_in_use" in response.text
            )
            if retry and time.monotonic() - started < REQUEST_DEADLINE:
                wait = float(response.headers.get("retry-after", "0") or 0)
                time.sleep(min(wait, 1.0) + 0.01 + self.random.random() * 0.03)
                continue
            return {
                "status": response.status_code,
                "body": response.text,
                "replayed": response.headers.get("idempotent-replayed") == "true",
                "attempts": attempts,
            }

    def usage(self, number: int) -> dict[str, Any]:
        shared = self.config.get("shared_keys", 0)
        if shared and self.random.random() < self.config.get("shared_share", 0.1):
            key_number = self.random.randrange(shared)
            tenant, cost = shared_body(key_number, self.tenants)
            key = f"shared-{key_number}"
        else:
            tenant = self.random.randrange(len(self.tenants))
            # Amounts with up to 9 decimals, so that rounding is exercised too.
            cost = from_nanos(
                self.random.choice([1, 7, 50, 120, 200]) * 1_000_000 + self.random.randrange(1000)
            )
            key = f"{self.prefix}-u{number}"
        body = {
            "aiAgentId": self.tenants[tenant]["agent_id"],
            "description": f"reliability request {key}",
            "totalCost": cost,
            "chargeUser": True,
            "idempotencyKey": key,
        }
        if not key.startswith("shared-"):
            body["inputTokens"] = number
        answer = self.send(tenant, "/v1/tp/usage", body, {})
        if answer["status"] == 201 and not key.startswith("shared-"):
            record = json.loads(answer["body"], parse_float=Decimal)["data"]
            left = nanos(record["chargedAmount"]) - nanos(record["refundedAmount"])
            if left > 0:
                self.refundable.append((tenant, record["id"], left))
        return {"kind": "usage", "key": key, "tenant": tenant, "cost": str(cost), **answer}

    def refund(self, number: int) -> dict[str, Any]:
        index = self.random.randrange(len(self.refundable))
        tenant, record_id, left = self.refundable[index]
        key = f"{self.prefix}-r{number}"
        amount = None if self.random.random() < 0.5 else self.random.randint(1, left)
        body = {"reason": "reliability"} if amount is None else {"amount": from_nanos(amount)}
        answer = self.send(
            tenant, f"/v1/tp/usage-reports/{record_id}/refund", body, {"Idempotency-Key": key}
        )
        if answer["status"] == 201:
            refunded = nanos(json.loads(answer["body"], parse_float=Decimal)["data"]["amount"])
            if refunded >= left:
                self.refundable.pop(index)
            else:
                self.refundable[index] = (tenant, record_id, left - refunded)
        return {
            "kind": "refund",
            "key": key,
            "tenant": tenant,
            "record": record_id,
            "amount": None if amount is None else str(from_nanos(amount)),
            **answer,
        }

    def run(self) -> None:
        stop_file = Path(self.config["stop_file"])
        number = 0
        while number < self.config["max_requests"]:
            if number >= self.config["min_requests"] and stop_file.exists():
                break
            if self.refundable and self.random.random() < self.config.get("refund_share", 0.25):
                line = self.refund(number)
            else:
                line = self.usage(number)
            line["client"] = self.config["client"]
            line["thread"] = self.thread
            with self.lock:
                self.out.write(json.dumps(line) + "\n")
                self.out.flush()
            number += 1
        for client in self.clients:
            client.close()


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    lock = threading.Lock()
    failures: list[BaseException] = []

    def run(traffic: Traffic) -> None:
        try:
            traffic.run()
        except BaseException as error:
            failures.append(error)
            raise

    with Path(config["out"]).open("a") as out:
        threads = [
            threading.Thread(target=run, args=(Traffic(config, n, out, lock),))
            for n in range(config.get("threads", 1))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
