"""Settings the application needs, independent of where they are read from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    snapshot_interval: int = Field(default=20, ge=1)
    """Take a snapshot every N events of an aggregate.

    Every command loads its aggregate: the newest snapshot plus the events
    since. At 20 a load decodes 10 events on average, at 100 it was 50 (the
    largest cost of a command); a small snapshot every 20 events is cheaper.
    """
    base_currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    """All amounts are in this currency; others are refused at the command."""
    max_attempts: int = Field(default=5, ge=1, le=50)
    """How often a command is decided again after losing a version race."""
    aggregate_cache_size: int = Field(default=10_000, ge=0)
    """How many aggregates a process keeps in memory between commands (0: none).

    A command on a cached aggregate skips the load (snapshot and events read
    and decoded). Safe with other writers: a stale copy makes the save
    conflict and the command is decided again from the store.
    """
    command_batch: int = Field(default=64, ge=1, le=1000)
    """How many concurrent ``RecordInteraction`` commands one batch may gather (1: none).

    While a batch is decided and saved, calls that arrive queue; the next
    batch records them together through the bulk path (one journal query,
    one transaction), each with the outcome it would have had alone. A call
    alone takes the one-command path at once (right after a shared batch, once
    ``command_linger_us`` is up).
    """
    command_linger_us: int = Field(default=1_000, ge=0, le=100_000)
    """How long (microseconds) a batch may wait to gather as many calls as the last one held.

    Callers answered together come back together: the first one back would
    otherwise be recorded alone (a whole transaction for one call) while the
    rest queue behind it, so batches alternated between full and one. After
    a shared batch the next waits at most this long for as many calls as it
    held; after a call recorded alone, nothing waits (0: never).
    """
