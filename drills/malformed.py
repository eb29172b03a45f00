"""Malformed messages: every way a payload can be wrong, on every channel the daemon reads."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from fnmatch import fnmatchcase

import redis.asyncio as aioredis

from event_bus import Channels

BATCH = 500


def bad_payloads() -> list[bytes]:
    """Payloads the codec must refuse (or refuse on that channel); none may crash a reader."""
    return [
        b"",
        b"not json at all",
        b"\xff\xfe\x00garbage\x80",
        b"null",
        b"[]",
        b"42",
        b"{}",
        b'{"type": "NoSuchEvent", "id": "x", "ts": "2026-01-01T00:00:00Z"}',
        b'{"type": "TradeSignal"}',
        b'{"type": "TradeSignal", "symbol": "AAPL", "action": "HOLD", "quantity": 10}',
        b'{"type": "TradeSignal", "symbol": "AAPL", "action": "BUY", "quantity": "ten"}',
        b'{"type": "TradeSignal", "symbol": "AAPL", "action": "BUY", "quantity": -5}',
        b'{"type": "ControlCommand", "command": "self_destruct"}',
        b'{"type": "ControlCommand", "command": ["halt"]}',
        b'{"type": "Tick", "symbol": "AAPL", "bid": "NaN", "ts": "yesterday"}',
        b'{"type": "Bar", "symbol": "AAPL", "open": 1e999}',
        b'{"type": "Fill", "execution_id": null}',
        b'{"type": "Heartbeat", "module": "execution"}',
        b'{"type": "TradeSignal", "v": 999, "symbol": "AAPL", "action": "BUY", "quantity": 1}',
        b'{"type": "TradeSignal"' + b", " * 10 + b"}",
        b"[" * 10_000 + b"]" * 10_000,
        json.dumps({"type": "Tick", "symbol": "X" * 100_000}).encode(),
        b'{"type": "TradeSignal", "symbol": "AAPL", "action": "BUY", "quantity": 10,',
    ]


def target_channels(channels: Channels, symbols: Sequence[str]) -> list[str]:
    """Every channel the daemon subscribes to: the control channel and, per symbol, its ticks
    and signals (execution) and its bars and fills (strategy)."""
    per_symbol = [
        channels.instrument(kind, symbol)
        for symbol in symbols
        for kind in ("tick", "signal", "bar", "fill")
    ]
    return [channels.control, *per_symbol]


def malformed_messages(
    channels: Channels, symbols: Sequence[str], count: int
) -> Iterator[tuple[str, bytes]]:
    """`count` (channel, payload) pairs, every payload on every channel in turn."""
    targets = target_channels(channels, symbols)
    payloads = bad_payloads()
    pairs = itertools.cycle([(channel, payload) for channel in targets for payload in payloads])
    return itertools.islice(pairs, count)


async def publish_malformed(
    client: aioredis.Redis,
    channels: Channels,
    symbols: Sequence[str],
    count: int,
    own_patterns: Sequence[str] = (),
) -> int:
    """PUBLISH `count` malformed messages; how many deliveries the daemon got (PUBLISH's count
    of receivers, less the drill's own pattern subscriptions)."""
    delivered = 0
    messages = list(malformed_messages(channels, symbols, count))
    for start in range(0, len(messages), BATCH):
        batch = messages[start : start + BATCH]
        async with client.pipeline(transaction=False) as pipe:
            for channel, payload in batch:
                pipe.publish(channel, payload)
            receivers = await pipe.execute()
        for (channel, _), received in zip(batch, receivers, strict=True):
            ours = sum(1 for pattern in own_patterns if fnmatchcase(channel, pattern))
            delivered += int(received) - ours
    return delivered
