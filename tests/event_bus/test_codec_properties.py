"""Property tests: whatever bytes or JSON reach the decoder, only EventRejected comes out."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any, Literal

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import event_bus.system  # noqa: F401  (registers the system events)
from event_bus.codec import Codec, EventRegistry, EventRejected
from event_bus.events import Event, UtcDatetime

# Modest budgets: the whole file runs in a few seconds.
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

property_registry = EventRegistry()


@property_registry.register
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Everything(Event):
    """One field of every shape events use: str, int, float, enum, datetime, optional dict."""

    kind = "order"

    symbol: str
    quantity: int
    price: float
    side: Literal["BUY", "SELL"]
    placed_at: UtcDatetime
    tags: dict[str, str] | None = None


@property_registry.register
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Manual(Event):
    """A content-addressed event: decoded without an id, it gets a derived one."""

    kind = "signal"
    content_addressed = True

    symbol: str
    quantity: int


def _from_v1(fields: dict[str, Any]) -> dict[str, Any]:
    return {**fields, "price": fields["cents"] / 100}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Evolved(Event):
    """Schema v2 with an upcaster from v1, so random old payloads go through it too."""

    kind = "tick"
    schema_version = 2

    symbol: str
    price: float


property_registry.register(Evolved, upcasters={1: _from_v1})

codecs = {"global": Codec(), "private": Codec(property_registry)}

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
# Values that fit some field somewhere, so that some payloads get past validation.
plausible = st.one_of(
    json_values,
    st.sampled_from(["AAPL", "BUY", "SELL", "halt", "resume", "x", "", "1", "1.5", "true"]),
    st.sampled_from(
        ["2024-01-01T00:00:00Z", "2024-01-01T00:00:00+02:00", "2024-01-01T00:00:00", "nope"]
    ),
    st.sampled_from([0, 1, -1, 2, 1.5, 2**63, -(2**64), 1e308]),
)


# (codec, a valid payload as a dict): the seeds that `typed_payloads` mutates.
SEEDS: list[tuple[str, dict[str, Any]]] = [
    (
        "global",
        {
            "type": "Heartbeat",
            "module": "m",
            "host": "h",
            "pid": 1,
            "started_at": "2024-01-01T00:00:00Z",
            "interval_seconds": 1.5,
            "detail": {"k": "v"},
        },
    ),
    ("global", {"type": "ControlCommand", "command": "halt", "reason": "r"}),
    (
        "private",
        {
            "type": "Everything",
            "v": 1,
            "id": "e",
            "ts": "2024-01-01T00:00:00Z",
            "symbol": "AAPL",
            "quantity": 10,
            "price": 1.5,
            "side": "BUY",
            "placed_at": "2024-01-01T00:00:00+02:00",
        },
    ),
    ("private", {"type": "Manual", "symbol": "AAPL", "quantity": 10}),
    ("private", {"type": "Evolved", "v": 2, "symbol": "AAPL", "price": 1.5}),
    ("private", {"type": "Evolved", "v": 1, "symbol": "AAPL", "cents": 150}),
]


@st.composite
def typed_payloads(draw: st.DrawFn) -> tuple[Codec, bytes]:
    """A valid payload of a registered type with some fields dropped, replaced or added."""
    codec_name, seed = draw(st.sampled_from(SEEDS))
    keys = sorted(seed)
    dropped = draw(st.sets(st.sampled_from(keys), max_size=2))
    replaced = draw(
        st.dictionaries(st.sampled_from([*keys, "id", "ts", "v"]), plausible, max_size=2)
    )
    added = draw(st.dictionaries(st.text(max_size=5), json_values, max_size=2))
    fields = {key: value for key, value in seed.items() if key not in dropped}
    return codecs[codec_name], json.dumps({**added, **fields, **replaced}).encode()


def _decode_or_reject(codec: Codec, payload: bytes | str) -> Event | None:
    """Decode `payload`; a decoded event must survive a second trip through the codec."""
    try:
        decoded = codec.decode(payload)
    except EventRejected as rejected:
        assert rejected.reason
        event("rejected")
        return None
    event(f"decoded {type(decoded).__name__}")
    assert type(decoded) is codec.registry.get(type(decoded).__name__).cls  # type: ignore[union-attr]
    assert decoded.ts.utcoffset() is not None
    assert codec.decode(codec.encode(decoded)) == decoded
    return decoded


@FAST
@given(payload=st.binary(max_size=200))
def test_random_bytes_are_decoded_or_rejected(payload: bytes) -> None:
    """Random bytes never make the decoder raise anything but EventRejected."""
    _decode_or_reject(codecs["global"], payload)


@FAST
@given(payload=st.text(max_size=100))
def test_random_text_is_decoded_or_rejected(payload: str) -> None:
    """Random str payloads (as a str-decoding client would hand over) are handled the same."""
    _decode_or_reject(codecs["global"], payload)


@FAST
@given(value=json_values)
def test_random_json_is_decoded_or_rejected(value: Any) -> None:
    """Any JSON document, object or not, is decoded or rejected with a reason."""
    _decode_or_reject(codecs["global"], json.dumps(value).encode())


@FAST
@given(case=typed_payloads())
def test_registered_types_with_random_fields_are_decoded_or_rejected(
    case: tuple[Codec, bytes],
) -> None:
    """Objects naming a registered type, with random field values, never crash the decoder."""
    codec, payload = case
    _decode_or_reject(codec, payload)


@FAST
@given(
    symbol=st.text(min_size=1, max_size=10),
    quantity=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    price=st.floats(allow_nan=False, allow_infinity=False),
    side=st.sampled_from(["BUY", "SELL"]),
    placed_at=st.datetimes(min_value=datetime(2000, 1, 1), timezones=st.timezones()),
    tags=st.none() | st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)
def test_valid_events_round_trip(
    symbol: str, quantity: int, price: float, side: str, placed_at: Any, tags: Any
) -> None:
    """Every valid event, whatever its field values and time zones, survives encode-decode."""
    event = Everything(
        symbol=symbol, quantity=quantity, price=price, side=side, placed_at=placed_at, tags=tags
    )  # type: ignore[arg-type]
    decoded = _decode_or_reject(codecs["private"], codecs["private"].encode(event))
    # Compared in UTC: a local time in a DST fold never equals one in another zone (PEP 495).
    assert _in_utc(decoded) == _in_utc(event)


def _in_utc(event: Any) -> Any:
    return dataclasses.replace(event, placed_at=event.placed_at.astimezone(UTC))
