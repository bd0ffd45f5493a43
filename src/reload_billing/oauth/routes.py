"""OAuth: the authorize pages (sign-in, consent) and the /v1/tp token endpoints."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Connection

from .. import api, validation
from ..errors import InvalidRequest
from ..ledger.service import Limits
from ..money import MoneyError, parse_usd, to_nanos
from ..organizations import service as organizations
from ..users import service as users
from ..web import pages
from . import service
from .schemas import IntrospectBody, TokenBody, TokenRequest

router = APIRouter(tags=["oauth"])
AUTHORIZE_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "ai_agent_ids",
)


def _back_to_app(redirect_uri: str, **params: str | None) -> RedirectResponse:
    query = urlencode({key: value for key, value in params.items() if value is not None})
    separator = "&" if "?" in redirect_uri else "?"
    return RedirectResponse(f"{redirect_uri}{separator}{query}", status_code=303)


def _validate(request: Request, params: dict[str, str]) -> service.AuthorizeRequest | Response:
    try:
        return api.read(request, lambda conn: service.validate_authorize(conn, params))
    except service.RedirectableError as error:
        return _back_to_app(
            error.redirect_uri, error=error.code, error_description=error.message, state=error.state
        )
    except InvalidRequest as error:
        return pages.render(
            request, "error.html", 400, title="This link cannot be used", message=error.message
        )


@router.get("/oauth/authorize", response_class=HTMLResponse, include_in_schema=False)
def authorize(request: Request) -> Response:
    params = {key: value for key, value in request.query_params.items() if key in AUTHORIZE_PARAMS}
    checked = _validate(request, params)
    if isinstance(checked, Response):
        return checked
    user = pages.signed_in(request, pages.USER_SESSION, users.get_user)
    if user is None:
        return pages.redirect(
            "/signin?" + urlencode({"next": f"/oauth/authorize?{urlencode(params)}"})
        )
    return pages.render(
        request,
        "consent.html",
        user=user,
        auth=checked,
        params=params,
        scope_words=[service.SCOPE_WORDS[scope] for scope in checked.scopes],
    )


def _limit(form: Any, name: str, label: str) -> int | None:
    raw = str(form.get(name) or "").strip()
    if not raw:
        return None
    try:
        return to_nanos(parse_usd(raw, allow_zero=False))
    except MoneyError as error:
        raise InvalidRequest(f"{label} {error}", param=name) from None


def limits_from_form(form: Any) -> Limits:
    return Limits(
        per_charge=_limit(form, "limit_per_charge", "Limit per charge"),
        daily=_limit(form, "limit_daily", "Daily limit"),
        monthly=_limit(form, "limit_monthly", "Monthly limit"),
    )


@router.post("/oauth/authorize", include_in_schema=False)
async def decide(request: Request) -> Response:
    form = await request.form()
    pages.check_csrf(request, form)
    params = {key: str(form[key]) for key in AUTHORIZE_PARAMS if key in form}
    checked = _validate(request, params)
    if isinstance(checked, Response):
        return checked
    user = pages.signed_in(request, pages.USER_SESSION, users.get_user)
    if user is None:
        return pages.redirect(
            "/signin?" + urlencode({"next": f"/oauth/authorize?{urlencode(params)}"})
        )
    user_id = user.id
    if form.get("decision") != "approve":
        return _back_to_app(checked.redirect_uri, error="access_denied", state=checked.state)
    try:
        limits = limits_from_form(form)
    except InvalidRequest as error:
        return pages.render(
            request,
            "consent.html",
            400,
            user=user,
            auth=checked,
            params=params,
            scope_words=[service.SCOPE_WORDS[scope] for scope in checked.scopes],
            error=error.message,
        )
    ttl = api.settings(request).auth_code_ttl_seconds
    code = api.database(request).write(
        lambda conn: service.create_code(
            conn, checked, user_id=user_id, limits=limits, ttl_seconds=ttl
        )
    )
    return _back_to_app(checked.redirect_uri, code=code, state=checked.state)


# --- /v1/tp ---------------------------------------------------------------------


@router.post("/v1/tp/token", openapi_extra=validation.body_schema(TokenRequest))
async def token(request: Request) -> api.JSONResponse:
    body = await api.read_json(request)
    form = validation.parse(TokenRequest, body)
    if form.grant_type != "authorization_code":
        raise InvalidRequest(
            "grant_type must be authorization_code",
            param="grant_type",
            code="unsupported_grant_type",
        )
    if form.client_id and form.client_secret:
        client_id, client_secret = form.client_id, form.client_secret
    else:
        client_id, client_secret = organizations.parse_basic(request.headers.get("authorization"))
    ttl_days = api.settings(request).token_ttl_days

    def work(conn: Connection) -> dict[str, Any]:
        organization = organizations.authenticate_client(conn, client_id, client_secret)
        return service.exchange_code(
            conn,
            organization,
            code=form.code,
            redirect_uri=form.redirect_uri,
            code_verifier=form.code_verifier,
            token_ttl_days=ttl_days,
        )

    try:
        return api.success(await api.write(request, work))
    except service.CodeReplayed as replayed:
        code_hash = replayed.code_hash
        await api.write(request, lambda conn: service.revoke_code_tokens(conn, code_hash))
        raise


@router.get("/v1/tp/user")
def user(request: Request) -> api.JSONResponse:
    caller = api.Caller(request)

    def work(conn: Connection) -> dict[str, Any]:
        organization = caller.organization_row(conn)
        token = caller.user(conn, organization.id)
        token.require("identity")
        row = users.get_user(conn, token.user_id)
        return {
            "user": users.user_json(row),
            "organization": organizations.organization_json(organization),
            "permissions": sorted(token.scopes, key=service.SCOPES.index),
            "aiAgentIds": sorted(token.agent_ids) if token.agent_ids is not None else None,
            "billingAccountId": row.billing_account_id,
        }

    return api.success(api.read(request, work))


@router.post("/v1/tp/revoke-token", openapi_extra=validation.body_schema(TokenBody))
async def revoke_token(request: Request) -> api.JSONResponse:
    caller = api.Caller(request)
    body = await api.body(request, caller, TokenBody, with_token=False)

    def work(conn: Connection) -> dict[str, Any]:
        organization = caller.organization(conn)
        return service.revoke(conn, organization.id, body.token, body.reason)

    return api.success(await api.write(request, work))


@router.post("/v1/tp/introspect-token", openapi_extra=validation.body_schema(IntrospectBody))
async def introspect_token(request: Request) -> api.JSONResponse:
    caller = api.Caller(request)
    body = await api.body(request, caller, IntrospectBody, with_token=False)

    def work(conn: Connection) -> dict[str, Any]:
        return service.introspect(conn, caller.organization(conn).id, body.token)

    return api.success(api.read(request, work))
