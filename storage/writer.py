"""Writes a batch of journal entries in one transaction; writing it again changes nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, Insert, Table, func
from sqlalchemy.dialects import postgresql, sqlite

from event_bus import JournalEntry
from storage.models import OrderRow
from storage.rows import FILLS, ORDER_HISTORY, Row, rows_by_table

ORDERS: Table = OrderRow.__table__  # type: ignore[assignment]

_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}

# Fill fields IB may send after the execution itself (in its commission report).
_LATE_FILL_FIELDS = ("commission", "commission_currency", "realized_pnl")


class UnsupportedDatabase(ValueError):
    """A DATABASE_URL for a database other than SQLite or PostgreSQL."""


class RowWriter:
    """Turns journal entries into rows: inserts that ignore what is already there (by event id,
    by (symbol, start, seconds) for bars, by execution id for fills), and an upsert of each
    order's latest state beside its history.
    """

    def __init__(self, engine: Engine) -> None:
        insert = _INSERTS.get(engine.dialect.name)
        if insert is None:
            raise UnsupportedDatabase(
                f"DATABASE_URL: storage supports sqlite and postgresql, not {engine.dialect.name}"
            )
        self.engine = engine
        self._insert = insert
        self._statements: dict[Table, Insert] = {}

    def write(self, entries: list[JournalEntry]) -> int:
        """Store one batch in one transaction; returns how many rows it offered."""
        rows = rows_by_table(entries)
        with self.engine.begin() as connection:
            for table, table_rows in rows.items():
                self._write_table(connection, table, table_rows)
        return sum(map(len, rows.values()))

    def _write_table(self, connection: Connection, table: Table, rows: list[Row]) -> None:
        if table is FILLS:
            rows = _merge_by_key(rows, "execution_id", _merge_fill)
        connection.execute(self._statement(table), rows)
        if table is ORDER_HISTORY:
            latest = _merge_by_key([_latest_state(row) for row in rows], "order_key", _merge_order)
            connection.execute(self._statement(ORDERS), latest)

    def _statement(self, table: Table) -> Insert:
        if table not in self._statements:
            self._statements[table] = self._build_statement(table)
        return self._statements[table]

    def _build_statement(self, table: Table) -> Insert:
        statement: Any = self._insert(table)
        if table is ORDERS:
            return _upsert_latest_order(statement)
        if table is FILLS:
            return _upsert_late_fill_fields(statement)
        return statement.on_conflict_do_nothing()


def _upsert_latest_order(statement: Any) -> Insert:
    """Newer state wins; an older update redelivered late changes nothing; known ids stay.

    `created_at` is the time of the first update stored (of the earliest, when in order).
    """
    new, current = statement.excluded, ORDERS.c
    keep = {"order_key", "created_at", "order_id", "perm_id"}
    values = {column.name: new[column.name] for column in ORDERS.c if column.name not in keep}
    values["order_id"] = func.coalesce(new.order_id, current.order_id)
    values["perm_id"] = func.coalesce(new.perm_id, current.perm_id)
    return statement.on_conflict_do_update(
        index_elements=[current.order_key],
        set_=values,
        where=current.updated_at <= new.updated_at,
    )


def _upsert_late_fill_fields(statement: Any) -> Insert:
    """A second copy of a fill may bring its commission: fill in what was missing."""
    new, current = statement.excluded, FILLS.c
    values = {name: func.coalesce(new[name], current[name]) for name in _LATE_FILL_FIELDS}
    return statement.on_conflict_do_update(index_elements=[current.execution_id], set_=values)


def _latest_state(history: Row) -> Row:
    row = dict(history)
    row["updated_at"] = row["created_at"] = row.pop("ts")
    return row


def _merge_order(older: Row, newer: Row) -> Row:
    """Two updates of one order in a batch: the later state, with the ids known so far."""
    if newer["updated_at"] < older["updated_at"]:
        older, newer = newer, older
    merged = dict(newer)
    for name in ("order_id", "perm_id"):
        merged[name] = newer[name] if newer[name] is not None else older[name]
    merged["created_at"] = min(older["created_at"], newer["created_at"])
    return merged


def _merge_fill(first: Row, second: Row) -> Row:
    merged = dict(first)
    for name in _LATE_FILL_FIELDS:
        if merged[name] is None:
            merged[name] = second[name]
    return merged


def _merge_by_key(rows: list[Row], key: str, merge: Any) -> list[Row]:
    """One row per key (an upsert may not touch a row twice in one statement)."""
    merged: dict[Any, Row] = {}
    for row in rows:
        merged[row[key]] = merge(merged[row[key]], row) if row[key] in merged else row
    return list(merged.values())
