"""An in-memory ``Docs`` for unit tests of a projection's fold and queries (no store involved).

Integration tests run the same projections through the runner on SQLite and PostgreSQL.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

from projections.store import Doc


class MemoryDocs:
    def __init__(self, position: int = 0) -> None:
        self.docs: dict[tuple[str, str], tuple[str | None, Doc]] = {}
        self._position = position

    @property
    def position(self) -> int:
        return self._position

    def get(self, kind: str, key: str) -> Doc | None:
        found = self.docs.get((kind, key))
        return copy.deepcopy(found[1]) if found else None

    def put(self, kind: str, key: str, doc: Doc, *, group: str | None = None) -> None:
        self.docs[(kind, key)] = (group, copy.deepcopy(doc))

    def delete(self, kind: str, key: str) -> None:
        self.docs.pop((kind, key), None)

    def scan(
        self,
        kind: str,
        *,
        group: str | None = None,
        after_key: str | None = None,
        limit: int | None = None,
    ) -> Iterator[tuple[str, Doc]]:
        keys = sorted(
            key
            for (k, key), (g, _) in self.docs.items()
            if k == kind
            and (group is None or g == group)
            and (after_key is None or key > after_key)
        )
        for key in keys[:limit] if limit is not None else keys:
            yield key, copy.deepcopy(self.docs[(kind, key)][1])
