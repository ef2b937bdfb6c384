"""A port for watching commands run: what happened, never what they said.

The executor reports each command's outcome here so that an adapter can turn
it into metrics without the application knowing about any metrics library
(imports point inward; see the import-linter contracts). Observers see the
command only to name its type: they must not read its fields, which may be
personal, and must not raise, because by the time they are called the
outcome is already decided (and, for ``recorded``, committed).
"""

from __future__ import annotations

from typing import Protocol

from application.commands import Command


class CommandObserver(Protocol):
    def recorded(self, command: Command, events: int) -> None:
        """The command was decided and ``events`` new events were committed."""

    def replayed(self, command: Command) -> None:
        """A repeated ``request_id``: the stored result was returned, nothing recorded."""

    def refused(self, command: Command, reason: str) -> None:
        """The command was refused (a domain reason code or an application error's name)."""

    def failed(self, command: Command, error: str) -> None:
        """The command could not be decided (store unavailable, a bug): ``error`` is a type name."""

    def conflict(self, command: Command) -> None:
        """Another writer committed first (an optimistic-concurrency conflict)."""

    def retry(self, command: Command) -> None:
        """After a conflict, the command is being decided again against the new state."""


class NoObserver:
    """The default: nobody is watching."""

    def recorded(self, command: Command, events: int) -> None:
        pass

    def replayed(self, command: Command) -> None:
        pass

    def refused(self, command: Command, reason: str) -> None:
        pass

    def failed(self, command: Command, error: str) -> None:
        pass

    def conflict(self, command: Command) -> None:
        pass

    def retry(self, command: Command) -> None:
        pass
