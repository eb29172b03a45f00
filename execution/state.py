"""What execution remembers across restarts: one decision per signal id, fills published, halt."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from event_bus import Channels
from event_bus.command_socket import CommandSocket

DECISION_TTL_SECONDS = 7 * 24 * 3600  # longer than any signal lives
FILLS_TTL_SECONDS = 3 * 24 * 3600  # each execution's; they are reconciled for today only

# Fill publication states
FILL_WITHOUT_COMMISSION = "without_commission"
FILL_COMPLETE = "complete"


class ExecutionState(Protocol):
    """Durable memory. Keys (under `{prefix}:state:`):

    - `signal:{signal_id}` -> JSON decision: {"decision": "placing" | "rejected" | "dry_run",
      "at": ISO time, "detail": str}; written with SET NX *before* placeOrder, so it is also
      the lock between two processes handed the same signal;
    - `fill:{execution_id}` -> FILL_WITHOUT_COMMISSION | FILL_COMPLETE, expiring after
      FILLS_TTL_SECONDS (a key each: a hash of them all expired only after three days without a
      fill, so a daemon trading every day kept every execution of its life; `fills` is that
      hash, still read for executions published before the change);
    - `halt` -> the encoded ControlCommand that halted trading (absent: trading allowed).
    """

    async def claim(
        self,
        signal_id: str,
        decision: str,
        detail: str = "",
        *,
        meanwhile: Callable[[], object] | None = None,
    ) -> bool:
        """SET NX the decision; False if `signal_id` was decided before. `meanwhile` runs once
        the claim is on its way and before its answer is read (work that overlaps the round
        trip); it is not run when the claim could not be sent (an error is raised then)."""
        ...

    async def overwrite(self, signal_id: str, decision: str, detail: str = "") -> None: ...

    async def decision(self, signal_id: str) -> dict[str, Any] | None: ...

    async def fill_state(self, execution_id: str) -> str | None: ...

    async def set_fill_state(self, execution_id: str, state: str) -> None: ...

    async def halt(self) -> bytes | None: ...

    async def set_halt(self, payload: bytes | None) -> None: ...

    async def close(self) -> None: ...


def _decision(decision: str, detail: str) -> str:
    return json.dumps({"decision": decision, "at": datetime.now(UTC).isoformat(), "detail": detail})


class RedisExecutionState:
    """`ExecutionState` in Redis, beside the bus; Redis errors propagate (callers fail closed)."""

    def __init__(self, redis: Any, channels: Channels) -> None:
        self._redis = redis
        self._channels = channels
        # The claim is the one Redis round trip before placeOrder: it has a connection of its own
        # (opened at start-up by the first `halt()`)
        self._claims = CommandSocket(redis)

    def _signal_key(self, signal_id: str) -> str:
        return self._channels.state_key(f"signal:{signal_id}")

    async def claim(
        self,
        signal_id: str,
        decision: str,
        detail: str = "",
        *,
        meanwhile: Callable[[], object] | None = None,
    ) -> bool:
        key, value = self._signal_key(signal_id), _decision(decision, detail)
        command = (b"SET", key.encode(), value.encode(), b"NX", b"EX", b"%d" % DECISION_TTL_SECONDS)
        reply = await self._claims.execute(*command, urgent=True, meanwhile=meanwhile)
        return reply is not None

    async def overwrite(self, signal_id: str, decision: str, detail: str = "") -> None:
        # right after placeOrder: the claim's connection costs the loop less than redis-py's
        key, value = self._signal_key(signal_id), _decision(decision, detail)
        command = (b"SET", key.encode(), value.encode(), b"EX", b"%d" % DECISION_TTL_SECONDS)
        await self._claims.execute(*command, urgent=True)  # the next signal waits for it

    async def decision(self, signal_id: str) -> dict[str, Any] | None:
        raw = await self._redis.get(self._signal_key(signal_id))
        if raw is None:
            return None
        try:
            parsed = json.loads(raw)
        except ValueError:
            return {"decision": "unreadable", "detail": repr(raw[:80])}
        return parsed if isinstance(parsed, dict) else {"decision": "unreadable"}

    async def fill_state(self, execution_id: str) -> str | None:
        raw = await self._redis.get(self._channels.state_key(f"fill:{execution_id}"))
        if raw is None:  # published by a version that kept them all in one hash
            raw = await self._redis.hget(self._channels.state_key("fills"), execution_id)
        return raw.decode() if isinstance(raw, bytes) else raw

    async def set_fill_state(self, execution_id: str, state: str) -> None:
        key = self._channels.state_key(f"fill:{execution_id}")
        await self._redis.set(key, state, ex=FILLS_TTL_SECONDS)

    async def halt(self) -> bytes | None:
        # Read at start-up through the claim's connection, so the first order does not open it
        raw = await self._claims.execute(b"GET", self._channels.state_key("halt").encode())
        return raw if raw is None or isinstance(raw, bytes) else str(raw).encode()

    async def set_halt(self, payload: bytes | None) -> None:
        key = self._channels.state_key("halt")
        if payload is None:
            await self._redis.delete(key)
        else:
            await self._redis.set(key, payload)

    async def close(self) -> None:
        await self._claims.close()


class MemoryExecutionState:
    """`ExecutionState` in this process only: for tests and a bus without Redis."""

    def __init__(self) -> None:
        self.decisions: dict[str, dict[str, Any]] = {}  # signal id -> decision
        self.fills: dict[str, str] = {}  # execution id -> fill publication state
        self.halt_payload: bytes | None = None

    async def claim(
        self,
        signal_id: str,
        decision: str,
        detail: str = "",
        *,
        meanwhile: Callable[[], object] | None = None,
    ) -> bool:
        claimed = signal_id not in self.decisions
        if claimed:
            self.decisions[signal_id] = json.loads(_decision(decision, detail))
        if meanwhile is not None:
            meanwhile()
        return claimed

    async def overwrite(self, signal_id: str, decision: str, detail: str = "") -> None:
        self.decisions[signal_id] = json.loads(_decision(decision, detail))

    async def decision(self, signal_id: str) -> dict[str, Any] | None:
        return self.decisions.get(signal_id)

    async def fill_state(self, execution_id: str) -> str | None:
        return self.fills.get(execution_id)

    async def set_fill_state(self, execution_id: str, state: str) -> None:
        self.fills[execution_id] = state

    async def halt(self) -> bytes | None:
        return self.halt_payload

    async def set_halt(self, payload: bytes | None) -> None:
        self.halt_payload = payload

    async def close(self) -> None:
        return None
