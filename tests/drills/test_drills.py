"""The short reliability drill: every fault once against the daemon as processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from drills.__main__ import calm_before_next
from drills.drill import Drill, DrillConfig
from drills.faults import run_schedule, schedule
from drills.invariants import format_table

SHORT = {
    "symbols": ("AAPL", "MSFT", "SPY"),
    "speed": 4.0,
    "gateway_restart_seconds": 3.0,
    "outage_seconds": 1.5,
    "malformed_count": 10_000,
    "recovery_bound_seconds": 30.0,
    "memory_bound_mb": 400.0,
}


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(240)
async def test_every_fault_once_leaves_nothing_lost_nothing_doubled(tmp_path: Path) -> None:
    """After every fault, fills, orders and positions agree with the broker; data resumed."""
    async with Drill(DrillConfig(workdir=tmp_path, **SHORT)) as drill:  # type: ignore[arg-type]
        drill.start_trading()
        await run_schedule(drill, schedule(SHORT["gateway_restart_seconds"]))  # type: ignore[arg-type]
        await drill.settle()
        checks = drill.checks()
        table = format_table(checks, drill.summary())
    print(table)
    failed = [check for check in checks if not check.passed]
    assert failed == [], table


def test_a_soak_runs_every_fault_once_however_short_then_until_its_time_is_up() -> None:
    """`make soak SOAK_MINUTES=1` still injects the whole schedule (its invariants need each
    fault); a longer soak repeats faults, a calm apart, and starts none after its time."""
    assert calm_before_next(0, 10, remaining=-5.0, interval=15.0) == 0.0
    assert calm_before_next(9, 10, remaining=-5.0, interval=15.0) == 15.0
    assert calm_before_next(10, 10, remaining=-5.0, interval=15.0) is None
    assert calm_before_next(10, 10, remaining=15.0, interval=15.0) is None
    assert calm_before_next(10, 10, remaining=15.1, interval=15.0) == 15.0
    assert calm_before_next(25, 10, remaining=100.0, interval=15.0) == 15.0
