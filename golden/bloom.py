"""Visited-set Bloom filter, bit for bit as the hardware builds it.

Structure: a *partitioned* Bloom filter.  ``k = cfg.bloom.hashes`` banks of
``B = cfg.bloom.bank_bits`` bits each; hash ``i`` addresses one bit of bank ``i`` only, so the
hardware holds each bank in its own single-port memory and touches all banks in one cycle.

Hash ``i`` of a vertex id ``x`` (``id_bits`` wide):

1. H3 hash to 32 bits: ``h = XOR over every set bit j of x of Q[i][j]``, where ``Q[i][j]`` are
   32-bit words drawn from splitmix64 seeded with ``cfg.bloom.seed`` (:func:`h3_matrix`; row
   ``i`` is words ``i*id_bits .. i*id_bits + id_bits - 1`` of the stream, the low 32 bits of each).
2. Range reduction by multiply-shift: ``index = (h * B) >> 32`` (for a power-of-two ``B`` this is
   the top ``log2 B`` bits of ``h``).

``test_and_set(x)``: ``hit = all k addressed bits were 1``; then all k bits are set.  An id
reported as a hit is treated as visited (a false positive skips a vertex that was never seen;
the search counts these).  ``clear()`` empties the filter between queries.
"""

from __future__ import annotations

import numpy as np

from proxima.config import ProximaConfig

__all__ = ["splitmix64", "h3_matrix", "bloom_indices", "bloom_table", "BloomFilter"]

_MASK64 = (1 << 64) - 1


def splitmix64(seed: int, count: int) -> list[int]:
    """``count`` outputs of the splitmix64 generator started at ``seed`` (64-bit ints)."""
    out = []
    s = seed & _MASK64
    for _ in range(count):
        s = (s + 0x9E3779B97F4A7C15) & _MASK64
        z = s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        out.append(z ^ (z >> 31))
    return out


def h3_matrix(cfg: ProximaConfig) -> np.ndarray:
    """``(hashes, id_bits)`` uint32 H3 rows: entry ``[i, j]`` is XORed in when id bit j is set."""
    k, w = cfg.bloom.hashes, cfg.id_bits
    words = splitmix64(cfg.bloom.seed, k * w)
    return np.array([x & 0xFFFFFFFF for x in words], dtype=np.uint32).reshape(k, w)


def _h3(ids: np.ndarray, q: np.ndarray) -> np.ndarray:
    """H3 hashes of ``ids`` (any shape) for every row of ``q``: shape ``(hashes,) + ids.shape``."""
    ids = np.asarray(ids, dtype=np.int64)
    h = np.zeros((q.shape[0],) + ids.shape, dtype=np.uint32)
    for j in range(q.shape[1]):
        bit = ((ids >> j) & 1).astype(bool)
        h ^= np.where(bit, q[:, j].reshape((-1,) + (1,) * ids.ndim), np.uint32(0))
    return h


def bloom_indices(cfg: ProximaConfig, ids: np.ndarray, q: np.ndarray | None = None) -> np.ndarray:
    """Bank-local bit indices, shape ``(hashes,) + ids.shape``, int64 in ``0 .. bank_bits-1``."""
    if q is None:
        q = h3_matrix(cfg)
    h = _h3(ids, q).astype(np.uint64)
    return ((h * np.uint64(cfg.bloom.bank_bits)) >> np.uint64(32)).astype(np.int64)


def bloom_table(cfg: ProximaConfig, n: int) -> np.ndarray:
    """``(n, hashes)`` int32: the bank-local bit indices of every id ``0..n-1``.

    A look-up table of :func:`bloom_indices`, so searches hash an id with one read.
    """
    q = h3_matrix(cfg)
    out = np.empty((n, cfg.bloom.hashes), dtype=np.int32)
    step = 1 << 18
    for s in range(0, n, step):
        ids = np.arange(s, min(n, s + step), dtype=np.int64)
        out[s:s + len(ids)] = bloom_indices(cfg, ids, q).T
    return out


class BloomFilter:
    """One query's visited set (the golden twin of ``hdl/bloom.py``).

    ``table`` (optional) is :func:`bloom_table` for the ids in use, to avoid re-hashing.
    """

    def __init__(self, cfg: ProximaConfig, table: np.ndarray | None = None):
        self.cfg = cfg
        self.q = h3_matrix(cfg)
        self.table = table
        self.bits = np.zeros((cfg.bloom.hashes, cfg.bloom.bank_bits), dtype=bool)
        self._rows = np.arange(cfg.bloom.hashes)

    def clear(self) -> None:
        self.bits[:] = False

    def indices(self, x: int) -> np.ndarray:
        if self.table is not None and 0 <= x < len(self.table):
            return self.table[x]
        return bloom_indices(self.cfg, np.array(x), self.q)

    def test(self, x: int) -> bool:
        return bool(self.bits[self._rows, self.indices(x)].all())

    def test_and_set(self, x: int) -> bool:
        """Return whether ``x`` looked visited, then mark it visited."""
        idx = self.indices(x)
        hit = bool(self.bits[self._rows, idx].all())
        self.bits[self._rows, idx] = True
        return hit
