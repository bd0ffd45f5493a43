"""``reload demo`` fills three weeks of realistic usage once, through the real
services, and the ledger stays consistent."""

from __future__ import annotations

from sqlalchemy import func, select

from reload_billing import demo
from reload_billing.agents.models import agents
from reload_billing.db import now_us
from reload_billing.usage.models import usage_records
from tests.helpers import assert_ledger_ok
from tests.web.helpers import page_client

DAY_US = 86_400_000_000


def test_demo_usage_is_made_once_and_keeps_the_ledger_whole(settings, db, tmp_path, live_server):
    info = demo.ensure_demo(db, settings, tmp_path / "demo.json")
    with db.read() as conn:
        org = info["organizationId"]
        count = conn.execute(
            select(func.count()).where(usage_records.c.organization_id == org)
        ).scalar_one()
        statuses = dict(
            conn.execute(
                select(usage_records.c.failure_reason, func.count())
                .where(usage_records.c.organization_id == org)
                .group_by(usage_records.c.failure_reason)
            ).all()
        )
        refunded = conn.execute(
            select(func.count()).where(usage_records.c.refunded_amount > 0)
        ).scalar_one()
        oldest, newest = conn.execute(
            select(func.min(usage_records.c.created_at), func.max(usage_records.c.created_at))
        ).one()
        users = conn.execute(
            select(func.count(func.distinct(usage_records.c.user_id)))
        ).scalar_one()
        models = conn.execute(
            select(func.count(func.distinct(usage_records.c.llm_model)))
        ).scalar_one()
        agent_count = conn.execute(
            select(func.count()).where(agents.c.organization_id == org)
        ).scalar_one()
    assert 300 <= count <= 600
    assert agent_count == 3 and users == 3 and models >= 3
    assert statuses.get("insufficient_balance", 0) > 0
    assert statuses.get("spending_limit_exceeded", 0) > 0
    assert refunded > 0
    assert now_us() - oldest > 19 * DAY_US and newest <= now_us()
    assert_ledger_ok(db)
    # Once: a second run adds nothing.
    again = demo.ensure_demo(db, settings, tmp_path / "demo.json")
    assert again["organizationId"] == org
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(usage_records)).scalar_one() == count
    assert_ledger_ok(db)
    # The pages show it: the demo user's account and the developer's earnings.
    with page_client(live_server) as browser:
        browser.sign_in(info["userEmail"], info["userPassword"])
        usage = browser.get("/usage")
        assert usage.status_code == 200
        assert "Research Assistant" in usage.text
        assert usage.text.count('<g class="bar"') == 30  # a bar for each of 30 days
        browser.sign_in(info["developerEmail"], info["developerPassword"], developer=True)
        earnings = browser.get("/developer/earnings")
        assert "Code Reviewer" in earnings.text and "Support Copilot" in earnings.text
