"""Tick's checks: unrolled for speed, so compared here with the plain rule they stand for."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market_data.model import Tick

PRICES = ("bid", "ask", "last")
SIZES = ("bid_size", "ask_size", "last_size", "volume")

values = st.none() | st.sampled_from([0.0, -0.0, -1.0, math.nan, math.inf, -math.inf]) | st.floats()


def expected_error(fields: dict[str, float | None]) -> str | None:
    """The first field (prices, then sizes) that breaks the rule, as the error names it."""
    for name in PRICES:
        value = fields[name]
        if value is not None and not (value > 0 and math.isfinite(value)):
            return f"{name} must be a positive finite price"
    for name in SIZES:
        value = fields[name]
        if value is not None and not (value >= 0 and math.isfinite(value)):
            return f"{name} must be a non-negative finite size"
    return None


@given(st.fixed_dictionaries({name: values for name in PRICES + SIZES}))
def test_tick_accepts_exactly_positive_finite_prices_and_non_negative_finite_sizes(
    fields: dict[str, float | None],
) -> None:
    expected = expected_error(fields)
    if expected is None:
        tick = Tick(symbol="AAPL", **fields)
        assert [getattr(tick, name) for name in fields] == list(fields.values())
    else:
        with pytest.raises(ValueError) as raised:
            Tick(symbol="AAPL", **fields)
        assert str(raised.value).startswith(expected)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"bid": 0.0}, "bid must be a positive finite price, got 0.0"),
        ({"ask": math.nan}, "ask must be a positive finite price, got nan"),
        ({"last": math.inf}, "last must be a positive finite price, got inf"),
        ({"bid_size": -1.0}, "bid_size must be a non-negative finite size, got -1.0"),
        ({"volume": math.nan, "bid": -2.0}, "bid must be a positive finite price, got -2.0"),
    ],
)
def test_tick_names_the_bad_field(fields: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        Tick(symbol="AAPL", **fields)


def test_zero_sizes_are_valid() -> None:
    tick = Tick(symbol="AAPL", bid=1.0, bid_size=0.0, ask_size=0.0, last_size=0.0, volume=0.0)
    assert (tick.bid_size, tick.volume) == (0.0, 0.0)
