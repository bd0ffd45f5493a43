"""The developer portal's webhook pages, driven over HTTP like a browser: sign in,
add an endpoint (its secret shown once), see deliveries and attempts, re-send,
disable, rotate, delete; every form needs its CSRF token."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from reload_billing.errors import NotFound
from reload_billing.organizations import service as organizations
from reload_billing.webhooks import service as webhooks
from reload_billing.webhooks.models import deliveries, endpoints
from tests.webhooks.receiver import wait_for

PASSWORD = "correct-horse-battery"


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:2000]
    return match.group(1)


@contextlib.contextmanager
def signed_in_browser(live_server, email: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, follow_redirects=False, timeout=30) as browser:
        page = browser.get("/developer/signin")
        response = browser.post(
            "/developer/signin",
            data={
                "csrf_token": csrf(page.text),
                "email": email,
                "password": PASSWORD,
                "next": "/developer",
            },
        )
        assert response.status_code == 303, response.text
        yield browser


def make_org(db, email: str):
    org, _ = db.write(
        lambda conn: organizations.create_organization(
            conn, name="Hooks Inc", email=email, password=PASSWORD, environment="sandbox"
        )
    )
    return org


def test_pages_need_a_signed_in_developer(live_server):
    with httpx.Client(base_url=live_server.url, follow_redirects=False) as browser:
        response = browser.get("/developer/webhooks")
        assert response.status_code == 303
        assert response.headers["location"].startswith("/developer/signin")
        assert browser.post("/developer/webhooks/deliveries/whd_x/resend").status_code == 303


def test_developer_manages_endpoints_and_sees_deliveries(live_server, db, receiver):
    org = make_org(db, "hooks@example.com")
    with signed_in_browser(live_server, "hooks@example.com") as browser:
        page = browser.get("/developer/webhooks")
        assert page.status_code == 200
        assert "No endpoints yet" in page.text

        no_token = browser.post(
            "/developer/webhooks", data={"url": receiver.url, "events": "payment.success"}
        )
        assert no_token.status_code == 403

        bad = browser.post(
            "/developer/webhooks",
            data={
                "csrf_token": csrf(page.text),
                "url": "ftp://example.com/x",
                "events": "payment.success",
            },
        )
        assert bad.status_code == 400 and "url must be an absolute http" in bad.text
        none_chosen = browser.post(
            "/developer/webhooks", data={"csrf_token": csrf(page.text), "url": receiver.url}
        )
        assert none_chosen.status_code == 400 and "choose at least one event" in none_chosen.text

        added = browser.post(
            "/developer/webhooks",
            data={
                "csrf_token": csrf(page.text),
                "url": receiver.url,
                "events": ["payment.success"],
            },
        )
        assert added.status_code == 200
        assert added.headers["cache-control"] == "no-store"
        secret = re.search(
            r'data-testid="webhook-secret">(whsec_[A-Za-z0-9_\-]+)<', added.text
        ).group(1)
        receiver.secret = secret
        again = browser.get("/developer/webhooks")
        assert secret not in again.text  # shown once
        assert receiver.url in again.text and "Enabled" in again.text
        with db.read() as conn:
            endpoint = conn.execute(select(endpoints)).one()
        assert endpoint.events == "payment.success"

        db.write(lambda conn: webhooks.enqueue(conn, org.id, "payment.success", {"n": 1}))
        db.write(lambda conn: webhooks.enqueue(conn, org.id, "payment.failed", {"n": 2}))
        [receipt] = wait_for(receiver.accepted)
        assert receipt.signature_ok is True
        wait_for(lambda: "Delivered" in browser.get("/developer/webhooks").text)
        listing = browser.get("/developer/webhooks").text
        assert receipt.id in listing and "HTTP 200" in listing and "1 attempt" in listing

        resent = browser.post(
            f"/developer/webhooks/deliveries/{receipt.id}/resend",
            data={"csrf_token": csrf(listing)},
        )
        assert resent.status_code == 303
        wait_for(lambda: len(receiver.accepted()) == 2)
        assert [r.id for r in receiver.receipts] == [receipt.id, receipt.id]
        assert "will be sent again" in browser.get("/developer/webhooks").text

        token = csrf(listing)
        assert (
            browser.post(
                f"/developer/webhooks/{endpoint.id}/disable", data={"csrf_token": token}
            ).status_code
            == 303
        )
        assert "Disabled" in browser.get("/developer/webhooks").text
        db.write(lambda conn: webhooks.enqueue(conn, org.id, "payment.success", {"n": 3}))
        with db.read() as conn:
            assert len(conn.execute(select(deliveries.c.id)).all()) == 1
        assert (
            browser.post(
                f"/developer/webhooks/{endpoint.id}/enable", data={"csrf_token": token}
            ).status_code
            == 303
        )

        rotated = browser.post(
            f"/developer/webhooks/{endpoint.id}/rotate", data={"csrf_token": token}
        )
        new_secret = re.search(
            r'data-testid="webhook-secret">(whsec_[A-Za-z0-9_\-]+)<', rotated.text
        ).group(1)
        assert new_secret != secret
        receiver.secret = new_secret
        db.write(lambda conn: webhooks.enqueue(conn, org.id, "payment.success", {"n": 4}))
        wait_for(lambda: len(receiver.accepted()) == 3)
        assert receiver.accepted()[-1].signature_ok is True

        deleted = browser.post(
            f"/developer/webhooks/{endpoint.id}/delete", data={"csrf_token": token}
        )
        assert deleted.status_code == 303
        assert "No endpoints yet" in browser.get("/developer/webhooks").text


def test_one_organization_cannot_touch_another_ones_endpoints(live_server, db, receiver):
    owner = make_org(db, "owner@example.com")
    make_org(db, "intruder@example.com")
    endpoint, _ = db.write(
        lambda conn: webhooks.create_endpoint(
            conn, owner.id, url=receiver.url, events="payment.success",
            secret_key="k", environment="sandbox",
        )
    )  # fmt: skip
    db.write(lambda conn: webhooks.enqueue(conn, owner.id, "payment.success", {}))
    with signed_in_browser(live_server, "intruder@example.com") as browser:
        page = browser.get("/developer/webhooks")
        assert receiver.url not in page.text
        token = csrf(page.text)
        for action in ("disable", "rotate", "delete"):
            response = browser.post(
                f"/developer/webhooks/{endpoint.id}/{action}", data={"csrf_token": token}
            )
            assert response.status_code == 404
    with db.read() as conn, pytest.raises(NotFound):
        webhooks.get_endpoint(conn, "org_other", endpoint.id)
    with db.read() as conn:
        assert conn.execute(select(endpoints.c.enabled)).scalar() is True
