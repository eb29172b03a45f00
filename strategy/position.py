"""What a strategy holds in one symbol: its own fills, plus the last signal still in flight."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from execution.model import Fill
from strategy.model import TradeSignal

# A fill within this of the signal's quantity completes it (float sums of partial fills).
_QUANTITY_TOLERANCE = 1e-9


@dataclass
class Position:
    """One symbol as a strategy sees it.

    `quantity` is the net of the strategy's own fills (BUY adds, SELL subtracts). `in_flight` is
    the last signal sent and not yet wholly filled: until it expires it decides whether the
    strategy counts as long, so a second BUY never follows a BUY whose fill is still on its way,
    and a BUY that was never executed stops counting once execution would ignore it.
    """

    quantity: float = 0.0
    in_flight: TradeSignal | None = None
    in_flight_filled: float = 0.0
    execution_ids: set[str] = field(default_factory=set)  # fills already counted

    def is_long(self, at: datetime) -> bool:
        """Long, or about to be, at event time `at`."""
        self._forget_expired(at)
        if self.in_flight is not None:
            return self.in_flight.action == "BUY"
        return self.quantity > _QUANTITY_TOLERANCE

    def exit_quantity(self, intended: float) -> float:
        """What a SELL should close: what is filled, or the intended size while still in flight."""
        return self.quantity if self.quantity > _QUANTITY_TOLERANCE else intended

    def sent(self, signal: TradeSignal) -> None:
        self.in_flight = signal
        self.in_flight_filled = 0.0

    def apply_fill(self, fill: Fill) -> None:
        """Count `fill` once, even when the bus delivers it twice."""
        if fill.execution_id in self.execution_ids:
            return
        self.execution_ids.add(fill.execution_id)
        self.quantity += fill.quantity if fill.side == "BUY" else -fill.quantity
        if self.in_flight is not None and fill.signal_id == self.in_flight.id:
            self.in_flight_filled += fill.quantity
            if self.in_flight_filled >= self.in_flight.quantity - _QUANTITY_TOLERANCE:
                self.in_flight = None

    def _forget_expired(self, at: datetime) -> None:
        expires_at = self.in_flight.expires_at if self.in_flight is not None else None
        if expires_at is not None and at > expires_at:
            self.in_flight = None
