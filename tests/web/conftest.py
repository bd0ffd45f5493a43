"""Fixtures for the pages: a real Chromium (Debian's, never a downloaded one) for the
browser tests, and a server in the production environment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from reload_billing.config import Settings
from reload_billing.testing import live
from reload_billing.testing.browser import launch as browser_launch


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = browser_launch(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def production_server(database_url: str) -> Iterator[live.LiveServer]:
    settings = Settings(
        database_url=database_url,
        secret_key="test-secret-key-not-for-production",
        environment="production",
    )
    server = live.start(settings)
    try:
        yield server
    finally:
        server.stop()
