"""Hostile tenants and users: every read and write stays inside the caller's
organization and user.

Organization A (with two users, A1 and A2) probes organization B with B's ids:
records, agents, users, tokens, connections, webhook endpoints and deliveries. The
probes are generated from what the server offers (every ``/v1/tp`` operation of
``/openapi.json``, every page route), so new endpoints are probed too. Each answer
must be a 4xx or carry none of B's data, and none of B's rows may change.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from reload_billing import db as dbmod
from reload_billing.agents import service as agents
from reload_billing.config import Settings
from reload_billing.oauth import service as oauth
from reload_billing.oauth.models import connections
from reload_billing.organizations.models import organizations
from reload_billing.testing import live
from reload_billing.users import service as users
from reload_billing.webhooks import service as webhooks
from reload_billing.webhooks.models import deliveries
from tests.helpers import post, usage_body
from tests.reliability.audit import FIGURES

MARK = "zz-tenant-b-private"
PASSWORD = "correct-horse-battery"


@dataclass
class World:
    url: str
    a: Any
    b: Any
    a2_token: str
    a2_user_id: str
    a1_record: str
    b_record: str
    b_refund: str
    b_agent2: str
    b_connection: str
    b_endpoint: str
    b_delivery: str
    a_owner_email: str
    routes: list[Any] = field(default_factory=list)
    markers: set[str] = field(default_factory=set)
    a1_markers: set[str] = field(default_factory=set)
    probes: int = 0


@pytest.fixture
def world(settings, db, make_tenant):
    server = live.start(settings.model_copy(update={"webhook_worker": False}))
    try:
        yield build_world(server, settings, db, make_tenant)
    finally:
        server.stop()


def build_world(server, settings: Settings, db, make_tenant) -> World:
    a, b = make_tenant(balance="20"), make_tenant(balance="20")

    def second_user(conn):
        user = users.create_user(
            conn, email="a2-user@example.com", password=PASSWORD, first_name="A", last_name="Two"
        )
        users.credit(conn, user_id=user.id, amount=5 * 10**9, description="funds")
        token = oauth.issue_direct(
            conn,
            organization_id=a.organization_id,
            user_id=user.id,
            scopes=("identity", "usage_reporting", "payment"),
            agent_ids=None,
            limits=oauth.Limits(),
            ttl_days=90,
        )
        return user.id, token["access_token"]

    a2_user_id, a2_token = db.write(second_user)

    def b_objects(conn):
        agent = agents.create_agent(conn, b.organization_id, f"{MARK}-agent")
        endpoint, _secret = webhooks.create_endpoint(
            conn,
            b.organization_id,
            url="https://b.example.com/hooks",
            events=list(webhooks.EVENTS),
            secret_key=settings.resolved_secret_key(),
            environment="sandbox",
        )
        connection = conn.execute(
            select(connections.c.id).where(connections.c.user_id == b.user_id)
        ).scalar_one()
        owner = conn.execute(
            select(organizations.c.owner_email).where(organizations.c.id == a.organization_id)
        ).scalar_one()
        return agent.id, endpoint.id, connection, owner

    b_agent2, b_endpoint, b_connection, a_owner_email = db.write(b_objects)
    with b.client(server.url) as client:
        record = post(
            client,
            "/v1/tp/usage",
            usage_body(
                b.agent_id,
                "2",
                description=f"{MARK}-description",
                idempotencyKey=f"{MARK}-key",
                llmModel=f"{MARK}-model",
                metadata={"secret": f"{MARK}-metadata"},
            ),
        ).json()["data"]
        refund = post(client, f"/v1/tp/usage-reports/{record['id']}/refund", {"amount": "0.5"})
        refund_id = refund.json()["data"]["id"]
    with a.client(server.url) as client:
        a1_record = post(
            client, "/v1/tp/usage", usage_body(a.agent_id, "1", description="a1-only-record")
        ).json()["data"]["id"]
    with db.read() as conn:
        delivery = conn.execute(
            select(deliveries.c.id).where(deliveries.c.organization_id == b.organization_id)
        ).scalar()
    assert delivery is not None
    world = World(
        url=server.url,
        a=a,
        b=b,
        a2_token=a2_token,
        a2_user_id=a2_user_id,
        a1_record=a1_record,
        b_record=record["id"],
        b_refund=refund_id,
        b_agent2=b_agent2,
        b_connection=b_connection,
        b_endpoint=b_endpoint,
        b_delivery=delivery,
        a_owner_email=a_owner_email,
        routes=list(server.server.config.app.routes),
    )
    world.markers = {
        MARK,
        b.organization_id,
        b.client_id,
        b.user_id,
        b.user_email,
        b.agent_id,
        b_agent2,
        b.billing_account_id,
        b.earnings_account_id,
        record["id"],
        refund_id,
        b_connection,
        b_endpoint,
        delivery,
        b.access_token,
        b.client_secret,
    }
    world.a1_markers = {"a1-only-record", a1_record, a.user_id, a.user_email}
    return world


def b_ids(world: World) -> dict[str, list[str]]:
    """B's values by the kind of parameter they fit."""
    return {
        "record": [world.b_record],
        "agent": [world.b.agent_id, world.b_agent2],
        "user": [world.b.user_id],
        "email": [world.b.user_email],
        "token": [world.b.access_token],
        "connection": [world.b_connection],
        "endpoint": [world.b_endpoint],
        "delivery": [world.b_delivery],
        "key": [f"{MARK}-key"],
        "transaction": [world.b_refund],
    }


