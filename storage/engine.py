"""Engines for SQLite (the default, a file in WAL mode) and PostgreSQL, from one URL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

# SQLite: readers never block the writer (WAL). FULL sync because a batch is acknowledged in the
# journal right after its commit: with NORMAL, a power loss could undo a commit already acked.
_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA foreign_keys=ON",
)
# The WAL file is cut back to this size once a checkpoint has emptied it. Without a limit it
# keeps the largest size it ever reached: a reader that holds a snapshot for a while (a long
# query in the `sqlite3` shell, say) stops checkpoints, the log grows with every commit
# meanwhile, and that much disk stays taken for the life of the database.
WAL_SIZE_LIMIT = 64 * 2**20


def make_engine(url: str) -> Engine:
    """An engine for `url`; a SQLite file's directory is created if missing."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    for pragma in _SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT:d}")
    cursor.close()


@contextmanager
def engine_for(url_or_engine: str | Engine) -> Iterator[Engine]:
    """The engine passed in, or one made for a URL and disposed of afterwards."""
    if isinstance(url_or_engine, Engine):
        yield url_or_engine
        return
    engine = make_engine(url_or_engine)
    try:
        yield engine
    finally:
        engine.dispose()
