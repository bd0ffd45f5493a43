"""The contract's rules for POST /v1/tp/usage, each one tested over HTTP."""

from __future__ import annotations

from decimal import Decimal

from reload_billing.ledger import service as ledger
from reload_billing.users import service as users
from tests.helpers import assert_ledger_ok, balance, parse, post, usage_body

USD = 1_000_000_000


def test_charge_debits_user_and_credits_org_less_fee(live_server, db, tenant):
    with tenant.client(live_server.url) as client:
        response = post(
            client, "/v1/tp/usage", usage_body(tenant.agent_id, "0.000185", llmModel="gpt-4")
        )
    assert response.status_code == 201, response.text
    record = parse(response)["data"]
    assert record["status"] == "completed" and record["charged"] is True
    assert record["totalCost"] == Decimal("0.000185")
    assert '"totalCost":0.000185' in response.text  # an exact number, never 1.85e-4
    assert record["chargedAmount"] == Decimal("0.000185")
    assert record["platformFee"] == Decimal("0.00000925")
    assert [t["type"] for t in record["transactions"]] == ["usage"]
    assert balance(db, tenant.billing_account_id) == Decimal("9.999815")
    assert balance(db, tenant.earnings_account_id) == Decimal("0.00017575")
    assert_ledger_ok(db)


def test_report_without_charge_records_and_moves_nothing(live_server, db, tenant):
    with tenant.client(live_server.url) as client:
        body = usage_body(
            tenant.agent_id, "2.5", chargeUser=False, inputTokens=100, outputTokens=20
        )
        response = post(client, "/v1/tp/usage", body)
    record = parse(response)["data"]
    assert response.status_code == 201
    assert record["charged"] is False and record["status"] == "completed"
    assert record["totalTokens"] == 120
    assert balance(db, tenant.billing_account_id) == Decimal("10")


def test_every_field_is_recorded_and_shown(live_server, tenant):
    body = usage_body(
        tenant.agent_id,
        "1.1",
        usageType="API Call",
        shortDescription="",
        costBeforeTax=Decimal("1"),
        taxRate=Decimal("10"),
        taxAmount=Decimal("0.1"),
        llmModel="claude-3",
        llmProvider="Anthropic",
        inputTokens=1000,
        outputTokens=100,
        totalTokens=1200,
        processingTimeMs=Decimal("812.5"),
        modelParameters={"temperature": Decimal("0.7"), "maxTokens": 512},
        internalTokensOrCredits=Decimal("42.5"),
        metadata={"session": "abc"},
        usageDate="2026-01-02T03:04:05Z",
        idempotencyKey="every-field",
    )
    with tenant.client(live_server.url) as client:
        created = parse(post(client, "/v1/tp/usage", body))["data"]
        fetched = parse(client.get(f"/v1/tp/usage-reports/{created['id']}"))["data"]
    for record in (created, fetched):
        assert record["usageType"] == "API Call"
        assert record["shortDescription"] == ""
        assert record["taxRate"] == Decimal("10") and record["taxAmount"] == Decimal("0.1")
        assert record["totalTokens"] == 1200
        assert record["processingTimeMs"] == Decimal("812.5")
        assert record["modelParameters"] == {"temperature": Decimal("0.7"), "maxTokens": 512}
        assert record["internalTokensOrCredits"] == Decimal("42.5")
        assert record["metadata"] == {"session": "abc"}
        assert record["usageDate"] == "2026-01-02T03:04:05Z"
        assert record["userId"] == tenant.user_id
        assert record["organizationId"] == tenant.organization_id
    assert len(fetched["transactions"]) == 1


def test_insufficient_balance_records_failed_report_with_402(live_server, db, tenant):
    with tenant.client(live_server.url) as client:
        response = post(
            client, "/v1/tp/usage", usage_body(tenant.agent_id, "10.01", idempotencyKey="big")
        )
    assert response.status_code == 402
    payload = parse(response)
    assert payload["status"] == "error"
    assert payload["error"]["code"] == "insufficient_balance"
    assert payload["data"]["status"] == "failed"
    assert payload["data"]["failureReason"] == "insufficient_balance"
    assert payload["data"]["charged"] is False
    assert balance(db, tenant.billing_account_id) == Decimal("10")
    assert balance(db, tenant.earnings_account_id) == 0
    assert_ledger_ok(db)


def test_failed_charge_retried_after_top_up_charges_once(live_server, db, tenant):
    body = usage_body(tenant.agent_id, "12", idempotencyKey="retry-after-top-up")
    with tenant.client(live_server.url) as client:
        first = post(client, "/v1/tp/usage", body)
        assert first.status_code == 402
        db.write(
            lambda conn: users.credit(conn, user_id=tenant.user_id, amount=5 * USD, description="t")
        )
        second = post(client, "/v1/tp/usage", body)
        third = post(client, "/v1/tp/usage", body)
    assert second.status_code == 201, second.text
    assert parse(second)["data"]["status"] == "completed"
    assert parse(second)["data"]["id"] == parse(first)["data"]["id"]
    assert third.status_code == 201 and third.headers["Idempotent-Replayed"] == "true"
    assert balance(db, tenant.billing_account_id) == Decimal("3")
    with tenant.client(live_server.url) as client:
        listed = parse(
            client.get("/v1/tp/usage-reports", params={"idempotencyKey": "retry-after-top-up"})
        )
    assert listed["pagination"]["total"] == 1
    assert len(listed["data"][0]["transactions"]) == 1
    assert_ledger_ok(db)


