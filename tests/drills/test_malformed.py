"""The drill's malformed messages: each one is refused on every channel it is sent to."""

from __future__ import annotations

import event_bus.system  # noqa: F401  (registers the system events)
import execution.model  # noqa: F401
import market_data.model  # noqa: F401
import strategy.model  # noqa: F401
from drills.malformed import malformed_messages, target_channels
from event_bus import Channels, Codec, EventRejected


def _refused(codec: Codec, channels: Channels, channel: str, payload: bytes) -> bool:
    try:
        event = codec.decode(payload)
    except EventRejected:
        return True
    return channels.for_event(event) != channel


def test_every_malformed_message_is_refused_where_it_is_sent() -> None:
    """No payload of the storm decodes into an event that belongs on its channel."""
    channels, codec = Channels("drill"), Codec()
    messages = list(malformed_messages(channels, ("AAPL", "MSFT"), 2_000))
    accepted = [(c, p[:60]) for c, p in messages if not _refused(codec, channels, c, p)]
    assert (len(messages), accepted) == (2_000, [])
    assert {channel for channel, _ in messages} == set(target_channels(channels, ("AAPL", "MSFT")))
