"""System events shared by every module: heartbeats and operator commands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from event_bus.codec import register
from event_bus.events import Event, UtcDatetime


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat(Event):
    """A module saying it is alive, on `trading:system:heartbeat`."""

    kind = "system:heartbeat"

    module: str
    host: str
    pid: int
    started_at: UtcDatetime
    interval_seconds: float
    detail: dict[str, str] | None = None


@register
@dataclass(frozen=True, slots=True, kw_only=True)
class ControlCommand(Event):
    """A command on `trading:control`: the kill switch (`halt`, `resume`), or `republish`: execution
    publishes every order state and fill the broker reports again (storage asks for it when the
    journal dropped events before it stored them)."""

    kind = "control"

    command: Literal["halt", "resume", "republish"]
    reason: str = ""
    issued_by: str = "operator"
