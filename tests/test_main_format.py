"""format_event: the one-line view of an event that `main.py tail` prints."""

from __future__ import annotations

from datetime import UTC, datetime

from event_bus import Channels
from event_bus.system import ControlCommand, Heartbeat
from main import format_event

T0 = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def test_control_command_line() -> None:
    """Time to the millisecond, channel, type name, the fields, then the id."""
    command = ControlCommand(id="cc-1", ts=T0, command="halt", reason="fat finger", issued_by="ann")
    line = format_event(command, Channels().control)
    assert line == (
        "07:08:09.123  trading:control              ControlCommand "
        "command=halt reason=fat finger issued_by=ann  id=cc-1"
    )


def test_heartbeat_line_shows_every_field() -> None:
    """Every dataclass field but id and ts appears as name=value, in declaration order."""
    heartbeat = Heartbeat(
        id="hb-1",
        ts=T0,
        module="storage",
        host="box",
        pid=42,
        started_at=datetime(2024, 5, 6, 7, 0, tzinfo=UTC),
        interval_seconds=2.5,
        detail={"db": "ok"},
    )
    line = format_event(heartbeat, Channels().system("heartbeat"))
    assert line == (
        "07:08:09.123  trading:system:heartbeat     Heartbeat      module=storage host=box pid=42"
        " started_at=2024-05-06 07:00:00+00:00 interval_seconds=2.5 detail={'db': 'ok'}  id=hb-1"
    )


def test_untrusted_strings_cannot_break_the_line() -> None:
    """A newline or terminal escape in a field from the wire is shown quoted: still one line."""
    command = ControlCommand(
        id="x\n1", ts=T0, command="halt", reason="a\nb\x1b[2J", issued_by="ann"
    )
    line = format_event(command, "trading:control")
    assert "\n" not in line
    assert "\x1b" not in line
    assert line.endswith("command=halt reason='a\\nb\\x1b[2J' issued_by=ann  id='x\\n1'")


def test_colour_wraps_the_line_in_the_kinds_colour() -> None:
    """With colour, a control line is bold red and reset at the end; the text is unchanged."""
    command = ControlCommand(id="cc-1", ts=T0, command="resume")
    plain = format_event(command, "trading:control")
    assert format_event(command, "trading:control", colour=True) == f"\x1b[1;31m{plain}\x1b[0m"
