"""The codec: the wire format, round trips, rejections with a reason, ids, upcasters, registry."""

from __future__ import annotations

import dataclasses
import inspect
import json
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import event_bus.system
from event_bus.codec import Codec, EventRegistry, EventRejected, registry
from event_bus.events import Event, new_event_id
from event_bus.system import ControlCommand, Heartbeat

T0 = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
T1 = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)  # "2024-05-06T07:08:09Z" = "...T09:08:09+02:00"

# Test-only events live in a private registry so the process-wide one stays as the code made it.
test_registry = EventRegistry()


@test_registry.register
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Quote(Event):
    """An instrument event with a price and a size."""

    kind = "tick"

    symbol: str
    price: float
    size: int


@test_registry.register
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Intent(Event):
    """A manual intent: published without an id, it gets one derived from its content."""

    kind = "signal"
    content_addressed = True

    symbol: str
    quantity: int


def _price_from_cents(fields: dict[str, Any]) -> dict[str, Any]:
    """Schema v1 of `PriceV2` carried `price_cents`; v2 carries `price` in currency units."""
    fields = dict(fields)
    fields["price"] = fields.pop("price_cents") / 100
    return fields


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PriceV2(Event):
    """Schema v2 of a price event: v1 payloads are upcast by `_price_from_cents`."""

    kind = "tick"
    schema_version = 2

    symbol: str
    price: float


test_registry.register(PriceV2, upcasters={1: _price_from_cents})

test_codec = Codec(test_registry)

# One sample of every event in event_bus/system.py; a new system event needs a sample here.
SYSTEM_SAMPLES: list[Event] = [
    Heartbeat(
        id="hb-1",
        ts=T0,
        module="market_data",
        host="box",
        pid=4242,
        started_at=T0 - timedelta(hours=1),
        interval_seconds=2.5,
        detail={"ib": "connected"},
    ),
    Heartbeat(
        module="storage", host="box", pid=1, started_at=T0, interval_seconds=1.0, detail=None
    ),
    ControlCommand(id="cc-1", ts=T0, command="halt", reason="fat finger", issued_by="ann@box"),
    ControlCommand(command="resume"),
]


def _system_event_classes() -> set[type[Event]]:
    return {
        cls
        for _, cls in inspect.getmembers(event_bus.system, inspect.isclass)
        if issubclass(cls, Event) and cls.__module__ == event_bus.system.__name__
    }


def _rejection(codec: Codec, payload: bytes | str) -> tuple[str, str | None]:
    with pytest.raises(EventRejected) as caught:
        codec.decode(payload)
    return caught.value.reason, caught.value.event_type


def test_samples_cover_every_system_event() -> None:
    """Every event class of event_bus/system.py is registered and has a round-trip sample."""
    classes = _system_event_classes()
    assert {type(sample) for sample in SYSTEM_SAMPLES} == classes
    assert all(registry.get(cls.__name__).cls is cls for cls in classes)  # type: ignore[union-attr]


@pytest.mark.parametrize("event", SYSTEM_SAMPLES, ids=lambda event: type(event).__name__)
def test_system_events_round_trip(event: Event) -> None:
    """Encoding then decoding a system event gives back an equal event, timestamps in UTC."""
    codec = Codec()
    decoded = codec.decode(codec.encode(event))
    assert decoded == event
    assert type(decoded) is type(event)
    assert decoded.ts.utcoffset() == timedelta(0)


def test_test_events_round_trip() -> None:
    """Test-registry events survive the round trip too, floats and ints kept apart."""
    quote = Quote(id="q-1", ts=T0, symbol="AAPL", price=189.25, size=100)
    assert test_codec.decode(test_codec.encode(quote)) == quote


