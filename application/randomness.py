"""Random bytes and UUIDs for hot paths, drawn from ``os.urandom`` 4 KiB at a time.

``os.urandom`` is a system call that lets go of the interpreter lock. On a
busy server, getting it back waits for whichever thread took it, so a batch
that holds aggregates' locks and needs two random values per item (a nonce
for each sealed value, a new id for each interaction) was handing the
interpreter to other threads a thousand times per 500-item batch. Here each
thread keeps its own buffer of kernel randomness and takes the bytes it needs
from it: the same source, one system call per 4 KiB.

Bytes are handed out once: a buffer belongs to one thread and is consumed in
order, and a forked child throws away what it inherited (a nonce used twice
under one key would break AES-GCM).
"""

from __future__ import annotations

import os
import threading
from uuid import UUID

CHUNK = 4096
"""Bytes read from the kernel at a time."""


class _Buffer(threading.local):
    data: bytes = b""
    at: int = 0
    generation: int = -1


_buffer = _Buffer()
_generation = 0


def _forked() -> None:
    global _generation
    _generation += 1


os.register_at_fork(after_in_child=_forked)


def random_bytes(n: int) -> bytes:
    """``n`` bytes from the kernel's CSPRNG, as ``os.urandom(n)`` gives them."""
    buffer = _buffer
    at = buffer.at
    if at + n > len(buffer.data) or buffer.generation != _generation:
        buffer.data = os.urandom(max(CHUNK, n))
        buffer.generation = _generation
        at = 0
    buffer.at = at + n
    return buffer.data[at : at + n]


def new_uuid() -> UUID:
    """A random (version 4) UUID, as ``uuid.uuid4()`` makes it."""
    return UUID(bytes=random_bytes(16), version=4)
