"""Golden model of the bitonic sorter: the network is defined here, once.

Contract (shared bit for bit with :mod:`proxima.hdl.sorter`)
-----------------------------------------------------------
* A *key* is an unsigned integer of ``cfg.sort_key_bits`` bits::

      key = (distance << cfg.id_bits) | id

  with ``distance < 2**cfg.pq_dist_bits`` and ``id < 2**cfg.id_bits``.  Sorting keys in
  ascending order therefore orders candidates by distance and breaks distance ties by the
  smaller id first.  Two different candidates never compare equal, so the network's order
  is a total order and equals ``numpy.sort`` of the keys.
* An unused (invalid / padding) slot holds the all-ones key ``2**sort_key_bits - 1``
  (:func:`pad_key`); it sorts after every real candidate.  A real candidate must not use
  the all-ones key (that is: distance all-ones *and* id all-ones), :func:`make_keys`
  refuses it.
* The network (:func:`bitonic_network`) is Batcher's bitonic sorting network for
  ``n = 2**p`` inputs: ``p * (p + 1) / 2`` stages of ``n / 2`` disjoint compare-exchange
  elements each.  A compare-exchange ``(i, j, ascending)`` with ``i < j`` leaves
  ``min(x[i], x[j])`` in slot ``i`` and the max in slot ``j`` when ``ascending`` is true,
  and the reverse otherwise.  After the last stage slot 0 holds the smallest key.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from .distance import sort_key, split_key

if TYPE_CHECKING:  # pragma: no cover
    from proxima.config import ProximaConfig

__all__ = [
    "SorterError",
    "CompareExchange",
    "bitonic_network",
    "network_depth",
    "apply_stage",
    "sort_keys",
    "pad_key",
    "make_keys",
    "split_keys",
    "pad_vector",
]

#: One compare-exchange element: (low slot i, high slot j, ascending).
CompareExchange = tuple[int, int, bool]


class SorterError(ValueError):
    """Bad input to the sorter model (size, dtype, key range)."""


def _check_n(n: int) -> int:
    n = int(n)
    if n < 2 or n & (n - 1):
        raise SorterError(f"bitonic sorter size must be a power of two >= 2, got {n}")
    return n


@lru_cache(maxsize=None)
def _network(n: int) -> tuple[tuple[CompareExchange, ...], ...]:
    stages: list[tuple[CompareExchange, ...]] = []
    k = 2
    while k <= n:  # size of the bitonic sequences being merged
        j = k // 2
        while j >= 1:  # distance of the compare-exchange partners
            stage = []
            for i in range(n):
                partner = i ^ j
                if partner > i:
                    stage.append((i, partner, (i & k) == 0))
            stages.append(tuple(stage))
            j //= 2
        k *= 2
    return tuple(stages)


def bitonic_network(n: int) -> list[list[CompareExchange]]:
    """The bitonic sorting network for ``n`` inputs (``n`` a power of two >= 2).

    Returns a list of stages; each stage is a list of ``n // 2`` compare-exchange elements
    ``(i, j, ascending)`` with ``i < j`` and every slot used exactly once per stage, so the
    elements of one stage work in parallel.  Stage order is the order of evaluation.
    The RTL (:class:`proxima.hdl.sorter.BitonicSorter`) elaborates from this function.
    """
    return [list(stage) for stage in _network(_check_n(n))]


def network_depth(n: int) -> int:
    """Number of stages of the ``n``-input network: ``p * (p + 1) // 2`` for ``n = 2**p``."""
    return len(_network(_check_n(n)))


def apply_stage(keys: np.ndarray, stage: list[CompareExchange]) -> np.ndarray:
    """Apply one stage of compare-exchanges to ``keys`` (shape ``(..., n)``), returning a copy."""
    out = keys.copy()
    i = np.array([c[0] for c in stage], dtype=np.intp)
    j = np.array([c[1] for c in stage], dtype=np.intp)
    asc = np.array([c[2] for c in stage], dtype=bool)
    a = keys[..., i]
    b = keys[..., j]
    lo = np.minimum(a, b)
    hi = np.maximum(a, b)
    out[..., i] = np.where(asc, lo, hi)
    out[..., j] = np.where(asc, hi, lo)
    return out


