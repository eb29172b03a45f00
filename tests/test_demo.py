"""`main.py demo`: the whole daemon against the simulator, as a new user first runs it."""

from __future__ import annotations

import asyncio
import re
import sys
import uuid
from pathlib import Path

from tests.test_cli import MAIN, _environment


async def test_demo_trades_on_paper_and_summarises_every_event_kind(
    redis_url: str, tmp_path: Path
) -> None:
    """`demo --duration` exits 0 after market data, signals, orders and fills all happened."""
    prefix = f"test-demo-{uuid.uuid4().hex[:8]}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(MAIN),
        "demo",
        "--duration",
        "20",
        cwd=tmp_path,
        env=_environment(
            REDIS_URL=redis_url,
            CHANNEL_PREFIX=prefix,
            LOG_LEVEL="WARNING",
            DATABASE_URL=f"sqlite:///{tmp_path / 'demo.db'}",
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
    except TimeoutError:
        process.kill()
        stdout, stderr = await process.communicate()
        log = stderr.decode()[-3000:]
        raise AssertionError(f"demo did not stop in time; its log ends:\n{log}") from None
    output = stdout.decode()
    assert process.returncode == 0, stderr.decode()[-2000:]
    published = re.search(r"events published: \d+ \((.*)\)", output)
    assert published is not None, output
    kinds = {part.rsplit(" ", 1)[0] for part in published.group(1).split(", ")}
    assert {"Tick", "Bar", "TradeSignal", "OrderUpdate", "Fill"} <= kinds, output
    orders = int(re.search(r"orders received by the simulator: (\d+)", output).group(1))  # type: ignore[union-attr]
    fills = int(re.search(r"fills: (\d+)", output).group(1))  # type: ignore[union-attr]
    assert orders >= 1 and fills >= orders
    assert f"PSUBSCRIBE '{prefix}:*'" in output
    assert (tmp_path / "demo.db").exists()
