"""Stopping background tasks: bounded, and a task that already failed is reported, not lost."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from event_bus.tasks import cancel_and_wait


async def test_a_task_that_failed_before_the_stop_is_reported_once() -> None:
    """Its error is logged with the task's name and retrieved (no 'never retrieved' at exit);
    a running task is cancelled; None is ignored."""

    async def fail() -> None:
        raise RuntimeError("boom")

    failed = asyncio.create_task(fail(), name="read-ahead")
    running = asyncio.create_task(asyncio.Event().wait(), name="forever")
    await asyncio.wait([failed])
    with capture_logs() as logs:
        await cancel_and_wait(failed, running, None, timeout=1.0)
    assert running.cancelled()
    assert [(e["event"], e["task"], e["error"]) for e in logs] == [
        ("task_failed_before_stop", "read-ahead", "RuntimeError('boom')")
    ]
    assert failed._log_traceback is False  # retrieved: asyncio will not warn about it
