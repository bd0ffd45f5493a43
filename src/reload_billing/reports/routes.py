"""``GET /v1/tp/reports/usage``: usage analytics for developers. Thin: the query
is read in schemas.py and run in analytics.py."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import Connection

from .. import api
from ..errors import InvalidRequest
from . import analytics
from .schemas import parse_query

router = APIRouter(prefix="/v1/tp", tags=["reports"])


@router.get(
    "/reports/usage",
    summary="Usage analytics: sums of usage records grouped by agent, user, model, time..",
)
def usage_report(request: Request) -> Response:
    caller = api.Caller(request)
    params = {key: request.query_params.getlist(key) for key in request.query_params}
    try:
        query = parse_query(params)
    except InvalidRequest:
        caller.check(request, with_token=False)  # wrong credentials: 401 first
        raise

    def work(conn: Connection) -> analytics.UsageReport:
        organization = caller.organization(conn)
        token = caller.optional_user(conn, organization.id)
        if token is not None:
            token.require("usage_reporting")
        return analytics.usage_report(
            conn, organization.id, query, user_id=token.user_id if token is not None else None
        )

    report = api.read(request, work)
    if query.format == "csv":
        return StreamingResponse(
            analytics.csv_lines(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="usage-report.csv"'},
        )
    return api.success(report.rows, totals=report.totals)
