"""The developer's commands: ``reload usage report|list`` and ``reload preview-charge``.

They call a Reload server over HTTP with the SDK, reading ``RELOAD_CLIENT_ID``,
``RELOAD_CLIENT_SECRET``, ``RELOAD_API_URL`` and ``RELOAD_ACCESS_TOKEN``. Output is a
Rich table, CSV with ``--csv``, or exactly one JSON object with ``--json``.
"""

from __future__ import annotations

import csv
import itertools
import sys
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from . import _json
from ._sync import Reload
from .errors import PaymentRequiredError, ReloadError
from .models import PreviewCharge, UsageRecord

T = TypeVar("T")

usage_app = typer.Typer(help="Usage reports, through the developer API.", no_args_is_help=True)

JSON_OPTION = typer.Option(False, "--json", help="Print exactly one JSON object.")
AGENT_HELP = "The AI agent's id."
ON_BEHALF_HELP = "The user's access token (default: RELOAD_ACCESS_TOKEN)."
CSV_COLUMNS = (
    "id",
    "createdAt",
    "userId",
    "aiAgentId",
    "status",
    "charged",
    "totalCost",
    "chargedAmount",
    "refundedAmount",
    "failureReason",
    "llmModel",
    "inputTokens",
    "outputTokens",
    "idempotencyKey",
    "description",
)


def _out() -> Console:
    return Console()


def _print_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(_json.dumps(payload) + "\n")


def _fail(error: Exception, as_json: bool) -> NoReturn:
    if isinstance(error, ReloadError):
        details: dict[str, Any] = {"code": error.code or "error", "message": error.message}
        if error.param:
            details["param"] = error.param
        payload: dict[str, Any] = {"status": "error", "message": error.message, "error": details}
        if isinstance(error, PaymentRequiredError) and error.record is not None:
            payload["data"] = error.record.to_dict()
    else:
        message = str(error)
        payload = {
            "status": "error",
            "message": message,
            "error": {"code": "invalid_input", "message": message},
        }
    if as_json:
        _print_json(payload)
    else:
        stderr = Console(stderr=True, soft_wrap=True)
        stderr.print(f"[red]error:[/red] {payload['message']}", markup=True, highlight=False)
        if isinstance(error, PaymentRequiredError):
            stderr.print("The usage was recorded as failed; nothing was charged.")
            if error.record is not None and error.record.idempotency_key:
                stderr.print(
                    "After the user tops up, report again with "
                    f"--key {error.record.idempotency_key} to charge it once."
                )
    raise typer.Exit(1)


def _call(as_json: bool, work: Callable[[Reload], T]) -> T:
    try:
        with Reload() as reload:
            return work(reload)
    except (ReloadError, ValueError, TypeError) as error:
        _fail(error, as_json)


def _money(amount: Decimal | None) -> str:
    return "" if amount is None else _json.format_decimal(amount)


def _record_table(record: UsageRecord) -> Table:
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("id", record.id),
        ("status", record.status),
        ("charged", "yes" if record.charged else "no"),
        ("total cost", f"{_money(record.total_cost)} USD"),
        ("charged amount", f"{_money(record.charged_amount)} USD"),
        ("refunded", f"{_money(record.refunded_amount)} USD"),
        ("failure reason", record.failure_reason or ""),
        ("agent", record.ai_agent_id or ""),
        ("user", record.user_id or ""),
        ("idempotency key", record.idempotency_key or ""),
        ("created", record.created_at.isoformat() if record.created_at else ""),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    return table


