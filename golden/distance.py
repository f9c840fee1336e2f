"""Exact distances on quantised vectors: the arithmetic of ``hdl/exact.py``.

``exact(a, b) = sum_d (a[d] - b[d])**2`` over unsigned ``elem_bits``-bit elements; the result
is ``cfg.exact_dist_bits`` wide and never overflows.  The hardware accumulates ``exact_lanes``
products per cycle in element order; integer addition is associative, so the order does not
change the value.
"""

from __future__ import annotations

import numpy as np

__all__ = ["exact_distances", "sort_key", "split_key"]


def exact_distances(query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Squared L2 between one query and each row of ``vectors`` (int64)."""
    q = np.asarray(query, dtype=np.int64)
    x = np.asarray(vectors, dtype=np.int64)
    d = x - q
    return (d * d).sum(axis=-1)


def sort_key(dist, ids, id_bits: int):
    """The sorter's key: ``(dist << id_bits) | id`` orders by distance, then by id."""
    return (np.asarray(dist, dtype=np.int64) << id_bits) | np.asarray(ids, dtype=np.int64)


def split_key(key, id_bits: int):
    key = np.asarray(key, dtype=np.int64)
    return key >> id_bits, key & ((1 << id_bits) - 1)
