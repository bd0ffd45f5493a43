"""The SDK against a real Reload server on loopback (fixtures ``live_server``, ``tenant``)."""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import typer
from typer.testing import CliRunner

from reload_billing.client import (
    AsyncReload,
    AuthenticationError,
    IdempotencyConflictError,
    InvalidRequestError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    Reload,
    authorize_url,
    create_pkce_pair,
    create_state,
    usage_from_openai,
)
from reload_billing.client.cli import register
from reload_billing.pricing import PriceRule

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def reload(live_server: Any, tenant: Any) -> Any:
    with Reload(tenant.client_id, tenant.client_secret, base_url=live_server.url) as client:
        yield client


@pytest.fixture
def user(reload: Reload, tenant: Any) -> Any:
    return reload.for_user(tenant.access_token)


def top_up(db: Any, user_id: str, amount: str) -> None:
    from reload_billing.money import to_nanos
    from reload_billing.users import service as users

    db.write(
        lambda conn: users.credit(
            conn, user_id=user_id, amount=to_nanos(Decimal(amount)), description="top-up"
        )
    )


def balance(user: Any, agent_id: str) -> Decimal:
    preview = user.preview_charge(agent_id, "0", "balance check")
    return Decimal(preview.balance)


def test_user_profile(user: Any, tenant: Any) -> None:
    info = user.user()
    assert info.user.email == tenant.user_email
    assert info.user.id == tenant.user_id
    assert info.billing_account_id == tenant.billing_account_id
    assert info.organization is not None and info.organization.id == tenant.organization_id
    assert set(info.permissions) == {"identity", "usage_reporting", "payment"}


def test_preview_charge_says_whether_a_charge_would_pass(user: Any, tenant: Any) -> None:
    ok = user.preview_charge(tenant.agent_id, Decimal("2.5"), "A long report")
    assert ok.can_charge is True
    assert ok.amount == Decimal("2.5") and ok.balance == Decimal("10")
    too_much = user.preview_charge(tenant.agent_id, "10.000000001", "Too long a report")
    assert too_much.can_charge is False
    assert too_much.reason == "insufficient_balance"


def test_charged_usage_is_exact_to_the_nano_dollar(user: Any, tenant: Any) -> None:
    record = user.report_usage(
        tenant.agent_id,
        "Answered a question about invoices",
        Decimal("0.000185"),
        charge_user=True,
        llm_model="gpt-4o",
        input_tokens=10,
        output_tokens=5,
        metadata={"conversation": "c-1"},
    )
    assert record.status == "completed" and record.charged is True
    assert record.total_cost == Decimal("0.000185")
    assert record.charged_amount == Decimal("0.000185")
    assert record.idempotency_key
    assert balance(user, tenant.agent_id) == Decimal("9.999815")

    fetched = user.usage_report(record.id)
    assert fetched.id == record.id
    assert fetched.metadata == {"conversation": "c-1"}
    (charge,) = fetched.transactions
    assert charge.type == "usage" and charge.amount == Decimal("0.000185")


def test_usage_without_charge_moves_no_money(user: Any, tenant: Any) -> None:
    record = user.report_usage(tenant.agent_id, "Free preview", 0)
    assert record.charged is False and record.status == "completed"
    assert balance(user, tenant.agent_id) == Decimal("10")


def test_same_key_twice_charges_once(user: Any, tenant: Any) -> None:
    first = user.report_usage(
        tenant.agent_id, "Answer", "1.5", charge_user=True, idempotency_key="k-1"
    )
    again = user.report_usage(
        tenant.agent_id, "Answer", "1.5", charge_user=True, idempotency_key="k-1"
    )
    assert again.id == first.id
    assert balance(user, tenant.agent_id) == Decimal("8.5")


def test_same_key_other_body_is_a_conflict(user: Any, tenant: Any) -> None:
    user.report_usage(tenant.agent_id, "Answer", "1", charge_user=True, idempotency_key="k-2")
    with pytest.raises(IdempotencyConflictError) as caught:
        user.report_usage(tenant.agent_id, "Answer", "2", charge_user=True, idempotency_key="k-2")
    assert caught.value.code == "idempotency_key_reused"
    assert caught.value.status_code == 409


def test_failed_charge_keeps_the_record_and_succeeds_after_top_up(
    user: Any, tenant: Any, db: Any
) -> None:
    with pytest.raises(PaymentRequiredError) as caught:
        user.report_usage(tenant.agent_id, "A very long job", "12.5", charge_user=True)
    failed = caught.value.record
    assert caught.value.reason == "insufficient_balance"
    assert failed is not None and failed.status == "failed" and failed.charged is False
    assert failed.total_cost == Decimal("12.5")
    assert balance(user, tenant.agent_id) == Decimal("10")

    top_up(db, tenant.user_id, "5")
    record = user.report_usage(
        tenant.agent_id,
        "A very long job",
        "12.5",
        charge_user=True,
        idempotency_key=failed.idempotency_key,
    )
    assert record.id == failed.id
    assert record.status == "completed" and record.charged is True
    assert balance(user, tenant.agent_id) == Decimal("2.5")


