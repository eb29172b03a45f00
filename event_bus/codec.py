"""The one codec: events to JSON bytes and back, through an explicit registry of event types.

Wire format: one JSON object, `{"type": "<class name>", "v": <schema version>, "id": ..., "ts": ...,
<fields>}`. Decoding validates every field against the dataclass (msgspec), so a string where a
price belongs, a missing field or an unknown type raises `EventRejected` with a reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from datetime import UTC
from typing import Any, TypeVar

import msgspec

from event_bus.events import Event, utc_now

E = TypeVar("E", bound=type[Event])

# Turns the fields of an older schema version into those of the next one.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class EventRejected(ValueError):
    """A payload that is not a valid event; `reason` says why in one line."""

    def __init__(self, reason: str, *, event_type: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_type = event_type


class _Envelope(msgspec.Struct):
    """The fields every payload must carry, read before the event itself."""

    type: str
    v: int = 1
    id: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class _Registration:
    cls: type[Event]
    decoder: msgspec.json.Decoder[Any]
    header: bytes  # b'{"type":"Tick","v":1,' spliced in front of the encoded fields
    upcasters: dict[int, Upcaster]  # version -> function producing version + 1


class EventRegistry:
    """Event type name -> class. Each package registers its published events once."""

    def __init__(self) -> None:
        self._by_name: dict[str, _Registration] = {}
        # name as bytes -> registration, for payloads that start with their type's header
        self._by_header_name: dict[bytes, _Registration] = {}

    def register(self, cls: E, *, upcasters: dict[int, Upcaster] | None = None) -> E:
        """Register `cls` under its class name (usable as a decorator)."""
        _check_event_class(cls)
        name = cls.__name__
        existing = self._by_name.get(name)
        if existing is not None and existing.cls is not cls:
            raise ValueError(f"event type {name!r} is already registered by {existing.cls!r}")
        header = b'{"type":"%s","v":%d,' % (name.encode(), cls.schema_version)
        entry = _Registration(cls, msgspec.json.Decoder(cls), header, dict(upcasters or {}))
        self._by_name[name] = entry
        if not cls.content_addressed:  # whose id depends on whether the payload carried one
            self._by_header_name[name.encode()] = entry
        return cls

    def get(self, name: str) -> _Registration | None:
        return self._by_name.get(name)

    def by_header(self, raw: bytes) -> _Registration | None:
        """The registration whose current header `raw` starts with, as `Codec.encode` writes
        it; None for anything else (another version, other key order, a content-addressed
        type), which then takes the full path."""
        if not raw.startswith(b'{"type":"'):
            return None
        entry = self._by_header_name.get(raw[9 : raw.find(b'"', 9)])
        return entry if entry is not None and raw.startswith(entry.header) else None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)


def _check_event_class(cls: type) -> None:
    # Looked up on the class itself: a subclass without its own @dataclass inherits Event's.
    params = vars(cls).get("__dataclass_params__") if isinstance(cls, type) else None
    if not (isinstance(cls, type) and issubclass(cls, Event) and params and params.frozen):
        raise TypeError(f"{cls!r} must be a frozen dataclass subclass of Event")
    if not cls.kind:
        raise TypeError(f"{cls.__name__} must set the `kind` class variable")


# The process-wide registry that the packages' model modules register into.
registry = EventRegistry()
register = registry.register


class Codec:
    """Encodes and decodes events registered in one registry."""

    def __init__(self, event_registry: EventRegistry | None = None) -> None:
        self.registry = event_registry if event_registry is not None else registry
        self._encoder = msgspec.json.Encoder()
        self._envelope = msgspec.json.Decoder(_Envelope)

    def encode(self, event: Event) -> bytes:
        entry = self.registry.get(type(event).__name__)
        if entry is None or entry.cls is not type(event):
            raise TypeError(f"{type(event).__name__} is not a registered event type")
        if event.ts.tzinfo is not UTC:
            event = _with_utc_ts(event)
        return entry.header + self._encoder.encode(event)[1:]

    def decode(self, payload: bytes | str) -> Event:
        """Validate and decode one payload; raises `EventRejected` with the reason."""
        try:
            raw = payload.encode() if isinstance(payload, str) else payload
        except UnicodeEncodeError as error:
            raise EventRejected(f"not a JSON event: {error}") from None
        # A payload as `encode` writes it: type and version known, one pass (every field still
        # checked); anything else reads the envelope first.
        current = self.registry.by_header(raw)
        event = self._decode_any(raw) if current is None else self._decode_current(current, raw)
        if event.ts.utcoffset():
            event = dataclasses.replace(event, ts=event.ts.astimezone(UTC))
        return event

    def _decode_current(self, entry: _Registration, raw: bytes) -> Event:
        try:
            return entry.decoder.decode(raw)
        except msgspec.ValidationError as error:  # first: it is a subclass of DecodeError
            name = entry.cls.__name__
            raise EventRejected(f"invalid {name}: {error}", event_type=name) from None
        except (msgspec.DecodeError, RecursionError) as error:
            raise EventRejected(f"not a JSON event: {error}") from None

    def _decode_any(self, raw: bytes) -> Event:
        """Envelope first (type, version, id), then the event, upcast if it is older."""
        envelope = self._read_envelope(raw)
        entry = self.registry.get(envelope.type)
        if entry is None:
            raise EventRejected(f"unknown event type {envelope.type!r}", event_type=envelope.type)
        event = self._decode_version(entry, envelope, raw)
        if envelope.id is None and entry.cls.content_addressed:
            event = dataclasses.replace(event, id=content_id(envelope.type, raw))
        return event

    def _read_envelope(self, raw: bytes) -> _Envelope:
        try:
            return self._envelope.decode(raw)
        except msgspec.ValidationError as error:  # first: it is a subclass of DecodeError
            raise EventRejected(f"bad envelope: {error}") from None
        except (msgspec.DecodeError, RecursionError) as error:  # or too deeply nested
            raise EventRejected(f"not a JSON event: {error}") from None

    def _decode_version(self, entry: _Registration, envelope: _Envelope, raw: bytes) -> Event:
        current = entry.cls.schema_version
        name = envelope.type
        try:
            if envelope.v == current:
                return entry.decoder.decode(raw)
            upcastable = all(v in entry.upcasters for v in range(envelope.v, current))
            if envelope.v > current or envelope.v < 1 or not upcastable:
                raise EventRejected(
                    f"{name} schema version {envelope.v} is not supported (current {current})",
                    event_type=name,
                )
            fields = msgspec.json.decode(raw)
            for version in range(envelope.v, current):
                fields = _upcast(entry.upcasters[version], fields, name, version)
            return msgspec.convert(fields, entry.cls)
        except (msgspec.ValidationError, RecursionError) as error:
            raise EventRejected(f"invalid {name}: {error}", event_type=name) from None


def _upcast(upcaster: Upcaster, fields: dict[str, Any], name: str, version: int) -> dict[str, Any]:
    """One upcaster step; whatever it raises on a malformed old payload is a rejection."""
    try:
        return upcaster(fields)
    except Exception as error:
        reason = f"invalid {name} v{version}: cannot upcast ({type(error).__name__}: {error})"
        raise EventRejected(reason, event_type=name) from None


def _with_utc_ts(event: Event) -> Event:
    """`event` with its timestamp in UTC, as the wire promises; a naive one is a bug upstream."""
    if event.ts.utcoffset() is None:
        raise ValueError(f"{type(event).__name__}.ts must be timezone-aware, got {event.ts!r}")
    return dataclasses.replace(event, ts=event.ts.astimezone(UTC))


def content_id(event_type: str, raw: bytes) -> str:
    """The id of an event published without one: the same payload on the same UTC day, same id.

    So a manual signal published three times with `redis-cli` is one intent, not three.
    """
    digest = hashlib.blake2b(raw, digest_size=12, person=b"trading-evt-id")
    digest.update(utc_now().date().isoformat().encode())
    return f"{event_type.lower()}-{digest.hexdigest()}"
