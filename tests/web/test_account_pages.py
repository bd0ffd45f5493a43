"""The user's account (/): sign-up, balance, top-ups, connected apps, usage with
filters, keyset pages and CSV; driven over HTTP like a browser, on both databases."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from html import unescape

from sqlalchemy import select, update

from reload_billing.agents import service as agents
from reload_billing.db import now_us
from reload_billing.oauth import service as oauth
from reload_billing.oauth.models import connections
from reload_billing.reports import rollups
from reload_billing.usage.models import usage_records
from reload_billing.users import service as users
from reload_billing.web import format as fmt
from tests.helpers import balance, post
from tests.web.helpers import PASSWORD, developer_email, page_client, report

DAY_US = 86_400_000_000


def descriptions(html: str) -> list[str]:
    return [unescape(text) for text in re.findall(r'<td class="desc">([^<]*)', html)]


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def sign_up(browser, email: str = "ada@example.com") -> None:
    response = browser.submit(
        "/signup",
        {"first_name": "Ada", "last_name": "Lovelace", "email": email, "password": PASSWORD},
        page="/signup",
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/"


def billing_account(db, email: str) -> str:
    with db.read() as conn:
        return str(users.user_by_email(conn, email).billing_account_id)


def test_signed_out_pages_send_to_sign_in(live_server):
    with page_client(live_server) as browser:
        for path in ("/", "/usage", "/usage.csv"):
            response = browser.get(path)
            assert response.status_code == 303
            assert response.headers["location"].startswith("/signin")


def test_sign_up_shows_an_empty_balance_then_sandbox_funds_arrive(live_server, db):
    with page_client(live_server) as browser:
        sign_up(browser)
        account = browser.get("/")
        assert account.status_code == 200
        assert 'data-testid="balance" title="$0.00">$0.00<' in account.text
        assert "0 credits" in account.text
        response = browser.submit("/account/top-up", {"amount": "12.5"})
        assert response.status_code == 303
        account = browser.get("/")
        assert ">$12.50<" in account.text
        assert "1,250 credits" in account.text
        assert "Test funds added to your balance." in account.text
    assert balance(db, billing_account(db, "ada@example.com")) == Decimal("12.5")


def test_a_bad_top_up_amount_is_explained_and_moves_nothing(live_server, db):
    with page_client(live_server) as browser:
        sign_up(browser)
        for amount, words in (
            ("-3", "must not be negative"),
            ("ten", "must be a number"),
            ("0", "greater than zero"),
            ("10001", "must not exceed"),
        ):
            browser.get("/")
            assert browser.submit("/account/top-up", {"amount": amount}).status_code == 303
            assert words in browser.get("/").text
    assert balance(db, billing_account(db, "ada@example.com")) == 0


def test_forms_without_the_csrf_token_are_refused(live_server, db):
    with page_client(live_server) as browser:
        sign_up(browser)
        for token in (None, "forged"):
            data = {"amount": "5"} if token is None else {"amount": "5", "csrf_token": token}
            response = browser.http.post("/account/top-up", data=data)
            assert response.status_code == 403
            assert response.json()["error"]["code"] == "csrf_failed"
        response = browser.http.post(
            "/signin", data={"email": "ada@example.com", "password": PASSWORD}
        )
        assert response.status_code == 403
    assert balance(db, billing_account(db, "ada@example.com")) == 0


def test_sign_in_is_rate_limited(live_server, tenant):
    with page_client(live_server) as browser:
        for _ in range(10):
            wrong = browser.submit(
                "/signin",
                {"email": tenant.user_email, "password": "wrong-password"},
                page="/signin",
            )
            assert wrong.status_code == 400
            assert "do not match" in wrong.text
        limited = browser.submit(
            "/signin",
            {"email": tenant.user_email, "password": tenant.user_password},
            page="/signin",
        )
        assert limited.status_code == 429
        assert "Too many sign-in attempts" in limited.text
        assert browser.get("/").status_code == 303  # still signed out


def test_production_offers_no_free_money(production_server, db):
    with page_client(production_server) as browser:
        sign_up(browser)
        account = browser.get("/")
        assert "Add funds" not in account.text
        assert 'name="amount"' not in account.text
        assert "reload users credit" in account.text
        response = browser.submit("/account/top-up", {"amount": "50"})
        assert response.status_code == 403
        assert "production" in response.text
    assert balance(db, billing_account(db, "ada@example.com")) == 0


def test_connected_app_shows_its_terms_and_disconnect_revokes_the_token(live_server, tenant, db):
    with page_client(live_server) as browser:
        browser.sign_in(tenant.user_email)
        account = browser.get("/")
        assert "Org " in account.text
        assert "All agents of" in account.text
        for words in oauth.SCOPE_WORDS.values():
            assert words in account.text
        with db.read() as conn:
            connection_id = oauth.user_connections(conn, tenant.user_id)[0].id
        with tenant.client(live_server.url) as api:
            assert api.get("/v1/tp/user").status_code == 200
            response = browser.submit(f"/account/connections/{connection_id}/disconnect")
            assert response.status_code == 303
            answer = api.get("/v1/tp/user")
            assert answer.status_code == 401
            assert answer.json()["error"]["code"] in ("token_revoked", "token_disconnected")
        account = browser.get("/")
        assert "Disconnected" in account.text
        assert f"/account/connections/{connection_id}/disconnect" not in account.text
        missing = browser.submit("/account/connections/con_nope/disconnect")
        assert missing.status_code == 404


def test_the_user_edits_a_connections_spending_limits(live_server, tenant, db):
    with db.read() as conn:
        connection_id = oauth.user_connections(conn, tenant.user_id)[0].id
    with page_client(live_server) as browser:
        browser.sign_in(tenant.user_email)
        browser.get("/")
        bad = browser.submit(
            f"/account/connections/{connection_id}/limits", {"limit_per_charge": "lots"}
        )
        assert bad.status_code == 303
        assert "Limit per charge must be a number" in browser.get("/").text
        saved = browser.submit(
            f"/account/connections/{connection_id}/limits",
            {"limit_per_charge": "0.5", "limit_daily": "", "limit_monthly": "20"},
        )
        assert saved.status_code == 303
        account = browser.get("/")
        assert "Spending limits saved." in account.text
        assert "Per charge $0.50" in account.text
        assert 'value="0.5"' in account.text
    with db.read() as conn:
        row = conn.execute(select(connections).where(connections.c.id == connection_id)).one()
    assert (row.limit_per_charge, row.limit_daily, row.limit_monthly) == (
        500_000_000,
        None,
        20_000_000_000,
    )
    with tenant.client(live_server.url) as api:
        refused = report(api, tenant.agent_id, "0.75")
        assert refused["status"] == "failed"
        assert refused["failureReason"] == "spending_limit_exceeded"
        assert report(api, tenant.agent_id, "0.25")["status"] == "completed"


def _seed_usage(live_server, tenant, db):
    """55 charged reports by the first agent, 5 by a second, one failed, one
    refunded, one with a formula-like description."""
    second = db.write(lambda conn: agents.create_agent(conn, tenant.organization_id, "Tutor"))
    with tenant.client(live_server.url) as api:
        for n in range(55):
            report(api, tenant.agent_id, "0.01", description=f"Task {n}", llmModel="gpt-4o")
        for n in range(5):
            report(api, second.id, "0.02", description=f"Lesson {n}", shortDescription="Lesson")
        failed = report(api, second.id, "500", description="Too expensive")
        assert failed["failureReason"] == "insufficient_balance"
        refunded = report(api, tenant.agent_id, "0.04", description="Refund me")
        answer = post(api, f"/v1/tp/usage-reports/{refunded['id']}/refund", {"reason": "oops"})
        assert answer.status_code in (200, 201), answer.text
        report(api, tenant.agent_id, "0.001", description="=HYPERLINK(1)")
    return second


def test_usage_pages_go_through_every_record_once_newest_first(live_server, tenant, db):
    _seed_usage(live_server, tenant, db)
    with page_client(live_server) as browser:
        browser.sign_in(tenant.user_email)
        first = browser.get("/usage")
        assert first.status_code == 200
        page_one = descriptions(first.text)
        assert len(page_one) == 50
        assert page_one[:3] == ["=HYPERLINK(1)", "Refund me", "Too expensive"]
        older = re.search(r'rel="next" href="/usage\?(after=[^"]+)"', first.text)
        assert older, "a link to the older records"
        assert 'rel="prev"' not in first.text
        second = browser.get(f"/usage?{older.group(1).replace('&amp;', '&')}")
        page_two = descriptions(second.text)
        assert len(page_two) == 13
        assert 'rel="next"' not in second.text
        everything = page_one + page_two
        assert len(set(everything)) == len(everything) == 63
        assert everything[-1] == "Task 0"
        newer = re.search(r'rel="prev" href="/usage\?(before=[^"]+)"', second.text)
        assert newer
        back = browser.get(f"/usage?{newer.group(1).replace('&amp;', '&')}")
        assert descriptions(back.text) == page_one


def test_usage_filters_totals_and_csv(live_server, tenant, db):
    second = _seed_usage(live_server, tenant, db)
    with page_client(live_server) as browser:
        browser.sign_in(tenant.user_email)
        by_agent = browser.get(f"/usage?agent={second.id}")
        assert descriptions(by_agent.text) == ["Too expensive"] + [
            f"Lesson {n}" for n in range(4, -1, -1)
        ]
        failed = browser.get("/usage?status=failed")
        assert descriptions(failed.text) == ["Too expensive"]
        assert "insufficient balance" in failed.text
        refunded = browser.get("/usage?status=refunded")
        assert descriptions(refunded.text) == ["Refund me"]
        assert "Refunded" in refunded.text
        # Totals of the period: every record, per agent, with the exact cost in a title.
        page = browser.get("/usage")
        assert "<dt>Records</dt><dd>63</dd>" in page.text
        assert ">Tutor<" in page.text
        assert 'title="$500.691">$500.69<' in page.text  # cost of all records
        # CSV of the filtered rows, exact amounts, formulas defused.
        whole = browser.get("/usage.csv")
        assert whole.status_code == 200
        assert whole.headers["content-type"].startswith("text/csv")
        assert "attachment" in whole.headers["content-disposition"]
        rows = csv_rows(whole.text)
        assert len(rows) == 63
        assert rows[0]["description"] == "'=HYPERLINK(1)"
        assert rows[0]["total_cost_usd"] == "0.001"
        refund_row = next(r for r in rows if r["description"] == "Refund me")
        assert (refund_row["charged_usd"], refund_row["refunded_usd"]) == ("0.04", "0.04")
        assert refund_row["charge_status"] == "refunded"
        only_failed = csv_rows(browser.get("/usage.csv?status=failed").text)
        assert [(r["description"], r["failure_reason"]) for r in only_failed] == [
            ("Too expensive", "insufficient_balance")
        ]
        lessons = csv_rows(browser.get(f"/usage.csv?agent={second.id}&status=completed").text)
        assert {r["agent"] for r in lessons} == {"Tutor"}
        assert sorted(r["description"] for r in lessons) == [f"Lesson {n}" for n in range(5)]
        for bad in (
            "status=bogus",
            "from=2024-13-01",
            "from=2024-05-02&to=2024-05-01",
            "after=not-a-cursor",
        ):
            answer = browser.get(f"/usage?{bad}")
            assert answer.status_code == 400, bad
            assert "These filters cannot be used" in answer.text


def test_date_filters_and_daily_totals_follow_the_records_days(live_server, tenant, db):
    with tenant.client(live_server.url) as api:
        ids = [report(api, tenant.agent_id, "0.5", description=f"Old {n}")["id"] for n in range(3)]
        report(api, tenant.agent_id, "0.25", description="Today")
    # Move three records ten days back, as if reported then.
    past = now_us() - 10 * DAY_US
    day = past // DAY_US

    def backdate(conn):
        conn.execute(
            update(usage_records).where(usage_records.c.id.in_(ids)).values(created_at=past)
        )
        rollups.forget(conn, [tenant.user_id, tenant.organization_id])

    db.write(backdate)
    date = fmt.day(day)
    with page_client(live_server) as browser:
        browser.sign_in(tenant.user_email)
        page = browser.get(f"/usage?from={date}&to={date}")
        assert sorted(descriptions(page.text)) == ["Old 0", "Old 1", "Old 2"]
        assert (
            f'Totals, <span class="nowrap">{date}</span> to <span class="nowrap">{date}</span>'
            in page.text
        )
        assert "<dt>Records</dt><dd>3</dd>" in page.text
        assert 'title="$1.50">$1.50<' in page.text
        # The last 30 days, from the kept daily totals and today's records.
        overview = browser.get("/usage")
        assert "<dt>Records</dt><dd>4</dd>" in overview.text
        assert 'title="$1.75">$1.75<' in overview.text
        rows = csv_rows(browser.get(f"/usage.csv?from={date}&to={date}").text)
        assert sorted(r["description"] for r in rows) == ["Old 0", "Old 1", "Old 2"]


def test_the_account_and_the_portal_are_separate_sign_ins(live_server, tenant):
    with page_client(live_server) as browser:
        browser.sign_in(tenant.user_email)
        browser.sign_in(developer_email(tenant), developer=True)
        assert browser.get("/").status_code == 200
        assert browser.get("/developer/agents").status_code == 200
        # A user's password does not open the portal, nor the reverse.
        browser.get("/developer")
        assert browser.submit("/developer/signout").status_code == 303
        assert browser.get("/").status_code == 200
        assert browser.get("/developer/agents").status_code == 303
        browser.sign_in(developer_email(tenant), developer=True)
        browser.get("/")
        assert browser.submit("/signout").status_code == 303
        assert browser.get("/").status_code == 303
        assert browser.get("/developer/agents").status_code == 200
    with page_client(live_server) as other:
        wrong = other.submit(
            "/developer/signin",
            {"email": tenant.user_email, "password": PASSWORD},
            page="/developer/signin",
        )
        assert wrong.status_code == 400


def test_signing_out_ends_every_copy_of_the_session(live_server, tenant):
    """A copied cookie (another tab or device, or a stolen one) stops working when
    its owner signs out; signing in again gives a session that works."""
    for developer, home, signout in (
        (False, "/", "/signout"),
        (True, "/developer/agents", "/developer/signout"),
        (True, "/developer/webhooks", "/developer/signout"),
    ):
        email = developer_email(tenant) if developer else tenant.user_email
        with page_client(live_server) as browser, page_client(live_server) as copy:
            browser.sign_in(email, developer=developer)
            copy.http.cookies.update(browser.http.cookies)
            assert copy.get(home).status_code == 200
            browser.get(home)
            assert browser.submit(signout).status_code == 303
            assert copy.get(home).status_code == 303
            browser.sign_in(email, developer=developer)
            assert browser.get(home).status_code == 200
