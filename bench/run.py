"""Run the performance benchmarks: `make bench`.

    PYTHONPATH=. .venv/bin/python -m bench.run [--only N ...] [--quick] [--fresh] [--strict]

Each target is its own module (``bench/tN_*.py``) that measures its
baseline(s) in the same run and returns one result: measured figures,
baseline figures, ratio, target, PASS/FAIL. A header says on what machine
and under what load; a table sums up at the end. docs/performance.md says
what each measures and how.

Exit status: 0 when every benchmark ran (PASS or FAIL), 1 when one could not
run (ERROR), or, with ``--strict``, when any target fails.
"""

from __future__ import annotations

import argparse
import importlib
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime

from adapters.logging import configure_logging
from bench.common import Options, Result, load_average, machine

TARGETS = {
    1: "bench.t1_writers",
    2: "bench.t2_grpc_commands",
    3: "bench.t3_bulk_ingest",
    4: "bench.t4_rebuild",
    5: "bench.t5_read_events",
    6: "bench.t6_check_consent",
    7: "bench.t7_load_customer",
}


def run_one(number: int, options: Options) -> Result:
    started = time.perf_counter()
    try:
        module = importlib.import_module(TARGETS[number])
        result: Result = module.run(options)
    except Exception as error:
        traceback.print_exc()
        result = Result(
            number, TARGETS[number], "", "", [], error=f"{type(error).__name__}: {error}"
        )
    result.seconds = time.perf_counter() - started
    return result


def unit(name: str) -> str:
    return name if name.startswith("/") else f" {name}"


def summary(results: Sequence[Result]) -> str:
    rows = [("T", "check", "value", "target", "result", "time")]
    for result in results:
        if result.error:
            rows.append((f"T{result.number}", "(did not run)", "", "", "ERROR", ""))
            continue
        for n, check in enumerate(result.checks):
            sign = ">=" if check.at_least else "<="
            value, target = (
                (f"{check.value:.2f}x", f"{sign} {check.target:g}x")
                if check.unit == "x"
                else (
                    f"{check.value:,.0f}{unit(check.unit)}",
                    f"{sign} {check.target:,.0f}{unit(check.unit)}",
                )
            )
            rows.append(
                (
                    f"T{result.number}" if n == 0 else "",
                    check.label,
                    value,
                    target,
                    "PASS" if check.passed else "FAIL",
                    f"{result.seconds:.0f} s" if n == 0 else "",
                )
            )
        if result.fails_because:
            rows.append(("", result.fails_because, "", "", "FAIL", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Accord performance benchmarks (docs/performance.md)"
    )
    parser.add_argument(
        "--only", type=int, nargs="+", choices=sorted(TARGETS), metavar="N", help="targets to run"
    )
    parser.add_argument(
        "--quick", action="store_true", help="shorter runs and smaller data sets (a smoke run)"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="regenerate cached data sets (the rebuild store)"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when any target fails")
    args = parser.parse_args(argv)
    options = Options(quick=args.quick, fresh=args.fresh)
    # Like the server: JSON at INFO. In-process benchmarks send the lines to /dev/null.
    configure_logging(fmt="json", level="INFO")

    began = time.perf_counter()
    print(f"Accord benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M UTC}", flush=True)
    print(f"machine: {machine()}")
    print(f"load average at start: {load_average()}")
    print(
        "mode: "
        + ("--quick (short runs, smaller data sets)" if options.quick else "full")
        + (", --fresh" if options.fresh else "")
    )
    print(flush=True)
    results = []
    for number in args.only or sorted(TARGETS):
        print(f"-- T{number} ({TARGETS[number]}) ...", flush=True)
        result = run_one(number, options)
        results.append(result)
        print(result.line(), flush=True)
        print(f"      ({result.seconds:.0f} s; load average now {load_average()})", flush=True)
    print()
    print(summary(results))
    passed = sum(r.passed for r in results)
    print()
    print(
        f"{passed} of {len(results)} targets pass; total {time.perf_counter() - began:.0f} s; "
        f"load average at end: {load_average()}"
    )
    if any(r.error for r in results):
        return 1
    return 1 if args.strict and passed < len(results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
