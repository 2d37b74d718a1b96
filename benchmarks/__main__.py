"""Run every benchmark, one after another, each in its own process: `python -m benchmarks [--quick] [--only NAME,…]`.

Each benchmark is its own command (`python -m benchmarks.<name>`, options in its docstring) and prints its
own figures; this runs them all with their documented defaults, which takes long (the 100,000-document
prepare and verify corpora, a 20,000-document graph, the llama.cpp lane). `--quick` runs each at a small
size, as a check that every benchmark still runs, not for figures to quote. A failing benchmark does not
stop the others; the exit status is 1 when any failed.
"""

from __future__ import annotations

import argparse
import pkgutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Small sizes for --quick: every benchmark must have an entry (tests/test_benchmarks_main.py checks).
QUICK: dict[str, list[str]] = {
    "concatenation": ["--docs", "2"],
    "fleet": ["--requests", "100", "--hosted-requests", "60", "--service-ms", "20", "--settle-s", "1"],
    "graph": ["--docs", "300", "--jobs", "3"],
    # the llama.cpp phases take minutes even at 4 documents on a shared 2-core machine: the client overhead only
    "local_lane": ["--skip-llama", "--stub-requests", "200", "--repeat", "1"],
    "night": ["--docs", "300", "--sizes", ""],
    "openai_night": ["--docs", "60", "--lines-per-file", "20"],
    "prepare": ["--docs", "2000", "--small", "500", "--repeat", "1"],
    "review_page": ["--docs", "200", "--repeat", "1"],
    "robustness": ["--events", "2000", "--names", "1000,4000"],
    "verify_quality": ["--seeds", "1"],
    "verify_speed": ["--docs", "2000", "--sizes", "500"],
}


def benchmark_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="each benchmark at a small size (a smoke run)")
    parser.add_argument("--only", default="", help="comma-separated benchmark names (default: all)")
    parser.add_argument("--list", action="store_true", help="print the benchmark names and exit")
    args = parser.parse_args(argv)
    names = benchmark_names()
    if args.list:
        print("\n".join(names))
        return 0
    chosen = [n.strip() for n in args.only.split(",") if n.strip()] or names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"no benchmark {', '.join(unknown)} — there are {', '.join(names)}")
    failed: list[str] = []
    for name in chosen:
        command = [sys.executable, "-m", f"benchmarks.{name}", *(QUICK.get(name, []) if args.quick else [])]
        print(f"== {' '.join(['python', *command[1:]])}", flush=True)
        started = time.monotonic()
        code = subprocess.call(command, cwd=HERE.parent)
        print(f"== {name}: exit {code} in {time.monotonic() - started:.0f}s", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
