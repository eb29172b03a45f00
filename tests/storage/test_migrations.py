"""Alembic migrations: an empty database is brought to the models' schema, and stays there; the
SQLite engine's settings."""

from __future__ import annotations

import os
import sqlite3

from sqlalchemy import inspect

import storage.engine
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


def test_sqlite_wal_file_is_cut_back_once_a_long_reader_lets_go(tmp_path, monkeypatch) -> None:
    """A reader holding a snapshot stops checkpoints and the log grows; once it lets go and the
    next commits checkpoint, the file is cut back to the limit instead of keeping its size."""
    monkeypatch.setattr(storage.engine, "WAL_SIZE_LIMIT", 2**20)
    path = tmp_path / "trading.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE blobs (b BLOB)")
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM blobs").fetchone()  # a snapshot, held
    for _ in range(20):
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO blobs VALUES (?)", [(os.urandom(1_000),) for _ in range(400)]
            )
    grown = os.path.getsize(f"{path}-wal")
    reader.execute("COMMIT")
    reader.close()
    for _ in range(2):  # the first checkpoints everything, the next restarts the log, cut back
        with engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO blobs VALUES (x'00')")
    after = os.path.getsize(f"{path}-wal")  # before the engine closes (the last close deletes it)
    engine.dispose()
    assert grown > 8 * 2**20
    assert after <= 2**20
