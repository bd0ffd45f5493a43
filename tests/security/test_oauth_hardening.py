"""OAuth under attack: exact redirect URIs, PKCE required, replayed and foreign
codes, state passed through, agent restrictions, and a disconnected connection's
tokens refused at once."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import update

from reload_billing.agents import service as agents
from reload_billing.oauth.models import authorization_codes
from reload_billing.organizations import service as organizations
from tests.helpers import post, usage_body
from tests.oauth.test_oauth_flow import (
    REDIRECT_URI,
    authorize_params,
    csrf,
    exchange,
    pkce_pair,
    sign_in_and_consent,
)


@pytest.fixture
def app_tenant(db, tenant):
    db.write(
        lambda conn: organizations.add_redirect_uri(conn, tenant.organization_id, REDIRECT_URI)
    )
    return tenant


def authorize(live_server, params):
    return httpx.get(
        live_server.url + "/oauth/authorize?" + urlencode(params), follow_redirects=False
    )


def token_for(live_server, tenant, **extra):
    verifier, challenge = pkce_pair()
    query = sign_in_and_consent(live_server, tenant, authorize_params(tenant, challenge, **extra))
    response = exchange(live_server, tenant, query["code"][0], verifier)
    assert response.status_code == 200, response.text
    return response.json()["data"]["access_token"]


def api(live_server, tenant, token):
    return httpx.Client(
        base_url=live_server.url,
        auth=(tenant.client_id, tenant.client_secret),
        headers={"X-Access-Token": token},
    )


@pytest.mark.parametrize(
    "redirect_uri",
    [
        REDIRECT_URI + "/",
        REDIRECT_URI + "?next=https://evil.example.com",
        REDIRECT_URI + "#fragment",
        REDIRECT_URI.replace("https://", "http://"),
        REDIRECT_URI.replace("agent.example.com", "AGENT.example.com"),
        REDIRECT_URI.replace("agent.example.com", "agent.example.com:443"),
        REDIRECT_URI.replace("agent.example.com", "agent.example.com.evil.example"),
        REDIRECT_URI.replace("agent.example.com", "evil.example@agent.example.com"),
        REDIRECT_URI[:-1],
        REDIRECT_URI.replace("/oauth/callback", "/oauth/x/../callback"),
        REDIRECT_URI.replace("/oauth/callback", "/oauth/%63allback"),
        "//agent.example.com/oauth/callback",
        " " + REDIRECT_URI,
        "",
    ],
)
def test_only_the_exact_registered_redirect_uri_is_ever_redirected_to(
    live_server, app_tenant, redirect_uri
):
    _, challenge = pkce_pair()
    response = authorize(
        live_server, authorize_params(app_tenant, challenge, redirect_uri=redirect_uri)
    )
    assert response.status_code == 400
    assert "location" not in response.headers


@pytest.mark.parametrize(
    "change",
    [
        {"code_challenge_method": None},
        {"code_challenge_method": "plain"},
        {"code_challenge_method": "s256"},
        {"code_challenge": None},
        {"code_challenge": "short"},
        {"code_challenge": "a" * 44},
        {"code_challenge": "=" * 43},
    ],
)
def test_pkce_is_required_at_authorize(live_server, app_tenant, change):
    _, challenge = pkce_pair()
    params = authorize_params(app_tenant, challenge)
    for key, value in change.items():
        if value is None:
            params.pop(key)
        else:
            params[key] = value
    response = authorize(live_server, params)
    assert response.status_code == 303
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["error"] == ["invalid_request"] and query["state"] == ["xyz-state"]
    assert "code" not in query


@pytest.mark.parametrize("verifier", [None, "", "x" * 42, "x" * 129, "wrong" * 10])
def test_pkce_is_required_at_the_token_exchange(live_server, app_tenant, verifier):
    good, challenge = pkce_pair()
    query = sign_in_and_consent(live_server, app_tenant, authorize_params(app_tenant, challenge))
    body = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "client_id": app_tenant.client_id,
        "client_secret": app_tenant.client_secret,
        "redirect_uri": REDIRECT_URI,
    }
    if verifier is not None:
        body["code_verifier"] = verifier
    with httpx.Client(base_url=live_server.url) as client:
        refused = post(client, "/v1/tp/token", body)
    assert refused.status_code == 400
    # A refused exchange does not burn the code for its rightful owner.
    assert exchange(live_server, app_tenant, query["code"][0], good).status_code == 200


def test_a_replayed_code_revokes_what_it_gave_at_once(live_server, app_tenant):
    verifier, challenge = pkce_pair()
    query = sign_in_and_consent(live_server, app_tenant, authorize_params(app_tenant, challenge))
    first = exchange(live_server, app_tenant, query["code"][0], verifier)
    token = first.json()["data"]["access_token"]
    with api(live_server, app_tenant, token) as client:
        assert client.get("/v1/tp/user").status_code == 200
        replay = exchange(live_server, app_tenant, query["code"][0], verifier)
        assert replay.status_code == 400 and replay.json()["error"]["code"] == "invalid_grant"
        assert client.get("/v1/tp/user").status_code == 401
        usage = post(client, "/v1/tp/usage", usage_body(app_tenant.agent_id))
        assert usage.status_code == 401
        state = post(client, "/v1/tp/introspect-token", {"token": token}).json()["data"]
        assert state["status"] == "revoked" and state["active"] is False
    again = exchange(live_server, app_tenant, query["code"][0], verifier)
    assert again.status_code == 400


def test_a_code_works_only_for_the_organization_it_was_issued_to(
    live_server, app_tenant, make_tenant
):
    other = make_tenant()
    verifier, challenge = pkce_pair()
    query = sign_in_and_consent(live_server, app_tenant, authorize_params(app_tenant, challenge))
    stolen = exchange(live_server, other, query["code"][0], verifier)
    assert stolen.status_code == 400 and stolen.json()["error"]["code"] == "invalid_grant"
    with httpx.Client(base_url=live_server.url) as client:
        wrong_secret = post(
            client,
            "/v1/tp/token",
            {
                "grant_type": "authorization_code",
                "code": query["code"][0],
                "client_id": app_tenant.client_id,
                "client_secret": "rsk_wrong",
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
            },
        )
    assert wrong_secret.status_code == 401
    assert exchange(live_server, app_tenant, query["code"][0], verifier).status_code == 200


def test_an_expired_code_is_refused(live_server, db, app_tenant):
    verifier, challenge = pkce_pair()
    query = sign_in_and_consent(live_server, app_tenant, authorize_params(app_tenant, challenge))
    db.write(lambda conn: conn.execute(update(authorization_codes).values(expires_at=1)))
    response = exchange(live_server, app_tenant, query["code"][0], verifier)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_grant"


@pytest.mark.parametrize("state", ["plain", "with spaces & symbols=?/#", "é✓ unicode", "x" * 500])
@pytest.mark.parametrize("decision", ["approve", "deny"])
def test_state_comes_back_exactly(live_server, app_tenant, state, decision):
    _, challenge = pkce_pair()
    params = authorize_params(app_tenant, challenge, state=state)
    query = sign_in_and_consent(live_server, app_tenant, params, decision=decision)
    assert query["state"] == [state]
    assert ("code" in query) == (decision == "approve")


def test_without_state_none_is_invented(live_server, app_tenant):
    _, challenge = pkce_pair()
    params = authorize_params(app_tenant, challenge)
    params.pop("state")
    query = sign_in_and_consent(live_server, app_tenant, params)
    assert "state" not in query and "code" in query


def test_ai_agent_ids_confine_the_token(live_server, db, app_tenant, make_tenant):
    second = db.write(lambda conn: agents.create_agent(conn, app_tenant.organization_id, "Second"))
    foreign = make_tenant()
    token = token_for(live_server, app_tenant, ai_agent_ids=app_tenant.agent_id)
    with api(live_server, app_tenant, token) as client:
        me = client.get("/v1/tp/user").json()["data"]
        assert me["aiAgentIds"] == [app_tenant.agent_id]
        ok = post(client, "/v1/tp/usage", usage_body(app_tenant.agent_id, "0.1"))
        assert ok.status_code == 201
        for agent_id in (second.id, foreign.agent_id):
            for path, body in (
                ("/v1/tp/usage", usage_body(agent_id, "0.1")),
                ("/v1/tp/preview-charge", {"aiAgentId": agent_id, "amount": 1, "description": "x"}),
            ):
                refused = post(client, path, body)
                assert refused.status_code == 403, refused.text
                assert refused.json()["error"]["code"] == "agent_not_allowed"
    # Asking for another organization's agent is refused before any consent.
    _, challenge = pkce_pair()
    response = authorize(
        live_server, authorize_params(app_tenant, challenge, ai_agent_ids=foreign.agent_id)
    )
    assert parse_qs(urlsplit(response.headers["location"]).query)["error"] == ["invalid_request"]


def test_a_disconnected_connections_tokens_are_refused_at_once(live_server, app_tenant):
    token = token_for(live_server, app_tenant)
    pending_verifier, pending_challenge = pkce_pair()
    pending = sign_in_and_consent(
        live_server, app_tenant, authorize_params(app_tenant, pending_challenge)
    )
    with api(live_server, app_tenant, token) as client:
        assert client.get("/v1/tp/user").status_code == 200
    with httpx.Client(base_url=live_server.url, follow_redirects=False) as browser:
        page = browser.get("/signin")
        browser.post(
            "/signin",
            data={
                "email": app_tenant.user_email,
                "password": app_tenant.user_password,
                "csrf_token": csrf(page.text),
            },
        )
        account = browser.get("/")
        actions = re.findall(r'action="(/account/connections/[^"]+/disconnect)"', account.text)
        assert actions, "no Disconnect button on the account page"
        for action in actions:
            done = browser.post(action, data={"csrf_token": csrf(browser.get("/").text)})
            assert done.status_code == 303
    with api(live_server, app_tenant, token) as client:
        for response in (
            client.get("/v1/tp/user"),
            post(client, "/v1/tp/usage", usage_body(app_tenant.agent_id)),
            post(
                client,
                "/v1/tp/preview-charge",
                {"aiAgentId": app_tenant.agent_id, "amount": 1, "description": "x"},
            ),
            client.get("/v1/tp/usage-reports"),
        ):
            assert response.status_code == 401, response.text
            assert response.json()["error"]["code"] in ("token_revoked", "token_disconnected")
        state = post(client, "/v1/tp/introspect-token", {"token": token}).json()["data"]
        assert state["active"] is False
    # A code handed out before the disconnection gives nothing afterwards.
    late = exchange(live_server, app_tenant, pending["code"][0], pending_verifier)
    assert late.status_code == 400 and late.json()["error"]["code"] == "invalid_grant"
