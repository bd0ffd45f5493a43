"""Fixtures: every storage test runs on SQLite and on PostgreSQL.

A throwaway PostgreSQL server is started once per test session from the installed
binaries; each test gets a fresh database (SQLite: a copy of a migrated file;
PostgreSQL: CREATE DATABASE ... TEMPLATE of a migrated one).
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from reload_billing import migrate
from reload_billing.agents import service as agents
from reload_billing.config import Settings
from reload_billing.db import Database, disposable
from reload_billing.ledger.service import Limits
from reload_billing.money import to_nanos
from reload_billing.oauth import service as oauth
from reload_billing.organizations import service as organizations
from reload_billing.testing import live, postgres
from reload_billing.users import service as users

BACKENDS = ["sqlite", "postgresql"]
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[postgres.PostgresServer]:
    server = postgres.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_template(pg_server: postgres.PostgresServer) -> str:
    admin = disposable(pg_server.url())
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("CREATE DATABASE reload_template"))
    admin.dispose()
    migrate.upgrade(pg_server.url("reload_template"))
    return "reload_template"


def fresh_database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "reload.db"
        shutil.copy(template, path)
        return f"sqlite:///{path}"
    server: postgres.PostgresServer = request.getfixturevalue("pg_server")
    template_name: str = request.getfixturevalue("pg_template")
    name = f"reload_test_{next(_counter)}"
    admin = disposable(server.url())
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {template_name}"))
    admin.dispose()
    return server.url(name)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return fresh_database_url(backend, request, tmp_path)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        secret_key="test-secret-key-not-for-production",
        environment="sandbox",
    )


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url)
    database.start()
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def live_server(settings: Settings) -> Iterator[live.LiveServer]:
    server = live.start(settings)
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Tenant:
    """A freshly seeded organization with one agent and one connected user."""

    organization_id: str
    client_id: str
    client_secret: str
    agent_id: str
    user_id: str
    user_email: str
    user_password: str
    billing_account_id: str
    earnings_account_id: str
    access_token: str

    def client(self, base_url: str, *, token: bool = True, **kwargs: Any) -> httpx.Client:
        headers = {"X-Access-Token": self.access_token} if token else {}
        return httpx.Client(
            base_url=base_url,
            auth=(self.client_id, self.client_secret),
            headers=headers,
            timeout=30,
            **kwargs,
        )


MakeTenant = Callable[..., Tenant]


def seed_tenant(
    database: Database,
    *,
    balance: str = "10",
    scopes: tuple[str, ...] = ("identity", "usage_reporting", "payment"),
    limits: Limits = Limits(),
    restrict_to_agent: bool = False,
) -> Tenant:
    n = next(_counter)
    password = "correct-horse-battery"

    def work(conn: Any) -> Tenant:
        org, secret = organizations.create_organization(
            conn,
            name=f"Org {n}",
            email=f"dev{n}@example.com",
            password=password,
            environment="sandbox",
        )
        agent = agents.create_agent(conn, org.id, f"Agent {n}")
        user = users.create_user(
            conn,
            email=f"user{n}@example.com",
            password=password,
            first_name="Grace",
            last_name="Hopper",
        )
        if Decimal(balance) > 0:
            users.credit(
                conn, user_id=user.id, amount=to_nanos(Decimal(balance)), description="test funds"
            )
        token = oauth.issue_direct(
            conn,
            organization_id=org.id,
            user_id=user.id,
            scopes=scopes,
            agent_ids=(agent.id,) if restrict_to_agent else None,
            limits=limits,
            ttl_days=90,
        )
        return Tenant(
            organization_id=org.id,
            client_id=org.client_id,
            client_secret=secret,
            agent_id=agent.id,
            user_id=user.id,
            user_email=user.email,
            user_password=password,
            billing_account_id=user.billing_account_id,
            earnings_account_id=org.earnings_account_id,
            access_token=token["access_token"],
        )

    return database.write(work)


@pytest.fixture
def make_tenant(db: Database) -> MakeTenant:
    def make(**kwargs: Any) -> Tenant:
        return seed_tenant(db, **kwargs)

    return make


@pytest.fixture
def tenant(make_tenant: MakeTenant) -> Tenant:
    return make_tenant()
