"""Schema migrations with Alembic, configured in code: upgrade at start-up and by a command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from config import masked_url
from storage.engine import engine_for
from storage.models import Base

log = structlog.get_logger()

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str = "") -> Config:
    """The Alembic configuration, for `command.*` (e.g. a new revision by a developer)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest migration this code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "storage/migrations/versions has no revision"
    return head


def current_revision(url_or_engine: str | Engine) -> str | None:
    """The revision the database is at (None when it was never migrated)."""
    with engine_for(url_or_engine) as engine, engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade_database(url_or_engine: str | Engine) -> str:
    """Bring the database to the newest schema (creating it when empty); returns the revision."""
    with engine_for(url_or_engine) as engine, engine.begin() as connection:
        before = MigrationContext.configure(connection).get_current_revision()
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    after = head_revision()
    if before != after:
        url = masked_url(engine.url.render_as_string(hide_password=False))
        log.info("database_upgraded", url=url, from_revision=before, to_revision=after)
    return after


def schema_differences(url_or_engine: str | Engine) -> list[Any]:
    """Differences between the models and the database (empty when they match): `alembic check`."""
    with engine_for(url_or_engine) as engine, engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))
