"""Webhook tests run the delivery worker fast: short polls and backoffs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reload_billing.config import Settings
from tests.webhooks.receiver import Receiver

FAST = {
    "webhook_poll_seconds": 0.05,
    "webhook_backoff_seconds": 0.1,
    "webhook_backoff_max_seconds": 0.4,
    "webhook_timeout_seconds": 2.0,
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update=FAST)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    try:
        yield found
    finally:
        found.stop()
