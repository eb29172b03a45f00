"""Channel and key names: the ones CONTRACT.md promises, built in one module."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from event_bus.channels import Channels
from event_bus.codec import EventRegistry
from event_bus.events import INSTRUMENT_KINDS, Event
from event_bus.system import ControlCommand, Heartbeat

channel_registry = EventRegistry()


@channel_registry.register
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Trade(Event):
    """An instrument event: its channel carries its symbol."""

    kind = "tick"

    symbol: str
    price: float


def test_instrument_kinds_are_the_contracts() -> None:
    """Instrument events are exactly ticks, bars, signals, orders and fills."""
    assert frozenset({"tick", "bar", "signal", "order", "fill"}) == INSTRUMENT_KINDS


def test_names_under_the_default_prefix() -> None:
    """The default prefix gives the names CONTRACT.md and the README use."""
    channels = Channels()
    assert {
        "fill": channels.instrument("fill", "AAPL"),
        "every bar": channels.instrument("bar", "*"),
        "heartbeat": channels.system("heartbeat"),
        "control": channels.control,
        "everything": channels.everything,
        "journal": channels.journal,
        "dead letter": channels.dead_letter,
        "alive": channels.heartbeat_key("storage"),
        "halt": channels.state_key("halt"),
    } == {
        "fill": "trading:fill:AAPL",
        "every bar": "trading:bar:*",
        "heartbeat": "trading:system:heartbeat",
        "control": "trading:control",
        "everything": "trading:*",
        "journal": "trading:journal",
        "dead letter": "trading:journal:dead",
        "alive": "trading:alive:storage",
        "halt": "trading:state:halt",
    }


def test_every_name_starts_with_the_configured_prefix() -> None:
    """CHANNEL_PREFIX replaces `trading` in every channel and key."""
    channels = Channels("paper1")
    names = [
        channels.instrument("signal", "MSFT"),
        channels.system("risk"),
        channels.control,
        channels.everything,
        channels.journal,
        channels.dead_letter,
        channels.heartbeat_key("execution"),
        channels.state_key("halt"),
    ]
    assert [name.split(":", 1)[0] for name in names] == ["paper1"] * len(names)
    assert channels.instrument("signal", "MSFT") == "paper1:signal:MSFT"


@pytest.mark.parametrize("kind", ["heartbeat", "system", "control", "", "ticks", "TICK"])
def test_instrument_refuses_a_kind_that_is_not_an_instrument_kind(kind: str) -> None:
    """Only the five instrument kinds have per-symbol channels."""
    with pytest.raises(ValueError, match="not an instrument event kind"):
        Channels().instrument(kind, "AAPL")


def test_for_event_puts_an_instrument_event_on_its_symbols_channel() -> None:
    """A tick for AAPL belongs on trading:tick:AAPL."""
    assert Channels().for_event(Trade(symbol="AAPL", price=1.0)) == "trading:tick:AAPL"


def test_for_event_puts_system_events_on_their_channels() -> None:
    """Heartbeats go to trading:system:heartbeat, operator commands to trading:control."""
    channels = Channels("t")
    heartbeat = Heartbeat(
        module="m", host="h", pid=1, started_at=datetime(2024, 1, 1, tzinfo=UTC), interval_seconds=1
    )
    assert [channels.for_event(heartbeat), channels.for_event(ControlCommand(command="halt"))] == [
        "t:system:heartbeat",
        channels.control,
    ]
