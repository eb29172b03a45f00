"""Codec cost per event, encode plus validated decode: stdlib json, orjson, msgspec (ours)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from datetime import datetime

import orjson

from event_bus import Codec
from market_data.model import Tick

ROUNDS = 50_000


def _sample() -> Tick:
    return Tick(
        symbol="AAPL",
        bid=189.51,
        ask=189.53,
        last=189.52,
        bid_size=300,
        ask_size=200,
        last_size=100,
        volume=1_234_567,
    )


def _stdlib_round_trip(tick: Tick) -> Tick:
    fields = dataclasses.asdict(tick)
    fields["ts"] = tick.ts.isoformat()
    payload = json.dumps({"type": "Tick", "v": 1, **fields})
    raw = json.loads(payload)
    raw.pop("type"), raw.pop("v")
    raw["ts"] = datetime.fromisoformat(raw["ts"])
    return Tick(**raw)  # validation: the dataclass's own __post_init__ only


def _orjson_round_trip(tick: Tick) -> Tick:
    payload = orjson.dumps({"type": "Tick", "v": 1, **dataclasses.asdict(tick)})
    raw = orjson.loads(payload)
    raw.pop("type"), raw.pop("v")
    raw["ts"] = datetime.fromisoformat(raw["ts"])
    return Tick(**raw)


def _time_per_call(function: Callable[[Tick], Tick], tick: Tick) -> float:
    function(tick)
    start = time.perf_counter()
    for _ in range(ROUNDS):
        function(tick)
    return (time.perf_counter() - start) / ROUNDS * 1e6


def measure() -> list[tuple[str, float]]:
    codec = Codec()
    tick = _sample()
    assert codec.decode(codec.encode(tick)) == tick
    return [
        ("stdlib json + asdict (no type checks)", _time_per_call(_stdlib_round_trip, tick)),
        ("orjson + asdict (no type checks)", _time_per_call(_orjson_round_trip, tick)),
        (
            "msgspec, validating (event_bus.Codec)",
            _time_per_call(lambda t: codec.decode(codec.encode(t)), tick),
        ),  # type: ignore[arg-type]
    ]


def main() -> None:
    print(f"codec: encode + decode of one Tick, mean of {ROUNDS:,} rounds")
    for name, micros in measure():
        print(f"  {name:<42} {micros:6.2f} us/event")


if __name__ == "__main__":
    main()
