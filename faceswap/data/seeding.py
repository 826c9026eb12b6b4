"""Seeds derived from tuples of integers, so any random state is a pure function of its key."""

from __future__ import annotations

import hashlib
import struct

import numpy as np


def mix_seed(*parts: int | str) -> int:
    """A 63-bit seed that depends on every part (ints and short tags) and on nothing else.

    Python's hash() of ints is not a mixer (hash(1) == 1) and of strings is salted per process,
    so it can neither seed workers consistently nor keep nearby keys independent.
    """
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        if isinstance(p, str):
            h.update(b"s" + p.encode())
        else:
            h.update(b"i" + struct.pack("<q", int(p) & 0x7FFF_FFFF_FFFF_FFFF))
    return int.from_bytes(h.digest(), "little") & 0x7FFF_FFFF_FFFF_FFFF


def _key(parts: tuple[int | str, ...]) -> bytes:
    out = []
    for p in parts:
        if isinstance(p, str):
            out.append(b"s" + p.encode() + b"\0")
        else:
            out.append(b"i" + struct.pack("<q", int(p) & 0x7FFF_FFFF_FFFF_FFFF))
    return b"".join(out)


def keyed_uniforms(n: int, *parts: int | str) -> np.ndarray:
    """n float64 uniforms in [0, 1) that are a pure function of `parts`: SHAKE-128 output,
    53 bits per number. Cheaper to set up per sample than a numpy Generator (no SeedSequence)
    and, unlike Generator methods, fixed across numpy versions, so a run resumed on another
    install still sees the same augmentation."""
    raw = hashlib.shake_128(_key(parts)).digest(8 * n)
    return (np.frombuffer(raw, dtype="<u8") >> np.uint64(11)) * (2.0**-53)


def normals_from(u: np.ndarray) -> np.ndarray:
    """Standard normals from an even number of uniforms (Box-Muller), same count."""
    half = len(u) // 2
    r = np.sqrt(-2.0 * np.log1p(-u[:half]))
    t = (2.0 * np.pi) * u[half:]
    return np.concatenate([r * np.cos(t), r * np.sin(t)])
