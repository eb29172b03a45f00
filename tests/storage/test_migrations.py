"""Alembic migrations: an empty database is brought to the models' schema, and stays there."""

from __future__ import annotations

from sqlalchemy import inspect

from storage import current_revision, head_revision, schema_differences, upgrade_database
from storage.engine import make_engine

TABLES = {
    "alembic_version",
    "bars",
    "fills",
    "order_history",
    "orders",
    "signals",
    "system_events",
    "ticks",
}


def test_upgrade_creates_the_models_schema_in_an_empty_database(database_url: str) -> None:
    """From nothing to head; the migrated schema matches the models (`alembic check`)."""
    assert current_revision(database_url) is None
    assert upgrade_database(database_url) == head_revision()
    assert current_revision(database_url) == head_revision()
    assert schema_differences(database_url) == []
    engine = make_engine(database_url)
    assert set(inspect(engine).get_table_names()) == TABLES
    engine.dispose()


def test_upgrade_twice_changes_nothing(database_url: str) -> None:
    """Start-up runs the upgrade every time: on a current database it is a no-op."""
    upgrade_database(database_url)
    assert upgrade_database(database_url) == head_revision()
    assert schema_differences(database_url) == []


def test_sqlite_database_is_in_wal_mode(tmp_path) -> None:
    """The default SQLite file runs in WAL mode with full sync (readers never block the writer)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'trading.db'}")
    with engine.connect() as connection:
        pragmas = [
            connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "busy_timeout")
        ]
    engine.dispose()
    assert pragmas == ["wal", 2, 10000]
