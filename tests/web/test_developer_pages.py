"""The developer portal (/developer): sign-up and sign-in, agents, credentials,
usage with filters and CSV, earnings that match the ledger, connected users;
driven over HTTP like a browser, on both databases."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from decimal import Decimal
from html import unescape

import httpx
from sqlalchemy import update

from reload_billing.agents import service as agents
from reload_billing.db import now_us
from reload_billing.ledger.service import Limits
from reload_billing.oauth import service as oauth
from reload_billing.reports import rollups
from reload_billing.usage.models import usage_records
from reload_billing.users import service as users
from reload_billing.web import format as fmt
from tests.helpers import balance, post
from tests.web.helpers import PASSWORD, developer_email, page_client, report

DAY_US = 86_400_000_000
PAGES = ("", "/agents", "/credentials", "/usage", "/usage.csv", "/earnings", "/users")


def descriptions(html: str) -> list[str]:
    return [unescape(text) for text in re.findall(r'<td class="desc">([^<]*)', html)]


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def shown_secret(html: str) -> str:
    match = re.search(r'data-testid="client-secret">([^<]+)<', html)
    assert match, "the client secret is shown"
    return match.group(1)


def works(base_url: str, client_id: str, secret: str) -> bool:
    answer = httpx.get(f"{base_url}/v1/tp/usage-reports", auth=(client_id, secret), timeout=30)
    assert answer.status_code in (200, 401), answer.text
    return answer.status_code == 200


def test_signed_out_portal_pages_send_to_sign_in(live_server):
    with page_client(live_server) as browser:
        for path in PAGES:
            response = browser.get(f"/developer{path}")
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/developer/signin?next=%2Fdeveloper")


def test_an_organization_signs_up_and_its_secret_is_shown_once(live_server):
    with page_client(live_server) as browser:
        page = browser.submit(
            "/developer/signup",
            {"name": "Acme AI", "email": "owner@acme.test", "password": PASSWORD},
            page="/developer/signup",
        )
        assert page.status_code == 200
        assert "Copy it now: it is shown only once." in page.text
        secret = shown_secret(page.text)
        client_id = re.search(r'data-testid="client-id">([^<]+)<', page.text).group(1)
        assert works(live_server.url, client_id, secret)
        later = browser.get("/developer/credentials")
        assert secret not in later.text
        assert client_id in later.text
        assert 'href="/developer/agents"' in later.text  # the main navigation
        assert ">Agents</a>" in later.text
    with page_client(live_server) as other:
        taken = other.submit(
            "/developer/signup",
            {"name": "Acme again", "email": "owner@acme.test", "password": PASSWORD},
            page="/developer/signup",
        )
        assert taken.status_code == 400
        assert "exists" in taken.text
        short = other.submit(
            "/developer/signup",
            {"name": "Shorty", "email": "short@acme.test", "password": "short"},
            page="/developer/signup",
        )
        assert short.status_code == 400
        assert "Create an organization" in short.text


def test_an_organization_made_by_the_cli_signs_in(live_server, database_url):
    env = {**os.environ, "RELOAD_DATABASE_URL": database_url}
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "reload_billing.cli",
            "orgs",
            "create",
            "--name",
            "Cli Co",
            "--email",
            "cli@co.test",
            "--password",
            PASSWORD,
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert '"clientId"' in made.stdout
    with page_client(live_server) as browser:
        wrong = browser.submit(
            "/developer/signin",
            {"email": "cli@co.test", "password": "not-the-password"},
            page="/developer/signin",
        )
        assert wrong.status_code == 400
        browser.sign_in("cli@co.test", developer=True)
        overview = browser.get("/developer")
        assert overview.status_code == 200
        assert "Cli Co" in overview.text


def test_developer_sign_in_is_rate_limited_and_needs_csrf(live_server, tenant):
    email = developer_email(tenant)
    with page_client(live_server) as browser:
        forged = browser.http.post("/developer/signin", data={"email": email, "password": PASSWORD})
        assert forged.status_code == 403
        for _ in range(10):
            wrong = browser.submit(
                "/developer/signin",
                {"email": email, "password": "nope-nope"},
                page="/developer/signin",
            )
            assert wrong.status_code == 400
        limited = browser.submit(
            "/developer/signin", {"email": email, "password": PASSWORD}, page="/developer/signin"
        )
        assert limited.status_code == 429
        assert browser.get("/developer/agents").status_code == 303


def test_agents_are_created_renamed_archived_and_restored(live_server, tenant, db):
    with page_client(live_server) as browser:
        browser.sign_in(developer_email(tenant), developer=True)
        browser.get("/developer/agents")
        assert browser.http.post("/developer/agents", data={"name": "No token"}).status_code == 403
        assert browser.submit("/developer/agents", {"name": "Scout"}).status_code == 303
        page = browser.get("/developer/agents")
        assert "Agent created." in page.text
        with db.read() as conn:
            scout = next(
                a for a in agents.list_agents(conn, tenant.organization_id) if a.name == "Scout"
            )
        assert f'data-testid="agent-id">{scout.id}<' in page.text
        assert f'data-copy="{scout.id}"' in page.text
        browser.submit(f"/developer/agents/{scout.id}/rename", {"name": "Scout Pro"})
        assert "Scout Pro" in browser.get("/developer/agents").text
        browser.submit(f"/developer/agents/{scout.id}/rename", {"name": "   "})
        assert "1-200 characters" in browser.get("/developer/agents").text
        browser.submit(f"/developer/agents/{scout.id}/archive")
        with tenant.client(live_server.url) as api:
            refused = post(
                api,
                "/v1/tp/usage",
                {"aiAgentId": scout.id, "description": "x", "totalCost": Decimal("0.1")},
            )
            assert refused.status_code == 400
            assert refused.json()["error"]["code"] == "agent_archived"
            page = browser.get("/developer/agents")
            assert "Archived" in page.text
            browser.submit(f"/developer/agents/{scout.id}/restore")
            assert report(api, scout.id, "0.1")["status"] == "completed"
        other = browser.submit("/developer/agents/agt_someone_else/rename", {"name": "Mine"})
        assert other.status_code == 404


def test_rotating_the_secret_stops_the_old_one_at_once(live_server, tenant):
    assert works(live_server.url, tenant.client_id, tenant.client_secret)
    with page_client(live_server) as browser:
        browser.sign_in(developer_email(tenant), developer=True)
        browser.get("/developer/credentials")
        page = browser.submit("/developer/credentials/rotate")
        assert page.status_code == 200
        assert page.headers["cache-control"] == "no-store"
        secret = shown_secret(page.text)
    assert not works(live_server.url, tenant.client_id, tenant.client_secret)
    assert works(live_server.url, tenant.client_id, secret)


def test_redirect_uris_are_added_and_removed(live_server, tenant):
    uri = "https://app.example.com/oauth/callback"
    with page_client(live_server) as browser:
        browser.sign_in(developer_email(tenant), developer=True)
        browser.get("/developer/credentials")
        bad = browser.submit("/developer/redirect-uris", {"uri": "http://evil.example.com/cb"})
        assert bad.status_code == 400
        assert "must use https" in bad.text
        assert browser.submit("/developer/redirect-uris", {"uri": uri}).status_code == 303
        page = browser.get("/developer/credentials")
        assert f"<code>{uri}</code>" in page.text
        query = {
            "response_type": "code",
            "client_id": tenant.client_id,
            "redirect_uri": uri,
            "scope": "identity",
            "code_challenge": "a" * 43,
            "code_challenge_method": "S256",
        }
        assert httpx.get(f"{live_server.url}/oauth/authorize", params=query).status_code == 303
        browser.submit("/developer/redirect-uris/remove", {"uri": uri})
        assert f"<code>{uri}</code>" not in browser.get("/developer/credentials").text
        assert httpx.get(f"{live_server.url}/oauth/authorize", params=query).status_code == 400


def _second_user(db, tenant):
    """Another user of the tenant's organization, with an access token."""

    def work(conn):
        user = users.create_user(
            conn,
            email="second@example.com",
            password=PASSWORD,
            first_name="Alan",
            last_name="Turing",
        )
        users.credit(conn, user_id=user.id, amount=5_000_000_000, description="test funds")
        token = oauth.issue_direct(
            conn,
            organization_id=tenant.organization_id,
            user_id=user.id,
            scopes=("identity", "usage_reporting", "payment"),
            agent_ids=None,
            limits=Limits(),
            ttl_days=90,
        )
        return user, token["access_token"]

    return db.write(work)


