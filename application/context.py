"""Who is calling, and under which correlation id (never personal data)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from application.randomness import new_uuid


class CallContext(BaseModel):
    model_config = ConfigDict(frozen=True)

    actor: str = Field(min_length=1, max_length=200)
    correlation_id: str = Field(default_factory=lambda: str(new_uuid()), min_length=1)


SYSTEM = CallContext(actor="system")
