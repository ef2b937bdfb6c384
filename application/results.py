"""What a successful command returns."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID


@dataclass(frozen=True)
class CommandResult:
    aggregate_id: UUID
    version: int
    """The aggregate's version after the command."""
    position: int
    """The log position of the command's last event (for read-your-writes)."""
    entity_id: UUID | None = None
    """The id of what the command created inside the aggregate (contact, interaction...)."""
    replayed: bool = False
    """True when this is the stored result of an earlier request with the same id."""
