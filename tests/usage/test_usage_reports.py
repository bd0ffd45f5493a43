"""GET /v1/tp/usage-reports: every filter, sort and pagination."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.helpers import parse, post, usage_body


@pytest.fixture
def seeded(live_server, make_tenant, db):
    from reload_billing.agents import service as agents

    tenant = make_tenant(balance="5")
    other_user = make_tenant()  # another org: never visible
    second_agent = db.write(
        lambda conn: agents.create_agent(conn, tenant.organization_id, "Second")
    )
    with tenant.client(live_server.url) as client:
        reports = [
            usage_body(
                tenant.agent_id,
                "1",
                usageType="api_call",
                idempotencyKey="a",
                usageDate="2026-03-01T10:00:00Z",
            ),
            usage_body(
                tenant.agent_id,
                "2",
                usageType="token_usage",
                chargeUser=False,
                idempotencyKey="b",
                usageDate="2026-03-02T10:00:00Z",
            ),
            usage_body(
                second_agent.id,
                "3",
                usageType="api_call",
                idempotencyKey="c",
                usageDate="2026-03-03T10:00:00Z",
            ),
            usage_body(
                second_agent.id,
                "9",
                usageType="api_call",
                idempotencyKey="d",
                usageDate="2026-03-04T10:00:00Z",
            ),
        ]
        ids = [parse(post(client, "/v1/tp/usage", body))["data"]["id"] for body in reports]
        post(client, f"/v1/tp/usage-reports/{ids[0]}/refund", {"amount": Decimal("0.5")})
    with other_user.client(live_server.url) as client:
        post(client, "/v1/tp/usage", usage_body(other_user.agent_id, "1"))
    return tenant, ids, second_agent.id


def _ids(live_server, tenant, token=False, **params):
    with tenant.client(live_server.url, token=token) as client:
        response = client.get("/v1/tp/usage-reports", params=params)
    assert response.status_code == 200, response.text
    return [record["id"] for record in response.json()["data"]], response.json()["pagination"]


def test_filters_select_the_right_records(live_server, seeded):
    tenant, ids, second_agent = seeded
    a, b, c, d = ids
    assert _ids(live_server, tenant)[0] == [d, c, b, a]
    assert _ids(live_server, tenant, hasCharges="true")[0] == [c, a]
    assert _ids(live_server, tenant, hasCharges="false")[0] == [d, b]
    assert _ids(live_server, tenant, status="failed")[0] == [d]
    assert _ids(live_server, tenant, aiAgentId=second_agent)[0] == [d, c]
    assert _ids(live_server, tenant, usageType="token_usage")[0] == [b]
    assert _ids(live_server, tenant, transactionType="refund")[0] == [a]
    assert _ids(live_server, tenant, transactionType="usage")[0] == [c, a]
    assert _ids(live_server, tenant, idempotencyKey="c")[0] == [c]
    assert _ids(live_server, tenant, minAmount="2", maxAmount="3")[0] == [c, b]
    assert _ids(live_server, tenant, startDate="2026-03-02", endDate="2026-03-03T23:59:59Z")[0] == [
        c,
        b,
    ]
    assert _ids(live_server, tenant, userEmail=tenant.user_email)[0] == [d, c, b, a]
    assert _ids(live_server, tenant, userId="usr_other")[0] == []
    assert _ids(live_server, tenant, token=True)[0] == [d, c, b, a]


def test_sorting_and_pagination(live_server, seeded):
    tenant, ids, _ = seeded
    a, b, c, d = ids
    assert _ids(live_server, tenant, sortBy="totalCost", sortOrder="asc")[0] == [a, b, c, d]
    assert _ids(live_server, tenant, sortBy="usageDate", sortOrder="asc")[0] == [a, b, c, d]
    assert _ids(live_server, tenant, sortBy="amount", sortOrder="desc")[0][:2] == [c, a]
    page1, pagination = _ids(live_server, tenant, limit=3, sortOrder="asc")
    page2, _ = _ids(live_server, tenant, limit=3, page=2, sortOrder="asc")
    assert page1 == [a, b, c] and page2 == [d]
    assert pagination == {"page": 1, "limit": 3, "total": 4, "totalPages": 2}


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"status": "done"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"page": "-1"}, "page"),
        ({"sortBy": "name"}, "sortBy"),
        ({"sortOrder": "up"}, "sortOrder"),
        ({"hasCharges": "yes"}, "hasCharges"),
        ({"transactionType": "charge"}, "transactionType"),
        ({"startDate": "yesterday"}, "startDate"),
        ({"minAmount": "-1"}, "minAmount"),
        ({"minAmount": "NaN"}, "minAmount"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_unknown_filter_values_are_400(live_server, tenant, params, param):
    with tenant.client(live_server.url) as client:
        response = client.get("/v1/tp/usage-reports", params=params)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_another_organizations_record_is_404(live_server, make_tenant):
    owner, stranger = make_tenant(), make_tenant()
    with owner.client(live_server.url) as client:
        record_id = post(client, "/v1/tp/usage", usage_body(owner.agent_id, "1")).json()["data"][
            "id"
        ]
    with stranger.client(live_server.url) as client:
        assert client.get(f"/v1/tp/usage-reports/{record_id}").status_code == 404
        assert post(client, f"/v1/tp/usage-reports/{record_id}/refund", {}).status_code == 404
