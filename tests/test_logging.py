"""Logging: structlog and stdlib records through one pipeline, JSON or console, secrets masked."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any, Literal

import pytest
import structlog

from config import LogSettings
from main import _redact_secrets, configure_logging

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@contextlib.contextmanager
def configured(log_format: str, level: str = "INFO") -> Iterator[io.StringIO]:
    """configure_logging to a StringIO; afterwards the root logger and structlog are restored.

    A context manager rather than a fixture, so that it restores the handlers as they were
    during the test itself (pytest swaps its capture handlers between setup, call and teardown).
    """
    root = logging.getLogger()
    handlers, root_level = root.handlers[:], root.level
    stream = io.StringIO()
    try:
        configure_logging(LogSettings(log_format=log_format, log_level=level), stream=stream)  # type: ignore[arg-type]
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(root_level)
        structlog.reset_defaults()


def _json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = stream.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    for record in records:
        assert TIMESTAMP.match(record.pop("timestamp")), record
    return records


def test_structlog_line_is_one_json_object() -> None:
    """log.info("name", key=value) is one JSON line with event, level, logger and timestamp."""
    with configured("json") as stream:
        structlog.get_logger("trading.test").info("order_submitted", order_id=7, symbol="AAPL")
    assert _json_lines(stream) == [
        {
            "event": "order_submitted",
            "level": "info",
            "logger": "trading.test",
            "order_id": 7,
            "symbol": "AAPL",
        }
    ]


def test_stdlib_records_go_through_the_same_json_pipeline() -> None:
    """An ib_async error logged through stdlib logging is a JSON line of the same shape."""
    with configured("json") as stream:
        logging.getLogger("ib_async.client").error("API connection failed: %s", "refused")
    assert _json_lines(stream) == [
        {"event": "API connection failed: refused", "level": "error", "logger": "ib_async.client"}
    ]


def test_log_level_filters_both_kinds_of_record() -> None:
    """LOG_LEVEL=WARNING drops info lines from structlog and stdlib alike."""
    with configured("json", level="WARNING") as stream:
        structlog.get_logger("ours").info("quiet")
        logging.getLogger("ib_async.wrapper").info("quiet too")
        structlog.get_logger("ours").warning("loud")
    assert [record["event"] for record in _json_lines(stream)] == ["loud"]


def test_exceptions_are_rendered_inside_the_json_line() -> None:
    """log.exception keeps the traceback in the JSON object, so one record stays one line."""
    with configured("json") as stream:
        try:
            raise ValueError("boom")
        except ValueError:
            structlog.get_logger("ours").exception("handler_failed")
    [record] = _json_lines(stream)
    assert (record["event"], record["level"]) == ("handler_failed", "error")
    assert record["exception"].startswith("Traceback (most recent call last):")
    assert record["exception"].endswith("ValueError: boom")


def test_url_password_in_a_structlog_field_is_masked() -> None:
    """A URL with a password logged as a field shows `***` instead of the password."""
    with configured("json") as stream:
        structlog.get_logger("ours").info("connecting", redis="redis://app:hunter2@cache:6379/0")
    [record] = _json_lines(stream)
    assert record["redis"] == "redis://app:***@cache:6379/0"


def test_url_password_in_a_stdlib_message_is_masked() -> None:
    """A library that logs a URL with a password in its message has it masked too."""
    with configured("json") as stream:
        logging.getLogger("sqlalchemy.engine").warning(
            "cannot reach %s", "postgresql://app:hunter2@db/trading"
        )
    [record] = _json_lines(stream)
    assert record["event"] == "cannot reach postgresql://app:***@db/trading"


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_url_passwords_are_masked_in_nested_values_and_tracebacks(
    log_format: Literal["console", "json"],
) -> None:
    """Passwords inside a dict field, an exception field or a traceback never reach the output."""
    with configured(log_format) as stream:
        log = structlog.get_logger("ours")
        log.info("nested", config={"url": "redis://app:hunter2@cache"})
        log.info("as_object", error=ConnectionError("redis://app:hunter2@cache refused"))
        try:
            raise ConnectionError("cannot reach redis://app:hunter2@cache")
        except ConnectionError:
            log.exception("connect_failed")
            logging.getLogger("redis").exception("connect failed")
    output = stream.getvalue()
    assert "hunter2" not in output
    assert output.count("redis://app:***@cache") >= 5


def test_redact_secrets_masks_every_string_field() -> None:
    """The processor masks URL passwords in any string value and leaves other values alone."""
    event_dict = {
        "event": "see mysql://root:pw@db/x and redis://:pw2@h",
        "plain": "no url here",
        "port": 6379,
        "url": "redis://cache:6379/0",
    }
    assert _redact_secrets(None, "info", event_dict) == {
        "event": "see mysql://root:***@db/x and redis://:***@h",
        "plain": "no url here",
        "port": 6379,
        "url": "redis://cache:6379/0",
    }


def test_console_format_is_not_json() -> None:
    """LOG_FORMAT=console renders a readable line, not JSON, for both kinds of record."""
    with configured("console") as stream:
        structlog.get_logger("ours").info("daemon_starting", modules="strategy")
        logging.getLogger("ib_async.client").error("API connection failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    for line in lines:
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)
    assert re.fullmatch(
        r"\S+Z \[info\s*\] daemon_starting\s+\[ours\] modules=strategy", lines[0]
    ), lines[0]
    assert re.fullmatch(r"\S+Z \[error\s*\] API connection failed\s+\[ib_async.client\]", lines[1])


def test_auto_format_is_json_when_not_a_terminal() -> None:
    """LOG_FORMAT=auto (the default) writes JSON lines to a stream that is not a TTY."""
    with configured("auto") as stream:
        structlog.get_logger("ours").info("hello")
    assert _json_lines(stream) == [{"event": "hello", "level": "info", "logger": "ours"}]


def test_configuring_twice_leaves_one_handler() -> None:
    """Configuring again replaces the handler instead of duplicating every line."""
    with configured("json"), configured("json") as stream:
        structlog.get_logger("ours").info("once")
        assert len(logging.getLogger().handlers) == 1
    assert len(stream.getvalue().splitlines()) == 1
