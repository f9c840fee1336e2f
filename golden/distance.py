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
    """The sort key of the candidate list and the sorter: ``(dist << id_bits) | id`` orders
    by distance, then by id.  Python ints in, a Python int out; arrays broadcast (``uint64``
    if either is ``uint64``, else ``int64``)."""
    if np.ndim(dist) == 0 and np.ndim(ids) == 0:
        return (int(dist) << id_bits) | int(ids)
    d, i = np.asarray(dist), np.asarray(ids)
    t = np.uint64 if np.uint64 in (d.dtype, i.dtype) else np.int64
    return (d.astype(t) << t(id_bits)) | i.astype(t)


def split_key(key, id_bits: int):
    """Inverse of :func:`sort_key`: ``(dist, id)``."""
    if np.ndim(key) == 0:
        return int(key) >> id_bits, int(key) & ((1 << id_bits) - 1)
    k = np.asarray(key)
    t = k.dtype.type
    return k >> t(id_bits), k & t((1 << id_bits) - 1)
