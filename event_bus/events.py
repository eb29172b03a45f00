"""The event envelope every package publishes: frozen, slotted, keyword-only dataclasses."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, ClassVar

import msgspec

# A timestamp that must carry a timezone; the codec normalises it to UTC.
UtcDatetime = Annotated[datetime, msgspec.Meta(tz=True)]

# Instrument event kinds: their channel is `{prefix}:{kind}:{symbol}`.
INSTRUMENT_KINDS = frozenset({"tick", "bar", "signal", "order", "fill"})


def new_event_id() -> str:
    """A fresh event id: 32 hex characters, the Unix time in milliseconds (48 bits, as a UUID
    version 7 begins) then 80 random bits.

    Ids made later sort later, so the primary-key index each table keeps on them grows at its
    end: with random ids every insert lands on a random page of an index that soon outgrows the
    database's cache (SQLite took 19,583 rows/s for 3M ticks that way, 108,028 time-ordered;
    BENCHMARKS.md). Unique as long as no millisecond sees anywhere near 2**40 ids.
    """
    return ((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10)).hex()


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event on the bus.

    Subclasses set `kind`: an instrument kind (`tick`, `bar`, `signal`, `order`, `fill`; the class
    then has a `symbol` field) or a system channel such as `system:heartbeat` or `control`.
    `droppable` events (market data) may be dropped or conflated under pressure; all others never.
    `schema_version` rises when a field changes meaning; the codec refuses newer versions.
    `content_addressed` events published without an id get one derived from their content (see
    `codec.content_id`), so re-publishing the same manual intent does not make a second one.
    """

    id: str = field(default_factory=new_event_id)
    ts: UtcDatetime = field(default_factory=utc_now)

    kind: ClassVar[str] = ""
    droppable: ClassVar[bool] = False
    schema_version: ClassVar[int] = 1
    content_addressed: ClassVar[bool] = False
