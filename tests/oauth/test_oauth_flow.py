"""The OAuth 2.0 authorization code flow with PKCE, end to end over HTTP."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from reload_billing.organizations import service as organizations
from tests.helpers import post

REDIRECT_URI = "https://agent.example.com/oauth/callback"


def pkce_pair():
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    return verifier, challenge


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the form"
    return match.group(1)


@pytest.fixture
def app_tenant(db, tenant):
    db.write(
        lambda conn: organizations.add_redirect_uri(conn, tenant.organization_id, REDIRECT_URI)
    )
    return tenant


def authorize_params(tenant, challenge, **extra):
    params = {
        "response_type": "code",
        "client_id": tenant.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "identity usage_reporting payment",
        "state": "xyz-state",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(extra)
    return params


def sign_in_and_consent(live_server, tenant, params, decision="approve", limits=None):
    """A browser's walk: authorize -> sign in -> consent -> redirect to the app."""
    with httpx.Client(base_url=live_server.url, follow_redirects=False) as browser:
        first = browser.get("/oauth/authorize", params=params)
        assert first.status_code == 303 and first.headers["location"].startswith("/signin?")
        signin_page = browser.get(first.headers["location"])
        assert signin_page.status_code == 200
        assert "Email" in signin_page.text and "Password" in signin_page.text
        assert "Sign up" in signin_page.text
        next_url = parse_qs(urlsplit(first.headers["location"]).query)["next"][0]
        signed_in = browser.post(
            "/signin",
            data={
                "email": tenant.user_email,
                "password": tenant.user_password,
                "csrf_token": csrf(signin_page.text),
                "next": next_url,
            },
        )
        assert signed_in.status_code == 303 and signed_in.headers["location"] == next_url
        consent = browser.get(next_url)
        assert consent.status_code == 200
        assert "Approve" in consent.text and "Deny" in consent.text
        form = {**params, "csrf_token": csrf(consent.text), "decision": decision, **(limits or {})}
        answer = browser.post("/oauth/authorize", data=form)
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    return parse_qs(urlsplit(location).query)


def exchange(live_server, tenant, code, verifier, redirect_uri=REDIRECT_URI):
    with httpx.Client(base_url=live_server.url) as client:
        return post(
            client,
            "/v1/tp/token",
            {
                "grant_type": "authorization_code",
                "code": code,
                "client_id": tenant.client_id,
                "client_secret": tenant.client_secret,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
        )


def test_full_flow_gives_a_working_token(live_server, app_tenant):
    verifier, challenge = pkce_pair()
    query = sign_in_and_consent(live_server, app_tenant, authorize_params(app_tenant, challenge))
    assert query["state"] == ["xyz-state"]
    response = exchange(live_server, app_tenant, query["code"][0], verifier)
    assert response.status_code == 200, response.text
    token = response.json()["data"]
    assert token["token_type"] == "Bearer" and token["expires_in"] == 90 * 86400
    assert token["permissions"] == ["identity", "usage_reporting", "payment"]
    assert token["user"]["email"] == app_tenant.user_email
    assert token["organization"]["id"] == app_tenant.organization_id
    assert token["billingAccountId"] == app_tenant.billing_account_id
    with httpx.Client(
        base_url=live_server.url, auth=(app_tenant.client_id, app_tenant.client_secret)
    ) as client:
        me = client.get("/v1/tp/user", headers={"X-Access-Token": token["access_token"]})
    assert me.status_code == 200 and me.json()["data"]["user"]["id"] == app_tenant.user_id


def test_a_replayed_code_is_refused_and_revokes_its_token(live_server, app_tenant):
    verifier, challenge = pkce_pair()
    query = sign_in_and_consent(live_server, app_tenant, authorize_params(app_tenant, challenge))
    first = exchange(live_server, app_tenant, query["code"][0], verifier)
    replay = exchange(live_server, app_tenant, query["code"][0], verifier)
    assert replay.status_code == 400 and replay.json()["error"]["code"] == "invalid_grant"
    with httpx.Client(
        base_url=live_server.url, auth=(app_tenant.client_id, app_tenant.client_secret)
    ) as client:
        me = client.get(
            "/v1/tp/user", headers={"X-Access-Token": first.json()["data"]["access_token"]}
        )
    assert me.status_code == 401


def test_wrong_verifier_and_other_redirect_uri_are_invalid_grant(live_server, app_tenant):
    verifier, challenge = pkce_pair()
    query = sign_in_and_consent(live_server, app_tenant, authorize_params(app_tenant, challenge))
    wrong = exchange(live_server, app_tenant, query["code"][0], pkce_pair()[0])
    other = exchange(
        live_server, app_tenant, query["code"][0], verifier, "https://agent.example.com/other"
    )
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "invalid_grant"
    assert other.status_code == 400 and other.json()["error"]["code"] == "invalid_grant"


def test_deny_sends_access_denied_with_state(live_server, app_tenant):
    _, challenge = pkce_pair()
    query = sign_in_and_consent(
        live_server, app_tenant, authorize_params(app_tenant, challenge), decision="deny"
    )
    assert query == {"error": ["access_denied"], "state": ["xyz-state"]}


def test_limits_chosen_at_consent_are_enforced(live_server, app_tenant):
    verifier, challenge = pkce_pair()
    query = sign_in_and_consent(
        live_server,
        app_tenant,
        authorize_params(app_tenant, challenge),
        limits={"limit_per_charge": "0.5"},
    )
    token = exchange(live_server, app_tenant, query["code"][0], verifier).json()["data"][
        "access_token"
    ]
    body = {
        "aiAgentId": app_tenant.agent_id,
        "description": "x",
        "totalCost": 1,
        "chargeUser": True,
    }
    with httpx.Client(
        base_url=live_server.url, auth=(app_tenant.client_id, app_tenant.client_secret)
    ) as client:
        response = post(client, "/v1/tp/usage", body, headers={"X-Access-Token": token})
    assert response.status_code == 402
    assert response.json()["data"]["failureReason"] == "spending_limit_exceeded"


@pytest.mark.parametrize(
    "change",
    [
        {"redirect_uri": "https://evil.example.com/callback"},
        {"redirect_uri": REDIRECT_URI + "/extra"},
        {"client_id": "cli_unknown"},
    ],
)
def test_unregistered_redirect_or_client_is_never_redirected_to(live_server, app_tenant, change):
    _, challenge = pkce_pair()
    response = httpx.get(
        live_server.url
        + "/oauth/authorize?"
        + urlencode(authorize_params(app_tenant, challenge, **change)),
        follow_redirects=False,
    )
    assert response.status_code == 400
    assert "location" not in response.headers


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": ""}, "invalid_request"),
        ({"scope": "identity admin"}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"ai_agent_ids": "agt_not_mine"}, "invalid_request"),
    ],
)
def test_bad_authorize_requests_go_back_to_the_app_with_an_error(
    live_server, app_tenant, change, error
):
    _, challenge = pkce_pair()
    response = httpx.get(
        live_server.url
        + "/oauth/authorize?"
        + urlencode(authorize_params(app_tenant, challenge, **change)),
        follow_redirects=False,
    )
    assert response.status_code == 303
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["error"] == [error] and query["state"] == ["xyz-state"]


