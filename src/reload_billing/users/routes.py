"""The user's pages: sign up, sign in, sign out, and the account."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Connection, select

from .. import api
from ..errors import Conflict, InvalidRequest, ReloadError
from ..ledger import service as ledger
from ..money import MoneyError, parse_usd, to_nanos
from ..oauth import service as oauth
from ..usage.models import usage_records
from ..web import pages
from . import service

router = APIRouter(include_in_schema=False)
SANDBOX_TOP_UP_MAX = 10_000


def signed_in_user(request: Request) -> Any | None:
    user_id = request.session.get("user_id")
    if not user_id:
        return None
    try:
        return api.read(request, lambda conn: service.get_user(conn, user_id))
    except ReloadError:
        request.session.clear()
        return None


@router.get("/signin", response_class=HTMLResponse)
def signin_page(request: Request, next: str | None = None) -> Response:
    return pages.render(request, "signin.html", next=pages.safe_next(next), email="")


@router.post("/signin")
async def signin(request: Request) -> Response:
    form = await request.form()
    pages.check_csrf(request, form)
    next_url = pages.safe_next(str(form.get("next") or "/"))
    email = str(form.get("email") or "")
    limiter = request.app.state.signin_limiter
    if not limiter.allow(f"user:{email.lower()}") or not limiter.allow(
        f"ip:{request.client.host if request.client else '-'}"
    ):
        return pages.render(
            request, "signin.html", 429, next=next_url, email=email,
            error="Too many sign-in attempts. Wait a minute and try again.",
        )
    password = str(form.get("password") or "")
    user = api.read(request, lambda conn: service.authenticate(conn, email, password))
    if user is None:
        return pages.render(
            request, "signin.html", 400, next=next_url, email=email,
            error="That email and password do not match an account.",
        )
    pages.start_session(request, user_id=user.id)
    return pages.redirect(next_url)


@router.get("/signup", response_class=HTMLResponse)
def signup_page(request: Request, next: str | None = None) -> Response:
    return pages.render(request, "signup.html", next=pages.safe_next(next), values={})


@router.post("/signup")
async def signup(request: Request) -> Response:
    form = await request.form()
    pages.check_csrf(request, form)
    next_url = pages.safe_next(str(form.get("next") or "/"))
    values = {key: str(form.get(key) or "") for key in ("email", "first_name", "last_name")}
    try:
        user = api.database(request).write(
            lambda conn: service.create_user(
                conn,
                email=values["email"],
                password=str(form.get("password") or ""),
                first_name=values["first_name"],
                last_name=values["last_name"],
            )
        )
    except (InvalidRequest, Conflict) as error:
        return pages.render(
            request, "signup.html", 400, next=next_url, values=values, error=error.message
        )
    pages.start_session(request, user_id=user.id)
    return pages.redirect(next_url)


@router.post("/signout")
async def signout(request: Request) -> Response:
    form = await request.form()
    pages.check_csrf(request, form)
    request.session.clear()
    return pages.redirect("/signin")


@router.get("/", response_class=HTMLResponse)
def account(request: Request) -> Response:
    user = signed_in_user(request)
    if user is None:
        return pages.redirect("/signin")

    def work(conn: Connection) -> dict[str, Any]:
        records = conn.execute(
            select(usage_records)
            .where(usage_records.c.user_id == user.id)
            .order_by(usage_records.c.created_at.desc())
            .limit(50)
        ).all()
        return {
            "balance": ledger.balance(conn, user.billing_account_id),
            "connections": oauth.user_connections(conn, user.id),
            "records": records,
        }

    return pages.render(request, "account.html", user=user, **api.read(request, work))


@router.post("/account/top-up")
async def top_up(request: Request) -> Response:
    user = signed_in_user(request)
    if user is None:
        return pages.redirect("/signin")
    form = await request.form()
    pages.check_csrf(request, form)
    if api.settings(request).environment != "sandbox":
        return pages.redirect("/")
    try:
        amount = to_nanos(parse_usd(str(form.get("amount") or ""), maximum=None, allow_zero=False))
        if amount > SANDBOX_TOP_UP_MAX * 1_000_000_000:
            raise MoneyError(f"must not exceed {SANDBOX_TOP_UP_MAX} USD")
    except MoneyError as error:
        request.session["flash"] = f"Amount {error}."
        return pages.redirect("/")
    api.database(request).write(
        lambda conn: service.credit(conn, user_id=user.id, amount=amount, description="Sandbox funds")
    )
    return pages.redirect("/")


@router.post("/account/connections/{connection_id}/disconnect")
async def disconnect(connection_id: str, request: Request) -> Response:
    user = signed_in_user(request)
    if user is None:
        return pages.redirect("/signin")
    form = await request.form()
    pages.check_csrf(request, form)
    api.database(request).write(lambda conn: oauth.disconnect(conn, user.id, connection_id))
    return pages.redirect("/")
