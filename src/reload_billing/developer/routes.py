"""The developer portal (/developer): an organization's agents, credentials,
usage, earnings and connected users. Thin: reads are in reports/ and
developer/service.py, writes go through the domain services."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from sqlalchemy import Connection
from starlette.routing import Match

from .. import api
from ..agents import service as agents
from ..errors import Conflict, InvalidRequest, NotFound
from ..ledger import service as ledger
from ..organizations import service as organizations
from ..reports import export, filters
from ..reports import service as reports
from ..reports.rollups import Scope
from ..web import charts, pages
from . import service

router = APIRouter(prefix="/developer", include_in_schema=False)
SESSION_KEY = pages.DEVELOPER_SESSION
WEBHOOKS_PATH = "/developer/webhooks"


def signed_in_org(request: Request) -> Any | None:
    return pages.signed_in(request, SESSION_KEY, organizations.get_organization)


def _to_signin(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return pages.redirect("/developer/signin?" + urlencode({"next": target}))


def _has_webhooks(request: Request) -> bool:
    """Whether the app serves the webhook pages (the nav links them only then)."""
    state = request.app.state
    if not hasattr(state, "developer_webhooks_nav"):
        scope = {"type": "http", "method": "GET", "path": WEBHOOKS_PATH, "root_path": ""}
        state.developer_webhooks_nav = any(
            route.matches(scope)[0] == Match.FULL for route in request.app.router.routes
        )
    return bool(state.developer_webhooks_nav)


def _render(
    request: Request,
    template: str,
    org: Any,
    section: str,
    status_code: int = 200,
    **context: Any,
) -> Response:
    response = pages.render(
        request,
        template,
        status_code,
        org=org,
        section=section,
        webhooks_nav=_has_webhooks(request),
        **context,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


# --- sign up, sign in, sign out -------------------------------------------------


def _signin_page(request: Request, status_code: int = 200, **context: Any) -> Response:
    context.setdefault("next", "/developer")
    context.setdefault("email", "")
    return pages.render(
        request,
        "signin.html",
        status_code,
        heading="Sign in to the developer portal",
        action="/developer/signin",
        signup_url="/developer/signup",
        home_url="/developer",
        **context,
    )


@router.get("/signin", response_class=HTMLResponse)
def signin_page(request: Request, next: str | None = None) -> Response:
    return _signin_page(request, next=pages.safe_next(next, "/developer"))


@router.post("/signin")
async def signin(request: Request) -> Response:
    form = await request.form()
    pages.check_csrf(request, form)
    next_url = pages.safe_next(str(form.get("next") or ""), "/developer")
    email = str(form.get("email") or "")
    limiter = request.app.state.signin_limiter
    host = request.client.host if request.client else "-"
    if not limiter.allow(f"developer:{email.lower()}") or not limiter.allow(f"ip:{host}"):
        return _signin_page(
            request,
            429,
            next=next_url,
            email=email,
            error="Too many sign-in attempts. Wait a minute and try again.",
        )
    password = str(form.get("password") or "")
    org = api.read(request, lambda conn: service.authenticate(conn, email, password))
    if org is None:
        return _signin_page(
            request,
            400,
            next=next_url,
            email=email,
            error="That email and password do not match an organization.",
        )
    pages.start_session(request, developer_org_id=org.id)
    return pages.redirect(next_url)


@router.get("/signup", response_class=HTMLResponse)
def signup_page(request: Request) -> Response:
    return pages.render(request, "developer/signup.html", values={})


@router.post("/signup")
async def signup(request: Request) -> Response:
    form = await request.form()
    pages.check_csrf(request, form)
    values = {key: str(form.get(key) or "") for key in ("name", "email")}
    environment = api.settings(request).environment
    try:
        org, secret = api.database(request).write(
            lambda conn: service.sign_up(
                conn,
                name=values["name"],
                email=values["email"],
                password=str(form.get("password") or ""),
                environment=environment,
            )
        )
    except (InvalidRequest, Conflict) as error:
        return pages.render(
            request, "developer/signup.html", 400, values=values, error=error.message
        )
    pages.start_session(request, developer_org_id=org.id)
    return _credentials(request, org, new_secret=secret, welcome=True)


@router.post("/signout")
async def signout(request: Request) -> Response:
    form = await request.form()
    pages.check_csrf(request, form)
    organization_id = request.session.get(SESSION_KEY)
    if organization_id:
        # A copy of this cookie (another tab, another device) is signed out too.
        api.database(request).write(
            lambda conn: organizations.sign_out_everywhere(conn, organization_id)
        )
    pages.end_session(request, SESSION_KEY)
    return pages.redirect("/developer/signin")


# --- overview -------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def overview(request: Request) -> Response:
    org = signed_in_org(request)
    if org is None:
        return _to_signin(request)
    end = reports.today()
    start = end - 29

    def work(conn: Connection) -> dict[str, Any]:
        return {
            "balance": ledger.balance(conn, org.earnings_account_id),
            "agent_list": agents.list_agents(conn, org.id, include_archived=False),
            "connections": service.connection_counts(conn, org.id),
        }

    context = api.read(request, work)
    summary = reports.summary(
        api.database(request),
        Scope.of_organization(org),
        reports.UsageQuery(organization_id=org.id),
        start_day=start,
        end_day=end,
    )
    chart = charts.day_chart(
        [(t.key, t.cost, t.charged) for t in summary.days], outer_name="Cost", inner_name="Charged"
    )
    context["summary"] = summary
    return _render(request, "developer/overview.html", org, "overview", chart=chart, **context)


# --- agents ---------------------------------------------------------------------


@router.get("/agents", response_class=HTMLResponse)
def agents_page(request: Request) -> Response:
    org = signed_in_org(request)
    if org is None:
        return _to_signin(request)
    agent_list = api.read(request, lambda conn: agents.list_agents(conn, org.id))
    return _render(request, "developer/agents.html", org, "agents", agent_list=agent_list)


async def _agents_write(
    request: Request, work: Callable[[Connection, str, Any], Any], done: str
) -> Response:
    """Check the session and the form, run ``work``, and go back to the agents."""
    org = signed_in_org(request)
    if org is None:
        return _to_signin(request)
    form = await request.form()
    pages.check_csrf(request, form)
    try:
        api.database(request).write(lambda conn: work(conn, org.id, form))
    except NotFound:
        return _render(
            request,
            "error.html",
            org,
            "agents",
            404,
            title="Not found",
            message="There is no such agent.",
            back_url="/developer/agents",
            back_text="Back to agents",
        )
    except InvalidRequest as error:
        pages.flash(request, error.message[:1].upper() + error.message[1:] + ".")
        return pages.redirect("/developer/agents")
    pages.flash(request, done)
    return pages.redirect("/developer/agents")


@router.post("/agents")
async def create_agent(request: Request) -> Response:
    return await _agents_write(
        request,
        lambda conn, org_id, form: agents.create_agent(conn, org_id, str(form.get("name") or "")),
        "Agent created.",
    )


@router.post("/agents/{agent_id}/rename")
async def rename_agent(agent_id: str, request: Request) -> Response:
    return await _agents_write(
        request,
        lambda conn, org_id, form: agents.rename_agent(
            conn, org_id, agent_id, str(form.get("name") or "")
        ),
        "Agent renamed.",
    )


@router.post("/agents/{agent_id}/archive")
async def archive_agent(agent_id: str, request: Request) -> Response:
    return await _agents_write(
        request,
        lambda conn, org_id, form: agents.set_archived(conn, org_id, agent_id, True),
        "Agent archived: usage reports for it are now refused.",
    )


@router.post("/agents/{agent_id}/restore")
async def restore_agent(agent_id: str, request: Request) -> Response:
    return await _agents_write(
        request,
        lambda conn, org_id, form: agents.set_archived(conn, org_id, agent_id, False),
        "Agent restored.",
    )


# --- credentials ----------------------------------------------------------------


def _credentials(request: Request, org: Any, status_code: int = 200, **context: Any) -> Response:
    uris = api.read(request, lambda conn: organizations.list_redirect_uris(conn, org.id))
    return _render(
        request,
        "developer/credentials.html",
        org,
        "credentials",
        status_code,
        redirect_uris=uris,
        **context,
    )


@router.get("/credentials", response_class=HTMLResponse)
def credentials(request: Request) -> Response:
    org = signed_in_org(request)
    if org is None:
        return _to_signin(request)
    return _credentials(request, org)


@router.post("/credentials/rotate")
async def rotate_secret(request: Request) -> Response:
    org = signed_in_org(request)
    if org is None:
        return _to_signin(request)
    form = await request.form()
    pages.check_csrf(request, form)
    secret = api.database(request).write(lambda conn: organizations.rotate_secret(conn, org.id))
    return _credentials(request, org, new_secret=secret)


@router.post("/redirect-uris")
async def add_redirect_uri(request: Request) -> Response:
    org = signed_in_org(request)
    if org is None:
        return _to_signin(request)
    form = await request.form()
    pages.check_csrf(request, form)
    uri = str(form.get("uri") or "")
    try:
        api.database(request).write(lambda conn: organizations.add_redirect_uri(conn, org.id, uri))
    except InvalidRequest as error:
        return _credentials(request, org, 400, uri_error=error.message, uri_value=uri)
    pages.flash(request, "Redirect URI added.")
    return pages.redirect("/developer/credentials")


@router.post("/redirect-uris/remove")
async def remove_redirect_uri(request: Request) -> Response:
    org = signed_in_org(request)
    if org is None:
        return _to_signin(request)
    form = await request.form()
    pages.check_csrf(request, form)
    uri = str(form.get("uri") or "")
    api.database(request).write(lambda conn: organizations.remove_redirect_uri(conn, org.id, uri))
    pages.flash(request, "Redirect URI removed.")
    return pages.redirect("/developer/credentials")


# --- usage ----------------------------------------------------------------------


def _bad_filters(request: Request, org: Any, error: InvalidRequest, back: str) -> Response:
    return _render(
        request,
        "error.html",
        org,
        "usage",
        400,
        title="These filters cannot be used",
        message=error.message,
        back_url=back,
        back_text="Clear the filters",
    )


def _summary(
    request: Request, scope: Scope, query: reports.UsageQuery, chosen: filters.UsageFilters
) -> reports.Summary:
    start_day, end_day = chosen.period()
    if scope.scope_id == service.NO_USER:
        return reports.empty_summary(start_day, end_day)
    return reports.summary(
        api.database(request), scope, query, start_day=start_day, end_day=end_day
    )


@router.get("/usage", response_class=HTMLResponse)
def usage(request: Request) -> Response:
    org = signed_in_org(request)
    if org is None:
        return _to_signin(request)
    try:
        chosen = filters.parse(request.query_params, developer=True)
    except InvalidRequest as error:
        return _bad_filters(request, org, error, "/developer/usage")

    def work(conn: Connection) -> dict[str, Any]:
        scope, user_id = service.usage_scope(conn, org, chosen.user)
        query = chosen.query(organization_id=org.id, filter_user_id=user_id)
        return {
            "scope": scope,
            "query": query,
            "found": reports.page(conn, query, after=chosen.after, before=chosen.before),
            "agent_list": agents.list_agents(conn, org.id),
        }

    context = api.read(request, work)
    context["summary"] = _summary(request, context.pop("scope"), context.pop("query"), chosen)
    chart = charts.day_chart(
        [(t.key, t.cost, t.charged) for t in context["summary"].days],
        outer_name="Cost",
        inner_name="Charged",
    )
    return _render(
        request, "developer/usage.html", org, "usage", filters=chosen, chart=chart, **context
    )


@router.get("/usage.csv")
def usage_csv(request: Request) -> Response:
    org = signed_in_org(request)
    if org is None:
        return _to_signin(request)
    try:
        chosen = filters.parse(request.query_params, developer=True)
    except InvalidRequest as error:
        return _bad_filters(request, org, error, "/developer/usage")
    _scope, user_id = api.read(request, lambda conn: service.usage_scope(conn, org, chosen.user))
    query = chosen.query(organization_id=org.id, filter_user_id=user_id)
    body = export.stream(
        api.database(request), query, export.DEVELOPER_HEADER, export.developer_row
    )
    return StreamingResponse(
        body,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": (
                f'attachment; filename="{org.name[:40]}-usage-{reports.today_text()}.csv"'.replace(
                    " ", "-"
                )
            ),
            "Cache-Control": "no-store",
        },
    )


# --- earnings and users ---------------------------------------------------------


@router.get("/earnings", response_class=HTMLResponse)
def earnings(request: Request) -> Response:
    org = signed_in_org(request)
    if org is None:
        return _to_signin(request)
    try:
        chosen = filters.parse(request.query_params)
    except InvalidRequest as error:
        return _bad_filters(request, org, error, "/developer/earnings")

    def work(conn: Connection) -> dict[str, Any]:
        return {
            "balance": ledger.balance(conn, org.earnings_account_id),
            "agent_list": agents.list_agents(conn, org.id),
        }

    context = api.read(request, work)
    query = chosen.query(organization_id=org.id)
    earned = _summary(request, Scope.of_organization(org), query, chosen)
    chart = charts.day_chart(
        [(t.key, t.charged, max(0, t.net)) for t in earned.days],
        outer_name="Gross charged",
        inner_name="Net",
    )
    context["earned"] = earned
    return _render(
        request,
        "developer/earnings.html",
        org,
        "earnings",
        filters=chosen,
        chart=chart,
        **context,
    )


@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request, page: str = "1") -> Response:
    org = signed_in_org(request)
    if org is None:
        return _to_signin(request)
    number = int(page) if page.isdigit() and 0 < int(page) < 1_000_000 else 1
    found, more = api.read(request, lambda conn: service.connected_users(conn, org.id, page=number))
    return _render(
        request, "developer/users.html", org, "users", connected=found, page=number, more=more
    )
