"""Exponential backoff with full jitter, for loops that reconnect forever."""

from __future__ import annotations

import random


class Backoff:
    """Delays of `initial * 2**n` seconds, capped at `cap`, each drawn uniformly in [d/2, d]."""

    def __init__(
        self, initial: float = 0.1, cap: float = 30.0, *, rng: random.Random | None = None
    ):
        if initial <= 0 or cap < initial:
            raise ValueError("backoff needs 0 < initial <= cap")
        self.initial = initial
        self.cap = cap
        self.attempts = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.initial * 2**self.attempts)
        self.attempts += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempts = 0