def test_same_key_same_body_replays_without_charging_again(live_server, db, tenant):
    body = usage_body(tenant.agent_id, "1.5", idempotencyKey="once")
    with tenant.client(live_server.url) as client:
        first = post(client, "/v1/tp/usage", body)
        again = post(client, "/v1/tp/usage", {**body, "totalCost": Decimal("1.50")})
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert parse(again)["data"] == parse(first)["data"]
    assert balance(db, tenant.billing_account_id) == Decimal("8.5")


def test_same_key_other_body_is_409(live_server, db, tenant):
    with tenant.client(live_server.url) as client:
        post(client, "/v1/tp/usage", usage_body(tenant.agent_id, "1", idempotencyKey="k"))
        response = post(
            client, "/v1/tp/usage", usage_body(tenant.agent_id, "2", idempotencyKey="k")
        )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert balance(db, tenant.billing_account_id) == Decimal("9")


def test_idempotency_key_header_is_accepted_and_must_match_body(live_server, tenant):
    with tenant.client(live_server.url) as client:
        body = usage_body(tenant.agent_id, "1")
        ok = post(client, "/v1/tp/usage", body, headers={"Idempotency-Key": "hdr"})
        clash = post(
            client,
            "/v1/tp/usage",
            {**body, "idempotencyKey": "other"},
            headers={"Idempotency-Key": "hdr"},
        )
    assert ok.status_code == 201 and ok.json()["data"]["idempotencyKey"] == "hdr"
    assert clash.status_code == 400 and clash.json()["error"]["param"] == "idempotencyKey"


def test_keys_are_per_organization(live_server, make_tenant):
    first, second = make_tenant(), make_tenant()
    for tenant in (first, second):
        with tenant.client(live_server.url) as client:
            response = post(
                client, "/v1/tp/usage", usage_body(tenant.agent_id, "1", idempotencyKey="shared")
            )
        assert response.status_code == 201 and "Idempotent-Replayed" not in response.headers


def test_revoked_token_is_refused_at_once(live_server, tenant):
    with tenant.client(live_server.url) as client:
        assert post(client, "/v1/tp/usage", usage_body(tenant.agent_id, "1")).status_code == 201
        revoked = post(
            client, "/v1/tp/revoke-token", {"token": tenant.access_token, "reason": "test"}
        )
        assert revoked.status_code == 200
        response = post(client, "/v1/tp/usage", usage_body(tenant.agent_id, "1"))
        status = post(client, "/v1/tp/introspect-token", {"token": tenant.access_token}).json()
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_revoked"
    assert status["data"]["status"] == "revoked"


def test_token_limited_to_agents_cannot_report_for_others(live_server, db, make_tenant):
    from reload_billing.agents import service as agents

    tenant = make_tenant(restrict_to_agent=True)
    other = db.write(lambda conn: agents.create_agent(conn, tenant.organization_id, "Other"))
    with tenant.client(live_server.url) as client:
        allowed = post(client, "/v1/tp/usage", usage_body(tenant.agent_id, "1"))
        refused = post(client, "/v1/tp/usage", usage_body(other.id, "1"))
    assert allowed.status_code == 201
    assert refused.status_code == 403 and refused.json()["error"]["param"] == "aiAgentId"


def test_missing_permissions_are_403(live_server, make_tenant):
    reporter = make_tenant(scopes=("usage_reporting",))
    with reporter.client(live_server.url) as client:
        charge = post(client, "/v1/tp/usage", usage_body(reporter.agent_id, "1"))
        track = post(client, "/v1/tp/usage", usage_body(reporter.agent_id, "1", chargeUser=False))
        identity = client.get("/v1/tp/user")
    assert charge.status_code == 403 and track.status_code == 201 and identity.status_code == 403
    identity_only = make_tenant(scopes=("identity",))
    with identity_only.client(live_server.url) as client:
        assert (
            post(
                client, "/v1/tp/usage", usage_body(identity_only.agent_id, "1", chargeUser=False)
            ).status_code
            == 403
        )
        assert client.get("/v1/tp/user").status_code == 200


def test_archived_or_unknown_agent_is_refused(live_server, db, tenant):
    from reload_billing.agents import service as agents

    with tenant.client(live_server.url) as client:
        unknown = post(client, "/v1/tp/usage", usage_body("agt_nope", "1"))
        db.write(
            lambda conn: agents.set_archived(conn, tenant.organization_id, tenant.agent_id, True)
        )
        archived = post(client, "/v1/tp/usage", usage_body(tenant.agent_id, "1"))
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "aiAgentId"
    assert archived.status_code == 400 and archived.json()["error"]["code"] == "agent_archived"


