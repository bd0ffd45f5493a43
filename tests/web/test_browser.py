"""End to end in a real Chromium: a developer signs up and sets up an app, a user
signs up, adds sandbox funds and connects it through OAuth with PKCE, the app
charges through the API, both sides see the record and download it as CSV, and
the user ends the connection. Then the pages' accessibility basics at 375 px."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from tests.helpers import post
from tests.web.helpers import PASSWORD, pkce_pair

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]


def watch_console(page: Page) -> list[str]:
    """Console errors, such as a Content-Security-Policy refusal (but not the 404 of
    the made-up redirect URI the OAuth flow lands on)."""
    errors: list[str] = []

    def seen(message: ConsoleMessage) -> None:
        if message.type == "error" and "/callback-test" not in message.location.get("url", ""):
            errors.append(f"{message.text} ({message.location.get('url')})")

    page.on("console", seen)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def download_csv(page: Page) -> list[dict[str, str]]:
    with page.expect_download() as info:
        page.get_by_role("link", name="Download CSV").click()
    text = open(info.value.path(), encoding="utf-8").read()
    return list(csv.DictReader(io.StringIO(text)))


def developer_sets_up_an_app(page: Page, url: str) -> tuple[str, str, str]:
    page.goto(f"{url}/developer/signup")
    page.get_by_label("Organization name").fill("Lumen Labs")
    page.get_by_label("Email", exact=True).fill("owner@lumen.test")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_test_id("client-secret")).to_be_visible()
    page.get_by_role("link", name="Agents", exact=True).click()
    page.get_by_label("Agent name").fill("Report Writer")
    page.get_by_role("button", name="Create agent").click()
    expect(page.get_by_text("Agent created.")).to_be_visible()
    agent_id = page.get_by_test_id("agent-id").first.inner_text()
    expect(page.get_by_role("button", name="Copy the id of Report Writer")).to_be_visible()
    page.get_by_role("link", name="Credentials").click()
    page.get_by_label("Redirect URI", exact=True).fill(f"{url}/callback-test")
    page.get_by_role("button", name="Add redirect URI").click()
    expect(page.locator("code", has_text=f"{url}/callback-test")).to_be_visible()
    page.get_by_role("button", name="Rotate secret").click()
    secret = page.get_by_test_id("client-secret").inner_text()
    client_id = page.get_by_test_id("client-id").inner_text()
    return client_id, secret, agent_id


def test_a_developer_and_a_user_from_sign_up_to_charge_and_disconnect(
    live_server, browser: Browser
):
    url = live_server.url
    developer = browser.new_page()
    developer_errors = watch_console(developer)
    client_id, secret, agent_id = developer_sets_up_an_app(developer, url)

    user = browser.new_page()
    user_errors = watch_console(user)
    user.goto(f"{url}/signup")
    user.get_by_label("First name").fill("Marie")
    user.get_by_label("Last name").fill("Curie")
    user.get_by_label("Email", exact=True).fill("marie@example.com")
    user.get_by_label("Password", exact=True).fill(PASSWORD)
    user.get_by_role("button", name="Sign up").click()
    user.get_by_label("Amount").fill("20")
    user.get_by_role("button", name="Add funds").click()
    expect(user.get_by_test_id("balance")).to_have_text("$20.00")

    verifier, challenge = pkce_pair()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": f"{url}/callback-test",
            "scope": "identity usage_reporting payment",
            "state": "xyz",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "ai_agent_ids": agent_id,
        }
    )
    user.goto(f"{url}/oauth/authorize?{query}")
    expect(
        user.get_by_role("heading", name="Connect Lumen Labs to your billing account")
    ).to_be_visible()
    user.get_by_role("button", name="Approve").click()
    user.wait_for_url(f"{url}/callback-test?**")
    params = parse_qs(urlsplit(user.url).query)
    assert params["state"] == ["xyz"]
    token = httpx.post(
        f"{url}/v1/tp/token",
        json={
            "grant_type": "authorization_code",
            "code": params["code"][0],
            "client_id": client_id,
            "client_secret": secret,
            "redirect_uri": f"{url}/callback-test",
            "code_verifier": verifier,
        },
        timeout=30,
    )
    assert token.status_code == 200, token.text
    access_token = token.json()["data"]["access_token"]

    app = httpx.Client(
        base_url=url, auth=(client_id, secret), timeout=30, headers={"X-Access-Token": access_token}
    )
    charged = post(
        app,
        "/v1/tp/usage",
        {
            "aiAgentId": agent_id,
            "description": "Wrote the quarterly report",
            "totalCost": Decimal("1.25"),
            "shortDescription": "Report",
            "usageType": "token_usage",
            "llmModel": "gpt-4o",
            "llmProvider": "openai",
            "inputTokens": 12000,
            "outputTokens": 900,
            "chargeUser": True,
        },
    )
    assert charged.status_code == 201, charged.text

    user.goto(f"{url}/usage")
    expect(user.get_by_role("cell", name="Wrote the quarterly report Report")).to_be_visible()
    expect(user.get_by_test_id("balance")).to_have_text("$18.75")
    rows = download_csv(user)
    assert [
        (r["description"], r["agent"], r["total_cost_usd"], r["charge_status"]) for r in rows
    ] == [("Wrote the quarterly report", "Report Writer", "1.25", "charged")]

    developer.get_by_role("link", name="Usage", exact=True).click()
    expect(developer.get_by_text("Wrote the quarterly report")).to_be_visible()
    expect(developer.get_by_role("cell", name="marie@example.com")).to_be_visible()
    rows = download_csv(developer)
    assert [
        (r["description"], r["user_email"], r["charged_usd"], r["platform_fee_usd"]) for r in rows
    ] == [("Wrote the quarterly report", "marie@example.com", "1.25", "0.0625")]
    developer.get_by_role("link", name="Earnings").click()
    expect(developer.get_by_test_id("gross")).to_have_text("$1.25")
    expect(developer.get_by_test_id("net")).to_have_attribute("title", "$1.1875")

    user.goto(f"{url}/")
    expect(user.get_by_role("heading", name="Lumen Labs")).to_be_visible()
    # The connection names the one agent it was granted.
    expect(user.get_by_role("definition").filter(has_text="Report Writer")).to_be_visible()
    user.get_by_role("button", name="Disconnect").click()
    expect(user.get_by_text("Disconnected.")).to_be_visible()
    assert app.get("/v1/tp/user").status_code == 401
    refused = post(
        app,
        "/v1/tp/usage",
        {"aiAgentId": agent_id, "description": "more", "totalCost": Decimal("1")},
    )
    assert refused.status_code == 401
    app.close()
    assert developer_errors == [] and user_errors == []


def test_pages_are_labelled_keyboard_usable_and_fit_375_px(live_server, browser: Browser):
    url = live_server.url
    context = browser.new_context(viewport={"width": 375, "height": 740})
    page = context.new_page()
    errors = watch_console(page)
    page.goto(f"{url}/signup")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for label, value in (
        ("First name", "Lin"),
        ("Last name", "Wu"),
        ("Email", "lin@example.com"),
        ("Password", PASSWORD),
    ):
        page.get_by_label(label, exact=True).fill(value)
    page.keyboard.press("Enter")  # submits the form from the keyboard
    page.wait_for_url(f"{url}/")
    page.goto(f"{url}/developer/signup")
    page.get_by_label("Organization name").fill("Narrow Co")
    page.get_by_label("Email", exact=True).fill("narrow@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    for path in (
        "/signin",
        "/",
        "/usage",
        "/developer",
        "/developer/agents",
        "/developer/credentials",
        "/developer/usage",
        "/developer/earnings",
        "/developer/users",
    ):
        page.goto(f"{url}{path}")
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('input:not([type=hidden]), select')]
                   .filter(el => el.labels.length === 0).map(el => el.name)"""
        )
        assert unlabelled == [], path
        nameless = page.evaluate(
            """() => [...document.querySelectorAll('button:not([hidden])')]
                   .filter(el => !el.textContent.trim()).length"""
        )
        assert nameless == 0, path
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, (path, width)
        # Every link of the main navigation is on screen, none scrolled out of view.
        hidden = page.evaluate(
            """() => [...document.querySelectorAll('.mainnav a, .mainnav button')]
                   .filter(el => el.getBoundingClientRect().right > window.innerWidth)
                   .map(el => el.textContent.trim())"""
        )
        assert hidden == [], (path, hidden)
    context.close()
    assert errors == []