def fitting(name: str, world: World) -> list[str]:
    ids = b_ids(world)
    lowered = name.lower()
    for kind in ("record", "agent", "user", "email", "token", "connection", "endpoint", "delivery"):
        if kind in lowered:
            if kind == "user" and "email" in lowered:
                return ids["email"]
            return ids[kind]
    if "key" in lowered:
        return ids["key"]
    # An id of unknown kind: try all of B's ids.
    return [value for values in ids.values() for value in values]


def snapshot(db, world: World) -> list[tuple[str, list[tuple]]]:
    """Every row of B (and of its user), to prove that no probe changed one."""
    b = world.b
    owned_ids = {b.billing_account_id, b.earnings_account_id}
    found = []
    with db.read() as conn:
        for table in dbmod.metadata.sorted_tables:
            columns = table.c
            conditions = []
            if "organization_id" in columns:
                conditions.append(columns.organization_id == b.organization_id)
            if "user_id" in columns:
                conditions.append(columns.user_id == b.user_id)
            if "account_id" in columns:
                conditions.append(columns.account_id.in_(owned_ids))
            if table.name in ("ledger_accounts", "users", "organizations", "agents"):
                conditions.append(columns.id.in_(owned_ids | {b.user_id, b.organization_id}))
            if not conditions:
                continue
            from sqlalchemy import or_

            rows = conn.execute(select(table).where(or_(*conditions))).all()
            found.append((table.name, sorted(tuple(str(v) for v in row) for row in rows)))
    return found


def leaked(text: str, markers: set[str], sent: set[str]) -> list[str]:
    return [marker for marker in markers - sent if marker and marker in text]


def check(
    world: World, response: httpx.Response, sent: set[str], markers: set[str] | None = None
) -> None:
    world.probes += 1
    assert response.status_code < 500, (response.request.url, response.text)
    found = leaked(response.text, markers if markers is not None else world.markers, sent)
    assert not found, (
        response.request.method,
        str(response.request.url),
        found,
        response.text[:500],
    )


KNOWN_BODIES = {
    ("post", "/v1/tp/usage"): lambda w, agent: {
        "aiAgentId": agent,
        "description": "probe",
        "totalCost": 1,
        "chargeUser": True,
    },
    ("post", "/v1/tp/preview-charge"): lambda w, agent: {
        "aiAgentId": agent,
        "amount": 1,
        "description": "probe",
    },
    ("post", "/v1/tp/revoke-token"): lambda w, agent: {"token": w.b.access_token},
    ("post", "/v1/tp/introspect-token"): lambda w, agent: {"token": w.b.access_token},
}


