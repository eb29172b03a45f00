"""This process's decision per signal id, kept while a copy of the signal could still count."""

from __future__ import annotations

import heapq
from datetime import datetime, timedelta

from execution.risk import signal_expiry
from strategy.model import TradeSignal

# How long past its signal's expiry a decision is still remembered: slack for a clock that steps
# back, beyond which remembering it protects nothing (a copy is refused as expired anyway).
KEPT_AFTER_EXPIRY = timedelta(hours=1)


class Decisions:
    """signal id -> the decision this process took on it: the in-process half of "one signal id,
    one decision" (the claim in `ExecutionState` is the durable half).

    A decision is forgotten `KEPT_AFTER_EXPIRY` after its signal expired (its `expires_at`, else
    its timestamp plus `max_age`, as `check_signal` has it). A copy of the signal that arrives
    later is refused as expired before it is claimed, so forgetting cannot let it through; and
    what a daemon running for weeks remembers is the last hour or so of signals, not all of them.
    """

    def __init__(self, max_age: timedelta) -> None:
        self.max_age = max_age
        self._decisions: dict[str, str] = {}
        self._expiry: list[tuple[datetime, str]] = []  # heap of (forget at, signal id)

    def begin(self, signal: TradeSignal, now: datetime) -> None:
        """Mark `signal` as being decided (before any await), forgetting what has expired."""
        self.forget_expired(now)
        self._decisions[signal.id] = "deciding"
        expires = signal_expiry(signal, self.max_age)
        heapq.heappush(self._expiry, (expires + KEPT_AFTER_EXPIRY, signal.id))

    def forget_expired(self, now: datetime) -> None:
        while self._expiry and self._expiry[0][0] < now:
            _, signal_id = heapq.heappop(self._expiry)
            self._decisions.pop(signal_id, None)

    def __setitem__(self, signal_id: str, decision: str) -> None:
        """The decision taken on a signal `begin` marked (what it was, for the log)."""
        if signal_id in self._decisions:
            self._decisions[signal_id] = decision

    def __getitem__(self, signal_id: str) -> str:
        return self._decisions[signal_id]

    def __contains__(self, signal_id: object) -> bool:
        return signal_id in self._decisions

    def __len__(self) -> int:
        return len(self._decisions)
