from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

from reload_billing.client import Reload, authorize_url, create_pkce_pair, create_state
from reload_billing.client.oauth import code_challenge_for

UNRESERVED = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


def test_challenge_matches_rfc_7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert code_challenge_for(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_pkce_pair_is_valid_and_fresh_each_time() -> None:
    verifier, challenge = create_pkce_pair()
    assert UNRESERVED.match(verifier)
    assert re.fullmatch(r"[A-Za-z0-9\-_]{43}", challenge)
    assert challenge == code_challenge_for(verifier)
    assert create_pkce_pair()[0] != verifier
    assert create_state() != create_state()


def test_authorize_url_has_the_contract_shape() -> None:
    url = authorize_url(
        "https://pay.example.com/",
        "cli_123",
        "https://app.example.com/callback?from=reload",
        state="xyz",
        code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    )
    assert url == (
        "https://pay.example.com/oauth/authorize?response_type=code&client_id=cli_123"
        "&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcallback%3Ffrom%3Dreload"
        "&scope=identity%20usage_reporting%20payment&state=xyz"
        "&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"
    )


def test_authorize_url_with_agents_and_fewer_scopes() -> None:
    url = authorize_url(
        "http://127.0.0.1:8000",
        "cli_1",
        "http://localhost:3000/cb",
        scopes=["identity", "payment"],
        ai_agent_ids=["agt_1", "agt_2"],
        code_challenge="c" * 43,
    )
    assert url.endswith("&ai_agent_ids=agt_1,agt_2")
    assert "&scope=identity%20payment&" in url
    assert "state=" not in url
    query = parse_qs(urlsplit(url).query)
    assert query["redirect_uri"] == ["http://localhost:3000/cb"]
    assert query["code_challenge_method"] == ["S256"]


def test_scopes_must_be_a_sequence_not_a_string() -> None:
    with pytest.raises(ValueError):
        authorize_url("http://x", "c", "http://y", scopes="identity", code_challenge="c" * 43)


def test_client_builds_its_own_authorize_url() -> None:
    reload = Reload("cli_9", "secret", base_url="http://127.0.0.1:9999/")
    url = reload.authorize_url("http://localhost/cb", "c" * 43, state="s1")
    assert url.startswith(
        "http://127.0.0.1:9999/oauth/authorize?response_type=code&client_id=cli_9&"
    )
    assert "&state=s1&" in url
    reload.close()
