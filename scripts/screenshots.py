"""Screenshots of the main pages, for the README: ``make screenshots``.

Starts a Reload server on loopback with a temporary SQLite database filled with
the demo data, drives Debian's Chromium (never a downloaded browser) and saves
PNGs under docs/screenshots/: desktop (1280 px wide) and phone (375 px wide).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import secrets
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlencode

from playwright.sync_api import Page, sync_playwright

from reload_billing import demo, migrate
from reload_billing.config import Settings
from reload_billing.db import Database
from reload_billing.testing import live
from reload_billing.testing.browser import launch as browser_launch

DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 375, "height": 760}
MAX_HEIGHT = 1800


def sign_in(page: Page, url: str, email: str, password: str) -> None:
    page.goto(url)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def authorize_url(base: str, info: dict[str, str]) -> str:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    query = urlencode(
        {
            "response_type": "code",
            "client_id": info["clientId"],
            "redirect_uri": info["redirectUri"],
            "scope": "identity usage_reporting payment",
            "state": "screenshot",
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
    )
    return f"{base}/oauth/authorize?{query}"


def shoot(page: Page, out: Path, name: str) -> None:
    """The page from its top, down to at most MAX_HEIGHT pixels."""
    page.wait_for_load_state("networkidle")
    width = page.viewport_size["width"] if page.viewport_size else DESKTOP["width"]
    height = min(MAX_HEIGHT, int(page.evaluate("document.documentElement.scrollHeight")))
    clip = {"x": 0, "y": 0, "width": width, "height": height}
    page.screenshot(path=str(out / f"{name}.png"), full_page=True, clip=clip)  # type: ignore[arg-type]
    print(f"saved {out / name}.png")


def run(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/reload.db"
        migrate.upgrade(url)
        settings = Settings(database_url=url, secret_key=secrets.token_urlsafe(32))
        database = Database(url)
        try:
            info = demo.ensure_demo(database, settings, Path(tmp) / "demo.json")
        finally:
            database.close()
        server = live.start(settings)
        try:
            with sync_playwright() as playwright:
                browser = browser_launch(playwright)
                for suffix, viewport in (("", DESKTOP), ("-mobile", PHONE)):
                    context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
                    page = context.new_page()
                    page.goto(f"{server.url}/signin")
                    shoot(page, out, f"signin{suffix}")
                    sign_in(page, f"{server.url}/signin", info["userEmail"], info["userPassword"])
                    page.goto(authorize_url(server.url, info))
                    shoot(page, out, f"consent{suffix}")
                    page.goto(f"{server.url}/")
                    shoot(page, out, f"account{suffix}")
                    page.goto(f"{server.url}/usage")
                    shoot(page, out, f"account-usage{suffix}")
                    sign_in(
                        page,
                        f"{server.url}/developer/signin",
                        info["developerEmail"],
                        info["developerPassword"],
                    )
                    page.goto(f"{server.url}/developer/agents")
                    shoot(page, out, f"developer-agents{suffix}")
                    page.goto(f"{server.url}/developer/usage")
                    shoot(page, out, f"developer-usage{suffix}")
                    page.goto(f"{server.url}/developer/earnings")
                    shoot(page, out, f"developer-earnings{suffix}")
                    context.close()
                browser.close()
        finally:
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    run(parser.parse_args().out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
