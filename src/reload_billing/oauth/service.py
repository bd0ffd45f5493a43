"""OAuth 2.0 authorization code flow with PKCE, connections and access tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, select, update

from .. import db
from ..agents import service as agents
from ..agents.models import agents as agents_table
from ..errors import Forbidden, InvalidGrant, InvalidRequest, NotFound, Unauthorized
from ..ids import hash_secret, new_id, new_secret
from ..ledger.service import Limits
from ..organizations import service as organizations
from ..organizations.models import organizations as organizations_table
from ..users import service as users
from ..users.models import users as users_table
from ..webhooks import service as webhooks
from .models import access_tokens, authorization_codes, connections

SCOPES = ("identity", "usage_reporting", "payment")
SCOPE_WORDS = {
    "identity": "See your name and email address",
    "usage_reporting": "Report and read the usage of its AI agents on your account",
    "payment": "Charge your Reload billing account for that usage",
}
VERIFIER_RE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
CHALLENGE_RE = re.compile(r"^[A-Za-z0-9\-_]{43}$")


@dataclass(frozen=True)
class TokenContext:
    """Who a request acts for: the user behind an access token, and what it may do."""

    token_id: str
    user_id: str
    organization_id: str
    connection_id: str
    scopes: frozenset[str]
    agent_ids: frozenset[str] | None
    billing_account_id: str
    limits: Limits

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(
                f"this access token lacks the '{scope}' permission",
                code="insufficient_permission",
            )

    def require_agent(self, agent_id: str) -> None:
        if self.agent_ids is not None and agent_id not in self.agent_ids:
            raise Forbidden(
                "this access token is not allowed to act for this agent",
                code="agent_not_allowed",
                param="aiAgentId",
            )


@dataclass(frozen=True)
class AuthorizeRequest:
    organization: Any
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    code_challenge: str
    agent_ids: tuple[str, ...] | None
    agents: tuple[Any, ...]


class CodeReplayed(InvalidGrant):
    """A used code presented again: it may be stolen, so the tokens it gave are
    revoked (RFC 6749, 4.1.2) in a transaction of their own, as the answer is 400."""

    def __init__(self, code_hash: str) -> None:
        super().__init__("the authorization code was already used", param="code")
        self.code_hash = code_hash


def revoke_code_tokens(conn: Connection, code_hash: str) -> int:
    return revoke_where(conn, access_tokens.c.code_hash == code_hash, "authorization code replayed")


class RedirectableError(InvalidRequest):
    """An authorize error after the redirect URI is known: sent back to the app."""

    def __init__(self, redirect_uri: str, state: str | None, error: str, description: str) -> None:
        super().__init__(description, code=error)
        self.redirect_uri = redirect_uri
        self.state = state


def parse_scopes(raw: str | None, *, param: str = "scope") -> tuple[str, ...]:
    words = [word for word in (raw or "").replace(",", " ").split() if word]
    if not words:
        raise InvalidRequest("at least one permission is required", param=param)
    unknown = [word for word in words if word not in SCOPES]
    if unknown:
        raise InvalidRequest(
            f"unknown permission {unknown[0]!r}; use {', '.join(SCOPES)}",
            param=param,
            code="invalid_scope",
        )
    return tuple(scope for scope in SCOPES if scope in words)


def parse_agent_ids(raw: str | None) -> tuple[str, ...] | None:
    if raw is None or not raw.strip():
        return None
    return tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))


def validate_authorize(conn: Connection, params: dict[str, str]) -> AuthorizeRequest:
    """Check an /oauth/authorize request. Errors before the redirect URI is proven
    are shown to the user (InvalidRequest); later ones go back to the app."""
    client_id = params.get("client_id", "")
    organization = organizations.by_client_id(conn, client_id) if client_id else None
    if organization is None:
        raise InvalidRequest("unknown client_id", param="client_id", code="invalid_client")
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in organizations.list_redirect_uris(conn, organization.id):
        raise InvalidRequest(
            "redirect_uri is not registered for this application",
            param="redirect_uri",
            code="invalid_redirect_uri",
        )
    state = params.get("state")

    def fail(error: str, description: str) -> RedirectableError:
        return RedirectableError(redirect_uri, state, error, description)

    if params.get("response_type") != "code":
        raise fail("unsupported_response_type", "response_type must be 'code'")
    try:
        scopes = parse_scopes(params.get("scope"))
    except InvalidRequest as error:
        raise fail("invalid_scope", error.message) from None
    if params.get("code_challenge_method") != "S256":
        raise fail("invalid_request", "code_challenge_method must be S256 (PKCE is required)")
    challenge = params.get("code_challenge", "")
    if not CHALLENGE_RE.match(challenge):
        raise fail("invalid_request", "code_challenge must be a base64url SHA-256 (43 chars)")
    agent_ids = parse_agent_ids(params.get("ai_agent_ids"))
    found: tuple[Any, ...] = ()
    if agent_ids is not None:
        found = tuple(
            conn.execute(
                select(agents_table).where(
                    and_(
                        agents_table.c.organization_id == organization.id,
                        agents_table.c.id.in_(agent_ids),
                        agents_table.c.status == agents.ACTIVE,
                    )
                )
            ).all()
        )
        if len(found) != len(agent_ids):
            raise fail("invalid_request", "ai_agent_ids names an unknown or archived agent")
    return AuthorizeRequest(organization, redirect_uri, scopes, state, challenge, agent_ids, found)


def _limits_row(limits: Limits) -> dict[str, int | None]:
    return {
        "limit_per_charge": limits.per_charge,
        "limit_daily": limits.daily,
        "limit_monthly": limits.monthly,
    }


def connect(
    conn: Connection,
    *,
    user_id: str,
    organization_id: str,
    scopes: tuple[str, ...],
    agent_ids: tuple[str, ...] | None,
    limits: Limits,
    environment: str,
) -> str:
    """The user's consent: a new connection, or the active one updated."""
    now = db.now_us()
    values = {
        "scopes": " ".join(scopes),
        "agent_ids": ",".join(agent_ids) if agent_ids is not None else None,
        **_limits_row(limits),
    }
    existing = conn.execute(
        select(connections.c.id).where(
            and_(
                connections.c.user_id == user_id,
                connections.c.organization_id == organization_id,
                connections.c.status == "active",
            )
        )
    ).first()
    if existing is not None:
        conn.execute(update(connections).where(connections.c.id == existing.id).values(**values))
        return str(existing.id)
    connection_id = new_id("con")
    conn.execute(
        insert(connections).values(
            id=connection_id,
            user_id=user_id,
            organization_id=organization_id,
            status="active",
            created_at=now,
            **values,
        )
    )
    webhooks.enqueue(
        conn,
        organization_id,
        "user.connected",
        lambda: event_data(conn, user_id, organization_id, environment=environment),
    )
    return connection_id