def api_probes(world: World) -> None:
    document = httpx.get(world.url + "/openapi.json").json()
    a = world.a
    token_choices = {
        "A1 token": {"X-Access-Token": a.access_token},
        "no token": {},
        "B's token": {"X-Access-Token": world.b.access_token},
    }
    for path, operations in document["paths"].items():
        if not path.startswith("/v1/tp/"):
            continue
        for method, operation in operations.items():
            parameters = operation.get("parameters", [])
            path_params = [p["name"] for p in parameters if p["in"] == "path"]
            query_params = [p["name"] for p in parameters if p["in"] == "query"]
            urls: list[tuple[str, set[str]]] = []
            if path_params:
                for name in path_params:
                    for value in fitting(name, world):
                        urls.append((path.replace("{" + name + "}", value), {value}))
            else:
                urls.append((path, set()))
            if method == "get":
                for name in query_params:
                    if re.search(r"(Id|Email|Key)$", name):
                        for value in fitting(name, world):
                            base = urls[0][0]
                            urls.append((f"{base}?{httpx.QueryParams({name: value})}", {value}))
            for url, sent in urls:
                for label, headers in token_choices.items():
                    sent_here = sent | ({world.b.access_token} if label == "B's token" else set())
                    with httpx.Client(
                        base_url=world.url, auth=(a.client_id, a.client_secret), headers=headers
                    ) as client:
                        if method == "get":
                            response = client.get(url)
                        else:
                            agents_to_try = [world.b.agent_id, world.b_agent2]
                            make = KNOWN_BODIES.get((method, path))
                            bodies = [make(world, x) for x in agents_to_try] if make else [{}]
                            for body in bodies:
                                sent_body = sent_here | {
                                    v for v in body.values() if isinstance(v, str)
                                }
                                response = post(client, url, body)
                                check(world, response, sent_body)
                                if label == "B's token":
                                    assert response.status_code == 401 or "token" in path, (
                                        response.text
                                    )
                            continue
                        check(world, response, sent_here)
                        if label == "B's token" and operation.get("security") != [
                            {"clientCredentials": []}
                        ]:
                            assert response.status_code == 401, (url, response.text)
                        if path_params:
                            assert response.status_code in (400, 401, 403, 404), (
                                url,
                                response.text,
                            )


def test_another_organizations_ids_give_nothing_on_the_api(world, db):
    before = snapshot(db, world)
    api_probes(world)
    a = world.a
    with a.client(world.url) as client:
        # Specific answers for the known operations.
        assert client.get(f"/v1/tp/usage-reports/{world.b_record}").status_code == 404
        refund = post(client, f"/v1/tp/usage-reports/{world.b_record}/refund", {"amount": "0.1"})
        assert refund.status_code == 404
        usage = post(client, "/v1/tp/usage", usage_body(world.b.agent_id))
        assert usage.status_code == 404 and usage.json()["error"]["code"] == "agent_not_found"
        revoke = post(client, "/v1/tp/revoke-token", {"token": world.b.access_token})
        assert revoke.status_code == 404
        introspect = post(client, "/v1/tp/introspect-token", {"token": world.b.access_token})
        assert introspect.json()["data"] == {"status": "not_found", "active": False}
        listed = client.get("/v1/tp/usage-reports", params={"userId": world.b.user_id}).json()
        assert listed["data"] == [] and listed["pagination"]["total"] == 0
        world.probes += 6
    assert snapshot(db, world) == before
    with world.b.client(world.url) as client:
        assert client.get("/v1/tp/user").status_code == 200  # B's token still works
    record_figure(world, "api")


def test_a_user_token_sees_only_that_users_records(world, db):
    a = world.a
    markers = world.a1_markers
    with httpx.Client(
        base_url=world.url,
        auth=(a.client_id, a.client_secret),
        headers={"X-Access-Token": world.a2_token},
    ) as client:
        own = post(client, "/v1/tp/usage", usage_body(a.agent_id, "0.5", description="a2-record"))
        assert own.status_code == 201
        responses = [
            client.get(f"/v1/tp/usage-reports/{world.a1_record}"),
            post(client, f"/v1/tp/usage-reports/{world.a1_record}/refund", {"amount": "0.1"}),
            client.get("/v1/tp/usage-reports", params={"userId": a.user_id}),
            client.get("/v1/tp/usage-reports", params={"userEmail": a.user_email}),
            client.get("/v1/tp/usage-reports"),
            client.get("/v1/tp/reports/usage", params={"userId": a.user_id}),
            client.get("/v1/tp/reports/usage", params={"groupBy": "userId"}),
        ]
    for response in responses:
        check(world, response, set(), markers)
    assert responses[0].status_code == 404 and responses[1].status_code == 404
    listed = responses[4].json()
    assert [r["userId"] for r in listed["data"]] == [world.a2_user_id]
    # The organization itself (client credentials, no token) sees both of its users.
    with a.client(world.url, token=False) as client:
        both = client.get("/v1/tp/usage-reports").json()["data"]
    assert {r["userId"] for r in both} == {a.user_id, world.a2_user_id}
    record_figure(world, "users")


