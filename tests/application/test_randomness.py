"""Random bytes from a per-thread buffer: each byte of kernel randomness handed out once."""

from __future__ import annotations

import os
import threading
import uuid
from itertools import count

import pytest

from application import randomness
from application.randomness import CHUNK, new_uuid, random_bytes


@pytest.fixture
def counting_kernel(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """``os.urandom`` replaced by a counter, so which bytes were handed out is visible."""
    reads: list[int] = []
    numbers = count()

    def urandom(n: int) -> bytes:
        reads.append(n)
        return bytes(next(numbers) % 256 for _ in range(n))

    monkeypatch.setattr(os, "urandom", urandom)
    monkeypatch.setattr(randomness, "_buffer", randomness._Buffer())
    return reads


def test_draws_are_consecutive_slices_of_one_kernel_read(counting_kernel: list[int]) -> None:
    drawn = b"".join(random_bytes(12) for _ in range(CHUNK // 12))

    assert counting_kernel == [CHUNK]
    assert drawn == bytes(n % 256 for n in range(CHUNK // 12 * 12))


def test_a_draw_past_the_buffer_reads_afresh_and_never_reuses_bytes(
    counting_kernel: list[int],
) -> None:
    for _ in range(CHUNK // 16):
        random_bytes(16)
    after = random_bytes(16)

    assert counting_kernel == [CHUNK, CHUNK]
    assert after == bytes(n % 256 for n in range(CHUNK, CHUNK + 16))


def test_a_draw_larger_than_the_chunk_is_served_whole(counting_kernel: list[int]) -> None:
    assert len(random_bytes(CHUNK * 3)) == CHUNK * 3
    assert counting_kernel == [CHUNK * 3]


def test_each_thread_draws_from_its_own_buffer(counting_kernel: list[int]) -> None:
    random_bytes(16)
    other: list[bytes] = []
    thread = threading.Thread(target=lambda: other.append(random_bytes(16)))
    thread.start()
    thread.join()

    assert counting_kernel == [CHUNK, CHUNK]
    assert other == [bytes(n % 256 for n in range(CHUNK, CHUNK + 16))]


def test_a_forked_child_does_not_reuse_the_parents_buffer() -> None:
    random_bytes(16)  # the parent's buffer now holds unused bytes
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next draw, then out at once
        os.write(write_end, random_bytes(16))
        os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 16)
    os.close(read_end)
    os.waitpid(pid, 0)

    assert len(child) == 16
    assert child != random_bytes(16)  # without the reset both would take the same next bytes


def test_new_uuid_is_a_random_version_4_uuid() -> None:
    made = {new_uuid() for _ in range(1000)}

    assert len(made) == 1000
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in made)
