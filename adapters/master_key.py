"""Where the master key comes from (DESIGN §4): never from the database.

``ACCORD_MASTER_KEY`` (base64) wins; else the file named by
``ACCORD_MASTER_KEY_FILE``; else, for SQLite only, ``accord.key`` beside the
database, generated on first run readable by its owner alone. PostgreSQL with
neither variable refuses to start: a production key must be provisioned, not
conjured next to whichever process happened to start first.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from adapters.store import StoreConfig
from application.personal_data import MasterKey, MasterKeyError


def load_master_key(config: StoreConfig, environ: Mapping[str, str] | None = None) -> MasterKey:
    env = os.environ if environ is None else environ
    if env.get("ACCORD_MASTER_KEY"):
        return MasterKey.from_base64(env["ACCORD_MASTER_KEY"])
    if env.get("ACCORD_MASTER_KEY_FILE"):
        return _read(Path(env["ACCORD_MASTER_KEY_FILE"]), create=False)
    if config.kind == "sqlite" and config.sqlite_path is not None:
        return _read(config.sqlite_path.with_name("accord.key"), create=True)
    raise MasterKeyError(
        "no master key: with PostgreSQL set ACCORD_MASTER_KEY (base64 of 32 random bytes) "
        "or ACCORD_MASTER_KEY_FILE (a file holding it, mode 0600)"
    )


def _read(path: Path, *, create: bool) -> MasterKey:
    if not path.exists():
        if not create:
            raise MasterKeyError(f"the master key file {path} does not exist")
        return _generate(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise MasterKeyError(
            f"the master key file {path} is readable by others (mode {mode:o}); chmod 600 it"
        )
    return MasterKey.from_base64(path.read_text())


def _generate(path: Path) -> MasterKey:
    key = MasterKey.generate()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return _read(path, create=False)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.to_base64() + "\n")
    return key


def write_master_key(path: Path, key: MasterKey) -> None:
    """Write a new key file (0600); refuses to overwrite an existing one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.to_base64() + "\n")
