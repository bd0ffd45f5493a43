"""The pages under attack: CSRF on every form, no session fixation on sign-in,
Secure cookies over HTTPS, and no open redirect anywhere."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from reload_billing import db as dbmod
from reload_billing.app import create_app
from reload_billing.organizations.models import organizations
from reload_billing.webhooks import service as webhooks
from tests.oauth.test_oauth_flow import csrf, pkce_pair
from tests.security.test_tenant_isolation import NOT_PAGES, flatten

CSRF_INPUT = re.compile(r'<input[^>]*name="csrf_token"[^>]*value="[^"]+"')
FORM = re.compile(r"<form\b[^>]*>.*?</form>", re.DOTALL | re.IGNORECASE)


def sign_in(base_url: str, path: str, email: str, password: str) -> httpx.Client:
    browser = httpx.Client(base_url=base_url, follow_redirects=False)
    done = browser.post(
        path,
        data={"email": email, "password": password, "csrf_token": csrf(browser.get(path).text)},
    )
    assert done.status_code == 303, done.text
    return browser


def owner_email(db, tenant) -> str:
    with db.read() as conn:
        return conn.execute(
            select(organizations.c.owner_email).where(organizations.c.id == tenant.organization_id)
        ).scalar_one()


def row_counts(db) -> dict[str, object]:
    """A fingerprint of the whole database: every table's rows, and every balance."""
    found: dict[str, object] = {}
    with db.read() as conn:
        for table in dbmod.metadata.sorted_tables:
            found[table.name] = conn.execute(select(func.count()).select_from(table)).scalar()
        found["rows"] = {
            table.name: sorted(str(tuple(row)) for row in conn.execute(select(table)).all())
            for table in dbmod.metadata.sorted_tables
            if table.name
            in ("agents", "connections", "webhook_endpoints", "organizations", "redirect_uris")
        }
    return found


@pytest.fixture
def signed_in(live_server, db, tenant):
    """A user and a developer session, and real ids each form could act on."""
    endpoint, _ = db.write(
        lambda conn: webhooks.create_endpoint(
            conn,
            tenant.organization_id,
            url="https://hooks.example.com/in",
            events=list(webhooks.EVENTS),
            secret_key=live_server.settings.resolved_secret_key(),
            environment="sandbox",
        )
    )
    user = sign_in(live_server.url, "/signin", tenant.user_email, tenant.user_password)
    developer = sign_in(
        live_server.url, "/developer/signin", owner_email(db, tenant), tenant.user_password
    )
    with db.read() as conn:
        from reload_billing.oauth.models import connections

        connection = conn.execute(
            select(connections.c.id).where(connections.c.user_id == tenant.user_id)
        ).scalar_one()
    ids = {
        "connection_id": connection,
        "agent_id": tenant.agent_id,
        "endpoint_id": endpoint.id,
        "delivery_id": "whd_none",
    }
    yield user, developer, ids
    user.close()
    developer.close()


def post_routes(live_server) -> list[str]:
    app = live_server.server.config.app
    paths = set()
    for prefix, route in flatten(app.routes):
        path = prefix + getattr(route, "path", "")
        if "POST" in (getattr(route, "methods", None) or set()) and not path.startswith(NOT_PAGES):
            paths.add(path)
    paths.add("/oauth/authorize")
    return sorted(paths)


def test_every_form_refuses_a_post_without_its_csrf_token(live_server, db, signed_in):
    user, developer, ids = signed_in
    routes = post_routes(live_server)
    assert len(routes) >= 10
    before = row_counts(db)
    for path in routes:
        browser = developer if path.startswith("/developer") else user
        url = re.sub(r"{(\w+)}", lambda m: ids.get(m.group(1), "x"), path)
        form = {
            "name": "changed",
            "amount": "5",
            "url": "https://x.example.com/h",
            "events": "payment.success",
            "uri": "https://x.example.com/cb",
            "decision": "approve",
            "email": "someone@example.com",
            "password": "long-enough-password",
            "first_name": "A",
            "last_name": "B",
            "limit_per_charge": "1",
        }
        for token in (None, "", "forged-token-of-the-right-length-000000000"):
            data = form if token is None else {**form, "csrf_token": token}
            response = browser.post(url, data=data)
            assert response.status_code == 403, (
                path,
                token,
                response.status_code,
                response.text[:300],
            )
            assert response.json()["error"]["code"] == "csrf_failed"
    assert row_counts(db) == before


def test_a_csrf_token_is_bound_to_its_session(live_server, signed_in, make_tenant):
    user, _, _ = signed_in
    other = make_tenant()
    intruder = sign_in(live_server.url, "/signin", other.user_email, other.user_password)
    try:
        stolen = csrf(intruder.get("/").text)
        response = user.post("/account/top-up", data={"amount": "5", "csrf_token": stolen})
    finally:
        intruder.close()
    assert response.status_code == 403


def test_every_form_on_every_page_carries_a_csrf_token(live_server, db, signed_in):
    user, developer, _ = signed_in
    app = live_server.server.config.app
    checked = 0
    for prefix, route in flatten(app.routes):
        path = prefix + getattr(route, "path", "")
        if "GET" not in (getattr(route, "methods", None) or set()) or "{" in path:
            continue
        if path.startswith(NOT_PAGES) or path.endswith(".csv"):
            continue
        for browser in (user, developer, httpx.Client(base_url=live_server.url)):
            page = browser.get(path)
            if not page.headers.get("content-type", "").startswith("text/html"):
                continue
            for form in FORM.findall(page.text):
                if re.search(r'method="post"', form, re.IGNORECASE):
                    assert CSRF_INPUT.search(form), (path, form[:300])
                    checked += 1
    assert checked >= 10


