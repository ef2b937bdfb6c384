"""Benchmarks for the performance targets: `make bench` (see docs/performance.md).

Every benchmark measures its baseline(s) in the same run, on the same machine,
and prints the ratio, the absolute figures and PASS/FAIL against its target.
Nothing here runs in `make test`.
"""