def test_wire_format_is_one_flat_json_object() -> None:
    """The payload is one JSON line: type, v, id, ts (UTC with Z) and the event's fields."""
    command = ControlCommand(id="cc-1", ts=T0, command="halt", reason="r", issued_by="ann")
    payload = Codec().encode(command)
    assert b"\n" not in payload
    assert json.loads(payload) == {
        "type": "ControlCommand",
        "v": 1,
        "id": "cc-1",
        "ts": "2024-05-06T07:08:09.123456Z",
        "command": "halt",
        "reason": "r",
        "issued_by": "ann",
    }


def test_encode_puts_a_non_utc_timestamp_on_the_wire_in_utc() -> None:
    """An event made with a +02:00 timestamp goes on the wire as the same instant in UTC."""
    local = datetime(2024, 5, 6, 9, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    command = ControlCommand(id="cc-1", ts=local, command="halt")
    assert json.loads(Codec().encode(command))["ts"] == "2024-05-06T07:08:09Z"


def test_encode_refuses_a_naive_timestamp() -> None:
    """An event with a naive timestamp is refused at the publisher, not by every subscriber."""
    command = ControlCommand(ts=datetime(2024, 5, 6, 7, 8, 9), command="halt")
    with pytest.raises(ValueError, match="must be timezone-aware"):
        Codec().encode(command)


def test_decode_normalises_a_non_utc_timestamp_to_utc() -> None:
    """A payload with a +02:00 timestamp decodes to the same instant with the UTC zone."""
    payload = (
        b'{"type":"ControlCommand","id":"x","ts":"2024-05-06T09:08:09+02:00","command":"halt"}'
    )
    event = Codec().decode(payload)
    assert event == ControlCommand(id="x", ts=T1, command="halt")
    assert event.ts.tzinfo is UTC


def test_decode_accepts_str_and_fills_in_id_and_ts() -> None:
    """A minimal payload (a str, as from redis-cli) gets a fresh id and a current UTC ts."""
    before = datetime.now(UTC)
    event = Codec().decode('{"type":"ControlCommand","command":"resume"}')
    after = datetime.now(UTC)
    assert (type(event), event.command) == (ControlCommand, "resume")  # type: ignore[attr-defined]
    assert len(event.id) == 32
    assert before <= event.ts <= after


def test_event_ids_are_unique_and_sort_by_the_millisecond_they_were_made() -> None:
    """Time first, so the tables' primary-key indexes grow at their end (see new_event_id)."""
    before_ms = time.time_ns() // 1_000_000
    ids = [new_event_id() for _ in range(50_000)]
    while time.time_ns() // 1_000_000 == int(ids[-1][:12], 16):  # the next millisecond
        pass
    later = new_event_id()
    after_ms = time.time_ns() // 1_000_000

    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert before_ms <= int(ids[0][:12], 16) <= int(ids[-1][:12], 16) <= after_ms
    assert [i[:12] for i in ids] == sorted(i[:12] for i in ids)
    assert later > max(ids)


HB = '"type":"Heartbeat","module":"m","host":"h","started_at":"2024-01-01T00:00:00Z"'


@pytest.mark.parametrize(
    ("payload", "reason", "event_type"),
    [
        pytest.param(
            b"nope",
            "not a JSON event: JSON is malformed: invalid character (byte 4)",
            None,
            id="not-json",
        ),
        pytest.param(
            b"\xff\xfe",
            "not a JSON event: JSON is malformed: invalid character (byte 0)",
            None,
            id="not-utf8",
        ),
        pytest.param(
            "\ud800",
            "not a JSON event: 'utf-8' codec can't encode character '\\ud800' in position 0:"
            " surrogates not allowed",
            None,
            id="lone-surrogate-str",
        ),
        pytest.param(
            b'[{"type":"ControlCommand"}]',
            "bad envelope: Expected `object`, got `array`",
            None,
            id="json-array",
        ),
        pytest.param(
            b'{"command":"halt"}',
            "bad envelope: Object missing required field `type`",
            None,
            id="missing-type",
        ),
        pytest.param(
            b'{"type":7}',
            "bad envelope: Expected `str`, got `int` - at `$.type`",
            None,
            id="type-not-a-string",
        ),
        pytest.param(
            b'{"type":"NoSuchEvent","id":"x"}',
            "unknown event type 'NoSuchEvent'",
            "NoSuchEvent",
            id="unknown-type",
        ),
        pytest.param(
            ("{" + HB + ',"pid":"4242","interval_seconds":1}').encode(),
            "invalid Heartbeat: Expected `int`, got `str` - at `$.pid`",
            "Heartbeat",
            id="string-for-int",
        ),
        pytest.param(
            ("{" + HB + ',"pid":1,"interval_seconds":"1.5"}').encode(),
            "invalid Heartbeat: Expected `float`, got `str` - at `$.interval_seconds`",
            "Heartbeat",
            id="string-for-float",
        ),
        pytest.param(
            ("{" + HB + ',"pid":true,"interval_seconds":1}').encode(),
            "invalid Heartbeat: Expected `int`, got `bool` - at `$.pid`",
            "Heartbeat",
            id="bool-for-int",
        ),
        pytest.param(
            b'{"type":"ControlCommand","command":"sell-everything"}',
            "invalid ControlCommand: Invalid enum value 'sell-everything' - at `$.command`",
            "ControlCommand",
            id="not-an-enum-value",
        ),
        pytest.param(
            b'{"type":"ControlCommand","command":1}',
            "invalid ControlCommand: Expected `str`, got `int` - at `$.command`",
            "ControlCommand",
            id="number-for-enum",
        ),
        pytest.param(
            b'{"type":"ControlCommand","reason":"x"}',
            "invalid ControlCommand: Object missing required field `command`",
            "ControlCommand",
            id="missing-required-field",
        ),
        pytest.param(
            b'{"type":"ControlCommand","command":"halt","ts":"2024-01-01T00:00:00"}',
            "invalid ControlCommand: Expected `datetime` with a timezone component - at `$.ts`",
            "ControlCommand",
            id="naive-ts",
        ),
        pytest.param(
            ("{" + HB.replace("00Z", "00") + ',"pid":1,"interval_seconds":1}').encode(),
            "invalid Heartbeat: Expected `datetime` with a timezone component - at `$.started_at`",
            "Heartbeat",
            id="naive-field-datetime",
        ),
        pytest.param(
            b'{"type":"ControlCommand","v":2,"command":"halt"}',
            "ControlCommand schema version 2 is not supported (current 1)",
            "ControlCommand",
            id="newer-schema-version",
        ),
        pytest.param(
            b'{"type":"ControlCommand","v":0,"command":"halt"}',
            "ControlCommand schema version 0 is not supported (current 1)",
            "ControlCommand",
            id="schema-version-zero",
        ),
        pytest.param(
            b'{"type":"ControlCommand","command":"halt","x":' + b"[" * 5000 + b"]" * 5000 + b"}",
            "not a JSON event: maximum recursion depth exceeded while deserializing an object",
            None,
            id="deeply-nested",
        ),
    ],
)
def test_decode_rejects_with_a_reason(
    payload: bytes | str, reason: str, event_type: str | None
) -> None:
    """A bad payload raises EventRejected saying why, and naming the type once it is known."""
    assert _rejection(Codec(), payload) == (reason, event_type)


# A payload that starts with its type's current header (as `encode` writes it) is decoded in one
# pass; anything else goes through the envelope first. Both must give the same answers.
HEADED = b'{"type":"Quote","v":1,"id":"q-1","ts":"2024-05-06T07:08:09Z",'


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(
            HEADED + b'"symbol":"A","price":"1.5","size":1}',
            "invalid Quote: Expected `float`, got `str` - at `$.price`",
            id="wrong-field-type",
        ),
        pytest.param(
            HEADED + b'"symbol":"A","price":1.5}',
            "invalid Quote: Object missing required field `size`",
            id="missing-field",
        ),
        pytest.param(
            HEADED + b'"symbol":"A","price":1.5,"si',
            "not a JSON event: Input data was truncated",
            id="truncated",
        ),
    ],
)
def test_a_payload_with_the_current_header_is_still_checked_field_by_field(
    payload: bytes, reason: str
) -> None:
    assert test_codec.registry.by_header(payload) is not None  # the one-pass path
    assert _rejection(test_codec, payload) == (reason, "Quote" if "invalid" in reason else None)


