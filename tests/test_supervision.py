"""Supervision: failed modules are rebuilt; what cannot be repaired ends the process."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator

import pytest

import main
from event_bus import Channels, RedisEventBus
from execution.guard import GuardRefused
from tests.helpers import eventually


class FakeModule:
    """A module whose one vital task fails, or refuses to trade, when told to."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.fail = asyncio.Event()
        self.refuse = asyncio.Event()
        self.stopped = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._work())

    async def _work(self) -> None:
        await self.fail.wait()
        raise RuntimeError(f"{self.name} broke")

    def vital_tasks(self) -> list[asyncio.Task[None]]:
        return [self._task] if self._task is not None else []

    async def wait_refused(self) -> GuardRefused:
        await self.refuse.wait()
        return GuardRefused("account U1234567 is not a paper account")

    async def stop(self) -> None:
        self.stopped = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class Builder:
    """Builds fake modules and remembers every one it built, by name."""

    def __init__(self) -> None:
        self.built: dict[str, list[FakeModule]] = {}

    def __call__(self, name: str) -> FakeModule:
        module = FakeModule(name)
        self.built.setdefault(name, []).append(module)
        return module

    def latest(self, name: str) -> FakeModule:
        return self.built[name][-1]


@pytest.fixture
async def daemon(
    redis_url: str, channels: Channels, clean_keys: None
) -> AsyncIterator[tuple[main.Daemon, Builder]]:
    builder = Builder()
    bus = RedisEventBus.from_url(redis_url, channels=channels)
    supervised = main.Daemon(["storage", "strategy"], builder, bus)
    await supervised.start()
    yield supervised, builder
    await supervised.stop()


async def test_a_failed_module_is_rebuilt_and_the_others_left_alone(
    daemon: tuple[main.Daemon, Builder],
) -> None:
    """The strategy's vital task dies: a new strategy runs; storage was never touched."""
    supervised, builder = daemon
    watching = asyncio.create_task(supervised.watch())
    first = builder.latest("strategy")
    first.fail.set()
    await eventually(lambda: len(builder.built["strategy"]) == 2, timeout=5)
    assert first.stopped
    assert [module.name for module in supervised.modules] == ["storage", "strategy"]
    assert supervised.modules[1] is builder.latest("strategy")
    assert builder.built["storage"] == [supervised.modules[0]] and not supervised.modules[0].stopped
    assert not watching.done()
    watching.cancel()


async def test_a_module_that_keeps_failing_ends_the_daemon_with_exit_1(
    daemon: tuple[main.Daemon, Builder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the restart budget the daemon gives up rather than run half-alive."""
    supervised, builder = daemon
    monkeypatch.setattr(main, "RESTARTS_ALLOWED", 2)
    watching = asyncio.create_task(supervised.watch())
    for built in (1, 2, 3):
        await eventually(lambda n=built: len(builder.built["storage"]) == n, timeout=5)
        builder.latest("storage").fail.set()
    assert await asyncio.wait_for(watching, 5) == main.EXIT_FAULT
    assert len(builder.built["storage"]) == 3


async def test_a_refusal_to_trade_is_returned(daemon: tuple[main.Daemon, Builder]) -> None:
    """A module's guard refusal ends the watch with the refusal (exit code 3 in main)."""
    supervised, builder = daemon
    watching = asyncio.create_task(supervised.watch())
    builder.latest("storage").refuse.set()
    refusal = await asyncio.wait_for(watching, 5)
    assert isinstance(refusal, GuardRefused) and "U1234567" in str(refusal)


async def test_a_dead_bus_ends_the_daemon_with_exit_1(daemon: tuple[main.Daemon, Builder]) -> None:
    """Without its bus the process is useless: the watch says so at once."""
    supervised, _ = daemon
    watching = asyncio.create_task(supervised.watch())
    supervised.bus.vital_tasks()[0].cancel()
    assert await asyncio.wait_for(watching, 5) == main.EXIT_FAULT


def test_start_up_is_frozen_after_its_garbage_is_collected() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector frees it

    garbage = Node()
    gone = weakref.ref(garbage)
    del garbage
    kept = Node()
    try:
        main.freeze_start_up()
        assert gone() is None  # collected, not frozen for the life of the process
        assert gc.get_freeze_count() > 0
        assert not any(obj is kept for obj in gc.get_objects())  # exempt from collections
    finally:
        gc.unfreeze()
    assert any(obj is kept for obj in gc.get_objects())
