"""Writes examples/sample_bars.csv: one trading day of 1-minute bars, the same on every run."""

from __future__ import annotations

import csv
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

OPEN_AT = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)  # 09:30 New York
BARS = 390
SEED = 20240102


def sample_rows() -> list[list[str]]:
    """A random walk with a slow swing in its drift, so trends and reversals both appear."""
    generator = random.Random(SEED)
    rows, close = [], 100.0
    for index in range(BARS):
        drift = 0.03 * math.sin(index / 40)
        open_ = close
        close = max(1.0, open_ + drift + generator.gauss(0, 0.12))
        high = max(open_, close) + abs(generator.gauss(0, 0.05))
        low = min(open_, close) - abs(generator.gauss(0, 0.05))
        volume = generator.randint(500, 5_000)
        start = OPEN_AT + timedelta(minutes=index)
        prices = (f"{value:.2f}" for value in (open_, high, low, close))
        rows.append([start.strftime("%Y-%m-%dT%H:%M:%SZ"), *prices, str(volume)])
        close = float(f"{close:.2f}")
    return rows


def main() -> None:
    path = Path(__file__).with_name("sample_bars.csv")
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["timestamp", "open", "high", "low", "close", "volume"])
        writer.writerows(sample_rows())
    print(f"wrote {BARS} bars to {path}")


if __name__ == "__main__":
    main()