def test_one_pass_and_envelope_first_decode_to_the_same_event() -> None:
    quote = Quote(id="q-1", ts=T0, symbol="A", price=1.5, size=3)
    encoded = test_codec.encode(quote)
    reordered = json.dumps({**json.loads(encoded), "type": "Quote"}, sort_keys=True).encode()
    assert test_codec.registry.by_header(encoded) is not None
    assert test_codec.registry.by_header(reordered) is None  # other key order: envelope first
    assert test_codec.decode(encoded) == test_codec.decode(reordered) == quote


def test_old_versions_and_content_addressed_types_take_the_envelope_path() -> None:
    old_price = b'{"type":"PriceV2","v":1,"symbol":"A","price_cents":150}'
    intent = b'{"type":"Intent","v":1,"ts":"2024-05-06T07:08:09Z","symbol":"A","quantity":1}'
    assert test_codec.registry.by_header(old_price) is None
    assert test_codec.registry.by_header(intent) is None
    assert isinstance(test_codec.decode(old_price), PriceV2)
    assert test_codec.decode(intent).id.startswith("intent-")  # still derived from its content


def test_content_addressed_event_without_id_gets_a_derived_id() -> None:
    """The same id-less intent published twice is one intent; a different one is another."""
    payload = b'{"type":"Intent","ts":"2024-05-06T07:08:09Z","symbol":"AAPL","quantity":10}'
    first, again = test_codec.decode(payload), test_codec.decode(payload)
    other = test_codec.decode(payload.replace(b"10", b"11"))
    assert first == again
    assert first.id.startswith("intent-")
    assert other.id.startswith("intent-")
    assert other.id != first.id


