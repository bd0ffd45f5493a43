"""Organizations (developers): owner sign-in, client credentials, redirect URIs."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, and_, bindparam, delete, insert, select, update

from .. import db
from ..errors import Conflict, InvalidRequest, NotFound, Unauthorized
from ..ids import hash_secret, new_id, new_secret, secrets_match
from ..ledger import service as ledger
from ..security import check_email, check_password, dummy_verify, hash_password, verify_password
from .models import organizations, redirect_uris


def create_organization(
    conn: Connection,
    *,
    name: str,
    email: str,
    password: str,
    environment: str,
    display_name: str | None = None,
) -> tuple[Any, str]:
    """A new organization and its owner sign-in; returns it and its client secret."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequest("name must be 1-200 characters", param="name")
    email = check_email(email)
    check_password(password)
    if conn.execute(select(organizations.c.id).where(organizations.c.owner_email == email)).first():
        raise Conflict("an organization with this email exists", code="email_taken", param="email")
    organization_id = new_id("org")
    client_secret = new_secret("rsk")
    conn.execute(
        insert(organizations).values(
            id=organization_id,
            name=name,
            display_name=(display_name or name).strip()[:200],
            owner_email=email,
            owner_password_hash=hash_password(password),
            client_id=new_id("cli"),
            client_secret_hash=hash_secret(client_secret),
            environment=environment,
            earnings_account_id=ledger.open_account(conn, ledger.ORG_EARNINGS, organization_id),
            created_at=db.now_us(),
        )
    )
    return get_organization(conn, organization_id), client_secret


def sign_out_everywhere(conn: Connection, organization_id: str) -> None:
    """End every developer-portal session of this organization begun until now."""
    conn.execute(
        update(organizations)
        .where(organizations.c.id == organization_id)
        .values(signed_out_at=db.now_us())
    )


def get_organization(conn: Connection, organization_id: str) -> Any:
    row = conn.execute(select(organizations).where(organizations.c.id == organization_id)).first()
    if row is None:
        raise NotFound("no such organization", param="organizationId")
    return row


def rotate_secret(conn: Connection, organization_id: str) -> str:
    """A new client secret; the old one stops working at once."""
    client_secret = new_secret("rsk")
    conn.execute(
        update(organizations)
        .where(organizations.c.id == organization_id)
        .values(client_secret_hash=hash_secret(client_secret))
    )
    return client_secret


def parse_basic(header: str | None) -> tuple[str, str]:
    """``Basic base64(clientId:clientSecret)`` -> (clientId, clientSecret)."""
    if not header:
        raise Unauthorized(
            "client credentials required: Authorization: Basic base64(clientId:clientSecret)",
            code="missing_credentials",
        )
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise Unauthorized("the Authorization header must use Basic", code="invalid_credentials")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Unauthorized("malformed Basic credentials", code="invalid_credentials") from None
    client_id, sep, client_secret = decoded.partition(":")
    # NUL cannot be a client id (and PostgreSQL could not even look it up).
    if not sep or not client_id or not client_secret or "\x00" in decoded:
        raise Unauthorized("malformed Basic credentials", code="invalid_credentials")
    return client_id, client_secret


_CLIENT_QUERY = select(
    organizations.c.id,
    organizations.c.name,
    organizations.c.display_name,
    organizations.c.environment,
    organizations.c.earnings_account_id,
    organizations.c.client_secret_hash,
).where(organizations.c.client_id == bindparam("client_id"))


def authenticate_client(conn: Connection, client_id: str, client_secret: str) -> Any:
    """The organization owning these credentials, or 401."""
    row = conn.execute(_CLIENT_QUERY, {"client_id": client_id}).first()
    check_client_secret(row, client_secret)
    return row


def check_client_secret(row: Any | None, client_secret: str) -> Any:
    """``row`` (an organization found by client id) if it has this secret, else 401."""
    if row is None or not secrets_match(client_secret, row.client_secret_hash):
        raise Unauthorized("invalid client credentials", code="invalid_credentials")
    return row


def authenticate_owner(conn: Connection, email: str, password: str) -> Any | None:
    row = conn.execute(
        select(organizations).where(organizations.c.owner_email == email.strip().lower())
    ).first()
    if row is None:
        dummy_verify(password)
        return None
    return row if verify_password(row.owner_password_hash, password) else None


def organization_json(row: Any) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "displayName": row.display_name}


# --- redirect URIs --------------------------------------------------------------


def check_redirect_uri(uri: str) -> str:
    uri = uri.strip()
    parts = urlsplit(uri)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.fragment:
        raise InvalidRequest("a redirect URI is an absolute http(s) URL", param="uri")
    if parts.scheme == "http" and not loopback:
        raise InvalidRequest("a redirect URI must use https (http only on localhost)", param="uri")
    if len(uri) > 2000:
        raise InvalidRequest("a redirect URI has at most 2000 characters", param="uri")
    return uri


def add_redirect_uri(conn: Connection, organization_id: str, uri: str) -> str:
    uri = check_redirect_uri(uri)
    get_organization(conn, organization_id)
    if uri not in list_redirect_uris(conn, organization_id):
        conn.execute(
            insert(redirect_uris).values(
                id=new_id("rdu"), organization_id=organization_id, uri=uri, created_at=db.now_us()
            )
        )
    return uri


def remove_redirect_uri(conn: Connection, organization_id: str, uri: str) -> None:
    conn.execute(
        delete(redirect_uris).where(
            and_(redirect_uris.c.organization_id == organization_id, redirect_uris.c.uri == uri)
        )
    )


def list_redirect_uris(conn: Connection, organization_id: str) -> list[str]:
    return list(
        conn.execute(
            select(redirect_uris.c.uri)
            .where(redirect_uris.c.organization_id == organization_id)
            .order_by(redirect_uris.c.created_at)
        )
        .scalars()
        .all()
    )


def by_client_id(conn: Connection, client_id: str) -> Any | None:
    return conn.execute(select(organizations).where(organizations.c.client_id == client_id)).first()