def _as_key_array(keys, key_bits: int | None) -> np.ndarray:
    arr = np.asarray(keys)
    if arr.ndim == 0:
        raise SorterError("keys must be an array of shape (n,) or (batch, n), got a scalar")
    if arr.dtype == object:
        try:
            ints = [int(x) for x in arr.ravel()]
        except (TypeError, ValueError):
            raise SorterError("keys must be integers") from None
        if any(x < 0 or x >= 1 << 64 for x in ints):
            raise SorterError("keys must be in 0 .. 2**64-1")
        arr = np.array(ints, dtype=np.uint64).reshape(arr.shape)
    if not np.issubdtype(arr.dtype, np.integer):
        raise SorterError(f"keys must have an integer dtype, got {arr.dtype}")
    if np.issubdtype(arr.dtype, np.signedinteger):
        if arr.size and int(arr.min()) < 0:
            raise SorterError("keys must be non-negative")
    arr = arr.astype(np.uint64)
    if key_bits is not None:
        if not 1 <= key_bits <= 64:
            raise SorterError(f"key_bits must be in 1..64, got {key_bits}")
        if arr.size and key_bits < 64 and int(arr.max()) >> key_bits:
            raise SorterError(f"key {int(arr.max()):#x} does not fit in {key_bits} bits")
    return arr


def sort_keys(keys, key_bits: int | None = None) -> np.ndarray:
    """Run the bitonic network on integer keys; returns a new ``uint64`` array.

    ``keys`` has shape ``(n,)`` or ``(batch, n)`` with ``n`` a power of two; each row is
    sorted ascending by passing it through :func:`bitonic_network` stage by stage (the
    same compare-exchanges the RTL performs).  If ``key_bits`` is given every key must fit
    in it (:class:`SorterError` otherwise).
    """
    arr = _as_key_array(keys, key_bits)
    n = _check_n(arr.shape[-1])
    for stage in _network(n):
        arr = apply_stage(arr, list(stage))
    return arr


def pad_key(cfg: "ProximaConfig") -> int:
    """The key of an unused slot: all ones over ``cfg.sort_key_bits``."""
    return (1 << cfg.sort_key_bits) - 1


def make_keys(cfg: "ProximaConfig", distances, ids) -> np.ndarray:
    """Pack distances and ids into sorter keys ``(distance << id_bits) | id`` (uint64)."""
    d = np.asarray(distances)
    i = np.asarray(ids)
    if d.shape != i.shape:
        raise SorterError(f"distances {d.shape} and ids {i.shape} differ in shape")
    for name, a, bits in (("distance", d, cfg.pq_dist_bits), ("id", i, cfg.id_bits)):
        if not np.issubdtype(a.dtype, np.integer):
            raise SorterError(f"{name}s must be integers, got {a.dtype}")
        if a.size and (int(a.min()) < 0 or int(a.max()) >> bits):
            raise SorterError(f"{name}s must be in 0 .. 2**{bits}-1")
    keys = sort_key(d.astype(np.uint64), i.astype(np.uint64), cfg.id_bits)
    if keys.size and np.any(keys == np.uint64(pad_key(cfg))):
        raise SorterError("a real candidate may not use the all-ones padding key")
    return keys


def split_keys(cfg: "ProximaConfig", keys) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`make_keys`: ``(distances, ids)`` as uint64 arrays."""
    return split_key(_as_key_array(keys, cfg.sort_key_bits), cfg.id_bits)


def pad_vector(cfg: "ProximaConfig", keys, n: int | None = None) -> np.ndarray:
    """Fill a 1-D key list up to ``n`` (default ``cfg.engine.sorter_n``) with padding keys."""
    n = _check_n(cfg.engine.sorter_n if n is None else n)
    k = _as_key_array(keys, cfg.sort_key_bits)
    if k.ndim != 1:
        raise SorterError("pad_vector takes a 1-D key list")
    if k.size > n:
        raise SorterError(f"{k.size} keys do not fit a {n}-input sorter")
    out = np.full(n, pad_key(cfg), dtype=np.uint64)
    out[: k.size] = k
    return out
