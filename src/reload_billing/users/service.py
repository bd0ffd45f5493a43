"""Users and their billing accounts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, update

from .. import db
from ..errors import Conflict, InvalidRequest, NotFound
from ..ids import new_id
from ..ledger import service as ledger
from ..security import check_email, check_password, dummy_verify, hash_password, verify_password
from .models import users


def _name(value: str, param: str) -> str:
    value = value.strip()
    if not value or len(value) > 100:
        raise InvalidRequest(f"{param} must be 1-100 characters", param=param)
    return value


def create_user(
    conn: Connection, *, email: str, password: str, first_name: str, last_name: str
) -> Any:
    email = check_email(email)
    check_password(password)
    first_name = _name(first_name, "firstName")
    last_name = _name(last_name, "lastName")
    if conn.execute(select(users.c.id).where(users.c.email == email)).first():
        raise Conflict("an account with this email exists", code="email_taken", param="email")
    user_id = new_id("usr")
    billing_account_id = ledger.open_account(conn, ledger.USER_BILLING, user_id)
    conn.execute(
        insert(users).values(
            id=user_id,
            email=email,
            password_hash=hash_password(password),
            first_name=first_name,
            last_name=last_name,
            billing_account_id=billing_account_id,
            created_at=db.now_us(),
        )
    )
    return get_user(conn, user_id)


def sign_out_everywhere(conn: Connection, user_id: str) -> None:
    """End every page session of this user begun until now."""
    conn.execute(update(users).where(users.c.id == user_id).values(signed_out_at=db.now_us()))


def get_user(conn: Connection, user_id: str) -> Any:
    row = conn.execute(select(users).where(users.c.id == user_id)).first()
    if row is None:
        raise NotFound("no such user", param="userId")
    return row


def user_by_email(conn: Connection, email: str) -> Any:
    row = conn.execute(select(users).where(users.c.email == email.strip().lower())).first()
    if row is None:
        raise NotFound("no user with this email", param="email")
    return row


def authenticate(conn: Connection, email: str, password: str) -> Any | None:
    row = conn.execute(select(users).where(users.c.email == email.strip().lower())).first()
    if row is None:
        dummy_verify(password)
        return None
    return row if verify_password(row.password_hash, password) else None


def credit(conn: Connection, *, user_id: str, amount: int, description: str) -> ledger.Posted:
    user = get_user(conn, user_id)
    return ledger.top_up(
        conn,
        billing_account_id=user.billing_account_id,
        user_id=user.id,
        amount=amount,
        description=description,
    )


def user_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "firstName": row.first_name,
        "lastName": row.last_name,
        "email": row.email,
    }