def test_bad_input_names_the_field(user: Any, tenant: Any) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        user.report_usage(tenant.agent_id, "x" * 2001, "1")
    assert caught.value.status_code == 400
    assert caught.value.param == "description"
    assert caught.value.request_id


def test_wrong_credentials_are_an_authentication_error(live_server: Any, tenant: Any) -> None:
    with Reload(tenant.client_id, "wrong-secret", base_url=live_server.url) as reload:
        with pytest.raises(AuthenticationError) as caught:
            reload.for_user(tenant.access_token).user()
    assert caught.value.status_code == 401


def test_a_missing_permission_is_permission_denied(
    reload: Reload, make_tenant: Callable[..., Any], live_server: Any
) -> None:
    limited = make_tenant(scopes=("identity", "usage_reporting"))
    with Reload(limited.client_id, limited.client_secret, base_url=live_server.url) as client:
        with pytest.raises(PermissionDeniedError) as caught:
            client.for_user(limited.access_token).preview_charge(limited.agent_id, "1", "x")
    assert caught.value.status_code == 403


def test_an_unknown_record_is_not_found(user: Any) -> None:
    with pytest.raises(NotFoundError):
        user.usage_report("usg_does_not_exist")


def test_iteration_reads_every_page(reload: Reload, user: Any, tenant: Any) -> None:
    made = {user.report_usage(tenant.agent_id, f"Answer {n}", "0.01").id for n in range(5)}
    assert {r.id for r in user.usage_reports(limit=2)} == made
    assert {r.id for r in reload.usage_reports(limit=2, ai_agent_id=tenant.agent_id)} == made
    page = reload.usage_reports_page(limit=2)
    assert page.total == 5 and page.total_pages == 3 and len(page.data) == 2
    assert list(reload.usage_reports(status="failed")) == []


def test_refunds_partial_then_the_rest(user: Any, tenant: Any) -> None:
    record = user.report_usage(tenant.agent_id, "Answer", "2", charge_user=True)
    part = user.refund(record.id, amount="0.5", reason="partly wrong", idempotency_key="r-1")
    assert part.type == "refund" and part.amount == Decimal("0.5")
    replay = user.refund(record.id, amount="0.5", reason="partly wrong", idempotency_key="r-1")
    assert replay.id == part.id
    rest = user.refund(record.id)
    assert rest.amount == Decimal("1.5")
    assert user.usage_report(record.id).refunded_amount == Decimal("2")
    with pytest.raises(InvalidRequestError) as caught:
        user.refund(record.id)
    assert caught.value.code == "already_refunded"
    assert balance(user, tenant.agent_id) == Decimal("10")


def test_introspect_then_revoke(reload: Reload, user: Any, tenant: Any) -> None:
    info = reload.introspect_token(tenant.access_token)
    assert info.status == "active" and info.active is True
    assert info.user_id == tenant.user_id
    revoked = reload.revoke_token(tenant.access_token, reason="user asked")
    assert revoked.revoked is True
    assert reload.introspect_token(tenant.access_token).status == "revoked"
    assert reload.introspect_token("not-a-token").status == "not_found"
    with pytest.raises(AuthenticationError):
        user.user()


def test_price_rule_and_openai_usage_end_to_end(user: Any, tenant: Any) -> None:
    usage = usage_from_openai((FIXTURES / "openai_chat_completion.json").read_text())
    record = user.report_usage(
        tenant.agent_id,
        "Answered about the March invoice",
        price=PriceRule(markup_percent=20),
        charge_user=True,
        **usage,
    )
    assert record.total_cost == Decimal("0.0042")
    assert record.input_tokens == 1000 and record.output_tokens == 100
    assert record.total_tokens == 1100
    assert record.llm_model == "gpt-4o-2024-08-06"


def test_async_client_over_http(live_server: Any, tenant: Any) -> None:
    async def main() -> list[str]:
        async with AsyncReload(
            tenant.client_id, tenant.client_secret, base_url=live_server.url
        ) as reload:
            user = reload.for_user(tenant.access_token)
            records = await asyncio.gather(
                *(
                    user.report_usage(tenant.agent_id, f"Answer {n}", "0.1", charge_user=True)
                    for n in range(10)
                )
            )
            assert (await user.preview_charge(tenant.agent_id, "1", "x")).balance == Decimal("9")
            listed = [r.id async for r in user.usage_reports(limit=3)]
            assert sorted(listed) == sorted(r.id for r in records)
            return listed

    assert len(set(asyncio.run(main()))) == 10


def test_async_client_in_process_with_asgi_transport(settings: Any, tenant: Any) -> None:
    from reload_billing.app import create_app

    app = create_app(settings)

    async def main() -> str:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with AsyncReload(
                tenant.client_id,
                tenant.client_secret,
                base_url="http://reload.test",
                transport=transport,
            ) as reload:
                info = await reload.for_user(tenant.access_token).user()
                return str(info.user.email)

    assert asyncio.run(main()) == tenant.user_email


