"""The Accord domain: aggregates, their events, value types and invariants.

Nothing here performs I/O, reads a clock or generates identifiers: time and
ids arrive as arguments, so every decision is a pure function of state and
command, which is what lets the log be replayed and audited.
"""
