"""OAuth 2.0 with PKCE: the developer's side of connecting a user.

1. ``verifier, challenge = create_pkce_pair()``; keep the verifier (and a ``state``)
   in the user's session.
2. Send the user's browser to ``authorize_url(...)``.
3. On the redirect back, check ``state`` and call
   ``Reload().exchange_code(code, redirect_uri, verifier)``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterable
from urllib.parse import quote, urlencode

DEFAULT_SCOPES = ("identity", "usage_reporting", "payment")


def code_challenge_for(verifier: str) -> str:
    """The S256 challenge of a verifier: base64url(SHA-256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def create_pkce_pair() -> tuple[str, str]:
    """A new ``(code_verifier, code_challenge)`` pair, method S256 (RFC 7636).

    The verifier is 64 characters of the unreserved URL alphabet, well inside the
    43-128 the RFC allows.
    """
    verifier = secrets.token_urlsafe(48)
    return verifier, code_challenge_for(verifier)


def create_state() -> str:
    """A random ``state`` value that ties the redirect back to this browser session."""
    return secrets.token_urlsafe(24)


def authorize_url(
    base_url: str,
    client_id: str,
    redirect_uri: str,
    scopes: Iterable[str] = DEFAULT_SCOPES,
    state: str | None = None,
    ai_agent_ids: Iterable[str] | None = None,
    *,
    code_challenge: str,
) -> str:
    """The URL of the consent page: ``/oauth/authorize?response_type=code&...``."""
    scope_list = list(scopes)
    if isinstance(scopes, str) or not scope_list:
        raise ValueError("scopes must be a non-empty sequence such as ('identity', 'payment')")
    params = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", " ".join(scope_list)),
    ]
    if state is not None:
        params.append(("state", state))
    params += [("code_challenge", code_challenge), ("code_challenge_method", "S256")]
    if ai_agent_ids is not None:
        agent_list = [ai_agent_ids] if isinstance(ai_agent_ids, str) else list(ai_agent_ids)
        if agent_list:
            params.append(("ai_agent_ids", ",".join(agent_list)))
    query = urlencode(params, quote_via=lambda text, *_: quote(text, safe=","))
    return f"{base_url.rstrip('/')}/oauth/authorize?{query}"


__all__ = [
    "DEFAULT_SCOPES",
    "authorize_url",
    "code_challenge_for",
    "create_pkce_pair",
    "create_state",
]
