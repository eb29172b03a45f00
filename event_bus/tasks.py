"""Stopping background tasks without ever hanging a shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

log = structlog.get_logger()


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None, timeout: float = 5.0) -> None:
    """Cancel `tasks` and wait for them to end, at most `timeout` seconds.

    The wait is bounded because redis-py can swallow a cancellation that lands in the middle of
    a command (redis/redis-py#2028 and its relatives): the task then carries on, and an unbounded
    `await task` would hang the daemon's shutdown. A task still running after `timeout` is logged
    and left to the event loop's end.
    """
    for task in tasks:
        if task is not None and task.done() and not task.cancelled() and task.exception():
            # it failed before this stop: say so once (asyncio would only complain at exit)
            log.warning("task_failed_before_stop", task=_name(task), error=repr(task.exception()))
    live = [task for task in tasks if task is not None and not task.done()]
    for task in live:
        task.cancel()
    if not live:
        return
    done, pending = await asyncio.wait(live, timeout=timeout)
    for task in done:
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not warn that nobody looked at it
    for task in pending:
        log.warning("task_ignored_cancellation", task=_name(task), waited_seconds=timeout)


def _name(task: asyncio.Future[Any]) -> str:
    return task.get_name() if isinstance(task, asyncio.Task) else repr(task)
