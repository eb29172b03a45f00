"""Pre-trade risk as pure functions: each rule accepts at its limit and refuses just past it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from execution.decisions import KEPT_AFTER_EXPIRY
from execution.risk import (
    LONGEST_SIGNAL_LIFE,
    Book,
    OrderRate,
    RealizedPnl,
    RiskLimits,
    Verdict,
    check_risk,
    check_signal,
    unrealized_pnl,
)
from execution.state import DECISION_TTL_SECONDS
from strategy.model import TradeSignal
from tests.execution.conftest import execution_settings

LIMITS = RiskLimits(
    allowed_symbols=frozenset({"AAPL", "MSFT"}),
    max_order_quantity=100,
    max_order_notional=10_000,
    max_position_per_symbol=150,
    max_gross_exposure=30_000,
    daily_loss_limit=1_000,
    max_orders_per_second=2,
    max_orders_per_minute=10,
    signal_max_age=timedelta(seconds=60),
)
MARKS = {"AAPL": 100.0, "MSFT": 100.0}
NOW = datetime(2025, 1, 2, 15, 0, tzinfo=UTC)


def signal(quantity: float = 10, action: str = "BUY", **fields: Any) -> TradeSignal:
    return TradeSignal(
        **{"symbol": "AAPL", "action": action, "quantity": quantity, "ts": NOW, **fields}
    )


def book(**fields: Any) -> Book:
    return Book(**{"marks": MARKS, **fields})


def rule_of(verdict: Verdict | None) -> str | None:
    return verdict.rule if verdict else None


@pytest.mark.parametrize(
    ("case", "trade", "state", "refused_by"),
    [
        ("allowed symbol", signal(), book(), None),
        (
            "symbol not allowed",
            signal(symbol="TSLA"),
            book(marks={"TSLA": 10.0}),
            "allowed_symbols",
        ),
        ("quantity at the limit", signal(100), book(), None),
        ("quantity past the limit", signal(101), book(), "max_order_quantity"),
        ("market order, no mark", signal(), book(marks={}), "price_unknown"),
        ("limit order, no mark", signal(order_type="LMT", limit_price=99.0), book(marks={}), None),
        ("notional at the limit", signal(100, order_type="LMT", limit_price=100.0), book(), None),
        (
            "notional past the limit",
            signal(100, order_type="LMT", limit_price=100.01),
            book(),
            "max_order_notional",
        ),
        ("notional from the mark", signal(100), book(marks={"AAPL": 100.01}), "max_order_notional"),
        ("position at the limit", signal(50), book(positions={"AAPL": 100.0}), None),
        ("position past the limit", signal(51), book(positions={"AAPL": 100.0}), "max_position"),
        (
            "working buys count",
            signal(1),
            book(positions={"AAPL": 100.0}, open_buys={"AAPL": 50.0}),
            "max_position",
        ),
        (
            "working sells do not add to a buy",
            signal(50),
            book(positions={"AAPL": 100.0}, open_sells={"AAPL": 50.0}),
            None,
        ),
        (
            "short side past the limit",
            signal(51, "SELL"),
            book(positions={"AAPL": -100.0}),
            "max_position",
        ),
        (
            "reducing an oversized position",
            signal(10, "SELL"),
            book(positions={"AAPL": 200.0}),
            None,
        ),
        ("gross at the limit", signal(10), book(gross_exposure=29_000.0), None),
        ("gross past the limit", signal(11), book(gross_exposure=29_000.0), "max_gross_exposure"),
        (
            "reducing gross over the limit",
            signal(10, "SELL"),
            book(positions={"AAPL": 50.0}, gross_exposure=40_000.0),
            None,
        ),
        ("loss just inside the limit", signal(), book(daily_pnl=-999.99), None),
        ("loss at the limit", signal(), book(daily_pnl=-1_000.0), "daily_loss_limit"),
        ("rate per second below", signal(), book(orders_last_second=1), None),
        ("rate per second at", signal(), book(orders_last_second=2), "rate_per_second"),
        ("rate per minute below", signal(), book(orders_last_minute=9), None),
        ("rate per minute at", signal(), book(orders_last_minute=10), "rate_per_minute"),
    ],
)
def test_risk_rule_boundaries(
    case: str, trade: TradeSignal, state: Book, refused_by: str | None
) -> None:
    """Each limit is allowed exactly at its value and refused one step beyond it."""
    assert rule_of(check_risk(trade, state, LIMITS)) == refused_by, case


def test_every_refusal_says_why() -> None:
    """A refusal carries the rule and a sentence naming the numbers."""
    assert check_risk(signal(101), book(), LIMITS) == Verdict(
        "max_order_quantity", "quantity 101 > MAX_ORDER_QUANTITY 100"
    )


def test_star_allows_every_symbol() -> None:
    """ALLOWED_SYMBOLS=* puts no restriction on symbols."""
    limits = RiskLimits.from_settings(execution_settings(allowed_symbols="*"))
    assert limits.allowed_symbols == frozenset()
    assert check_risk(signal(1, symbol="TSLA"), book(marks={"TSLA": 1.0}), limits) is None


@pytest.mark.parametrize(
    ("case", "trade", "refused_by"),
    [
        ("fresh", signal(), None),
        ("expires later", signal(expires_at=NOW + timedelta(seconds=1)), None),
        ("expires now", signal(expires_at=NOW), "expired"),
        ("no expiry, at the age limit", signal(ts=NOW - timedelta(seconds=60)), None),
        ("no expiry, too old", signal(ts=NOW - timedelta(seconds=61)), "expired"),
        ("fractional shares", signal(1.5), "invalid"),
        ("bad symbol", signal(symbol="aapl;"), "invalid"),
        ("market order with a limit price", signal(limit_price=10.0), "invalid"),
        ("expires at the longest life", signal(expires_at=NOW + LONGEST_SIGNAL_LIFE), None),
        (
            "expires past the longest life",
            signal(expires_at=NOW + LONGEST_SIGNAL_LIFE + timedelta(seconds=1)),
            "invalid",
        ),
        (
            "no expiry, stamped so far ahead it outlives the longest life",
            signal(ts=NOW + LONGEST_SIGNAL_LIFE),
            "invalid",
        ),
        (
            "no expiry, stamped minutes ahead (IB's clock)",
            signal(ts=NOW + timedelta(minutes=9)),
            None,
        ),
    ],
)
def test_signal_validation_and_expiry(
    case: str, trade: TradeSignal, refused_by: str | None
) -> None:
    """Malformed or stale intents are refused before any limit is looked at."""
    assert rule_of(check_signal(trade, NOW, LIMITS)) == refused_by, case


def test_order_rate_counts_the_last_second_and_minute() -> None:
    """Orders age out of the one-second window at 1 s and of the minute window at 60 s."""
    rate = OrderRate()
    for sent in (0.0, 0.5, 0.9):
        rate.record(sent)
    assert rate.counts(0.9) == (3, 3)
    assert rate.counts(1.5) == (1, 3)
    assert rate.counts(59.99) == (0, 3)
    assert rate.counts(60.5) == (0, 1)


# gaps between steps: any, and the ones that land an order exactly on a window's edge
GAPS = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 59.0, 59.5, 60.0]), st.floats(0, 61))


@given(st.lists(st.tuples(st.booleans(), GAPS)))
def test_order_rate_agrees_with_counting_every_order(steps: list[tuple[bool, float]]) -> None:
    """Orders and counts at any times going forward: the windows count exactly the orders of
    the last second and minute, as a walk over every order sent would."""
    rate, sent, now = OrderRate(), [], 0.0
    for is_order, gap in steps:
        now += gap
        if is_order:
            rate.record(now)
            sent.append(now)
        else:
            expected = (
                sum(1 for at in sent if now - at < 1.0),
                sum(1 for at in sent if now - at < 60.0),
            )
            assert rate.counts(now) == expected


@pytest.mark.parametrize(
    ("quantity", "cost", "mark", "expected"),
    [(10, 100.0, 90.0, -100.0), (-10, 100.0, 90.0, 100.0), (10, 100.0, None, 0.0)],
)
def test_unrealized_pnl(quantity: float, cost: float, mark: float | None, expected: float) -> None:
    """Long loses and short gains when the mark falls; no mark, no unrealized P&L."""
    assert unrealized_pnl(quantity, cost, mark) == pytest.approx(expected)


def test_realized_pnl_sums_each_day_and_forgets_days_before_yesterday() -> None:
    """Today's total is the sum of today's executions, a corrected execution replaces its
    figure, and executions of days before yesterday are dropped once a later day's comes."""
    today = date(2026, 11, 24)
    realized = RealizedPnl()
    realized.record("a", today - timedelta(days=3), 10.0)
    realized.record("b", today - timedelta(days=2), 5.0)
    assert len(realized) == 2 and realized.on(today - timedelta(days=3)) == 10.0
    realized.record("y", today - timedelta(days=1), 4.0)
    realized.record("c", today, 7.0)
    assert len(realized) == 2  # a and b are gone; yesterday's y stays
    assert realized.on(today) == 7.0 and realized.on(today - timedelta(days=1)) == 4.0
    assert realized.on(today - timedelta(days=2)) == 0.0
    realized.record("c", today, 9.0)  # the commission report corrected it
    assert realized.on(today) == 9.0 and len(realized) == 2
    realized.record("late", today - timedelta(days=5), 3.0)  # an old day's, reported late
    assert realized.on(today) == 9.0 and len(realized) == 3
    realized.record("d", today, 1.0)
    assert realized.on(today) == 10.0 and len(realized) == 3  # c, d and yesterday's y


def test_a_signal_cannot_outlive_the_record_that_it_was_decided() -> None:
    """The longest life, and the hour a decision is remembered after it, end before Redis
    forgets the claim: a copy arriving later is refused as expired, never decided again."""
    assert timedelta(seconds=DECISION_TTL_SECONDS) > LONGEST_SIGNAL_LIFE + KEPT_AFTER_EXPIRY
