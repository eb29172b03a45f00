"""Column types that keep the events' values exact across SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, Dialect, Numeric
from sqlalchemy.types import TypeDecorator, TypeEngine


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp in, the same out (SQLite keeps it as naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError(f"naive timestamp {value!r}: events carry UTC timestamps")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name == "sqlite":
            return _sqlite_text  # one C call where the generic path takes four Python ones
        return super().bind_processor(dialect)


def _sqlite_text(value: datetime | None) -> str | None:
    """SQLAlchemy's SQLite DATETIME text (`2026-03-02 14:30:00.000000`) of a UTC timestamp."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        if value.utcoffset() is None:
            raise ValueError(f"naive timestamp {value!r}: events carry UTC timestamps")
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:-6]  # without its "+00:00"


class Decimal64(TypeDecorator[float]):
    """A price, quantity or amount: NUMERIC in the database, the event's float in Python.

    PostgreSQL gets the float's shortest repr as a decimal, so 0.1 is stored as exactly 0.1 and
    sums in SQL are exact; SQLite has no decimal type and stores the float itself.
    """

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return dialect.type_descriptor(Numeric(asdecimal=False))

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name == "sqlite":
            return None  # sqlite3 stores the float (or int) as it is
        return super().bind_processor(dialect)

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if isinstance(value, float) and dialect.name != "sqlite":
            return Decimal(repr(value))
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> float | None:
        return None if value is None else float(value)