def test_content_addressed_event_keeps_an_id_it_was_given() -> None:
    """An intent that carries an id keeps it: only id-less payloads get a derived one."""
    payload = b'{"type":"Intent","id":"mine","ts":"2024-05-06T07:08:09Z","symbol":"A","quantity":1}'
    expected = Intent(
        id="mine", ts=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC), symbol="A", quantity=1
    )
    assert test_codec.decode(payload) == expected


def test_ordinary_event_without_id_gets_a_fresh_random_id() -> None:
    """Two decodes of one id-less ordinary payload are two events with distinct random ids."""
    payload = b'{"type":"Quote","ts":"2024-05-06T07:08:09Z","symbol":"A","price":1.5,"size":1}'
    first, second = test_codec.decode(payload), test_codec.decode(payload)
    assert first.id != second.id
    assert dataclasses.replace(first, id="") == dataclasses.replace(second, id="")


def test_upcaster_turns_an_old_payload_into_the_current_event() -> None:
    """A v1 payload of a v2 event goes through the 1->2 upcaster and decodes as v2."""
    payload = (
        b'{"type":"PriceV2","v":1,"id":"p","ts":"2024-05-06T09:08:09+02:00",'
        b'"symbol":"X","price_cents":150}'
    )
    expected = PriceV2(id="p", ts=T1, symbol="X", price=1.5)
    assert test_codec.decode(payload) == expected