def event_data(
    conn: Connection, user_id: str, organization_id: str, *, environment: str, **extra: Any
) -> dict[str, Any]:
    user = users.get_user(conn, user_id)
    organization = organizations.get_organization(conn, organization_id)
    return {
        "user": users.user_json(user),
        "organization": organizations.organization_json(organization),
        "environment": environment,
        **extra,
    }


def create_code(
    conn: Connection, request: AuthorizeRequest, *, user_id: str, limits: Limits, ttl_seconds: int
) -> str:
    connection_id = connect(
        conn,
        user_id=user_id,
        organization_id=request.organization.id,
        scopes=request.scopes,
        agent_ids=request.agent_ids,
        limits=limits,
        environment=request.organization.environment,
    )
    code = new_secret("rac")
    now = db.now_us()
    conn.execute(
        insert(authorization_codes).values(
            code_hash=hash_secret(code),
            connection_id=connection_id,
            organization_id=request.organization.id,
            user_id=user_id,
            redirect_uri=request.redirect_uri,
            code_challenge=request.code_challenge,
            scopes=" ".join(request.scopes),
            agent_ids=",".join(request.agent_ids) if request.agent_ids is not None else None,
            expires_at=now + ttl_seconds * 1_000_000,
            created_at=now,
        )
    )
    return code


def _pkce_matches(verifier: str, challenge: str) -> bool:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return hmac.compare_digest(computed, challenge)


