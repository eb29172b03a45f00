"""Line-based TCP admin channel: trigger the simulator's faults from outside while it runs.

Connect with e.g. `nc 127.0.0.1 ADMIN_PORT` and send one command per line; each gets one
line back, `ok ...` or `error: ...`. Commands (see COMMANDS):

    drop                     abort every client socket
    refuse SECONDS           drop every client and refuse connections for SECONDS
    lost CODE [SECONDS]      send 1100, then CODE (1101 or 1102) after SECONDS (default 1)
    blip SECONDS             send 2103, pause market data for SECONDS, then send 2104
    drop-next-order          accept the next order, then drop its socket before the ack
    pacing N                 answer the next N historical-data requests with error 162
    error CODE [MESSAGE]     send error CODE to every client (10182: to keepUpToDate requests)
    price SYMBOL PRICE       set SYMBOL's last price
    status                   clients, orders, executions
    help                     this list
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import structlog

from ibsim.server import Simulator

log = structlog.get_logger()


class AdminError(Exception):
    """A command the admin channel cannot carry out; its text goes back to the caller."""


def _drop(sim: Simulator, args: list[str]) -> str:
    sim.drop_all_clients()
    return "ok"


def _refuse(sim: Simulator, args: list[str]) -> str:
    sim.refuse_connections(_number(args, 0))
    return "ok"


def _lost(sim: Simulator, args: list[str]) -> str:
    after = _number(args, 1) if len(args) > 1 else 1.0
    try:
        sim.connectivity_lost(int(_number(args, 0)), after)
    except ValueError as error:
        raise AdminError(str(error)) from error
    return "ok"


def _blip(sim: Simulator, args: list[str]) -> str:
    sim.farm_blip(_number(args, 0))
    return "ok"


def _drop_next_order(sim: Simulator, args: list[str]) -> str:
    sim.drop_socket_on_next_order()
    return "ok"


def _pacing(sim: Simulator, args: list[str]) -> str:
    sim.pacing_violations(int(_number(args, 0)))
    return "ok"


def _error(sim: Simulator, args: list[str]) -> str:
    sim.send_error(int(_number(args, 0)), " ".join(args[1:]))
    return "ok"


def _price(sim: Simulator, args: list[str]) -> str:
    if not args or args[0].upper() not in sim.instruments:
        raise AdminError("usage: price SYMBOL PRICE (a known symbol)")
    sim.set_price(args[0], _number(args, 1))
    return "ok"


def _status(sim: Simulator, args: list[str]) -> str:
    clients = sorted(s.client_id for s in sim.sessions if s.client_id is not None)
    return (
        f"ok clients={clients} orders={len(sim.orders_received)} "
        f"executions={len(sim.executions)} positions={sim.positions()}"
    )


def _help(sim: Simulator, args: list[str]) -> str:
    return "ok " + " | ".join(COMMANDS)


# command word -> action(simulator, arguments) -> reply line
COMMANDS: Mapping[str, Callable[[Simulator, list[str]], str]] = {
    "drop": _drop,
    "refuse": _refuse,
    "lost": _lost,
    "blip": _blip,
    "drop-next-order": _drop_next_order,
    "pacing": _pacing,
    "error": _error,
    "price": _price,
    "status": _status,
    "help": _help,
}


def run_command(sim: Simulator, line: str) -> str:
    """Carry out one admin command line and return the reply line."""
    words = line.split()
    if not words:
        return "error: empty command"
    action = COMMANDS.get(words[0].lower())
    if action is None:
        return f"error: unknown command {words[0]!r}; try help"
    try:
        return action(sim, words[1:])
    except AdminError as error:
        return f"error: {error}"


def _number(args: list[str], index: int) -> float:
    try:
        return float(args[index])
    except (IndexError, ValueError) as error:
        raise AdminError(f"argument {index + 1} must be a number") from error


async def start_admin(sim: Simulator, host: str, port: int) -> asyncio.Server:
    """Serve the admin channel on (host, port); port 0 picks a free one."""

    async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                command = line.decode(errors="replace").strip()
                reply = run_command(sim, command)
                log.info("admin_command", command=command, reply=reply)
                writer.write(reply.encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    return await asyncio.start_server(serve_client, host, port)
