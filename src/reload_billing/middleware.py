"""ASGI middleware, written as plain ASGI (no per-request task or copy of the body):
request ids, security headers, metrics, and cookie sessions for the pages only."""

from __future__ import annotations

import inspect
import secrets
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"object-src 'none'; base-uri 'self'; form-action 'self' http: https:; "
        b"frame-ancestors 'none'",
    ),
]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "reload_http_requests_total",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "reload_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )


class EdgeMiddleware:
    """Request id, security headers and metrics for every HTTP answer."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = secrets.token_hex(8)
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                headers.extend(SECURITY_HEADERS)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(scope["method"], path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)


class PageSessions:
    """Signed cookie sessions, only where there are pages (not on /v1/tp). The
    cookie is Secure whenever the page is served over HTTPS (directly, or behind a
    trusted proxy that says so), even if the configured base URL is plain http."""

    def __init__(self, app: ASGIApp, *args: Any, **options: Any) -> None:
        self.app = app
        self.with_sessions = SessionMiddleware(app, *args, **options)
        self.with_secure_sessions = SessionMiddleware(app, *args, **{**options, "https_only": True})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(("/v1/", "/healthz", "/metrics")):
            await self.app(scope, receive, send)
        elif scope.get("scheme") in ("https", "wss"):
            await self.with_secure_sessions(scope, receive, send)
        else:
            await self.with_sessions(scope, receive, send)


class DirectRoutes:
    """The hot path's route served straight from here, not through the framework's
    exception middleware, router and dependency solver, which cost more CPU per
    request than the route itself. The route stays declared as usual (OpenAPI,
    docs); only the dispatch is shortened. Errors go to the application's own
    exception handlers, so the answers are the same either way."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: dict[tuple[str, str], Any],
        exception_handlers: dict[Any, Callable[..., Any]],
    ) -> None:
        self.app = app
        self.routes = routes
        self.exception_handlers = exception_handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = (
            self.routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        )
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        request = Request(scope, receive)
        try:
            response = await route.endpoint(request)
        except Exception as error:
            handler = self._handler_for(error)
            if handler is None:
                raise
            answer = handler(request, error)
            response = await answer if inspect.isawaitable(answer) else answer
        await response(scope, receive, send)

    def _handler_for(self, error: Exception) -> Callable[..., Any] | None:
        for kind in type(error).__mro__:
            if kind in self.exception_handlers and kind is not Exception:
                return self.exception_handlers[kind]
        return None