def exchange_code(
    conn: Connection,
    organization: Any,
    *,
    code: str,
    redirect_uri: str,
    code_verifier: str,
    token_ttl_days: int,
) -> dict[str, Any]:
    code_hash = hash_secret(code)
    row = conn.execute(
        select(authorization_codes).where(authorization_codes.c.code_hash == code_hash)
    ).first()
    if row is None or row.organization_id != organization.id:
        raise InvalidGrant("the authorization code is invalid", param="code")
    now = db.now_us()
    if row.used_at is not None:
        raise CodeReplayed(code_hash)
    if row.expires_at < now:
        raise InvalidGrant("the authorization code has expired", param="code")
    if row.redirect_uri != redirect_uri:
        raise InvalidGrant(
            "redirect_uri does not match the authorization request", param="redirect_uri"
        )
    if not VERIFIER_RE.match(code_verifier) or not _pkce_matches(code_verifier, row.code_challenge):
        raise InvalidGrant("code_verifier does not match the code challenge", param="code_verifier")
    claimed = conn.execute(
        update(authorization_codes)
        .where(
            and_(
                authorization_codes.c.code_hash == code_hash,
                authorization_codes.c.used_at.is_(None),
            )
        )
        .values(used_at=now)
    )
    if claimed.rowcount != 1:
        raise InvalidGrant("the authorization code was already used", param="code")
    connection = conn.execute(
        select(connections).where(connections.c.id == row.connection_id)
    ).one()
    if connection.status != "active":
        raise InvalidGrant("the connection was ended", param="code")
    return issue_token(
        conn,
        organization=organization,
        user_id=row.user_id,
        connection_id=row.connection_id,
        scopes=tuple(row.scopes.split()),
        agent_ids=tuple(row.agent_ids.split(",")) if row.agent_ids else None,
        ttl_days=token_ttl_days,
        code_hash=code_hash,
    )


def issue_token(
    conn: Connection,
    *,
    organization: Any,
    user_id: str,
    connection_id: str,
    scopes: tuple[str, ...],
    agent_ids: tuple[str, ...] | None,
    ttl_days: int,
    code_hash: str | None = None,
) -> dict[str, Any]:
    token = new_secret("rat")
    now = db.now_us()
    ttl_seconds = ttl_days * 86_400
    conn.execute(
        insert(access_tokens).values(
            id=new_id("tok"),
            token_hash=hash_secret(token),
            connection_id=connection_id,
            organization_id=organization.id,
            user_id=user_id,
            scopes=" ".join(scopes),
            agent_ids=",".join(agent_ids) if agent_ids is not None else None,
            code_hash=code_hash,
            expires_at=now + ttl_seconds * 1_000_000,
            created_at=now,
        )
    )
    user = users.get_user(conn, user_id)
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": ttl_seconds,
        "scope": " ".join(scopes),
        "permissions": list(scopes),
        "aiAgentIds": list(agent_ids) if agent_ids is not None else None,
        "environment": organization.environment,
        "organization": organizations.organization_json(organization),
        "user": users.user_json(user),
        "billingAccountId": user.billing_account_id,
    }


def issue_direct(
    conn: Connection,
    *,
    organization_id: str,
    user_id: str,
    scopes: tuple[str, ...],
    agent_ids: tuple[str, ...] | None,
    limits: Limits,
    ttl_days: int,
) -> dict[str, Any]:
    """A connection and token made by the operator (``reload tokens issue``)."""
    organization = organizations.get_organization(conn, organization_id)
    if agent_ids is not None:
        for agent_id in agent_ids:
            agents.get_agent(conn, organization_id, agent_id)
    connection_id = connect(
        conn,
        user_id=user_id,
        organization_id=organization_id,
        scopes=scopes,
        agent_ids=agent_ids,
        limits=limits,
        environment=organization.environment,
    )
    return issue_token(
        conn,
        organization=organization,
        user_id=user_id,
        connection_id=connection_id,
        scopes=scopes,
        agent_ids=agent_ids,
        ttl_days=ttl_days,
    )


# --- using tokens ---------------------------------------------------------------

# What token_context() reads: the token, its connection and the user's account.
TOKEN_COLUMNS = (
    access_tokens.c.id.label("token_id"),
    access_tokens.c.organization_id.label("token_organization_id"),
    access_tokens.c.user_id,
    access_tokens.c.connection_id,
    access_tokens.c.scopes,
    access_tokens.c.agent_ids,
    access_tokens.c.expires_at,
    access_tokens.c.revoked_at,
    connections.c.status.label("connection_status"),
    connections.c.limit_per_charge,
    connections.c.limit_daily,
    connections.c.limit_monthly,
    users_table.c.billing_account_id,
)
_TOKEN_QUERY = (
    select(*TOKEN_COLUMNS)
    .join(connections, connections.c.id == access_tokens.c.connection_id)
    .join(users_table, users_table.c.id == access_tokens.c.user_id)
    .where(access_tokens.c.token_hash == bindparam("token_hash"))
)


def token_status(row: Any, now: int) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.connection_status != "active":
        return "disconnected"
    if row.expires_at <= now:
        return "expired"
    return "active"


