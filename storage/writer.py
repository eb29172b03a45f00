"""Writes a batch of journal entries in one transaction; writing it again changes nothing."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, Float, Insert, Table, func, sql
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.compiler import SQLCompiler

from event_bus import JournalEntry
from storage.models import OrderRow
from storage.rows import FILLS, ORDER_HISTORY, ROW_BUILDERS, Row, entries_by_table

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

    SQLite gets each table's rows through the driver's `executemany`. PostgreSQL (psycopg) gets
    them through a staging table: COPY, then one INSERT ... SELECT with the same conflict rules,
    which costs this process about a fifth of the CPU per row of psycopg's `executemany`
    (3.5 against 18 us for a tick, see bench/storage_ingest.py); a role that may not create
    temporary tables gets `executemany`.
    """

    def __init__(self, engine: Engine) -> None:
        insert = _INSERTS.get(engine.dialect.name)
        if insert is None:
            raise UnsupportedDatabase(
                f"DATABASE_URL: storage supports sqlite and postgresql, not {engine.dialect.name}"
            )
        self.engine = engine
        self._insert = insert
        self._staged: bool | None = None if engine.dialect.driver == "psycopg" else False
        self._prepared: dict[Table, _PreparedInsert] = {}

    def write(self, entries: list[JournalEntry]) -> int:
        """Store one batch in one transaction; returns how many rows it offered."""
        tables = entries_by_table(entries)
        with self.engine.begin() as connection:
            for table, table_entries in tables.items():
                self._write_table(connection, table, table_entries)
        return sum(map(len, tables.values()))

    def _write_table(
        self, connection: Connection, table: Table, entries: list[JournalEntry]
    ) -> None:
        build = ROW_BUILDERS.get(table)
        if build is None:  # a column per event field: no row dict needed
            prepared = self._prepare(connection, table)
            prepared.execute_events(connection, [entry.event for entry in entries])
            return
        rows = [build(entry) for entry in entries]
        if table is FILLS:
            rows = _merge_by_key(rows, "execution_id", _merge_fill)
        self._prepare(connection, table).execute(connection, rows)
        if table is ORDER_HISTORY:
            latest = _merge_by_key([_latest_state(row) for row in rows], "order_key", _merge_order)
            self._prepare(connection, ORDERS).execute(connection, latest)

    def _prepare(self, connection: Connection, table: Table) -> _PreparedInsert:
        if table not in self._prepared:
            dialect = self.engine.dialect
            if self._staged is None:
                self._staged = _may_create_temporary_tables(connection)
            if self._staged:
                send: _Send = _CopyThenInsert.of(connection, self._build_statement, table)
                names = tuple(column.name for column in table.c)
            else:
                compiled = self._build_statement(table).compile(dialect=dialect)
                send = _ExecuteMany.of(compiled, table)
                names = send.names
            self._prepared[table] = _PreparedInsert.of(names, table, dialect, send)
        return self._prepared[table]

    def _build_statement(self, table: Table, source: Any = None) -> Insert:
        """The insert of `table`'s rows (one row of parameters, or those `source` selects) with
        the table's conflict rule."""
        statement: Any = self._insert(table)
        if source is not None:
            statement = statement.from_select([column.name for column in table.c], source)
        if table is ORDERS:
            return _upsert_latest_order(statement)
        if table is FILLS:
            return _upsert_late_fill_fields(statement)
        return statement.on_conflict_do_nothing()


_Send = Callable[[Connection, list[tuple[Any, ...]]], None]  # rows of values, in column order


