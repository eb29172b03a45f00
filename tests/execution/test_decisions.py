"""What execution remembers of its decisions, and for how long."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from execution.decisions import KEPT_AFTER_EXPIRY, Decisions
from strategy.model import TradeSignal

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
MAX_AGE = timedelta(seconds=60)
SECOND = timedelta(seconds=1)


def signal(**fields: object) -> TradeSignal:
    return TradeSignal(symbol="AAPL", action="BUY", quantity=1, ts=T0, **fields)  # type: ignore[arg-type]


def test_a_decision_is_kept_until_an_hour_after_its_signal_is_too_old() -> None:
    decisions = Decisions(MAX_AGE)
    first = signal()
    decisions.begin(first, T0)
    decisions[first.id] = "placed"
    decisions.forget_expired(T0 + MAX_AGE + KEPT_AFTER_EXPIRY - SECOND)
    assert first.id in decisions and decisions[first.id] == "placed"
    decisions.forget_expired(T0 + MAX_AGE + KEPT_AFTER_EXPIRY + SECOND)
    assert first.id not in decisions and len(decisions) == 0


def test_a_signal_with_expires_at_is_remembered_until_then_not_for_the_age_limit() -> None:
    decisions = Decisions(MAX_AGE)
    lasting = signal(expires_at=T0 + timedelta(days=2))
    decisions.begin(lasting, T0)
    decisions.forget_expired(T0 + timedelta(days=2) + KEPT_AFTER_EXPIRY - SECOND)
    assert lasting.id in decisions
    decisions.forget_expired(T0 + timedelta(days=2) + KEPT_AFTER_EXPIRY + SECOND)
    assert lasting.id not in decisions


def test_deciding_a_signal_forgets_what_expired_and_a_late_outcome_adds_nothing() -> None:
    decisions = Decisions(MAX_AGE)
    old, new = signal(), signal()
    decisions.begin(old, T0)
    decisions.begin(new, T0 + MAX_AGE + KEPT_AFTER_EXPIRY + SECOND)
    assert old.id not in decisions and new.id in decisions
    decisions[old.id] = "rejected: expired"  # an outcome after it was forgotten
    assert old.id not in decisions and len(decisions) == 1
