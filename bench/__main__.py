"""`python -m bench` (`make bench`): every benchmark in turn, each beside its raw baseline.

Short runs by default, so the whole set finishes in about seven minutes; tick to order runs a
minute per rate, the span its target is stated over (10 s runs missed the bursts that set the
20,000 ticks/s p99). Each module takes other runs by its own flags (e.g.
`python -m bench.tick_to_order --seconds 20`, `python -m bench.scale --minutes 10`).
"""

from __future__ import annotations

import platform
import sys

from bench import bus_throughput, codec, scale, storage_ingest, tick_to_order

# module -> its command-line arguments under `make bench`
RUNS = (
    (codec, []),
    (bus_throughput, []),
    (storage_ingest, []),
    (storage_ingest, ["--preload", "1000000", "--rounds", "1"]),
    (tick_to_order, ["--seconds", "60"]),
    (scale, ["--seconds", "10"]),
)


def main() -> None:
    print(
        f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
        f"Python {platform.python_version()}, {sys.platform}"
    )
    for benchmark, arguments in RUNS:
        sys.argv = [benchmark.__name__, *arguments]
        benchmark.main()
        print()


if __name__ == "__main__":
    main()