def test_agent_restricted_consent_gives_an_agent_restricted_token(live_server, db, app_tenant):
    from reload_billing.agents import service as agents

    other = db.write(lambda conn: agents.create_agent(conn, app_tenant.organization_id, "Other"))
    verifier, challenge = pkce_pair()
    params = authorize_params(app_tenant, challenge, ai_agent_ids=app_tenant.agent_id)
    query = sign_in_and_consent(live_server, app_tenant, params)
    token = exchange(live_server, app_tenant, query["code"][0], verifier).json()["data"][
        "access_token"
    ]
    with httpx.Client(
        base_url=live_server.url, auth=(app_tenant.client_id, app_tenant.client_secret)
    ) as client:
        body = {"description": "x", "totalCost": 0, "chargeUser": False}
        ok = post(
            client,
            "/v1/tp/usage",
            {**body, "aiAgentId": app_tenant.agent_id},
            headers={"X-Access-Token": token},
        )
        refused = post(
            client,
            "/v1/tp/usage",
            {**body, "aiAgentId": other.id},
            headers={"X-Access-Token": token},
        )
    assert ok.status_code == 201 and refused.status_code == 403


def test_sign_up_from_the_authorize_flow(live_server, app_tenant):
    _, challenge = pkce_pair()
    params = authorize_params(app_tenant, challenge)
    with httpx.Client(base_url=live_server.url, follow_redirects=False) as browser:
        next_url = "/oauth/authorize?" + urlencode(params)
        page = browser.get("/signup", params={"next": next_url})
        for label in ("First name", "Last name", "Email", "Password", "Sign up"):
            assert label in page.text
        created = browser.post(
            "/signup",
            data={
                "first_name": "Alan",
                "last_name": "Turing",
                "email": "alan@example.com",
                "password": "enigma-machine",
                "csrf_token": csrf(page.text),
                "next": next_url,
            },
        )
        assert created.status_code == 303 and created.headers["location"] == next_url
        consent = browser.get(next_url)
    assert "Approve" in consent.text and "alan@example.com" in consent.text


def test_forms_without_csrf_token_are_refused(live_server, app_tenant):
    response = httpx.post(
        live_server.url + "/signin",
        data={"email": app_tenant.user_email, "password": app_tenant.user_password},
    )
    assert response.status_code == 403
