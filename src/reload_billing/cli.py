"""The operator's command line: ``reload ...``.

Every command reads the database from ``RELOAD_DATABASE_URL``; with ``--json`` it
prints exactly one JSON object on stdout.
"""

from __future__ import annotations

import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from . import jsonbody
from .config import Settings, get_settings
from .db import Database, rfc3339
from .errors import ReloadError
from .ledger.service import Limits
from .money import MoneyError, format_usd, from_nanos, parse_usd, to_nanos

app = typer.Typer(
    help="Reload: real-time usage billing for AI agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
orgs_app = typer.Typer(help="Organizations (developers).", no_args_is_help=True)
agents_app = typer.Typer(help="AI agents.", no_args_is_help=True)
users_app = typer.Typer(help="Users and their billing accounts.", no_args_is_help=True)
tokens_app = typer.Typer(help="Access tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(ledger_app, name="ledger")
app.add_typer(orgs_app, name="orgs")
app.add_typer(agents_app, name="agents")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
console = Console()
JSON_OPTION = typer.Option(False, "--json", help="Print one JSON object.")


def emit(payload: dict[str, Any], as_json: bool, text: str | None = None) -> None:
    if as_json:
        sys.stdout.write(jsonbody.dumps(payload).decode() + "\n")
    elif text is not None:
        sys.stdout.write(text + "\n")  # plain: commands must stay copy-pasteable
    else:
        console.print(payload)


def fail(message: str, as_json: bool = False, code: str = "error") -> None:
    if as_json:
        sys.stdout.write(
            jsonbody.dumps(
                {"status": "error", "error": {"code": code, "message": message}}
            ).decode()
            + "\n"
        )
    else:
        Console(stderr=True).print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


def open_database(settings: Settings | None = None) -> Database:
    settings = settings or get_settings()
    from . import migrate

    if settings.is_sqlite:
        migrate.upgrade(settings.database_url)
    return Database(settings.database_url)


def run(work: Any, as_json: bool = False) -> Any:
    database = open_database()
    try:
        return database.write(work)
    except ReloadError as error:
        fail(error.message, as_json, error.code)
    finally:
        database.close()


# --- server ---------------------------------------------------------------------


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    workers: int = typer.Option(1, help="Server processes (PostgreSQL for more than 1)."),
) -> None:
    """Serve the API, the OAuth pages, the account and the developer portal."""
    import uvicorn

    from . import migrate

    settings = get_settings()
    if settings.is_sqlite:
        migrate.upgrade(settings.database_url)
    elif migrate.current(settings.database_url) != migrate.head():
        fail("the database schema is not current: run 'reload db upgrade'")
    uvicorn.run(
        "reload_billing.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level,
        access_log=False,
        proxy_headers=True,
    )


@db_app.command("upgrade")
def db_upgrade(as_json: bool = JSON_OPTION) -> None:
    """Migrate the database to the newest schema."""
    from . import migrate

    revision = migrate.upgrade(get_settings().database_url)
    emit({"revision": revision}, as_json, f"database at revision {revision}")


@ledger_app.command("verify")
def ledger_verify(as_json: bool = JSON_OPTION) -> None:
    """Recompute every balance from its entries; check that all entries sum to zero."""
    from .ledger import service as ledger

    database = open_database()
    try:
        with database.read() as conn:
            result = ledger.verify(conn)
    finally:
        database.close()
    emit(
        result.as_dict(),
        as_json,
        f"ledger {'OK' if result.ok else 'BROKEN'}: {result.accounts} accounts, "
        f"{result.transactions} transactions, {result.entries} entries, sum {result.entries_sum}",
    )
    if not result.ok:
        raise typer.Exit(1)


# --- organizations, agents, users, tokens ---------------------------------------


@orgs_app.command("create")
def orgs_create(
    name: str = typer.Option(..., help="Organization name."),
    email: str = typer.Option(..., help="The owner's sign-in email for the developer portal."),
    password: str = typer.Option(..., help="The owner's password (8+ characters)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create an organization; prints its client id and (once) its client secret."""
    from .organizations import service as organizations

    environment = get_settings().environment
    org, secret = run(
        lambda conn: organizations.create_organization(
            conn, name=name, email=email, password=password, environment=environment
        ),
        as_json,
    )
    emit(
        {"organizationId": org.id, "clientId": org.client_id, "clientSecret": secret},
        as_json,
        f"organization {org.id}\nclientId {org.client_id}\nclientSecret {secret} (shown once)",
    )


@orgs_app.command("add-redirect-uri")
def orgs_add_redirect_uri(
    org: str = typer.Option(..., help="Organization id."),
    uri: str = typer.Option(..., help="Exact redirect URI."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Register a redirect URI for the OAuth flow."""
    from .organizations import service as organizations

    added = run(lambda conn: organizations.add_redirect_uri(conn, org, uri), as_json)
    emit({"organizationId": org, "redirectUri": added}, as_json, f"added {added}")


@agents_app.command("create")
def agents_create(
    org: str = typer.Option(..., help="Organization id."),
    name: str = typer.Option(..., help="Agent name."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create an AI agent; its id goes into every usage report."""
    from .agents import service as agents
    from .organizations import service as organizations

    def work(conn: Any) -> Any:
        organizations.get_organization(conn, org)
        return agents.create_agent(conn, org, name)

    agent = run(work, as_json)
    emit({"id": agent.id, "name": agent.name}, as_json, f"agent {agent.id} ({agent.name})")


@users_app.command("create")
def users_create(
    email: str = typer.Option(...),
    password: str = typer.Option(...),
    first_name: str = typer.Option(..., "--first-name"),
    last_name: str = typer.Option(..., "--last-name"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a user with an empty billing account."""
    from .users import service as users

    user = run(
        lambda conn: users.create_user(
            conn, email=email, password=password, first_name=first_name, last_name=last_name
        ),
        as_json,
    )
    emit(
        {"id": user.id, "email": user.email, "billingAccountId": user.billing_account_id},
        as_json,
        f"user {user.id} <{user.email}> billing account {user.billing_account_id}",
    )


def _usd(value: str, as_json: bool, param: str = "amount") -> int:
    try:
        return to_nanos(parse_usd(value, maximum=Decimal(10) ** 9, allow_zero=False))
    except MoneyError as error:
        fail(f"{param} {error}", as_json, "invalid_request")
        raise AssertionError from error


@users_app.command("credit")
def users_credit(
    email: str = typer.Option(...),
    amount: str = typer.Option(..., help="USD, e.g. 10 or 2.50"),
    description: str = typer.Option("Operator top-up"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Add funds to a user's billing account (a top-up from outside)."""
    from .users import service as users

    nanos = _usd(amount, as_json)

    def work(conn: Any) -> Any:
        user = users.user_by_email(conn, email)
        return user, users.credit(conn, user_id=user.id, amount=nanos, description=description)

    user, posted = run(work, as_json)
    emit(
        {
            "id": posted.id,
            "type": "topup",
            "userId": user.id,
            "billingAccountId": user.billing_account_id,
            "amount": from_nanos(posted.amount),
            "balanceAfter": from_nanos(posted.balance_after or 0),
        },
        as_json,
        f"credited {format_usd(from_nanos(posted.amount))} USD to {user.email}; "
        f"balance {format_usd(from_nanos(posted.balance_after or 0))} USD",
    )


@tokens_app.command("issue")
def tokens_issue(
    org: str = typer.Option(..., help="Organization id."),
    user: str = typer.Option(..., help="The user's email."),
    scopes: str = typer.Option("identity usage_reporting payment"),
    agents: str | None = typer.Option(None, help="Comma-separated agent ids (default: all)."),
    limit_per_charge: str | None = typer.Option(None, help="USD"),
    limit_daily: str | None = typer.Option(None, help="USD"),
    limit_monthly: str | None = typer.Option(None, help="USD"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Connect a user to an organization as the operator and issue an access token."""
    from .oauth import service as oauth
    from .users import service as users

    try:
        scope_list = oauth.parse_scopes(scopes, param="scopes")
    except ReloadError as error:
        fail(error.message, as_json, error.code)
        raise
    limits = Limits(
        _usd(limit_per_charge, as_json) if limit_per_charge else None,
        _usd(limit_daily, as_json) if limit_daily else None,
        _usd(limit_monthly, as_json) if limit_monthly else None,
    )
    ttl = get_settings().token_ttl_days

    def work(conn: Any) -> dict[str, Any]:
        return oauth.issue_direct(
            conn,
            organization_id=org,
            user_id=users.user_by_email(conn, user).id,
            scopes=scope_list,
            agent_ids=oauth.parse_agent_ids(agents),
            limits=limits,
            ttl_days=ttl,
        )

    token = run(work, as_json)
    emit(token, as_json, f"access token {token['access_token']} (shown once)")


@app.command()
def demo(as_json: bool = JSON_OPTION) -> None:
    """Create the demo organization, agent, user and connection if missing; print them."""
    from . import demo as demo_data

    settings = get_settings()
    database = open_database(settings)
    try:
        info = demo_data.ensure_demo(database, settings, Path(".reload") / "demo.json")
    finally:
        database.close()
    emit(info, as_json, demo_data.describe(info))


# --- webhooks -------------------------------------------------------------------

webhooks_app = typer.Typer(help="Webhook endpoints and deliveries.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.command("add")
def webhooks_add(
    org: str = typer.Option(..., help="Organization id."),
    url: str = typer.Option(..., help="Where to POST events."),
    events: str = typer.Option(..., help="Comma-separated: user.connected,payment.success,.."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Add a webhook endpoint; prints its signing secret once."""
    from .organizations import service as organizations
    from .webhooks import service as webhooks

    settings = get_settings()

    def work(conn: Any) -> Any:
        organizations.get_organization(conn, org)
        return webhooks.create_endpoint(
            conn,
            org,
            url=url,
            events=events,
            secret_key=settings.resolved_secret_key(),
            environment=settings.environment,
        )

    endpoint, secret = run(work, as_json)
    emit(
        {**webhooks.endpoint_json(endpoint), "secret": secret},
        as_json,
        f"endpoint {endpoint.id} -> {endpoint.url}\nsecret {secret} (shown once)",
    )


@webhooks_app.command("list")
def webhooks_list(
    org: str = typer.Option(..., help="Organization id."), as_json: bool = JSON_OPTION
) -> None:
    """The organization's webhook endpoints (never their secrets)."""
    from .webhooks import service as webhooks

    rows = run(lambda conn: webhooks.list_endpoints(conn, org), as_json)
    found = [webhooks.endpoint_json(row) for row in rows]
    lines = [
        f"{e['id']} {'enabled ' if e['enabled'] else 'disabled'} {e['url']} {','.join(e['events'])}"
        for e in found
    ]
    emit({"data": found}, as_json, "\n".join(lines) or "no webhook endpoints")


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    org: str = typer.Option(..., help="Organization id."),
    limit: int = typer.Option(20, min=1, max=500),
    as_json: bool = JSON_OPTION,
) -> None:
    """The organization's newest deliveries with every attempt."""
    from .webhooks import service as webhooks

    found = run(lambda conn: webhooks.list_deliveries(conn, org, limit=limit), as_json)
    lines = [
        f"{d['id']} {d['event']:<18} {d['status']:<9} attempts {len(d['attempts'])} "
        f"{d['lastError'] or ''}"
        for d in found
    ]
    emit({"data": found}, as_json, "\n".join(lines) or "no deliveries")


@webhooks_app.command("resend")
def webhooks_resend(
    delivery: str = typer.Option(..., help="Delivery id (X-Webhook-Id)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Send a delivery again now, with a fresh retry window."""
    from .webhooks import service as webhooks

    retry_us = int(get_settings().webhook_retry_hours * 3600 * 1_000_000)
    row = run(lambda conn: webhooks.resend(conn, delivery, retry_us=retry_us), as_json)
    emit(
        {"id": row.id, "status": row.status, "nextAttemptAt": rfc3339(row.next_attempt_at)},
        as_json,
        f"delivery {row.id} queued to be sent again",
    )


@webhooks_app.command("disable")
def webhooks_disable(
    org: str = typer.Option(..., help="Organization id."),
    endpoint: str = typer.Option(..., help="Endpoint id."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Stop sending new events to an endpoint."""
    from .webhooks import service as webhooks

    run(lambda conn: webhooks.set_enabled(conn, org, endpoint, False), as_json)
    emit({"id": endpoint, "enabled": False}, as_json, f"endpoint {endpoint} disabled")


@webhooks_app.command("enable")
def webhooks_enable(
    org: str = typer.Option(..., help="Organization id."),
    endpoint: str = typer.Option(..., help="Endpoint id."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Send events to an endpoint again."""
    from .webhooks import service as webhooks

    run(lambda conn: webhooks.set_enabled(conn, org, endpoint, True), as_json)
    emit({"id": endpoint, "enabled": True}, as_json, f"endpoint {endpoint} enabled")


@app.command()
def worker(
    once: bool = typer.Option(False, "--once", help="Send what is due now, then exit."),
) -> None:
    """Deliver webhooks (beside servers started with RELOAD_WEBHOOK_WORKER=false)."""
    import signal
    import threading

    from .webhooks.worker import DeliveryWorker

    settings = get_settings()
    database = open_database(settings)
    delivery_worker = DeliveryWorker(database, settings)
    try:
        if once:
            tried = delivery_worker.drain()
            sys.stdout.write(f"{tried} deliveries tried\n")
            return
        done = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: done.set())
        delivery_worker.start()
        sys.stdout.write("delivering webhooks; stop with Ctrl-C\n")
        done.wait()
    finally:
        delivery_worker.stop()
        database.close()


def main() -> None:
    try:
        from .client.cli import register
    except ImportError:  # the SDK's commands are optional
        pass
    else:
        register(app)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


if __name__ == "__main__":
    main()
