"""Helpers for the page tests: a cookie-keeping HTTP client that fills forms like a
browser, usage reports through the API, PKCE pairs."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import secrets
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx

from tests.helpers import post

PASSWORD = "correct-horse-battery"


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:2000]
    return match.group(1)


class PageClient:
    """What a browser does with forms: keep the cookie, send the page's CSRF token."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)
        self.token = ""

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.get(path, **kwargs)
        found = re.search(r'name="csrf_token" value="([^"]+)"', response.text)
        if found:
            self.token = found.group(1)
        return response

    def submit(
        self, path: str, data: dict[str, str] | None = None, *, page: str | None = None
    ) -> httpx.Response:
        """POST a form, with the CSRF token of ``page`` (or of the last page seen)."""
        if page is not None or not self.token:
            self.get(page or "/signin")
        return self.http.post(path, data={"csrf_token": self.token, **(data or {})})

    def sign_in(
        self, email: str, password: str = PASSWORD, *, developer: bool = False
    ) -> httpx.Response:
        path = "/developer/signin" if developer else "/signin"
        response = self.submit(path, {"email": email, "password": password}, page=path)
        assert response.status_code == 303, response.text[:1000]
        return response

    def close(self) -> None:
        self.http.close()


@contextlib.contextmanager
def page_client(server: Any) -> Iterator[PageClient]:
    client = PageClient(server.url)
    try:
        yield client
    finally:
        client.close()


def developer_email(tenant: Any) -> str:
    """The tenant fixture's organization owner (``devN@`` beside ``userN@``)."""
    return str(tenant.user_email).replace("user", "dev", 1)


def report(client: httpx.Client, agent_id: str, cost: str, **fields: Any) -> dict[str, Any]:
    """Report a usage through the API; the record as answered."""
    body: dict[str, Any] = {
        "aiAgentId": agent_id,
        "description": "Answered a question",
        "totalCost": Decimal(cost),
        "chargeUser": True,
    }
    body.update(fields)
    response = post(client, "/v1/tp/usage", body)
    assert response.status_code in (201, 402), response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return verifier, challenge
