"""What every developer-API route shares: bounded JSON bodies, credentials,
answers in the contract's envelope, and the write path through group commit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import Connection, exc

from . import jsonbody, validation
from .config import Settings
from .db import Database
from .errors import Conflict, InvalidRequest, PayloadTooLarge
from .oauth import service as oauth
from .oauth.service import TokenContext
from .organizations import service as organizations
from .usage.service import Organization

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return jsonbody.dumps(content)


def success(
    data: Any, status_code: int = 200, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse({"status": "success", "data": data, **extra}, status_code, headers)


def database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def settings(request: Request) -> Settings:
    value: Settings = request.app.state.settings
    return value


async def read_json(request: Request, *, optional: bool = False) -> dict[str, Any]:
    """The body as one JSON object, refusing more than ``max_body_bytes``."""
    limit = settings(request).max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
        chunks.append(chunk)
    return jsonbody.parse_object(b"".join(chunks), optional=optional)


class Caller:
    """The credentials a request carries, checked inside its unit of work."""

    def __init__(self, request: Request) -> None:
        self.client_id, self.client_secret = organizations.parse_basic(
            request.headers.get("authorization")
        )
        self.access_token = request.headers.get("x-access-token")

    def organization(self, conn: Connection) -> Organization:
        row = organizations.authenticate_client(conn, self.client_id, self.client_secret)
        return Organization(row.id, row.environment, row.earnings_account_id)

    def organization_row(self, conn: Connection) -> Any:
        return organizations.authenticate_client(conn, self.client_id, self.client_secret)

    def user(self, conn: Connection, organization_id: str) -> TokenContext:
        return oauth.authenticate_token(conn, organization_id, self.access_token)

    def optional_user(self, conn: Connection, organization_id: str) -> TokenContext | None:
        if self.access_token is None:
            return None
        return self.user(conn, organization_id)

    def check(self, request: Request, *, with_token: bool) -> None:
        """Authenticate now (raises 401), for answers that come before the unit of work."""

        def work(conn: Connection) -> None:
            organization = self.organization(conn)
            if with_token or self.access_token is not None:
                self.user(conn, organization.id)

        read(request, work)


async def body(
    request: Request,
    caller: Caller,
    model: type[M],
    *,
    optional: bool = False,
    with_token: bool = True,
    prepare: Callable[[dict[str, Any]], None] | None = None,
) -> M:
    """The request's body validated as ``model``. A caller whose credentials are
    wrong hears 401 before any word about the body; the credentials are otherwise
    checked inside the unit of work, so that the hot path reads them only once."""
    try:
        raw = await read_json(request, optional=optional)
        if prepare is not None:
            prepare(raw)
        return validation.parse(model, raw)
    except (InvalidRequest, PayloadTooLarge):
        caller.check(request, with_token=with_token)
        raise


async def write(request: Request, work: Callable[[Connection], T]) -> T:
    """Run a unit of work through group commit and wait for its commit.

    A unique-key race with another server process (two inserts of one idempotency
    key) is run once more: the second run finds the first's record and replays it.
    """
    writer = database(request).writer
    try:
        return await writer.run_async(work)
    except exc.IntegrityError:
        try:
            return await writer.run_async(work)
        except exc.IntegrityError:
            raise Conflict(
                "another request with this idempotency key is in progress",
                code="idempotency_key_in_use",
            ) from None


def read(request: Request, work: Callable[[Connection], T]) -> T:
    with database(request).read() as conn:
        return work(conn)