def test_developer_usage_filters_pages_and_csv(live_server, tenant, db):
    second_user, second_token = _second_user(db, tenant)
    tutor = db.write(lambda conn: agents.create_agent(conn, tenant.organization_id, "Tutor"))
    with tenant.client(live_server.url) as api:
        for n in range(52):
            report(
                api,
                tenant.agent_id,
                "0.01",
                description=f"Task {n}",
                usageType="token_usage",
                llmModel="gpt-4o",
            )
        report(
            api, tutor.id, "0.2", description="Free lesson", chargeUser=False, usageType="api_call"
        )
    alan = {"X-Access-Token": second_token}
    auth = (tenant.client_id, tenant.client_secret)
    with httpx.Client(base_url=live_server.url, auth=auth, headers=alan, timeout=30) as api:
        report(api, tutor.id, "0.3", description="Alan's lesson", usageType="api_call")
        report(api, tutor.id, "99", description="Alan's big bill", usageType="api_call")
    with page_client(live_server) as browser:
        browser.sign_in(developer_email(tenant), developer=True)
        first = browser.get("/developer/usage")
        assert len(descriptions(first.text)) == 50
        assert descriptions(first.text)[:3] == ["Alan's big bill", "Alan's lesson", "Free lesson"]
        older = re.search(r'rel="next" href="/developer/usage\?(after=[^"]+)"', first.text)
        rest = descriptions(browser.get(f"/developer/usage?{older.group(1)}").text)
        assert len(rest) == 5 and rest[-1] == "Task 0"
        assert "<dt>Records</dt><dd>55</dd>" in first.text
        assert "<dt>Failed charges</dt><dd>1</dd>" in first.text
        assert ">gpt-4o<" in first.text  # the per-model table
        by_user = browser.get("/developer/usage?user=second%40example.com")
        assert descriptions(by_user.text) == ["Alan's big bill", "Alan's lesson"]
        assert "<dt>Records</dt><dd>2</dd>" in by_user.text
        by_id = browser.get(f"/developer/usage?user={second_user.id}&status=completed")
        assert descriptions(by_id.text) == ["Alan's lesson"]
        nobody = browser.get("/developer/usage?user=nobody%40example.com")
        assert descriptions(nobody.text) == []
        assert "No usage matches these filters." in nobody.text
        uncharged = browser.get("/developer/usage?charged=no")
        assert descriptions(uncharged.text) == ["Alan's big bill", "Free lesson"]
        api_calls = browser.get(f"/developer/usage?type=api_call&agent={tutor.id}&charged=yes")
        assert descriptions(api_calls.text) == ["Alan's lesson"]
        rows = csv_rows(browser.get("/developer/usage.csv?type=api_call").text)
        assert [
            (r["description"], r["user_email"], r["charged_usd"], r["platform_fee_usd"])
            for r in rows
        ] == [
            ("Alan's big bill", "second@example.com", "0", "0"),
            ("Alan's lesson", "second@example.com", "0.3", "0.015"),
            ("Free lesson", tenant.user_email, "0", "0"),
        ]
        assert len(csv_rows(browser.get("/developer/usage.csv").text)) == 55
        bad = browser.get("/developer/usage?charged=maybe")
        assert bad.status_code == 400


