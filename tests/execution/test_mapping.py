"""Translation at the IB edge: one table from IB's status words to ours, refined by fills."""

from __future__ import annotations

import pytest

from execution.mapping import ORDER_STATUS_MAP, ib_order, order_status
from strategy.model import TradeSignal


@pytest.mark.parametrize(
    ("ib_status", "filled", "error_code", "acknowledged", "expected"),
    [
        ("PendingSubmit", 0, 0, False, "pending_submit"),
        ("ApiPending", 0, 0, False, "pending_submit"),
        ("PreSubmitted", 0, 0, False, "submitted"),
        ("Submitted", 0, 0, True, "submitted"),
        ("Submitted", 5, 0, True, "partially_filled"),
        ("PendingCancel", 5, 0, True, None),
        ("ValidationError", 0, 399, True, None),
        ("Filled", 10, 0, True, "filled"),
        ("Cancelled", 0, 0, True, "cancelled"),
        ("Cancelled", 0, 202, True, "cancelled"),
        ("ApiCancelled", 0, 0, False, "cancelled"),
        ("Cancelled", 0, 201, False, "rejected"),
        ("Cancelled", 0, 201, True, "cancelled"),
        ("Inactive", 0, 0, True, "inactive"),
        ("SomethingNew", 0, 0, True, None),
    ],
)
def test_order_status(
    ib_status: str, filled: float, error_code: int, acknowledged: bool, expected: str | None
) -> None:
    """Every IB status maps through the table; fills make a working order partially filled,
    and an error that kills an unacknowledged order is a rejection."""
    assert order_status(ib_status, filled, error_code, acknowledged) == expected


def test_every_ib_status_word_is_in_the_table() -> None:
    """The statuses TWS documents are all mapped (None means: no event)."""
    documented = {
        "PendingSubmit", "ApiPending", "PreSubmitted", "Submitted", "PendingCancel",
        "ApiCancelled", "Cancelled", "Filled", "Inactive",
    }  # fmt: skip
    assert documented <= set(ORDER_STATUS_MAP)


def test_ib_order_carries_the_signal_id_as_order_ref() -> None:
    """A LMT signal becomes a DAY limit order for the account with orderRef = signal id."""
    signal = TradeSignal(
        symbol="MSFT", action="SELL", quantity=3, order_type="LMT", limit_price=401.5
    )
    order = ib_order(signal, "DU1")
    assert (
        order.orderRef,
        order.account,
        order.action,
        order.totalQuantity,
        order.orderType,
        order.lmtPrice,
        order.tif,
    ) == (signal.id, "DU1", "SELL", 3, "LMT", 401.5, "DAY")
