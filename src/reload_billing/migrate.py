"""Schema migrations (Alembic), runnable from the CLI and on start-up."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from .db import disposable, normalize_url
from .ledger import service as ledger

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def upgrade(url: str) -> str:
    """Bring the database at ``url`` to the newest schema; returns its revision."""
    config = alembic_config(url)
    engine = disposable(url)
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            ledger.ensure_system_accounts(conn)
        return current(url) or ""
    finally:
        engine.dispose()


def current(url: str) -> str | None:
    engine = disposable(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head() or ""
