"""Run the benchmarks: `python -m bench [name …]` (default: all).

Each bench module defines `main() -> None`, prints its own table, and reports ratios against
a baseline it measures in the same run (these machines are shared and noisy).
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ["flash", "build", "boot", "packages", "http", "trace"]


def main(argv: list[str]) -> int:
    names = argv or BENCHMARKS
    for name in names:
        if name not in BENCHMARKS:
            print(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
            return 2
    for name in names:
        print(f"\n=== bench {name}")
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
