"""structlog, configured once: JSON for machines, console for people.

Events are logged by id, never by content; as a second line of defence the
``drop_personal_keys`` processor removes any key that names a personal field,
so a careless ``log.info(..., email=...)`` cannot leak into log storage.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

import orjson
import structlog

PERSONAL_KEYS = frozenset({"display_name", "name", "email", "phone", "summary", "notes"})
REDACTED = "[redacted]"


def drop_personal_keys(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in PERSONAL_KEYS.intersection(event_dict):
        event_dict[key] = REDACTED
    return event_dict


class _StderrLogger:
    """Writes each line to the *current* ``sys.stderr`` (which tests and daemons may swap)."""

    def msg(self, message: str) -> None:
        say(message)

    log = debug = info = warn = warning = error = critical = exception = msg


def say(line: str) -> None:
    """Write ``line`` to stderr in one write, newline included.

    The server and its read-model worker share one stderr; ``print`` writes
    the text and the newline separately (stderr is unbuffered under
    ``python -u``), so another process's line could land between them and two
    JSON lines become one unreadable line.
    """
    stream = sys.stderr
    stream.write(line + "\n")
    stream.flush()


def _json_line(event_dict: Any, default: Callable[[Any], Any] | None = None, **_: Any) -> str:
    """The JSON renderer's serializer: orjson, a tenth of the standard library's cost.

    Every RPC writes at least one line, so this is on every call's path.
    ``default`` is structlog's fallback (the value's ``repr``) for what JSON
    cannot hold; whatever orjson still refuses (non-string keys, integers
    beyond 64 bits) goes through the standard library instead.
    """
    try:
        return orjson.dumps(event_dict, default=default).decode()
    except TypeError:
        return json.dumps(event_dict, default=default)


def _stderr_logger(*_: Any) -> _StderrLogger:
    return _StderrLogger()


def configure_logging(fmt: str | None = None, level: str | None = None) -> None:
    fmt = (
        fmt or os.environ.get("ACCORD_LOG_FORMAT") or ("console" if sys.stderr.isatty() else "json")
    )
    level_name = (level or os.environ.get("ACCORD_LOG_LEVEL") or "INFO").upper()
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_json_line)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            drop_personal_keys,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level_name, logging.INFO)
        ),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=True,
    )