@usage_app.command("report")
def report(
    agent: str = typer.Option(..., "--agent", help=AGENT_HELP),
    description: str = typer.Option(..., "--description", help="What the user did."),
    cost: str = typer.Option(..., "--cost", help="Total cost in USD, e.g. 0.0125."),
    charge: bool = typer.Option(False, "--charge", help="Charge the user's billing account now."),
    key: str | None = typer.Option(None, "--key", help="Idempotency key (default: a new one)."),
    token: str | None = typer.Option(
        None, "--token", envvar="RELOAD_ACCESS_TOKEN", help=ON_BEHALF_HELP
    ),
    model: str | None = typer.Option(None, "--model", help="LLM model, e.g. gpt-4o."),
    provider: str | None = typer.Option(None, "--provider", help="LLM provider, e.g. openai."),
    input_tokens: int | None = typer.Option(None, "--input-tokens", min=0),
    output_tokens: int | None = typer.Option(None, "--output-tokens", min=0),
    usage_type: str | None = typer.Option(None, "--usage-type", help="e.g. token_usage."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Report usage for a user (and charge it with --charge)."""
    if not token:
        _fail(ValueError("an access token is needed: --token or RELOAD_ACCESS_TOKEN"), as_json)
    record = _call(
        as_json,
        lambda reload: reload.for_user(token).report_usage(
            agent,
            description,
            cost,
            charge_user=charge,
            idempotency_key=key,
            llm_model=model,
            llm_provider=provider,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            usage_type=usage_type,
        ),
    )
    if as_json:
        _print_json({"status": "success", "data": record.to_dict()})
    else:
        _out().print(_record_table(record))


def _list_table(records: Iterable[UsageRecord]) -> Table:
    table = Table(title="Usage reports")
    table.add_column("created", no_wrap=True)
    table.add_column("id", no_wrap=True, min_width=10)
    table.add_column("agent", no_wrap=True, overflow="ellipsis", max_width=14)
    table.add_column("status", no_wrap=True)
    table.add_column("cost (USD)", justify="right", no_wrap=True)
    table.add_column("charged", justify="right", no_wrap=True)
    table.add_column("description", overflow="fold", ratio=1, min_width=12)
    for record in records:
        description = record.description or ""
        table.add_row(
            record.created_at.strftime("%Y-%m-%d %H:%M") if record.created_at else "",
            record.id,
            record.ai_agent_id or "",
            record.status,
            _money(record.total_cost),
            _money(record.charged_amount),
            description if len(description) <= 60 else description[:59] + "…",
        )
    return table


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return _json.format_decimal(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@usage_app.command("list")
def list_reports(
    agent: str | None = typer.Option(None, "--agent", help=AGENT_HELP),
    user: str | None = typer.Option(None, "--user", help="A user's id or email."),
    status: str | None = typer.Option(
        None, "--status", help="completed, failed, pending, cancelled."
    ),
    limit: int = typer.Option(20, "--limit", min=1, help="At most this many records."),
    token: str | None = typer.Option(
        None, "--token", help="Only this user's records (an access token)."
    ),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List usage reports of the organization, newest first."""
    filters: dict[str, Any] = {"ai_agent_id": agent, "status": status, "limit": min(limit, 100)}
    if user:
        filters["user_email" if "@" in user else "user_id"] = user

    def fetch(reload: Reload) -> list[UsageRecord]:
        source = reload.for_user(token) if token else reload
        return list(itertools.islice(source.usage_reports(**filters), limit))

    records = _call(as_json, fetch)
    if as_json:
        _print_json(
            {"status": "success", "data": [r.to_dict() for r in records], "count": len(records)}
        )
    elif as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for record in records:
            row = record.to_dict()
            writer.writerow([_csv_value(row.get(column)) for column in CSV_COLUMNS])
    else:
        _out().print(_list_table(records))


def preview_charge(
    agent: str = typer.Option(..., "--agent", help=AGENT_HELP),
    amount: str = typer.Option(..., "--amount", help="Amount in USD, e.g. 0.50."),
    description: str = typer.Option(..., "--description", help="What the charge is for."),
    token: str | None = typer.Option(
        None, "--token", envvar="RELOAD_ACCESS_TOKEN", help=ON_BEHALF_HELP
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Check whether a charge would succeed now (charges nothing)."""
    if not token:
        _fail(ValueError("an access token is needed: --token or RELOAD_ACCESS_TOKEN"), as_json)
    preview: PreviewCharge = _call(
        as_json, lambda reload: reload.for_user(token).preview_charge(agent, amount, description)
    )
    if as_json:
        _print_json({"status": "success", "data": preview.to_dict()})
        return
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("can charge", "[green]yes[/green]" if preview.can_charge else "[red]no[/red]")
    table.add_row("amount", f"{_money(preview.amount)} USD")
    table.add_row("balance", f"{_money(preview.balance)} USD")
    if preview.reason:
        table.add_row("reason", preview.reason)
    _out().print(table)


def register(app: typer.Typer) -> None:
    """Add ``usage`` and ``preview-charge`` to the main ``reload`` command."""
    app.add_typer(usage_app, name="usage")
    app.command("preview-charge")(preview_charge)


def main(missing: str) -> None:
    """``reload`` where only the client is installed: the developer's commands."""
    app = typer.Typer(
        help=(
            "Reload, the developer's commands. The operator's commands (serve, db, "
            f"orgs, ...) need the server: pip install 'reload-billing[server]' "
            f"({missing} is not installed)."
        ),
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # "[server]" is text, not markup
    )
    register(app)
    app()


__all__ = ["list_reports", "main", "preview_charge", "register", "report", "usage_app"]