def sign_in(world: World, path: str, email: str) -> httpx.Client:
    browser = httpx.Client(base_url=world.url, follow_redirects=False)
    page = browser.get(path)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    signed = browser.post(path, data={"email": email, "password": PASSWORD, "csrf_token": token})
    assert signed.status_code == 303, signed.text
    return browser


def csrf_of(browser: httpx.Client, page: str) -> str:
    html = browser.get(page).text
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


NOT_PAGES = ("/v1/", "/static", "/docs", "/openapi", "/healthz", "/metrics", "/oauth")


def flatten(routes):
    """Every route, also those of included routers (kept nested by newer FastAPI)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            prefix = getattr(getattr(route, "include_context", None), "prefix", "") or ""
            for inner_prefix, child in flatten(inner.routes):
                yield prefix + inner_prefix, child
        else:
            yield "", route


def page_routes(app_routes, area: str, method: str) -> list[str]:
    """The page routes of an area: the developer portal, or the user's pages."""
    paths = []
    for prefix, route in flatten(app_routes):
        methods = getattr(route, "methods", None) or set()
        path = prefix + getattr(route, "path", "")
        if method not in methods or path.startswith(NOT_PAGES):
            continue
        if path.startswith("/developer") == (area == "developer"):
            paths.append(path)
    return sorted(set(paths))


def fill(path: str, world: World) -> list[tuple[str, set[str]]]:
    names = re.findall(r"{(\w+)}", path)
    if not names:
        return [(path, set())]
    filled = []
    for name in names:
        for value in fitting(name, world):
            filled.append((path.replace("{" + name + "}", value), {value}))
    return filled


@pytest.mark.parametrize(
    ("area", "signin"), [("user", "/signin"), ("developer", "/developer/signin")]
)
def test_another_organizations_ids_give_nothing_on_the_pages(world, db, area, signin):
    routes = world.routes
    email = world.a.user_email if area == "user" else world.a_owner_email
    home = "/" if area == "user" else "/developer"
    before = snapshot(db, world)
    browser = sign_in(world, signin, email)
    try:
        gets = page_routes(routes, area, "GET")
        for path in gets:
            if "{" in path or path.endswith(("/signin", "/signup")):
                continue
            for query in (
                {},
                {"agent": world.b.agent_id},
                {"aiAgentId": world.b.agent_id},
                {"userId": world.b.user_id},
                {"user": world.b.user_email},
            ):
                response = browser.get(path, params=query)
                check(world, response, set(query.values()))
        posts = page_routes(routes, area, "POST")
        for path in posts:
            if "{" not in path:
                continue
            for url, sent in fill(path, world):
                form = {"csrf_token": csrf_of(browser, home), "name": "hijacked"}
                form.update({"limit_per_charge": "0.01", "limit_daily": "0.01"})
                response = browser.post(url, data=form)
                check(world, response, sent)
                assert response.status_code != 200 or "hijacked" not in response.text
    finally:
        browser.close()
    assert snapshot(db, world) == before
    with world.b.client(world.url) as client:
        assert client.get("/v1/tp/user").status_code == 200
        assert post(client, "/v1/tp/usage", usage_body(world.b_agent2, "0")).status_code == 201
    record_figure(world, f"pages-{area}")


_FIGURES: dict[str, int] = {}


def record_figure(world: World, name: str) -> None:
    _FIGURES[name] = _FIGURES.get(name, 0) + world.probes
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / "tenants.json").write_text(json.dumps(_FIGURES, indent=2, sort_keys=True))
