"""Frequency reordering and hot-vertex selection.

1. :func:`visit_frequency` searches a sample of base vectors and counts, per vertex, the
   ``('frame', v)`` events (expansions: the reads a hot frame saves work on).
2. :func:`reorder` renumbers the vertices: the entry becomes id 0, every other vertex follows
   in decreasing count, ties broken by the old id (smaller first).  ``perm[new] = old``.
   Rows are remapped and re-sorted ascending (padding ``-1`` stays at the end), vectors and
   codes are permuted, and ``hot`` = new ids ``0 .. H-1`` with
   ``H = hot_count(cfg, N) = ceil(hot_fraction * N)`` (the entry is always among them when
   ``H >= 1``).

Small hot ids put the hot frames in their own region of the image and give the hardware a
one-comparison hot test (``v < H``).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Callable

import numpy as np

from proxima.config import ProximaConfig

from .index import Index

__all__ = ["ReorderError", "hot_count", "visit_frequency", "reorder", "relabel",
           "sample_base_vectors"]


class ReorderError(ValueError):
    """Bad input to the reordering (counts of the wrong shape, not a permutation...)."""


def hot_count(cfg: ProximaConfig, n: int) -> int:
    """``ceil(hot_fraction * n)`` computed exactly on the decimal value of the fraction."""
    f = Fraction(str(cfg.layout.hot_fraction))
    return min(n, -(-(f.numerator * n) // f.denominator))


def sample_base_vectors(index: Index, count: int | None = None, seed: int = 0) -> np.ndarray:
    """``count`` (default ``cfg.layout.reorder_sample``) distinct base vectors, sorted by id."""
    count = index.cfg.layout.reorder_sample if count is None else count
    count = min(int(count), index.n)
    rng = np.random.default_rng(seed)
    return index.vectors[np.sort(rng.choice(index.n, size=count, replace=False))]


def visit_frequency(index: Index, sample_vectors: np.ndarray,
                    search_fn: Callable[[Index, np.ndarray], object]) -> np.ndarray:
    """Expansion count per vertex over searches of ``sample_vectors``: ``(N,)`` int64.

    ``search_fn(index, q)`` must return an object with ``.events`` (the search's event list)."""
    counts = np.zeros(index.n, dtype=np.int64)
    for q in np.asarray(sample_vectors):
        ev = getattr(search_fn(index, q), "events", None)
        if ev is None:
            raise ReorderError("search_fn must return an object with .events")
        fr = [v for kind, v in ev if kind == "frame"]
        if fr:
            np.add.at(counts, np.asarray(fr, dtype=np.int64), 1)
    return counts


def relabel(index: Index, perm: np.ndarray, hot: int = 0) -> Index:
    """The index renumbered by ``perm`` (``perm[new] = old``) with new ids ``0..hot-1`` hot."""
    n = index.n
    perm = np.asarray(perm, dtype=np.int64)
    if perm.shape != (n,) or not np.array_equal(np.sort(perm), np.arange(n)):
        raise ReorderError(f"perm must be a permutation of 0..{n - 1}")
    inv = np.empty(n, dtype=np.int64)
    inv[perm] = np.arange(n)
    old = index.neighbors[perm]
    rows = np.where(old >= 0, inv[np.maximum(old, 0)], np.iinfo(np.int64).max)
    rows = np.sort(rows, axis=1)
    rows = np.where(rows == np.iinfo(np.int64).max, -1, rows).astype(np.int32)
    hot_mask = np.zeros(n, dtype=bool)
    hot_mask[:hot] = True
    return Index(cfg=index.cfg, vectors=index.vectors[perm], neighbors=rows,
                 entry=int(inv[index.entry]), codebook=index.codebook,
                 codes=index.codes[perm], hot=hot_mask, quantiser=index.quantiser,
                 labels=index.labels[perm])


def reorder(index: Index, counts: np.ndarray) -> tuple[Index, np.ndarray]:
    """Renumber by visit frequency; returns ``(new_index, perm)`` with ``perm[new] = old``."""
    n = index.n
    counts = np.asarray(counts)
    if counts.shape != (n,):
        raise ReorderError(f"counts must have shape ({n},), got {counts.shape}")
    if (counts < 0).any():
        raise ReorderError("counts must be >= 0")
    e = int(index.entry)
    key = -counts.astype(np.int64)
    # lexsort: last key is primary -> (not entry, -count, old id)
    perm = np.lexsort((np.arange(n), key, np.arange(n) != e))
    return relabel(index, perm, hot_count(index.cfg, n)), perm
