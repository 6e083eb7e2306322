"""Deterministic byte streams, generated on the fly (never held whole in memory), and their hashes.

Every 256 KiB block starts with its own index, so a proxy that dropped, repeated or reordered whole
blocks changes the hash even though the rest of each block is the same pseudo-random filler.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from typing import Iterator

BLOCK = 256 * 1024


@functools.lru_cache(maxsize=None)
def _filler() -> bytes:
    out = bytearray()
    seed = b"credproxy-itest-filler"
    counter = 0
    while len(out) < BLOCK:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:BLOCK])


def generate(total: int, block: int = BLOCK) -> Iterator[bytes]:
    """Yield ``total`` bytes in pieces of at most ``block`` bytes (block <= BLOCK)."""
    assert 0 < block <= BLOCK
    filler = _filler()
    sent = 0
    index = 0
    while sent < total:
        # One logical 256 KiB block per index; split into pieces when `block` is smaller.
        full = struct.pack(">Q", index) + filler[8:]
        index += 1
        for off in range(0, BLOCK, block):
            if sent >= total:
                break
            piece = full[off : off + block]
            if sent + len(piece) > total:
                piece = piece[: total - sent]
            sent += len(piece)
            yield piece


@functools.lru_cache(maxsize=64)
def expected_sha256(total: int) -> str:
    h = hashlib.sha256()
    for piece in generate(total):
        h.update(piece)
    return h.hexdigest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
