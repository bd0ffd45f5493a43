"""Server-rendered pages: templates, the signed session, CSRF tokens."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import Connection

from .. import api
from ..db import from_us, now_us
from ..errors import Forbidden, ReloadError
from ..money import CREDITS_PER_USD, format_usd, from_nanos
from . import charts
from . import format as fmt

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


def _usd(nanos: int | None, places: int = 2) -> str:
    if nanos is None:
        return "—"
    amount = from_nanos(nanos)
    text = format_usd(amount)
    whole, _, fraction = text.partition(".")
    fraction = (fraction + "0" * places)[: max(places, len(fraction.rstrip("0")))]
    return f"${whole}.{fraction}" if fraction else f"${whole}"


def _credits(nanos: int) -> str:
    return format_usd(from_nanos(nanos * CREDITS_PER_USD).quantize(from_nanos(10_000_000)))


def _datetime(micros: int | None) -> str:
    if micros is None:
        return "—"
    return from_us(micros).strftime("%Y-%m-%d %H:%M UTC")


templates.env.filters["usd"] = _usd
templates.env.filters["datetime"] = _datetime
templates.env.filters["credits"] = _credits
templates.env.filters.update(fmt.FILTERS)
templates.env.globals["share"] = charts.share

# The keys that say who is signed in; the account and the developer portal are
# separate sign-ins in one cookie, and signing in on one side keeps the other.
USER_SESSION = "user_id"
DEVELOPER_SESSION = "developer_org_id"
SIGN_IN_KEYS = (USER_SESSION, DEVELOPER_SESSION)


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return str(token)


def check_csrf(request: Request, form: Any) -> None:
    expected = request.session.get("csrf")
    given = form.get("csrf_token")
    if not expected or not isinstance(given, str) or not hmac.compare_digest(expected, given):
        raise Forbidden("the form expired; reload the page and try again", code="csrf_failed")


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("csrf_token", csrf_token(request))
    context.setdefault("environment", request.app.state.settings.environment)
    context.setdefault("flash", request.session.pop("flash", None))
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def safe_next(target: str | None, default: str = "/") -> str:
    """Only same-site paths: never an open redirect."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target:
        return default
    return target


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def start_session(request: Request, **values: str) -> None:
    """A fresh session on sign-in (no fixation): keep nothing from before but the
    other side's sign-in (account or developer portal). Each side's sign-in keeps its
    moment, so that signing out can end every session begun before it."""
    kept = {
        name: request.session[name]
        for key in SIGN_IN_KEYS
        for name in (key, key + _AT)
        if name in request.session
    }
    request.session.clear()
    request.session.update(kept)
    request.session.update(values)
    for key in values:
        request.session[key + _AT] = now_us()
    request.session["csrf"] = secrets.token_urlsafe(32)


_AT = "_signed_in_at"


def signed_in(request: Request, key: str, load: Callable[[Connection, str], Any]) -> Any | None:
    """Who is signed in on side ``key``: the row ``load`` reads for the session's id,
    or None, ending that side's session, when the row is gone or a sign-out since
    this session began ended every session then open (``signed_out_at``)."""
    owner_id = request.session.get(key)
    if not owner_id:
        return None
    try:
        row = api.read(request, lambda conn: load(conn, owner_id))
    except ReloadError:
        row = None
    if row is None or (
        row.signed_out_at is not None
        and int(request.session.get(key + _AT) or 0) <= row.signed_out_at
    ):
        end_session(request, key)
        return None
    return row


def end_session(request: Request, key: str) -> None:
    """Sign out of one side; the other side stays signed in."""
    request.session.pop(key, None)
    request.session.pop(key + _AT, None)
    request.session["csrf"] = secrets.token_urlsafe(32)
    if not any(name in request.session for name in SIGN_IN_KEYS):
        request.session.clear()


def flash(request: Request, message: str) -> None:
    """A message for the next page shown (after a redirect)."""
    request.session["flash"] = message