def _hidden_fields(page: str) -> dict[str, str]:
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)
    return {name: html.unescape(value) for name, value in fields}


def test_oauth_code_exchange(reload: Reload, live_server: Any, tenant: Any, db: Any) -> None:
    from reload_billing.organizations import service as organizations

    redirect_uri = "http://localhost:5555/callback"
    db.write(
        lambda conn: organizations.add_redirect_uri(conn, tenant.organization_id, redirect_uri)
    )
    verifier, challenge = create_pkce_pair()
    state = create_state()
    url = authorize_url(
        live_server.url,
        tenant.client_id,
        redirect_uri,
        state=state,
        ai_agent_ids=[tenant.agent_id],
        code_challenge=challenge,
    )
    with httpx.Client(base_url=live_server.url) as browser:
        signin = browser.get(url, follow_redirects=True)
        assert signin.status_code == 200, signin.text
        form = _hidden_fields(signin.text)
        form.update(email=tenant.user_email, password=tenant.user_password)
        consent = browser.post("/signin", data=form, follow_redirects=True)
        assert consent.status_code == 200, consent.text
        approve = {**_hidden_fields(consent.text), "decision": "approve"}
        back = browser.post("/oauth/authorize", data=approve)
    assert back.status_code in (302, 303), back.text
    query = parse_qs(urlsplit(back.headers["location"]).query)
    assert query["state"] == [state]
    code = query["code"][0]

    token = reload.exchange_code(code, redirect_uri, verifier)
    assert token.token_type == "Bearer"
    assert token.user is not None and token.user.email == tenant.user_email
    assert set(token.permissions) == {"identity", "usage_reporting", "payment"}
    assert token.ai_agent_ids == [tenant.agent_id]
    assert reload.for_user(token.access_token).user().user.id == tenant.user_id
    with pytest.raises(InvalidRequestError) as caught:
        reload.exchange_code(code, redirect_uri, verifier)
    assert caught.value.code == "invalid_grant"


# --- the developer CLI ------------------------------------------------------------------


@pytest.fixture
def cli(live_server: Any, tenant: Any) -> Callable[..., Any]:
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    env = {
        "RELOAD_CLIENT_ID": tenant.client_id,
        "RELOAD_CLIENT_SECRET": tenant.client_secret,
        "RELOAD_API_URL": live_server.url,
        "RELOAD_ACCESS_TOKEN": tenant.access_token,
        "COLUMNS": "250",
    }

    def run(*args: str) -> Any:
        return runner.invoke(app, list(args), env=env)

    return run


def one_json(output: str) -> Any:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return json.loads(lines[0], parse_float=Decimal)


def test_cli_report_list_and_preview(cli: Callable[..., Any], tenant: Any) -> None:
    result = cli(
        "usage", "report", "--agent", tenant.agent_id, "--description", "From the CLI",
        "--cost", "0.000185", "--charge", "--key", "cli-1", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = one_json(result.output)["data"]
    assert record["totalCost"] == Decimal("0.000185") and record["charged"] is True

    result = cli("usage", "list", "--agent", tenant.agent_id, "--json")
    assert result.exit_code == 0, result.output
    listing = one_json(result.output)
    assert listing["count"] == 1 and listing["data"][0]["idempotencyKey"] == "cli-1"

    result = cli("usage", "list", "--user", tenant.user_email, "--csv")
    assert result.exit_code == 0, result.output
    header, row = result.output.strip().splitlines()
    assert header.startswith("id,createdAt,userId")
    assert ",0.000185," in row

    result = cli("usage", "list")
    assert result.exit_code == 0 and "From the CLI" in result.output

    result = cli(
        "preview-charge",
        "--agent",
        tenant.agent_id,
        "--amount",
        "20",
        "--description",
        "x",
        "--json",
    )
    assert result.exit_code == 0, result.output
    preview = one_json(result.output)["data"]
    assert preview["canCharge"] is False and preview["reason"] == "insufficient_balance"


def test_cli_failed_charge_prints_one_json_error(cli: Callable[..., Any], tenant: Any) -> None:
    result = cli(
        "usage", "report", "--agent", tenant.agent_id, "--description", "Too dear",
        "--cost", "50", "--charge", "--json",
    )  # fmt: skip
    assert result.exit_code == 1
    answer = one_json(result.output)
    assert answer["status"] == "error"
    assert answer["error"]["code"] == "insufficient_balance"
    assert answer["data"]["status"] == "failed"


def test_sync_client_in_process_with_test_client(settings: Any, tenant: Any) -> None:
    from fastapi.testclient import TestClient

    from reload_billing.app import create_app

    with TestClient(create_app(settings)) as http_client:
        reload = Reload(tenant.client_id, tenant.client_secret, http_client=http_client)  # type: ignore[arg-type]
        record = reload.for_user(tenant.access_token).report_usage(
            tenant.agent_id, "In process", "0.25", charge_user=True
        )
        reload.close()  # leaves the caller's client open
        assert not http_client.is_closed
    assert record.charged_amount == Decimal("0.25")
