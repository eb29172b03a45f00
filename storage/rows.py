"""Events to rows and back: pure, table-driven translation at the storage edge."""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Callable
from typing import Any

import msgspec
from sqlalchemy import Table

from event_bus import Codec, Event, JournalEntry
from event_bus.system import Heartbeat
from execution.model import Fill, OrderUpdate
from market_data.model import Bar, Tick
from storage.models import (
    BarRow,
    FillRow,
    OrderHistoryRow,
    SignalRow,
    SystemEventRow,
    TickRow,
)
from strategy.model import TradeSignal

Row = dict[str, Any]

TICKS: Table = TickRow.__table__  # type: ignore[assignment]
BARS: Table = BarRow.__table__  # type: ignore[assignment]
SIGNALS: Table = SignalRow.__table__  # type: ignore[assignment]
ORDER_HISTORY: Table = OrderHistoryRow.__table__  # type: ignore[assignment]
FILLS: Table = FillRow.__table__  # type: ignore[assignment]
SYSTEM_EVENTS: Table = SystemEventRow.__table__  # type: ignore[assignment]

# Heartbeats are liveness, told by the TTL key each module refreshes; a row per beat would be
# noise that outgrows everything else, so storage skips them.
NOT_STORED: frozenset[type[Event]] = frozenset({Heartbeat})

_codec = Codec()


def event_fields(event: Event) -> Row:
    """The event's fields by name, with `id` as `event_id` (shallow: values stay as they are)."""
    names, get = _field_getter(type(event))  # type: ignore[arg-type]
    return dict(zip(names, get(event), strict=True))


@functools.cache
def _field_getter(cls: type[Event]) -> tuple[tuple[str, ...], Callable[[Event], tuple[Any, ...]]]:
    """Row keys, and one C call fetching the matching values."""
    fields = [field.name for field in dataclasses.fields(cls)]
    names = tuple("event_id" if name == "id" else name for name in fields)
    return names, operator.attrgetter(*fields)


def order_key(update: OrderUpdate) -> str:
    """What identifies an order across its updates.

    Our orders carry their signal id (IB `orderRef`) from the first update on; an external order
    has none, so it is known by IB's permanent id, else by (account, order id), else (nothing
    known yet) by the update's own id.
    """
    if update.signal_id:
        return update.signal_id
    if update.perm_id:
        return f"perm:{update.perm_id}"
    if update.order_id is not None:
        return f"order:{update.account}:{update.order_id}"
    return f"event:{update.id}"


def order_row(update: OrderUpdate) -> Row:
    """The history row of one update (the latest-state row adds created/updated times)."""
    return event_fields(update) | {"order_key": order_key(update)}


def system_event_row(entry: JournalEntry) -> Row:
    """Any event without a table of its own, kept whole as its JSON."""
    event = entry.event
    return {
        "event_id": event.id,
        "ts": event.ts,
        "type": type(event).__name__,
        "kind": type(event).kind,
        "channel": entry.channel,
        "symbol": getattr(event, "symbol", None),
        "payload": msgspec.json.decode(_codec.encode(event)),
    }


# Event class -> its table. Ticks, bars and signals are stored as they are (a column per field,
# `event_id` for `id`); the other tables have a row builder below.
TABLE_OF: dict[type[Event], Table] = {
    Tick: TICKS,
    Bar: BARS,
    TradeSignal: SIGNALS,
    OrderUpdate: ORDER_HISTORY,
    Fill: FILLS,
}

ROW_BUILDERS: dict[Table, Callable[[JournalEntry], Row]] = {
    ORDER_HISTORY: lambda entry: order_row(entry.event),  # type: ignore[arg-type]
    FILLS: lambda entry: event_fields(entry.event),
    SYSTEM_EVENTS: system_event_row,
}


def entries_by_table(entries: list[JournalEntry]) -> dict[Table, list[JournalEntry]]:
    """A batch split by the table each entry goes to, in journal order (heartbeats left out)."""
    tables: dict[Table, list[JournalEntry]] = {}
    for entry in entries:
        event_type = type(entry.event)
        if event_type not in NOT_STORED:
            tables.setdefault(TABLE_OF.get(event_type, SYSTEM_EVENTS), []).append(entry)
    return tables


# Reading back: a row mapping -> the event it was made from.


def _event_from(cls: type[Event], row: Any, **renamed: str) -> Any:
    names = {field.name for field in dataclasses.fields(cls)}
    values = {name: row[renamed.get(name, name)] for name in names if name != "id"}
    return cls(id=row[renamed.get("id", "event_id")], **values)


def tick_from_row(row: Any) -> Tick:
    return _event_from(Tick, row)


def bar_from_row(row: Any) -> Bar:
    return _event_from(Bar, row)


def signal_from_row(row: Any) -> TradeSignal:
    return _event_from(TradeSignal, row)


def fill_from_row(row: Any) -> Fill:
    return _event_from(Fill, row)


def order_from_history_row(row: Any) -> OrderUpdate:
    return _event_from(OrderUpdate, row)


def order_from_latest_row(row: Any) -> OrderUpdate:
    """The update that set an order's latest state."""
    return _event_from(OrderUpdate, row, ts="updated_at")


def system_event_from_row(row: Any) -> Event:
    return _codec.decode(msgspec.json.encode(row["payload"]))