def test_current_version_payload_skips_the_upcaster() -> None:
    """A v2 payload of a v2 event decodes directly, and v2 is what the encoder writes."""
    event = PriceV2(id="p", ts=T0, symbol="X", price=1.5)
    payload = test_codec.encode(event)
    assert json.loads(payload)["v"] == 2
    assert test_codec.decode(payload) == event


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(
            b'{"type":"PriceV2","v":1,"symbol":"X"}',
            "invalid PriceV2 v1: cannot upcast (KeyError: 'price_cents')",
            id="field-missing",
        ),
        pytest.param(
            b'{"type":"PriceV2","v":1,"symbol":"X","price_cents":"150"}',
            "invalid PriceV2 v1: cannot upcast (TypeError: unsupported operand type(s) for /:"
            " 'str' and 'int')",
            id="field-of-wrong-type",
        ),
        pytest.param(
            b'{"type":"PriceV2","v":1,"symbol":7,"price_cents":150}',
            "invalid PriceV2: Expected `str`, got `int` - at `$.symbol`",
            id="upcast-result-invalid",
        ),
        pytest.param(
            b'{"type":"PriceV2","v":3,"symbol":"X","price":1.5}',
            "PriceV2 schema version 3 is not supported (current 2)",
            id="newer-version",
        ),
    ],
)
def test_upcasting_a_bad_old_payload_is_a_rejection(payload: bytes, reason: str) -> None:
    """Whatever goes wrong while upcasting a malformed old payload is an EventRejected."""
    assert _rejection(test_codec, payload) == (reason, "PriceV2")


def test_missing_step_in_the_upcaster_chain_is_a_rejection() -> None:
    """A v1 payload of a v3 event with only a 2->3 upcaster is refused as unsupported."""
    local = EventRegistry()

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Gappy(Event):
        kind = "tick"
        schema_version = 3
        symbol: str

    local.register(Gappy, upcasters={2: dict})
    payload = b'{"type":"Gappy","v":1,"symbol":"X"}'
    expected = ("Gappy schema version 1 is not supported (current 3)", "Gappy")
    assert _rejection(Codec(local), payload) == expected


def test_registry_refuses_a_non_frozen_dataclass() -> None:
    """Only frozen dataclasses can be events."""

    @dataclasses.dataclass
    class Mutable:
        kind = "tick"

    with pytest.raises(TypeError, match="must be a frozen dataclass subclass of Event"):
        EventRegistry().register(Mutable)  # type: ignore[type-var]


def test_registry_refuses_an_event_subclass_without_its_own_dataclass_decorator() -> None:
    """A subclass that forgot @dataclass (whose fields would never reach the wire) is refused."""

    class Undecorated(Event):
        kind = "tick"
        symbol: str

    with pytest.raises(TypeError, match="must be a frozen dataclass subclass of Event"):
        EventRegistry().register(Undecorated)


def test_registry_refuses_a_class_without_kind() -> None:
    """An event must say its kind, which decides its channel."""

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Kindless(Event):
        note: str

    with pytest.raises(TypeError, match="Kindless must set the `kind` class variable"):
        EventRegistry().register(Kindless)


def test_registry_refuses_a_second_class_with_the_same_name() -> None:
    """Two classes cannot share a type name; registering the same class again is harmless."""
    local = EventRegistry()
    local.register(Quote)
    local.register(Quote)

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Quote_(Event):
        kind = "tick"

    Quote_.__name__ = "Quote"
    with pytest.raises(ValueError, match="event type 'Quote' is already registered"):
        local.register(Quote_)
    assert (local.names, local.get("Quote").cls) == (["Quote"], Quote)  # type: ignore[union-attr]


def test_encoding_an_unregistered_event_raises_type_error() -> None:
    """The codec encodes only what its registry knows: a test event is not in the global one."""
    with pytest.raises(TypeError, match="Quote is not a registered event type"):
        Codec().encode(Quote(symbol="A", price=1.0, size=1))


def test_encoding_a_same_named_impostor_raises_type_error() -> None:
    """A different class that merely shares a registered name is not encoded as that type."""

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class ControlCommand(Event):
        kind = "control"

    with pytest.raises(TypeError, match="ControlCommand is not a registered event type"):
        Codec().encode(ControlCommand())
