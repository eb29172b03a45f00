"""Execution: signals to IB orders, behind risk checks and the kill switch."""

from __future__ import annotations

from typing import Any

from config import ExecutionSettings, IBSettings
from execution.guard import GuardRefused
from execution.service import Bus, ExecutionService
from execution.state import ExecutionState, MemoryExecutionState, RedisExecutionState


def build_execution(
    settings: ExecutionSettings, ib_settings: IBSettings, bus: Bus, redis_client: Any = None
) -> ExecutionService:
    """The execution service on `bus`; its durable state lives in `redis_client` (by default the
    bus's own Redis; in process memory only when there is none, e.g. an in-memory bus)."""
    redis = redis_client if redis_client is not None else getattr(bus, "redis", None)
    state: ExecutionState = (
        RedisExecutionState(redis, bus.channels) if redis is not None else MemoryExecutionState()
    )
    return ExecutionService(settings, ib_settings, bus, state, redis_client=redis)


__all__ = ["ExecutionService", "GuardRefused", "build_execution"]
