"""Bearer tokens: a TOML file of token *hashes*, principals and roles.

The file never holds a token, only its SHA-256, so reading it (or a backup of
it) lets no one in. A token is checked against every entry with a
constant-time comparison, so the time an answer takes says nothing about how
close a guess was. The file is re-read when it changes: adding, revoking or
expiring a token needs no restart.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

ROLES = ("writer", "reader", "compliance", "auditor", "admin")
logger = structlog.get_logger(__name__)

TOKEN_PREFIX = "acc_"  # noqa: S105 - marks Accord tokens in secret scanners, not a secret
_RACY_NS = 2_000_000_000
"""A file modified less than this before it was read may change again unseen by its stamp."""


class TokensFileError(ValueError):
    """The tokens file cannot be used; the server does not start with it."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: becomes the events' actor. Never personal data."""

    name: str
    roles: frozenset[str]

    def has_any(self, roles: frozenset[str]) -> bool:
        return "admin" in self.roles or bool(self.roles & roles)


LOCAL_ADMIN = Principal("local-admin", frozenset({"admin"}))
"""Every caller when no tokens are configured (the server then listens on loopback only)."""


@dataclass(frozen=True)
class TokenEntry:
    principal: Principal
    sha256: bytes
    expires_at: datetime | None
    revoked: bool


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _entry(number: int, raw: object) -> TokenEntry:
    where = f"[[token]] #{number}"
    if not isinstance(raw, dict):
        raise TokensFileError(f"{where}: must be a table")
    principal = raw.get("principal")
    if not isinstance(principal, str) or not principal.strip() or len(principal) > 200:
        raise TokensFileError(f"{where}: principal must be a non-empty string")
    roles = raw.get("roles")
    if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
        raise TokensFileError(f"{where}: roles must be a non-empty list of strings")
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise TokensFileError(f"{where}: unknown roles {unknown}; choose from {list(ROLES)}")
    digest = raw.get("sha256")
    if not isinstance(digest, str) or len(digest) != 64:
        raise TokensFileError(f"{where}: sha256 must be 64 hex digits (the token's hash)")
    try:
        digest_bytes = bytes.fromhex(digest)
    except ValueError:
        raise TokensFileError(f"{where}: sha256 must be 64 hex digits") from None
    expires_at = raw.get("expires_at")
    if expires_at is not None and not isinstance(expires_at, datetime):
        raise TokensFileError(f"{where}: expires_at must be a TOML date-time")
    if isinstance(expires_at, datetime) and expires_at.tzinfo is None:
        raise TokensFileError(f"{where}: expires_at must carry a UTC offset")
    revoked = raw.get("revoked", False)
    if not isinstance(revoked, bool):
        raise TokensFileError(f"{where}: revoked must be true or false")
    return TokenEntry(Principal(principal, frozenset(roles)), digest_bytes, expires_at, revoked)


def load_tokens(path: Path) -> list[TokenEntry]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TokensFileError(f"tokens file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise TokensFileError(f"tokens file {path} is not valid TOML: {error}") from None
    entries = document.get("token", [])
    if not isinstance(entries, list):
        raise TokensFileError("`token` must be an array of tables ([[token]])")
    return [_entry(n, raw) for n, raw in enumerate(entries, start=1)]


class Authenticator:
    """Answers "who holds this token?", re-reading the file when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int, int] | None = None
        self._racy = True
        self._problem: str | None = None
        self._entries: list[TokenEntry] = []
        self._reload()

    def _reload(self) -> None:
        stat = self.path.stat()
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)
        if stamp == self._stamp and not self._racy:
            return
        read_at = time.time_ns()
        self._entries = load_tokens(self.path)
        self._stamp = stamp
        # File times are only as fine as the file system's clock (a jiffy, or seconds): a
        # same-size edit (a revocation) in the same tick as this read leaves the stamp as it
        # is. Until the file is older than that, read it again instead of trusting the stamp.
        self._racy = read_at - stat.st_mtime_ns < _RACY_NS

    def principal(self, token: str, now: datetime | None = None) -> Principal | None:
        """The principal of a valid token, or None (unknown, expired or revoked)."""
        with self._lock:
            # A file being rewritten or made invalid: keep serving with the last good one,
            # and say so (once per problem) so a revocation that did not take is noticed.
            try:
                self._reload()
            except (OSError, TokensFileError) as error:
                if str(error) != self._problem:
                    self._problem = str(error)
                    logger.warning("tokens_file_unusable_keeping_last_good", problem=str(error))
            else:
                self._problem = None
            entries = self._entries
        presented = hashlib.sha256(token.encode()).digest()
        moment = now or datetime.now(UTC)
        found: list[TokenEntry] = []
        for entry in entries:  # no early exit: every entry is compared
            if hmac.compare_digest(entry.sha256, presented):
                found.append(entry)
        # Deny overrides: a hash listed twice is refused if any copy is revoked or
        # expired, and when its copies name different principals.
        if not found or len({entry.principal for entry in found}) > 1:
            return None
        for entry in found:
            if entry.revoked or (entry.expires_at is not None and moment >= entry.expires_at):
                return None
        return found[0].principal


def add_token(
    path: Path, principal: str, roles: Sequence[str], expires_at: datetime | None = None
) -> str:
    """Append a new token's hash to the file (creating it, owner-only) and return the token."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    lines = [
        "",
        "[[token]]",
        f"principal = {_toml_string(principal)}",
        "roles = [" + ", ".join(_toml_string(r) for r in roles) + "]",
        f'sha256 = "{token_hash(token)}"',
    ]
    if expires_at is not None:
        lines.append(f"expires_at = {expires_at.isoformat()}")
    _entry(0, tomllib.loads("\n".join(lines[2:])))  # never append what the server would refuse
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    return token


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    if any(ord(c) < 32 for c in escaped):
        raise TokensFileError("control characters are not allowed")
    return f'"{escaped}"'