def test_free_usage_with_charge_moves_no_money(live_server, db, tenant):
    with tenant.client(live_server.url) as client:
        response = post(client, "/v1/tp/usage", usage_body(tenant.agent_id, "0"))
    assert response.status_code == 201
    assert response.json()["data"]["charged"] is False
    assert balance(db, tenant.billing_account_id) == Decimal("10")


def test_amounts_round_half_to_even_to_a_nanodollar(live_server, tenant):
    with tenant.client(live_server.url) as client:
        a = parse(
            post(
                client,
                "/v1/tp/usage",
                usage_body(tenant.agent_id, "0.0000000005", chargeUser=False),
            )
        )
        b = parse(
            post(
                client,
                "/v1/tp/usage",
                usage_body(tenant.agent_id, "0.0000000015", chargeUser=False),
            )
        )
    assert a["data"]["totalCost"] == 0
    assert b["data"]["totalCost"] == Decimal("0.000000002")


def test_preview_charge_answers_without_charging(live_server, db, tenant):
    with tenant.client(live_server.url) as client:
        ok = parse(
            post(
                client,
                "/v1/tp/preview-charge",
                {"aiAgentId": tenant.agent_id, "amount": 4, "description": "x"},
            )
        )
        too_much = parse(
            post(
                client,
                "/v1/tp/preview-charge",
                {"aiAgentId": tenant.agent_id, "amount": 11, "description": "x"},
            )
        )
    assert ok["data"] == {
        "canCharge": True,
        "amount": 4,
        "balance": 10,
        "reason": None,
        "limit": None,
    }
    assert too_much["data"]["canCharge"] is False
    assert too_much["data"]["reason"] == "insufficient_balance"
    assert balance(db, tenant.billing_account_id) == Decimal("10")


def test_refund_defaults_to_what_is_left_and_refuses_more(live_server, db, tenant):
    with tenant.client(live_server.url) as client:
        record = parse(post(client, "/v1/tp/usage", usage_body(tenant.agent_id, "2")))["data"]
        part = post(
            client,
            f"/v1/tp/usage-reports/{record['id']}/refund",
            {"amount": Decimal("0.5"), "reason": "partial"},
        )
        too_much = post(client, f"/v1/tp/usage-reports/{record['id']}/refund", {"amount": 2})
        rest = post(client, f"/v1/tp/usage-reports/{record['id']}/refund", {})
        nothing_left = post(client, f"/v1/tp/usage-reports/{record['id']}/refund", {})
        after = parse(client.get(f"/v1/tp/usage-reports/{record['id']}"))["data"]
    assert part.status_code == 201 and parse(part)["data"]["amount"] == Decimal("0.5")
    assert too_much.status_code == 400 and too_much.json()["error"]["param"] == "amount"
    assert rest.status_code == 201 and parse(rest)["data"]["amount"] == Decimal("1.5")
    assert nothing_left.status_code == 400
    assert after["refundedAmount"] == 2
    assert [t["type"] for t in after["transactions"]] == ["usage", "refund", "refund"]
    assert balance(db, tenant.billing_account_id) == Decimal("10")
    assert balance(db, tenant.earnings_account_id) == 0
    assert balance(db, ledger.PLATFORM_FEES_ACCOUNT) == 0
    assert_ledger_ok(db)


def test_refund_with_idempotency_key_refunds_once(live_server, db, tenant):
    with tenant.client(live_server.url) as client:
        record = parse(post(client, "/v1/tp/usage", usage_body(tenant.agent_id, "2")))["data"]
        url = f"/v1/tp/usage-reports/{record['id']}/refund"
        first = post(client, url, {"amount": 1}, headers={"Idempotency-Key": "refund-1"})
        again = post(client, url, {"amount": 1}, headers={"Idempotency-Key": "refund-1"})
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert parse(again)["data"] == parse(first)["data"]
    assert balance(db, tenant.billing_account_id) == Decimal("9")


def test_usage_answers_carry_the_edge_headers_and_are_counted_under_their_route(
    live_server, tenant
):
    """POST /v1/tp/usage is dispatched on a short path (middleware.DirectRoutes):
    its answers, good and bad, still get a request id, the security headers and
    their line in /metrics."""
    with tenant.client(live_server.url) as client:
        good = post(client, "/v1/tp/usage", usage_body(tenant.agent_id, "0.5"))
        bad = client.post(
            "/v1/tp/usage", content=b"{", headers={"content-type": "application/json"}
        )
        metrics = client.get("/metrics").text
    assert good.status_code == 201
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
    for answer in (good, bad):
        assert len(answer.headers["x-request-id"]) == 16
        assert answer.headers["x-frame-options"] == "DENY"
    assert 'route="/v1/tp/usage",status="201"} 1.0' in metrics
    assert 'route="/v1/tp/usage",status="400"} 1.0' in metrics
