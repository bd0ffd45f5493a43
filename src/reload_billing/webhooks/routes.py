"""The developer portal's webhook pages (/developer/webhooks): endpoints, their
secrets (shown once), and recent deliveries with every attempt. Thin: the logic is
in service.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Connection

from .. import api
from ..errors import ReloadError
from ..organizations import service as organizations
from ..web import pages
from . import service

router = APIRouter(prefix="/developer/webhooks", include_in_schema=False)
RECENT_DELIVERIES = 50


def _signed_in_org(request: Request) -> Any | None:
    return pages.signed_in(request, pages.DEVELOPER_SESSION, organizations.get_organization)


def _to_signin(request: Request) -> Response:
    return pages.redirect("/developer/signin?" + urlencode({"next": request.url.path}))


def _page(request: Request, org: Any, status_code: int = 200, **context: Any) -> Response:
    def work(conn: Connection) -> dict[str, Any]:
        return {
            "endpoints": [
                service.endpoint_json(row) for row in service.list_endpoints(conn, org.id)
            ],
            "deliveries": service.list_deliveries(conn, org.id, limit=RECENT_DELIVERIES),
        }

    response = pages.render(
        request,
        "webhooks.html",
        status_code,
        org=org,
        section="webhooks",
        webhooks_nav=True,
        events=service.EVENTS,
        **api.read(request, work),
        **context,
    )
    response.headers["Cache-Control"] = "no-store"  # the page may show a secret
    return response


async def _form_action(request: Request, act: Callable[[Any, Any], Response]) -> Response:
    """Sign-in and CSRF checks shared by every form; errors re-render the page."""
    org = _signed_in_org(request)
    if org is None:
        return _to_signin(request)
    form = await request.form()
    pages.check_csrf(request, form)
    try:
        return act(org, form)
    except ReloadError as error:
        return _page(request, org, error.status_code, error=error.message)


@router.get("", response_class=HTMLResponse)
def webhooks_page(request: Request) -> Response:
    org = _signed_in_org(request)
    if org is None:
        return _to_signin(request)
    return _page(request, org)


@router.post("")
async def add_endpoint(request: Request) -> Response:
    settings = api.settings(request)

    def act(org: Any, form: Any) -> Response:
        url = str(form.get("url") or "")
        chosen = [str(event) for event in form.getlist("events")]
        try:
            endpoint, secret = api.database(request).write(
                lambda conn: service.create_endpoint(
                    conn,
                    org.id,
                    url=url,
                    events=chosen,
                    secret_key=settings.resolved_secret_key(),
                    environment=settings.environment,
                )
            )
        except ReloadError as error:
            return _page(
                request, org, error.status_code, error=error.message, url_value=url, chosen=chosen
            )
        return _page(request, org, new_secret=secret, secret_endpoint=endpoint.id)

    return await _form_action(request, act)


def _redirect_with(request: Request, message: str) -> Response:
    pages.flash(request, message)
    return pages.redirect("/developer/webhooks")


@router.post("/{endpoint_id}/enable")
async def enable_endpoint(endpoint_id: str, request: Request) -> Response:
    def act(org: Any, _form: Any) -> Response:
        api.database(request).write(
            lambda conn: service.set_enabled(conn, org.id, endpoint_id, True)
        )
        return _redirect_with(request, "Endpoint enabled.")

    return await _form_action(request, act)


@router.post("/{endpoint_id}/disable")
async def disable_endpoint(endpoint_id: str, request: Request) -> Response:
    def act(org: Any, _form: Any) -> Response:
        api.database(request).write(
            lambda conn: service.set_enabled(conn, org.id, endpoint_id, False)
        )
        return _redirect_with(request, "Endpoint disabled: it gets no new events.")

    return await _form_action(request, act)


@router.post("/{endpoint_id}/rotate")
async def rotate_endpoint_secret(endpoint_id: str, request: Request) -> Response:
    secret_key = api.settings(request).resolved_secret_key()

    def act(org: Any, _form: Any) -> Response:
        secret = api.database(request).write(
            lambda conn: service.rotate_secret(conn, org.id, endpoint_id, secret_key)
        )
        return _page(request, org, new_secret=secret, secret_endpoint=endpoint_id, rotated=True)

    return await _form_action(request, act)


@router.post("/{endpoint_id}/delete")
async def delete_endpoint(endpoint_id: str, request: Request) -> Response:
    def act(org: Any, _form: Any) -> Response:
        api.database(request).write(lambda conn: service.delete_endpoint(conn, org.id, endpoint_id))
        return _redirect_with(request, "Endpoint deleted.")

    return await _form_action(request, act)


@router.post("/deliveries/{delivery_id}/resend")
async def resend_delivery(delivery_id: str, request: Request) -> Response:
    retry_us = int(api.settings(request).webhook_retry_hours * 3600 * 1_000_000)

    def act(org: Any, _form: Any) -> Response:
        api.database(request).write(
            lambda conn: service.resend(
                conn, delivery_id, retry_us=retry_us, organization_id=org.id
            )
        )
        return _redirect_with(request, f"Delivery {delivery_id} will be sent again now.")

    return await _form_action(request, act)
