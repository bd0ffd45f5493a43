"""create_app(settings): routers, middleware and error handlers."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import generate_latest
from sqlalchemy import exc, text
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import api, openapi
from .config import Settings, get_settings
from .db import Database, is_retryable
from .developer.routes import router as developer_router
from .errors import ReloadError
from .guard import InputGuard
from .ledger import service as ledger
from .middleware import DirectRoutes, EdgeMiddleware, Metrics, PageSessions
from .oauth.routes import router as oauth_router
from .ratelimit import ClientRateLimit, RateLimiter
from .reports.routes import router as reports_router
from .usage.routes import router as usage_router
from .users.routes import router as users_router
from .web.pages import HERE as WEB_DIR
from .webhooks.routes import router as webhooks_router
from .webhooks.worker import DeliveryWorker

log = logging.getLogger("reload")


# Reload's metrics are Prometheus's at /metrics. FastAPI's own OpenTelemetry hooks
# (newer versions) look up the global providers on every request: a few percent of
# the hot path's CPU for nothing, so they are off where they exist.
_NO_NATIVE_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI).parameters
    else {}
)


def _error_response(error: ReloadError) -> api.JSONResponse:
    return api.JSONResponse(error.body(), error.status_code, error.headers or None)


async def _reload_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, ReloadError)
    return _error_response(error)


async def _http_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    body = {
        "status": "error",
        "message": str(error.detail),
        "error": {"code": codes.get(error.status_code, "http_error"), "message": str(error.detail)},
    }
    return api.JSONResponse(body, error.status_code, dict(error.headers or {}) or None)


async def _validation_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
    param = str(first["loc"][-1]) if first.get("loc") else None
    message = f"{param}: {first['msg']}" if param else str(first["msg"])
    body: dict[str, Any] = {
        "status": "error",
        "message": message,
        "error": {"code": "invalid_request", "message": message, "param": param},
    }
    return api.JSONResponse(body, 400)


async def _data_error(request: Request, error: Exception) -> Response:
    """A value the database cannot store (SQLSTATE class 22): bad input, not a bug
    of ours; the inputs are checked before, this is the net under those checks."""
    assert isinstance(error, exc.DataError)
    log.warning(
        "the database refused a value on %s (%s)",
        request.url.path,
        getattr(error.orig, "sqlstate", None) or type(error.orig).__name__,
    )
    message = "a value in this request cannot be stored"
    body = {
        "status": "error",
        "message": message,
        "error": {"code": "invalid_request", "message": message},
    }
    return api.JSONResponse(body, 400)


async def _database_busy(request: Request, error: Exception) -> Response:
    """Deadlocks, serialization failures and lock timeouts are retried inside the
    server (db.py); one that outlasts every retry is 503, never 500."""
    if not is_retryable(error):
        return await _unexpected(request, error)
    log.warning("database busy on %s after retries: %s", request.url.path, type(error).__name__)
    message = "the database is busy; retry after the Retry-After seconds"
    body = {
        "status": "error",
        "message": message,
        "error": {"code": "service_unavailable", "message": message},
    }
    return api.JSONResponse(body, 503, {"Retry-After": "1"})


async def _unexpected(_request: Request, error: Exception) -> Response:
    log.exception("unexpected error", exc_info=error)
    body = {
        "status": "error",
        "message": "an internal error occurred; it has been logged",
        "error": {"code": "internal_error", "message": "an internal error occurred"},
    }
    return api.JSONResponse(body, 500)


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    db = database or Database(
        settings.database_url,
        max_batch=settings.write_batch_size,
        write_workers=settings.write_workers,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        db.write(ledger.ensure_system_accounts)
        db.start()
        # The webhook delivery worker (off: run `reload worker` beside the server).
        worker = DeliveryWorker(db, settings) if settings.webhook_worker else None
        if worker is not None:
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()
            db.close()

    app = FastAPI(
        title="Reload",
        version="0.1.0",
        summary="Real-time usage billing for AI agents",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        **_NO_NATIVE_TELEMETRY,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.signin_limiter = RateLimiter(limit=10, window_seconds=60)
    metrics = Metrics()
    app.state.metrics = metrics

    app.add_exception_handler(ReloadError, _reload_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(exc.DataError, _data_error)
    app.add_exception_handler(exc.DBAPIError, _database_busy)
    app.add_exception_handler(Exception, _unexpected)

    app.include_router(usage_router)
    app.include_router(oauth_router)
    app.include_router(users_router)
    app.include_router(developer_router)
    app.include_router(webhooks_router)
    app.include_router(reports_router)
    openapi.install(app)
    app.mount("/static", StaticFiles(directory=str(WEB_DIR / "static")), name="static")

    @app.get("/healthz", tags=["operations"])
    def healthz() -> api.JSONResponse:
        with db.read() as conn:
            conn.execute(text("SELECT 1"))
        return api.JSONResponse({"status": "ok"})

    @app.get("/metrics", tags=["operations"])
    def prometheus() -> Response:
        body = generate_latest(metrics.registry)
        return Response(body, media_type="text/plain; version=0.0.4")

    app.add_middleware(
        DirectRoutes,
        routes={
            (method, route.path): route
            for route in usage_router.routes
            if isinstance(route, APIRoute) and route.path == "/v1/tp/usage"
            for method in route.methods or ()
        },
        exception_handlers=app.exception_handlers,
    )
    app.add_middleware(InputGuard, max_header_bytes=settings.max_header_bytes)
    app.add_middleware(
        ClientRateLimit,
        rate=settings.rate_limit_per_second,
        burst=settings.rate_limit_burst,
    )
    app.add_middleware(
        PageSessions,
        secret_key=settings.resolved_secret_key(),
        session_cookie="reload_session",
        same_site="lax",
        https_only=settings.base_url.startswith("https://"),
        max_age=14 * 24 * 3600,
    )
    app.add_middleware(EdgeMiddleware, metrics=metrics)
    return app
