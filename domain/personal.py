"""Marking personal data (DESIGN §4).

Fields annotated ``Personal`` hold data about a natural person. The domain
only marks them; the infrastructure decides how they are protected at rest
(encrypted per customer, destroyed on erasure). Keeping the marker on the
type means a new personal field cannot be added without being protected.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Final, get_args, get_origin

from pydantic import BaseModel


class _PersonalMarker:
    __slots__ = ()

    def __repr__(self) -> str:
        return "PERSONAL"


PERSONAL: Final = _PersonalMarker()

Personal = Annotated[str, PERSONAL]
"""A string that is personal data."""

ERASED: Final = "[erased]"
"""What every personal field reads as once its customer's data key is destroyed."""


def _marks_personal(annotation: Any) -> bool:
    """True when ``annotation`` is ``Personal`` or contains it (``Personal | None``)."""
    if get_origin(annotation) is Annotated:
        return any(meta is PERSONAL for meta in get_args(annotation)[1:])
    return any(_marks_personal(arg) for arg in get_args(annotation))


@cache
def personal_fields(model: type[BaseModel]) -> frozenset[str]:
    """Names of the fields of ``model`` that hold personal data (a class's are fixed: cached)."""
    return frozenset(
        name
        for name, info in model.model_fields.items()
        if any(meta is PERSONAL for meta in info.metadata) or _marks_personal(info.annotation)
    )


def is_personal(model: type[BaseModel], field: str) -> bool:
    return field in personal_fields(model)


def redact(model: type[BaseModel], values: dict[str, Any], marker: str) -> dict[str, Any]:
    """A copy of ``values`` with every personal field replaced by ``marker``."""
    fields = personal_fields(model)
    return {k: (marker if k in fields and v is not None else v) for k, v in values.items()}
