"""Bars from a CSV file (`timestamp,open,high,low,close,volume`), checked row by row."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import TypeVar

from market_data.model import Bar

T = TypeVar("T")

COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")

# One parsed row: (line number, bar start, open, high, low, close, volume)
Row = tuple[int, datetime, float, float, float, float, float]


class BarFileError(ValueError):
    """A CSV that cannot be read as bars; the message names the file and line."""


def load_csv_bars(path: Path, symbol: str, *, default_seconds: int = 60) -> list[Bar]:
    """Every row of `path` as a `Bar` of `symbol`, in file order.

    A timestamp is the bar's start: ISO-8601 (UTC when it has no offset) or epoch seconds. The
    bar length is the most common gap between rows (`default_seconds` for a single row).
    Timestamps must increase. Each bar's `ts` is its end, so loading is deterministic.
    """
    rows = list(_read_rows(path))
    seconds = _bar_seconds(rows, default_seconds)
    return [_bar(path, symbol, seconds, row) for row in rows]


def _read_rows(path: Path) -> Iterator[Row]:
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        missing = [name for name in COLUMNS if name not in (reader.fieldnames or ())]
        if missing:
            raise BarFileError(f"{path}:1: missing column(s) {', '.join(missing)}")
        previous: datetime | None = None
        for record in reader:
            row = _parse(path, reader.line_num, record)
            if previous is not None and row[1] <= previous:
                raise BarFileError(f"{path}:{row[0]}: timestamp {row[1]} is not after the last")
            previous = row[1]
            yield row


def _parse(path: Path, line: int, record: dict[str, str | None]) -> Row:
    start = _field(path, line, record, "timestamp", parse_timestamp)
    open_, high, low, close, volume = (
        _field(path, line, record, name, float) for name in COLUMNS[1:]
    )
    return (line, start, open_, high, low, close, volume)


def _field(
    path: Path, line: int, record: dict[str, str | None], name: str, parse: Callable[[str], T]
) -> T:
    text = record.get(name) or ""
    try:
        return parse(text)
    except (ValueError, OverflowError) as error:
        raise BarFileError(f"{path}:{line}: bad {name} {text!r} ({error})") from None


def parse_timestamp(text: str) -> datetime:
    """ISO-8601 (UTC when naive) or epoch seconds, as an aware UTC datetime."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        moment = datetime.fromisoformat(text)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError("not a time in epoch seconds (milliseconds?)") from None


def _bar_seconds(rows: list[Row], default_seconds: int) -> int:
    gaps = Counter(int((b[1] - a[1]).total_seconds()) for a, b in pairwise(rows))
    return gaps.most_common(1)[0][0] if gaps else default_seconds


def _bar(path: Path, symbol: str, seconds: int, row: Row) -> Bar:
    line, start, open_, high, low, close, volume = row
    try:
        return Bar(
            ts=start + timedelta(seconds=seconds),
            symbol=symbol,
            start=start,
            seconds=seconds,
            open=open_,
            high=high,
            low=low,
            close=close,
            volume=volume,
        )
    except ValueError as error:
        raise BarFileError(f"{path}:{line}: {error}") from None
