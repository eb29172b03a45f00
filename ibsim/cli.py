"""Command line of the simulator: `python -m ibsim` and `python main.py sim` share it."""

from __future__ import annotations

import argparse
import asyncio

import structlog

from ibsim.admin import start_admin
from ibsim.config import DEFAULT_ACCOUNT, SimConfig
from ibsim.server import Simulator

log = structlog.get_logger()


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's options to `parser`."""
    defaults = SimConfig()
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=4002, help="TWS API port (0: any free)")
    parser.add_argument("--account", default=DEFAULT_ACCOUNT, help="managed (paper) account id")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random-walk seed")
    parser.add_argument(
        "--speed", type=float, default=defaults.speed, help="simulated seconds per real second"
    )
    parser.add_argument(
        "--symbols",
        type=lambda text: tuple(s.strip().upper() for s in text.split(",") if s.strip()),
        default=defaults.symbols,
        help="comma-separated stock symbols (default: %(default)s)",
    )
    parser.add_argument(
        "--synthetic-symbols", type=int, default=0, help="add N symbols SYM0000... for load tests"
    )
    parser.add_argument(
        "--tick-interval",
        type=float,
        default=defaults.tick_interval,
        help="simulated seconds between ticks",
    )
    parser.add_argument(
        "--paced-quotes",
        action="store_true",
        help="spread each step's quotes over the step instead of sending them in one burst",
    )
    parser.add_argument(
        "--max-fill-size",
        type=float,
        default=defaults.max_fill_size,
        help="most shares in one execution; larger orders fill in parts",
    )
    parser.add_argument(
        "--market-data-lines",
        type=int,
        default=defaults.market_data_lines,
        help="streaming quotes allowed at once, as IB's market data lines (100 on a new"
        " account); more are refused with error 101 (default 0: no limit)",
    )
    parser.add_argument(
        "--admin-port", type=int, default=None, help="line-based fault admin port (off if unset)"
    )


def config_from(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        host=args.host,
        port=args.port,
        account=args.account,
        seed=args.seed,
        speed=args.speed,
        symbols=args.symbols,
        synthetic_symbols=args.synthetic_symbols,
        tick_interval=args.tick_interval,
        paced_quotes=args.paced_quotes,
        max_fill_size=args.max_fill_size,
        market_data_lines=args.market_data_lines,
    )


async def serve(args: argparse.Namespace) -> int:
    """Run the simulator (and its admin channel, if asked) until cancelled."""
    try:
        config = config_from(args)
    except ValueError as error:
        log.error("simulator_bad_settings", error=str(error))
        return 2
    async with Simulator(config) as sim:
        admin = None
        if args.admin_port is not None:
            admin = await start_admin(sim, args.host, args.admin_port)
            admin_port = admin.sockets[0].getsockname()[1]
            log.info("admin_listening", how=f"nc {args.host} {admin_port}", port=admin_port)
        log.info(
            "simulator_ready",
            how=f"ib.connect('{args.host}', {sim.port}, clientId=1)",
            port=sim.port,
            account=config.account,
            symbols=len(sim.instruments),
        )
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            log.info("simulator_shutting_down")
        finally:
            if admin is not None:
                admin.close()
    return 0
