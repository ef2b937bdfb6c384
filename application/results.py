"""What a successful command returns."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from domain.customer import DataShared, DataShareRefused
from domain.events import DomainEvent
from domain.sharing import ShareReason


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


@dataclass(frozen=True)
class ShareOutcome:
    """A share's result, read back from the event it recorded (fresh or replayed alike)."""

    result: CommandResult
    share_id: UUID
    shared: bool
    reasons: tuple[ShareReason, ...]
    relied_on_consent_ids: tuple[UUID, ...]
    agreement_id: UUID | None
    partner_version: int | None

    @classmethod
    def of(cls, result: CommandResult, event: DomainEvent) -> ShareOutcome:
        if isinstance(event, DataShared):
            return cls(
                result,
                event.share_id,
                True,
                (),
                event.relied_on_consent_ids,
                event.agreement_id,
                event.partner_version,
            )
        assert isinstance(event, DataShareRefused)
        return cls(result, event.share_id, False, event.reasons, (), None, event.partner_version)
