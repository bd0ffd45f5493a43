"""Bad input of every kind: a clean 4xx JSON error that names the field, and
nothing changes."""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest

from tests.helpers import assert_ledger_ok, balance, post, usage_body


def _assert_clean_error(response, status, param=None):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status"] == "error" and body["error"]["code"] and body["message"]
    if param is not None:
        assert body["error"].get("param") == param, body
    assert "Traceback" not in response.text


MISSING = object()

BAD_BODIES = [
    ({"aiAgentId": MISSING}, "aiAgentId"),  # missing required
    ({"totalCost": MISSING}, "totalCost"),
    ({"aiAgentId": 5}, "aiAgentId"),  # wrong type
    ({"description": ""}, "description"),
    ({"description": "x" * 2001}, "description"),
    ({"totalCost": -1}, "totalCost"),
    ({"totalCost": 1_000_001}, "totalCost"),
    ({"totalCost": True}, "totalCost"),
    ({"totalCost": None}, "totalCost"),
    ({"totalCost": "abc"}, "totalCost"),
    ({"chargeUser": "yes"}, "chargeUser"),
    ({"chargeuser": True}, "chargeuser"),  # a misspelt field never means "don't charge"
    ({"inputTokens": -1}, "inputTokens"),
    ({"inputTokens": 1.5}, "inputTokens"),
    ({"usageType": "x" * 65}, "usageType"),
    ({"idempotencyKey": ""}, "idempotencyKey"),
    ({"idempotencyKey": "k" * 256}, "idempotencyKey"),
    ({"metadata": {"a": 1}}, "metadata.a"),
    ({"metadata": {f"k{i}": "v" for i in range(51)}}, "metadata"),
    ({"modelParameters": {"blob": "x" * 9000}}, "modelParameters"),
    ({"usageDate": "2999-01-01T00:00:00Z"}, "usageDate"),
    ({"usageDate": "not a date"}, "usageDate"),
    ({"costBeforeTax": 1, "taxAmount": 1}, None),
    ({"taxRate": 101}, "taxRate"),
    ({"processingTimeMs": -3}, "processingTimeMs"),
]


@pytest.mark.parametrize(("change", "param"), BAD_BODIES)
def test_bad_fields_are_400_naming_the_field(live_server, db, tenant, change, param):
    body = {**usage_body(tenant.agent_id, "1"), **change}
    body = {key: value for key, value in body.items() if value is not MISSING}
    with tenant.client(live_server.url) as client:
        response = post(client, "/v1/tp/usage", body)
    _assert_clean_error(response, 400, param)
    assert balance(db, tenant.billing_account_id) == Decimal("10")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"totalCost": NaN}',
        b'{"totalCost": Infinity}',
        b'{"totalCost": 1e400}',
        b"{not json",
        b"[1, 2]",
        b"",
        b"\xff\xfe",
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_malformed_json_is_400(live_server, tenant, raw):
    with tenant.client(live_server.url) as client:
        response = client.post(
            "/v1/tp/usage", content=raw, headers={"Content-Type": "application/json"}
        )
    _assert_clean_error(response, 400)


def test_a_10_mb_body_is_413(live_server, tenant):
    body = b'{"description": "' + b"x" * 10_000_000 + b'"}'
    with tenant.client(live_server.url) as client:
        response = client.post("/v1/tp/usage", content=body)
    _assert_clean_error(response, 413)


@pytest.mark.parametrize(
    "header",
    [
        "Basic",
        "Basic !!!",
        "Bearer abc",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"cli_x:wrong").decode(),
    ],
)
def test_malformed_or_wrong_credentials_are_401(live_server, tenant, header):
    import httpx

    response = httpx.post(
        live_server.url + "/v1/tp/usage",
        content=b"{}",
        headers={"Authorization": header, "X-Access-Token": tenant.access_token},
    )
    _assert_clean_error(response, 401)


def test_missing_credentials_are_401(live_server, tenant):
    import httpx

    response = httpx.get(live_server.url + "/v1/tp/usage-reports")
    _assert_clean_error(response, 401)


def test_a_token_of_another_organization_is_401(live_server, db, make_tenant):
    mine, theirs = make_tenant(), make_tenant()
    with mine.client(live_server.url, token=False) as client:
        response = post(
            client,
            "/v1/tp/usage",
            usage_body(mine.agent_id, "1"),
            headers={"X-Access-Token": theirs.access_token},
        )
    _assert_clean_error(response, 401)
    assert balance(db, theirs.billing_account_id) == Decimal("10")
    assert_ledger_ok(db)


def test_unknown_route_and_method_are_json(live_server):
    import httpx

    _assert_clean_error(httpx.get(live_server.url + "/v1/tp/nope"), 404)
    _assert_clean_error(httpx.delete(live_server.url + "/v1/tp/usage"), 405)
