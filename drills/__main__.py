"""`python -m drills` (`make soak`): a compressed trading day under every fault, then the table.

Runs the daemon for `--minutes` with many symbols and a steady flow of orders, injects every
fault in turn (the whole schedule, again and again, one fault every `--fault-interval`
seconds), settles, checks the invariants and prints them with the figures. Exit 1 if any fails.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import psutil
import structlog

from drills.drill import Drill, DrillConfig
from drills.faults import schedule
from drills.invariants import format_table
from ibsim import DEFAULT_UNIVERSE


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m drills", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    parser.add_argument("--symbols", type=int, default=40, help="instruments (default 40)")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated time per second")
    parser.add_argument(
        "--gateway-restart-seconds", type=float, default=30.0, help="connections refused"
    )
    parser.add_argument(
        "--fault-interval", type=float, default=15.0, help="seconds of calm between faults"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="logs, database, Redis files")
    return parser.parse_args(argv)


async def soak(arguments: argparse.Namespace) -> int:
    workdir = arguments.workdir or Path(tempfile.mkdtemp(prefix="soak-"))
    named = tuple(DEFAULT_UNIVERSE)[: arguments.symbols]
    config = DrillConfig(
        workdir=workdir,
        symbols=named,
        synthetic_symbols=max(0, arguments.symbols - len(named)),
        speed=arguments.speed,
        signal_interval_seconds=0.5,
        gateway_restart_seconds=arguments.gateway_restart_seconds,
        recovery_bound_seconds=45.0,
        memory_bound_mb=400.0,
        ready_timeout_seconds=120.0,
        settle_timeout_seconds=120.0,
    )
    started = time.monotonic()
    deadline = started + arguments.minutes * 60
    async with Drill(config) as drill:
        drill.start_trading()
        faults = list(schedule(arguments.gateway_restart_seconds))
        index = 0
        while (
            calm := calm_before_next(
                index, len(faults), deadline - time.monotonic(), arguments.fault_interval
            )
        ) is not None:
            await asyncio.sleep(calm)
            name, fault = faults[index % len(faults)]
            print(f"[{time.monotonic() - started:6.0f} s] {name}", flush=True)
            await fault(drill)
            drill.trader.check_alive()
            drill.storage.check_alive()
            index += 1
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))  # trading on, in calm
        await drill.settle()
        checks = drill.checks()
        figures = {
            "machine": machine(),
            "duration": f"{(time.monotonic() - started) / 60:.1f} min",
            "faults injected": str(index),
            **drill.summary(),
            "workdir": str(workdir),
        }
    print(format_table(checks, figures), flush=True)
    return 0 if all(check.passed for check in checks) else 1


def calm_before_next(
    faults_run: int, schedule_length: int, remaining: float, interval: float
) -> float | None:
    """Seconds of calm before the next fault, None when the soak is over. Every fault runs once
    however short `--minutes` (an invariant of a fault never injected could only fail), then
    faults follow each other until the time is up; none starts after it."""
    if faults_run < schedule_length:
        return interval if faults_run else 0.0
    if remaining <= interval:
        return None
    return interval


def machine() -> str:
    memory = psutil.virtual_memory().total / 2**30
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {memory:.0f} GiB, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def main() -> int:
    arguments = parse_arguments()
    # The simulator runs in this process: its order-by-order lines would bury the table.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return asyncio.run(soak(arguments))


if __name__ == "__main__":
    sys.exit(main())
