"""The admin channel and the command line, driven the way a user drives them."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator

import pytest
import structlog
from ib_async import IB

from ibsim import Simulator
from ibsim.admin import COMMANDS, run_command, start_admin
from ibsim.cli import configure_parser, serve
from tests.helpers import eventually


@pytest.fixture
async def admin(sim: Simulator) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    server = await start_admin(sim, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    yield reader, writer
    writer.close()
    server.close()


async def _ask(admin: tuple[asyncio.StreamReader, asyncio.StreamWriter], line: str) -> str:
    reader, writer = admin
    writer.write(line.encode() + b"\n")
    return (await asyncio.wait_for(reader.readline(), 5)).decode().strip()


async def test_admin_commands_reach_the_simulator(
    admin: tuple[asyncio.StreamReader, asyncio.StreamWriter], sim: Simulator, ib: IB
) -> None:
    """Commands sent over TCP arm faults and move prices; each gets one reply line."""
    assert await _ask(admin, "pacing 3") == "ok"
    assert sim.faults.pacing_violations_left == 3
    assert await _ask(admin, "drop-next-order") == "ok"
    assert sim.faults.drop_socket_on_next_order
    assert await _ask(admin, "price aapl 123.45") == "ok"
    assert sim.instruments["AAPL"].last == 123.45
    assert (await _ask(admin, "status")).startswith("ok clients=[1]")
    assert await _ask(admin, "drop") == "ok"
    await eventually(lambda: not ib.isConnected())


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("", "error: empty command"),
        ("reboot", "error: unknown command 'reboot'; try help"),
        ("refuse soon", "error: argument 1 must be a number"),
        ("lost 1100", "error: restored_code must be one of [1101, 1102]"),
        ("price NOPE 1", "error: usage: price SYMBOL PRICE (a known symbol)"),
    ],
)
async def test_admin_rejects_bad_commands(line: str, reply: str, sim: Simulator) -> None:
    """Bad commands are answered with an error line and change nothing."""
    assert run_command(sim, line) == reply


async def test_admin_help_lists_every_command(sim: Simulator) -> None:
    """help names every command."""
    assert run_command(sim, "help") == "ok " + " | ".join(COMMANDS)


async def test_serve_runs_until_cancelled(decoder_errors: object) -> None:
    """serve() starts the simulator and the admin port, logs both, and exits 0 on cancel."""
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(["--port", "0", "--admin-port", "0", "--symbols", "AAPL,XYZ"])
    with structlog.testing.capture_logs() as logs:
        task = asyncio.ensure_future(serve(args))
        await eventually(lambda: any(e["event"] == "simulator_ready" for e in logs))
        [ready] = [e for e in logs if e["event"] == "simulator_ready"]
        assert (ready["account"], ready["symbols"]) == ("DU0000001", 2)
        assert any(e["event"] == "admin_listening" for e in logs)
        ib = IB()
        await ib.connectAsync("127.0.0.1", ready["port"], clientId=1, timeout=4)
        ib.disconnect()
        task.cancel()
        assert await task == 0


def test_parser_defaults() -> None:
    """The defaults are a paper Gateway's: port 4002, account DU0000001, no admin port."""
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args([])
    assert (args.port, args.account, args.admin_port) == (4002, "DU0000001", None)
