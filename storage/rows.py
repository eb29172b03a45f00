"""Events to rows and back: pure, table-driven translation at the storage edge."""

from __future__ import annotations

import dataclasses
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
    row = {field.name: getattr(event, field.name) for field in dataclasses.fields(event)}
    row["event_id"] = row.pop("id")
    return row


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


def _fields_only(entry: JournalEntry) -> Row:
    return event_fields(entry.event)


# Event class -> (table, row builder). `orders` is not here: `storage.writer` derives it from
# the history rows, because it is an upsert of the latest state.
TABLE_OF: dict[type[Event], tuple[Table, Callable[[JournalEntry], Row]]] = {
    Tick: (TICKS, _fields_only),
    Bar: (BARS, _fields_only),
    TradeSignal: (SIGNALS, _fields_only),
    OrderUpdate: (ORDER_HISTORY, lambda entry: order_row(entry.event)),  # type: ignore[arg-type]
    Fill: (FILLS, _fields_only),
}


def rows_by_table(entries: list[JournalEntry]) -> dict[Table, list[Row]]:
    """The rows a batch of journal entries makes, per table, in journal order."""
    rows: dict[Table, list[Row]] = {}
    for entry in entries:
        event_type = type(entry.event)
        if event_type in NOT_STORED:
            continue
        table, build = TABLE_OF.get(event_type, (SYSTEM_EVENTS, system_event_row))
        rows.setdefault(table, []).append(build(entry))
    return rows


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
