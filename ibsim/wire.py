"""TWS socket framing: 4-byte big-endian length, then NUL-terminated ASCII fields."""

from __future__ import annotations

import struct
from collections.abc import Iterable

SERVER_VERSION = 178
MIN_CLIENT_VERSION = 157
API_PREFIX = b"API\0"
MAX_FRAME_LENGTH = 16 * 1024 * 1024
UNSET_DOUBLE = 1.7976931348623157e308
UNSET_INTEGER = 2**31 - 1

_LENGTH = struct.Struct(">I")


class FramingError(Exception):
    """The byte stream cannot be split into frames: the connection must be closed."""


def format_field(value: object) -> str:
    """One field as TWS writes it: bools as 1/0, None as empty, floats without noise."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return format_float(value)
    return str(value)


def format_float(value: float) -> str:
    """Whole numbers without '.0' (like TWS), others with their shortest exact repr."""
    if value == UNSET_DOUBLE:
        return "1.7976931348623157E308"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def encode_frame(fields: Iterable[object]) -> bytes:
    """A complete frame: length prefix plus every field NUL-terminated."""
    payload = "".join(format_field(field) + "\0" for field in fields).encode()
    return _LENGTH.pack(len(payload)) + payload


class FrameReader:
    """Incremental splitter of a client's byte stream into handshake and field lists."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.handshake_done = False

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def read_handshake(self) -> tuple[int, int] | None:
        """The client's (min, max) API version once `API\\0` + `vMIN..MAX` has arrived."""
        if len(self._buffer) < len(API_PREFIX):
            return None
        if not self._buffer.startswith(API_PREFIX):
            raise FramingError("handshake does not start with API\\0")
        payload = self._take_frame(offset=len(API_PREFIX))
        if payload is None:
            return None
        self.handshake_done = True
        return parse_version_range(payload)

    def read_frames(self) -> list[list[str]]:
        """Every complete frame buffered so far, as lists of fields."""
        frames = []
        while (payload := self._take_frame()) is not None:
            fields = payload.decode(errors="replace").split("\0")
            if fields[-1] != "":
                raise FramingError("frame is not NUL-terminated")
            frames.append(fields[:-1])
        return frames

    def _take_frame(self, offset: int = 0) -> bytes | None:
        header_end = offset + _LENGTH.size
        if len(self._buffer) < header_end:
            return None
        (length,) = _LENGTH.unpack_from(self._buffer, offset)
        if length == 0 or length > MAX_FRAME_LENGTH:
            raise FramingError(f"bad frame length {length}")
        if len(self._buffer) < header_end + length:
            return None
        payload = bytes(self._buffer[header_end : header_end + length])
        del self._buffer[: header_end + length]
        return payload


def parse_version_range(payload: bytes) -> tuple[int, int]:
    """`v157..178` (optionally followed by ` connectOptions`) -> (157, 178)."""
    text = payload.decode(errors="replace").split(" ", 1)[0]
    if not text.startswith("v"):
        raise FramingError("version range does not start with v")
    low, _, high = text[1:].partition("..")
    try:
        return int(low), int(high or low)
    except ValueError as error:
        raise FramingError("version range is not numeric") from error
