"""`python -m ibsim`: run the IB Gateway simulator until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from ibsim.cli import configure_parser, serve


async def serve_until_signalled(args: argparse.Namespace) -> int:
    """serve(), cancelled cleanly by SIGINT or SIGTERM."""
    task = asyncio.ensure_future(serve(args))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    return await task


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m ibsim", description=__doc__)
    configure_parser(parser)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(serve_until_signalled(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