def _money(html: str, testid: str) -> str:
    match = re.search(rf'data-testid="{testid}" title="([^"]+)"', html)
    assert match, testid
    return match.group(1)


def test_earnings_add_up_to_the_ledger_and_follow_late_refunds(live_server, tenant, db):
    with tenant.client(live_server.url) as api:
        old = report(api, tenant.agent_id, "2", description="Long ago")
        recent = report(api, tenant.agent_id, "1", description="Today")
        report(api, tenant.agent_id, "0.5", description="Free", chargeUser=False)
    past = now_us() - 5 * DAY_US

    def backdate(conn):
        conn.execute(
            update(usage_records).where(usage_records.c.id == old["id"]).values(created_at=past)
        )
        rollups.forget(conn, [tenant.organization_id, tenant.user_id])

    db.write(backdate)
    with page_client(live_server) as browser:
        browser.sign_in(developer_email(tenant), developer=True)
        page = browser.get("/developer/earnings")
        # 5% platform fee: charges of 2 and 1 USD.
        assert _money(page.text, "gross") == "$3.00"
        assert _money(page.text, "fee") == "$0.15"
        assert _money(page.text, "refunds") == "$0.00"
        assert _money(page.text, "net") == "$2.85"
        assert f">{fmt.day(past // DAY_US)}<" in page.text
        # A refund of the old record after its day was summed: the kept totals follow.
        with tenant.client(live_server.url) as api:
            answer = post(
                api, f"/v1/tp/usage-reports/{old['id']}/refund", {"amount": Decimal("0.5")}
            )
            assert answer.status_code in (200, 201), answer.text
            post(api, f"/v1/tp/usage-reports/{recent['id']}/refund", {})
        page = browser.get("/developer/earnings")
        assert _money(page.text, "gross") == "$3.00"
        assert _money(page.text, "refunds") == "$1.50"
        assert _money(page.text, "fee") == "$0.075"  # 0.15 less 0.025 and 0.05 given back
        assert _money(page.text, "net") == "$1.425"
        earned = balance(db, tenant.earnings_account_id)
        assert earned == Decimal("1.425")
        assert _money(page.text, "earnings-balance") == "$1.425"
        # The user's account sees the same late refund in its kept totals.
    with page_client(live_server) as account:
        account.sign_in(tenant.user_email)
        refunded = account.get("/usage?status=refunded")
        assert sorted(descriptions(refunded.text)) == ["Long ago", "Today"]
        assert (
            '<dt>Refunded</dt><dd><span title="$1.50">$1.50</span></dd>'
            in account.get("/usage").text
        )


def test_users_page_lists_connections_with_totals(live_server, tenant, db):
    _second_user(db, tenant)
    with tenant.client(live_server.url) as api:
        report(api, tenant.agent_id, "1.25")
        report(api, tenant.agent_id, "0.75", chargeUser=False)
    with page_client(live_server) as browser:
        browser.sign_in(developer_email(tenant), developer=True)
        page = browser.get("/developer/users")
        assert page.status_code == 200
        assert tenant.user_email in page.text and "second@example.com" in page.text
        row = page.text[page.text.index(tenant.user_email) :]
        row = row[: row.index("</tr>")]
        assert ">identity<" in row and ">payment<" in row
        assert 'title="$2.00">$2.00<' in row  # cost
        assert 'title="$1.25">$1.25<' in row  # charged
        assert "Connected" in row
        webhooks = 'href="/developer/webhooks"'
        assert webhooks in page.text  # the webhook pages exist, so the portal links them
