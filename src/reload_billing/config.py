"""Settings, read from the environment with the ``RELOAD_`` prefix."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./.reload/reload.db"


class Settings(BaseSettings):
    """Everything an operator can set. See README, "Configuration"."""

    model_config = SettingsConfigDict(env_prefix="RELOAD_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    environment: Literal["sandbox", "production"] = "sandbox"
    platform_fee_percent: Decimal = Field(default=Decimal(5), ge=0, le=100)
    secret_key: str = ""
    token_ttl_days: int = Field(default=90, ge=1)
    auth_code_ttl_seconds: int = Field(default=600, ge=10)
    base_url: str = "http://127.0.0.1:8000"
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Request headers, all together (more: 431); a reverse proxy may bound them first.
    max_header_bytes: int = Field(default=32_768, ge=1024)
    # Group commit: how many write requests may share one database transaction.
    write_batch_size: int = Field(default=256, ge=1)
    write_workers: int = Field(default=0, ge=0)
    log_level: str = "info"
    # The developer API's rate limit per client (per server process): a token bucket
    # refilled at rate_limit_per_second, holding up to rate_limit_burst; beyond it
    # calls get 429 with Retry-After. 0 turns it off. The default stays above what
    # one process serves, so that only a runaway client meets it; lower it on a
    # server shared by many organizations.
    rate_limit_per_second: float = Field(default=10_000, ge=0)
    rate_limit_burst: int = Field(default=20_000, ge=1)
    # Webhook delivery: a worker runs inside `reload serve` unless turned off here
    # (then run `reload worker`). Retries back off exponentially from
    # webhook_backoff_seconds up to webhook_backoff_max_seconds, with jitter, for
    # webhook_retry_hours after the event; then the delivery is marked failed.
    webhook_worker: bool = True
    webhook_poll_seconds: float = Field(default=1.0, gt=0)
    webhook_backoff_seconds: float = Field(default=10.0, gt=0)
    webhook_backoff_max_seconds: float = Field(default=3600.0, gt=0)
    webhook_retry_hours: float = Field(default=24.0, gt=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_concurrency: int = Field(default=8, ge=1)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def resolved_secret_key(self) -> str:
        """The key that signs cookies; made and kept beside an embedded database."""
        if self.secret_key:
            return self.secret_key
        key_file = Path(".reload") / "secret_key"
        if key_file.exists():
            return key_file.read_text().strip()
        import secrets

        key_file.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        key_file.write_text(key)
        key_file.chmod(0o600)
        return key


@lru_cache
def get_settings() -> Settings:
    return Settings()
