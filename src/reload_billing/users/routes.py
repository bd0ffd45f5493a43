"""The user's pages: sign up, sign in, sign out, the account and its usage."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response, StreamingResponse
from sqlalchemy import Connection

from .. import api
from ..errors import Conflict, InvalidRequest, NotFound
from ..ledger import service as ledger
from ..money import MoneyError, parse_usd, to_nanos
from ..oauth import service as oauth
from ..oauth.routes import limits_from_form
from ..reports import export, filters
from ..reports import service as reports
from ..reports.rollups import Scope
from ..web import charts, pages
from . import service

router = APIRouter(include_in_schema=False)
SANDBOX_TOP_UP_MAX = 10_000
SESSION_KEY = pages.USER_SESSION


def signed_in_user(request: Request) -> Any | None:
    return pages.signed_in(request, SESSION_KEY, service.get_user)


def _client_host(request: Request) -> str:
    return request.client.host if request.client else "-"


@router.get("/favicon.ico")
def favicon() -> Response:
    """Browsers ask for it on every page that names none (JSON answers, say)."""
    return FileResponse(pages.HERE / "static" / "favicon.svg", media_type="image/svg+xml")


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
        f"ip:{_client_host(request)}"
    ):
        return pages.render(
            request,
            "signin.html",
            429,
            next=next_url,
            email=email,
            error="Too many sign-in attempts. Wait a minute and try again.",
        )
    password = str(form.get("password") or "")
    user = api.read(request, lambda conn: service.authenticate(conn, email, password))
    if user is None:
        return pages.render(
            request,
            "signin.html",
            400,
            next=next_url,
            email=email,
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
    user_id = request.session.get(SESSION_KEY)
    if user_id:
        # A copy of this cookie (another tab, another device) is signed out too.
        api.database(request).write(lambda conn: service.sign_out_everywhere(conn, user_id))
    pages.end_session(request, SESSION_KEY)
    return pages.redirect("/signin")


# --- the account ----------------------------------------------------------------


def _account(conn: Connection, user: Any) -> dict[str, Any]:
    """What every account page shows: who is signed in and the balance."""
    return {"user": user, "balance": ledger.balance(conn, user.billing_account_id)}


@router.get("/", response_class=HTMLResponse)
def account(request: Request) -> Response:
    user = signed_in_user(request)
    if user is None:
        return pages.redirect("/signin")

    end = reports.today()
    query = reports.UsageQuery(user_id=user.id)

    def work(conn: Connection) -> dict[str, Any]:
        recent_page = reports.page(conn, query, limit=5)
        return {
            **_account(conn, user),
            "connections": reports.user_connections(conn, user.id),
            "recent_page": recent_page,
            "recent_rows": recent_page.rows,
        }

    context = api.read(request, work)
    context["recent"] = reports.summary(
        api.database(request), Scope.of_user(user), query, start_day=end - 29, end_day=end
    )
    return pages.render(request, "account.html", section="account", **context)


@router.post("/account/top-up")
async def top_up(request: Request) -> Response:
    user = signed_in_user(request)
    if user is None:
        return pages.redirect("/signin")
    form = await request.form()
    pages.check_csrf(request, form)
    if api.settings(request).environment != "sandbox":
        return pages.render(
            request,
            "error.html",
            403,
            title="Funds cannot be added here",
            message="This Reload server runs in production: funds are added by its operator "
            "(reload users credit) until a payment provider is connected.",
        )
    try:
        amount = to_nanos(parse_usd(str(form.get("amount") or ""), maximum=None, allow_zero=False))
        if amount > SANDBOX_TOP_UP_MAX * 1_000_000_000:
            raise MoneyError(f"must not exceed {SANDBOX_TOP_UP_MAX:,} USD")
    except MoneyError as error:
        pages.flash(request, f"Amount {error}.")
        return pages.redirect("/")
    api.database(request).write(
        lambda conn: service.credit(
            conn, user_id=user.id, amount=amount, description="Sandbox funds"
        )
    )
    pages.flash(request, "Test funds added to your balance.")
    return pages.redirect("/")


@router.post("/account/connections/{connection_id}/disconnect")
async def disconnect(connection_id: str, request: Request) -> Response:
    user = signed_in_user(request)
    if user is None:
        return pages.redirect("/signin")
    form = await request.form()
    pages.check_csrf(request, form)
    try:
        api.database(request).write(lambda conn: oauth.disconnect(conn, user.id, connection_id))
    except NotFound:
        return _not_found(request)
    pages.flash(request, "Disconnected. The app's access to your account ended.")
    return pages.redirect("/")


@router.post("/account/connections/{connection_id}/limits")
async def update_limits(connection_id: str, request: Request) -> Response:
    user = signed_in_user(request)
    if user is None:
        return pages.redirect("/signin")
    form = await request.form()
    pages.check_csrf(request, form)
    try:
        limits = limits_from_form(form)
    except InvalidRequest as error:
        pages.flash(request, error.message + ".")
        return pages.redirect("/")
    try:
        api.database(request).write(
            lambda conn: oauth.update_limits(conn, user.id, connection_id, limits)
        )
    except NotFound:
        return _not_found(request)
    pages.flash(request, "Spending limits saved.")
    return pages.redirect("/")


def _not_found(request: Request) -> Response:
    return pages.render(
        request, "error.html", 404, title="Not found", message="There is no such connected app."
    )


def _bad_filters(request: Request, error: InvalidRequest, back: str) -> Response:
    return pages.render(
        request,
        "error.html",
        400,
        title="These filters cannot be used",
        message=error.message,
        back_url=back,
        back_text="Clear the filters",
    )


@router.get("/usage", response_class=HTMLResponse)
def usage(request: Request) -> Response:
    user = signed_in_user(request)
    if user is None:
        return pages.redirect("/signin?next=/usage")
    try:
        chosen = filters.parse(request.query_params)
    except InvalidRequest as error:
        return _bad_filters(request, error, "/usage")
    query = chosen.query(user_id=user.id)
    start_day, end_day = chosen.period()

    def work(conn: Connection) -> dict[str, Any]:
        return {
            **_account(conn, user),
            "found": reports.page(conn, query, after=chosen.after, before=chosen.before),
            "agent_choices": reports.user_agent_choices(conn, user.id),
        }

    context = api.read(request, work)
    summary = reports.summary(
        api.database(request), Scope.of_user(user), query, start_day=start_day, end_day=end_day
    )
    context["summary"] = summary
    chart = charts.day_chart(
        [(t.key, t.cost, t.charged) for t in summary.days], outer_name="Cost", inner_name="Charged"
    )
    return pages.render(
        request, "account_usage.html", section="usage", filters=chosen, chart=chart, **context
    )


@router.get("/usage.csv")
def usage_csv(request: Request) -> Response:
    user = signed_in_user(request)
    if user is None:
        return pages.redirect("/signin?next=/usage")
    try:
        chosen = filters.parse(request.query_params)
    except InvalidRequest as error:
        return _bad_filters(request, error, "/usage")
    query = chosen.query(user_id=user.id)
    body = export.stream(api.database(request), query, export.ACCOUNT_HEADER, export.account_row)
    filename = f"reload-usage-{reports.today_text()}.csv"
    return StreamingResponse(
        body,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )
