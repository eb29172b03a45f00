"""The bar aggregator on hand-made 5-second bars: exact OHLCV, alignment, gaps, repeats, ids."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from market_data.bars import BarAggregator, Slice, bar_id
from market_data.model import Bar

T0 = 1_700_000_040  # a multiple of 60: a minute starts here


def piece(offset: int, o: float, h: float, low: float, c: float, v: float = 100.0) -> Slice:
    return Slice(start=T0 + offset, open=o, high=h, low=low, close=c, volume=v, wap=c, count=2)


def expected_bar(
    offset: int,
    seconds: int,
    ohlc: tuple[float, float, float, float],
    volume: float,
    **extra: object,
) -> Bar:
    start = datetime.fromtimestamp(T0 + offset, UTC)
    values: dict[str, object] = {"wap": None, "trade_count": None, **extra}
    return Bar(
        id=bar_id("AAPL", start, seconds),
        ts=values.pop("ts"),  # type: ignore[arg-type]
        symbol="AAPL",
        start=start,
        seconds=seconds,
        open=ohlc[0],
        high=ohlc[1],
        low=ohlc[2],
        close=ohlc[3],
        volume=volume,
        **values,  # type: ignore[arg-type]
    )


def feed(aggregator: BarAggregator, pieces: list[Slice]) -> list[Bar]:
    bars: list[Bar] = []
    for one in pieces:
        bars += aggregator.add(one)
    return bars


def test_one_minute_from_twelve_slices_is_exact() -> None:
    """Twelve slices make one 60-second bar: first open, max high, min low, last close, sums."""
    path = [10.0, 10.5, 9.8, 10.2, 10.9, 11.3, 10.1, 9.5, 9.9, 10.4, 10.0, 10.6, 10.8]
    pieces = [
        piece(
            5 * i,
            path[i],
            max(path[i], path[i + 1]) + 0.1,
            min(path[i], path[i + 1]) - 0.1,
            path[i + 1],
            v=100.0 * (i + 1),
        )
        for i in range(12)
    ]
    [bar] = feed(BarAggregator("AAPL", 60), pieces)
    turnover = sum(p.close * p.volume for p in pieces)
    assert bar == expected_bar(
        0, 60, (10.0, 11.4, 9.4, 10.8), 7800.0, ts=bar.ts, wap=turnover / 7800.0, trade_count=24
    )


def test_bars_are_emitted_when_their_last_slice_arrives() -> None:
    """A 10-second bar comes out on its second slice, not before."""
    aggregator = BarAggregator("AAPL", 10)
    assert aggregator.add(piece(0, 10, 11, 9, 10.5)) == []
    [bar] = aggregator.add(piece(5, 10.5, 12, 10, 11))
    assert bar == expected_bar(
        0, 10, (10, 12, 9, 11), 200.0, ts=bar.ts, wap=(10.5 * 100 + 11 * 100) / 200, trade_count=4
    )


def test_partial_first_bar_is_skipped_but_a_later_gap_is_emitted() -> None:
    """Subscribing mid-bar skips that bar; a bar with slices missing later (reconnect) still
    comes out, when a slice of the next bar arrives."""
    aggregator = BarAggregator("AAPL", 15)
    bars = feed(
        aggregator,
        [
            piece(5, 10, 10, 10, 10),  # mid-bar: the 0..15 bar is skipped
            piece(10, 10, 10, 10, 10),
            piece(15, 20, 21, 19, 20),  # 15..30 complete
            piece(20, 20, 22, 20, 21),
            piece(25, 21, 21, 18, 19),
            piece(30, 30, 31, 29, 30),  # 30..45 has only this slice
            piece(50, 40, 41, 39, 40),  # next bar: 30..45 comes out incomplete
        ],
    )
    assert [(b.start.timestamp() - T0, b.open, b.high, b.low, b.close, b.volume) for b in bars] == [
        (15, 20, 22, 18, 19, 300.0),
        (30, 30, 31, 29, 30, 100.0),
    ]


def test_repeated_slices_after_a_resubscription_are_ignored() -> None:
    """A slice not newer than the last one seen does not count twice."""
    aggregator = BarAggregator("AAPL", 10)
    first = piece(0, 10, 11, 9, 10)
    assert feed(aggregator, [first, first]) == []
    [bar] = aggregator.add(piece(5, 10, 10, 10, 10))
    assert (bar.volume, bar.trade_count) == (200.0, 4)


def test_bar_id_is_deterministic() -> None:
    """The same symbol, start and size give the same id; any difference gives another."""
    start = datetime.fromtimestamp(T0, UTC)
    assert bar_id("AAPL", start, 60) == bar_id("AAPL", start, 60)
    others = {bar_id("MSFT", start, 60), bar_id("AAPL", start, 30), bar_id("AAPL", start, 60)}
    assert len(others) == 3


def test_bar_size_must_be_a_multiple_of_five() -> None:
    """A bar size IB's 5-second bars cannot tile is refused."""
    with pytest.raises(ValueError, match="multiple of 5"):
        BarAggregator("AAPL", 12)