def test_signing_in_starts_a_new_session(live_server, tenant):
    with httpx.Client(base_url=live_server.url, follow_redirects=False) as browser:
        page = browser.get("/signin")
        planted = browser.cookies.get("reload_session")
        old_csrf = csrf(page.text)
        assert planted
        done = browser.post(
            "/signin",
            data={
                "email": tenant.user_email,
                "password": tenant.user_password,
                "csrf_token": old_csrf,
            },
        )
        assert done.status_code == 303
        fresh = browser.cookies.get("reload_session")
        assert fresh and fresh != planted
        # The token of the anonymous session is worthless in the signed-in one.
        assert (
            browser.post(
                "/account/top-up", data={"amount": "1", "csrf_token": old_csrf}
            ).status_code
            == 403
        )
        assert browser.get("/").status_code == 200
    # Whoever planted (or kept) the cookie from before the sign-in is not signed in.
    with httpx.Client(base_url=live_server.url, follow_redirects=False) as attacker:
        attacker.cookies.set("reload_session", planted)
        answer = attacker.get("/")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/signin")


def test_developer_sign_in_starts_a_new_session_too(live_server, db, tenant):
    with httpx.Client(base_url=live_server.url, follow_redirects=False) as browser:
        page = browser.get("/developer/signin")
        planted = browser.cookies.get("reload_session")
        browser.post(
            "/developer/signin",
            data={
                "email": owner_email(db, tenant),
                "password": tenant.user_password,
                "csrf_token": csrf(page.text),
            },
        )
        assert browser.cookies.get("reload_session") != planted
        assert browser.get("/developer").status_code == 200
    with httpx.Client(base_url=live_server.url, follow_redirects=False) as attacker:
        attacker.cookies.set("reload_session", planted)
        assert attacker.get("/developer").status_code == 303


def cookie_flags(response: httpx.Response) -> str:
    cookies = [v for k, v in response.headers.multi_items() if k.lower() == "set-cookie"]
    assert cookies, "no cookie set"
    return "; ".join(cookies).lower()


def test_cookies_are_secure_httponly_samesite_over_https(live_server, settings):
    with httpx.Client(base_url=live_server.url) as browser:
        plain = cookie_flags(browser.get("/signin"))
    with httpx.Client(base_url=live_server.url) as browser:
        proxied = cookie_flags(browser.get("/signin", headers={"X-Forwarded-Proto": "https"}))
    assert "httponly" in plain and "samesite=lax" in plain
    assert "secure" not in plain  # plain http on loopback (development) still works
    assert "secure" in proxied and "httponly" in proxied and "samesite=lax" in proxied
    # A server configured with an https base URL (its proxy may not say so).
    app = create_app(settings.model_copy(update={"base_url": "https://billing.example.com"}))
    configured = cookie_flags(TestClient(app, base_url="http://billing.example.com").get("/signin"))
    assert "secure" in configured


EVIL_TARGETS = [
    "https://evil.example",
    "http://evil.example/",
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "http:evil.example",
    "https:/evil.example",
    "javascript:alert(1)",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    " //evil.example",
    "\t//evil.example",
    "/%2F%2Fevil.example",
    "/%5C%5Cevil.example",
    "//evil.example@billing",
    "/.//evil.example",
    "evil.example",
]


def assert_same_site(location: str) -> None:
    # What a browser would follow: it drops tabs and newlines, and treats "\" as "/".
    seen = re.sub(r"[\t\n\r]", "", location).strip().replace("\\", "/")
    parts = urlsplit(seen)
    assert not parts.scheme and not parts.netloc, location
    assert seen.startswith("/") and not seen.startswith("//"), location


@pytest.mark.parametrize("target", EVIL_TARGETS)
def test_no_open_redirect_after_sign_in(live_server, db, tenant, target):
    for path, email in (
        ("/signin", tenant.user_email),
        ("/developer/signin", owner_email(db, tenant)),
    ):
        with httpx.Client(base_url=live_server.url, follow_redirects=False) as browser:
            page = browser.get(path, params={"next": target})
            assert page.status_code == 200
            answer = browser.post(
                path,
                data={
                    "email": email,
                    "password": tenant.user_password,
                    "csrf_token": csrf(page.text),
                    "next": target,
                },
            )
            assert answer.status_code == 303
            assert_same_site(answer.headers["location"])


@pytest.mark.parametrize("target", EVIL_TARGETS[:8])
def test_no_open_redirect_after_sign_up_or_from_the_authorize_page(live_server, tenant, target):
    with httpx.Client(base_url=live_server.url, follow_redirects=False) as browser:
        page = browser.get("/signup", params={"next": target})
        answer = browser.post(
            "/signup",
            data={
                "first_name": "E",
                "last_name": "V",
                "email": f"e{abs(hash(target))}@example.com",
                "password": "long-enough-password",
                "csrf_token": csrf(page.text),
                "next": target,
            },
        )
        assert answer.status_code == 303
        assert_same_site(answer.headers["location"])
        _, challenge = pkce_pair()
        authorize = browser.get(
            "/oauth/authorize",
            params={
                "response_type": "code",
                "client_id": tenant.client_id,
                "redirect_uri": target,
                "scope": "identity",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
        )
        assert authorize.status_code == 400 and "location" not in authorize.headers