def _find_token(conn: Connection, organization_id: str, token: str) -> Any | None:
    row = conn.execute(_TOKEN_QUERY, {"token_hash": hash_secret(token)}).first()
    if row is None or row.token_organization_id != organization_id:
        return None
    return row


def missing_token() -> Unauthorized:
    return Unauthorized("the user's access token is required: X-Access-Token", code="missing_token")


def invalid_token() -> Unauthorized:
    return Unauthorized("invalid access token", code="invalid_token")


def authenticate_token(conn: Connection, organization_id: str, token: str | None) -> TokenContext:
    if not token:
        raise missing_token()
    row = _find_token(conn, organization_id, token)
    if row is None:
        raise invalid_token()
    return token_context(row, db.now_us())


def token_context(row: Any, now: int) -> TokenContext:
    """The context of a token row that belongs to the caller's organization, or 401."""
    status = token_status(row, now)
    if status != "active":
        raise Unauthorized(f"the access token is {status}", code=f"token_{status}")
    return TokenContext(
        token_id=row.token_id,
        user_id=row.user_id,
        organization_id=row.token_organization_id,
        connection_id=row.connection_id,
        scopes=frozenset(row.scopes.split()),
        agent_ids=frozenset(row.agent_ids.split(",")) if row.agent_ids else None,
        billing_account_id=row.billing_account_id,
        limits=Limits(row.limit_per_charge, row.limit_daily, row.limit_monthly),
    )


def introspect(conn: Connection, organization_id: str, token: str) -> dict[str, Any]:
    row = _find_token(conn, organization_id, token)
    if row is None:
        return {"status": "not_found", "active": False}
    status = token_status(row, db.now_us())
    return {
        "status": status,
        "active": status == "active",
        "tokenId": row.token_id,
        "userId": row.user_id,
        "organizationId": row.token_organization_id,
        "connectionId": row.connection_id,
        "permissions": row.scopes.split(),
        "scope": row.scopes,
        "aiAgentIds": row.agent_ids.split(",") if row.agent_ids else None,
        "expiresAt": db.rfc3339(row.expires_at),
        "revokedAt": db.rfc3339(row.revoked_at),
    }


def revoke_where(conn: Connection, condition: Any, reason: str | None) -> int:
    result = conn.execute(
        update(access_tokens)
        .where(and_(condition, access_tokens.c.revoked_at.is_(None)))
        .values(revoked_at=db.now_us(), revoke_reason=reason)
    )
    return int(result.rowcount or 0)


def revoke(
    conn: Connection, organization_id: str, token: str, reason: str | None
) -> dict[str, Any]:
    row = _find_token(conn, organization_id, token)
    if row is None:
        raise NotFound(
            "no such access token for this organization", param="token", code="token_not_found"
        )
    revoke_where(conn, access_tokens.c.id == row.token_id, reason)
    return {"revoked": True, "tokenId": row.token_id, "status": "revoked"}


def disconnect(conn: Connection, user_id: str, connection_id: str) -> None:
    """The user ends a connection: its tokens stop working at once."""
    row = conn.execute(
        select(connections).where(
            and_(connections.c.id == connection_id, connections.c.user_id == user_id)
        )
    ).first()
    if row is None:
        raise NotFound("no such connection", param="connectionId")
    if row.status != "active":
        return
    conn.execute(
        update(connections)
        .where(connections.c.id == connection_id)
        .values(status="disconnected", disconnected_at=db.now_us())
    )
    revoke_where(conn, access_tokens.c.connection_id == connection_id, "user disconnected")
    organization = organizations.get_organization(conn, row.organization_id)
    webhooks.enqueue(
        conn,
        row.organization_id,
        "user.disconnected",
        lambda: event_data(
            conn, user_id, row.organization_id, environment=organization.environment
        ),
    )


def update_limits(conn: Connection, user_id: str, connection_id: str, limits: Limits) -> None:
    result = conn.execute(
        update(connections)
        .where(
            and_(
                connections.c.id == connection_id,
                connections.c.user_id == user_id,
                connections.c.status == "active",
            )
        )
        .values(**_limits_row(limits))
    )
    if result.rowcount != 1:
        raise NotFound("no such active connection", param="connectionId")


def user_connections(conn: Connection, user_id: str) -> list[Any]:
    return list(
        conn.execute(
            select(
                connections,
                organizations_table.c.name.label("organization_name"),
                organizations_table.c.display_name.label("organization_display_name"),
            )
            .join(organizations_table, organizations_table.c.id == connections.c.organization_id)
            .where(connections.c.user_id == user_id)
            .order_by(connections.c.created_at.desc())
        ).all()
    )
