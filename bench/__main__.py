"""`python -m bench` (`make bench`): every benchmark in turn, each beside its raw baseline."""

from __future__ import annotations

import platform
import sys

from bench import bus_throughput, codec, storage_ingest


def main() -> None:
    print(
        f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
        f"Python {platform.python_version()}, {sys.platform}"
    )
    for benchmark in (codec, bus_throughput, storage_ingest):
        sys.argv = [benchmark.__name__]
        benchmark.main()
        print()


if __name__ == "__main__":
    main()
