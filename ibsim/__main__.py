"""`python -m ibsim`: run the IB Gateway simulator until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from ibsim.cli import configure_parser, serve


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m ibsim", description=__doc__)
    configure_parser(parser)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
