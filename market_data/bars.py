"""Aggregation of IB's 5-second real-time bars into bars of the size the strategy asks for."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from market_data.model import Bar

log = structlog.get_logger()

SLICE_SECONDS = 5  # IB's real-time bars always cover 5 seconds


@dataclass(frozen=True, slots=True)
class Slice:
    """One 5-second bar, copied out of ib_async; `start` in epoch seconds."""

    start: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    wap: float | None
    count: int | None


def bar_id(symbol: str, start: datetime, seconds: int) -> str:
    """The same bar always gets the same id, so one re-published after a reconnect is one row."""
    key = f"{symbol}|{start.isoformat()}|{seconds}".encode()
    return "bar-" + hashlib.blake2b(key, digest_size=12, person=b"trading-bar").hexdigest()


@dataclass(slots=True)
class _Bucket:
    start: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    turnover: float  # sum of wap * volume, for the bar's wap
    count: int | None
    slices: int
    from_start: bool  # its first slice opened the bar

    @classmethod
    def first(cls, start: int, piece: Slice) -> _Bucket:
        bucket = cls(
            start,
            piece.open,
            piece.high,
            piece.low,
            piece.close,
            0.0,
            0.0,
            None,
            0,
            piece.start == start,
        )
        bucket.add(piece)
        return bucket

    def add(self, piece: Slice) -> None:
        self.high = max(self.high, piece.high)
        self.low = min(self.low, piece.low)
        self.close = piece.close
        self.volume += piece.volume
        self.turnover += (piece.wap if piece.wap is not None else piece.close) * piece.volume
        if piece.count is not None:
            self.count = (self.count or 0) + piece.count
        self.slices += 1


class BarAggregator:
    """Builds `seconds`-long bars aligned to the epoch from one instrument's 5-second slices.

    A bar is emitted when its last slice arrives, or, if slices went missing (a reconnect), when
    a slice of a later bar arrives. The first bar is skipped when subscribing began after it
    had opened (its open and volume would be wrong). A slice not newer than the last one seen (a
    resubscription repeating it) is ignored, so a bar is never built twice from the same data.
    """

    def __init__(self, symbol: str, seconds: int) -> None:
        if seconds <= 0 or seconds % SLICE_SECONDS:
            raise ValueError(f"bar seconds must be a positive multiple of 5, got {seconds}")
        self.symbol = symbol
        self.seconds = seconds
        self._bucket: _Bucket | None = None
        self._last_slice_start = -1
        self._emitted_any = False

    def add(self, piece: Slice) -> list[Bar]:
        """The bars this slice completes (zero, one, or two after a gap)."""
        if piece.start <= self._last_slice_start:
            return []
        self._last_slice_start = piece.start
        start = piece.start - piece.start % self.seconds
        done: list[Bar] = []
        if self._bucket is not None and self._bucket.start != start:
            done += self._finish(self._bucket)
            self._bucket = None
        if self._bucket is None:
            self._bucket = _Bucket.first(start, piece)
        else:
            self._bucket.add(piece)
        if piece.start + SLICE_SECONDS >= start + self.seconds:
            done += self._finish(self._bucket)
            self._bucket = None
        return done

    def _finish(self, bucket: _Bucket) -> list[Bar]:
        if not (bucket.from_start or self._emitted_any):
            log.info("bar_skipped_partial_first", symbol=self.symbol, start=bucket.start)
            return []
        self._emitted_any = True
        expected = self.seconds // SLICE_SECONDS
        if bucket.slices < expected:
            log.warning(
                "bar_incomplete",
                symbol=self.symbol,
                start=bucket.start,
                slices=bucket.slices,
                expected=expected,
            )
        return [self._bar(bucket)]

    def _bar(self, bucket: _Bucket) -> Bar:
        start = datetime.fromtimestamp(bucket.start, UTC)
        return Bar(
            id=bar_id(self.symbol, start, self.seconds),
            symbol=self.symbol,
            start=start,
            seconds=self.seconds,
            open=bucket.open,
            high=bucket.high,
            low=bucket.low,
            close=bucket.close,
            volume=bucket.volume,
            wap=bucket.turnover / bucket.volume if bucket.volume else None,
            trade_count=bucket.count,
        )
