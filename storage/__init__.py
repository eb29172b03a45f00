"""Storage: every event persisted once, with SQLAlchemy (SQLite by default, or PostgreSQL)."""

from storage.engine import make_engine
from storage.migrate import current_revision, head_revision, schema_differences, upgrade_database
from storage.queries import (
    Position,
    load_bars,
    open_orders,
    positions,
    realized_pnl,
    risk_rejections,
    stored_accounts,
    todays_fills,
    todays_orders,
)
from storage.service import StorageService, build_storage
from storage.writer import RowWriter, UnsupportedDatabase

__all__ = [
    "Position",
    "RowWriter",
    "StorageService",
    "UnsupportedDatabase",
    "build_storage",
    "current_revision",
    "head_revision",
    "load_bars",
    "make_engine",
    "open_orders",
    "positions",
    "realized_pnl",
    "risk_rejections",
    "schema_differences",
    "stored_accounts",
    "todays_fills",
    "todays_orders",
    "upgrade_database",
]