@dataclass(frozen=True, slots=True)
class _PreparedInsert:
    """Rows or events to tuples of database values, in the order `send` takes them.

    What `Connection.execute(statement, rows)` does, minus its per-row generality, which cost
    two thirds of the time of a batch of ticks (see bench/storage_ingest.py). Values still go
    through each column type's own bind processor, so what is stored is the same.
    """

    names: tuple[str, ...]  # column names, in the order `send` takes their values
    values_of: Callable[[Row], tuple[Any, ...]]  # a row's values in that order
    attributes_of: Callable[[Any], tuple[Any, ...]]  # the same from an event (event_id: its id)
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]  # value index -> bind processor
    send: _Send

    @classmethod
    def of(
        cls, names: tuple[str, ...], table: Table, dialect: Dialect, send: _Send
    ) -> _PreparedInsert:
        processors = tuple(
            (index, process)
            for index, name in enumerate(names)
            if type(table.c[name].type) is not Float  # events carry floats: nothing to convert
            and (process := table.c[name].type.dialect_impl(dialect).bind_processor(dialect))
        )
        attributes = ["id" if name == "event_id" else name for name in names]
        return cls(
            names,
            operator.itemgetter(*names, names[0]),  # a tuple even for one name; the extra is cut
            operator.attrgetter(*attributes, attributes[0]),
            processors,
            send,
        )

    def execute(self, connection: Connection, rows: list[Row]) -> None:
        self.send(connection, [self._convert(self.values_of(row)) for row in rows])

    def execute_events(self, connection: Connection, events: list[Any]) -> None:
        self.send(connection, [self._convert(self.attributes_of(event)) for event in events])

    def _convert(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        converted = list(values[:-1])
        for index, process in self.processors:
            converted[index] = process(converted[index])
        return tuple(converted)


@dataclass(frozen=True, slots=True)
class _ExecuteMany:
    """An insert compiled once, executed with the driver's `executemany`."""

    sql: str
    names: tuple[str, ...]  # parameter names, in the statement's order
    positional: bool

    @classmethod
    def of(cls, compiled: SQLCompiler, table: Table) -> _ExecuteMany:
        names = tuple(
            compiled.positiontup
            or [column.name for column in table.c if column.name in compiled.binds]
        )
        return cls(compiled.string, names, bool(compiled.positiontup))

    def __call__(self, connection: Connection, parameters: list[tuple[Any, ...]]) -> None:
        if not self.positional:
            named = [dict(zip(self.names, values, strict=True)) for values in parameters]
            connection.exec_driver_sql(self.sql, named)
            return
        connection.exec_driver_sql(self.sql, parameters)


@dataclass(frozen=True, slots=True)
class _CopyThenInsert:
    """PostgreSQL: COPY the rows (binary) into a staging table, then move them with one
    INSERT ... SELECT that applies the table's conflict rule.

    The staging table is a temporary one of the database session, with the table's columns and
    none of its constraints (the table's own apply in the INSERT, raising SQLAlchemy's errors as
    before), emptied by every commit. Each batch creates it if missing: a transaction that rolled
    back took its creation with it.
    """

    create_sql: str
    copy_sql: str
    insert_sql: str
    type_oids: tuple[int, ...]  # each column's type, for COPY's binary format

    @classmethod
    def of(
        cls, connection: Connection, build: Callable[[Table, Any], Insert], target: Table
    ) -> _CopyThenInsert:
        preparer = connection.dialect.identifier_preparer
        names = [column.name for column in target.c]
        columns = ", ".join(map(preparer.quote, names))
        source = preparer.format_table(target)
        staging = sql.table(f"_staging_{target.name}", *map(sql.column, names))
        insert = build(target, sql.select(*staging.c)).compile(dialect=connection.dialect)
        driver: Any = connection.connection.driver_connection
        with driver.cursor() as cursor:
            cursor.execute(f"SELECT {columns} FROM {source} WHERE false")
            type_oids = tuple(described.type_code for described in cursor.description)
        return cls(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {preparer.quote(staging.name)}"
            f" ON COMMIT DELETE ROWS AS SELECT {columns} FROM {source} WITH NO DATA",
            f"COPY {preparer.quote(staging.name)} ({columns}) FROM STDIN (FORMAT BINARY)",
            insert.string,
            type_oids,
        )

    def __call__(self, connection: Connection, parameters: list[tuple[Any, ...]]) -> None:
        connection.exec_driver_sql(self.create_sql)
        driver: Any = connection.connection.driver_connection
        with driver.cursor() as cursor, cursor.copy(self.copy_sql) as copy:
            copy.set_types(list(self.type_oids))
            for values in parameters:
                copy.write_row(values)
        connection.exec_driver_sql(self.insert_sql)


def _may_create_temporary_tables(connection: Connection) -> bool:
    privilege = "SELECT has_database_privilege(current_database(), 'TEMPORARY')"
    return bool(connection.exec_driver_sql(privilege).scalar())


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
