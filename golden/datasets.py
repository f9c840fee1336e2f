"""Deterministic synthetic data sets and exact (brute-force) ground truth.

Synthetic data
--------------
Two kinds, both mixtures around fixed cluster centres:

``sift``   uint8 vectors (default 128-d) in the character of SIFT descriptors: non-negative,
           heavy-tailed, many zero elements, every vector of L2 norm about 512.
``float``  float32 vectors of any dimension: Gaussian clusters with a heavy-tailed
           (log-normal) per-dimension scale profile.

The *distribution* (cluster centres, mixture weights, per-dimension profile) is fixed by
``(kind, dim, n_clusters, dist_seed)``; the *sample* is fixed by ``seed``.  Base vectors and
queries are drawn from the same distribution with different ``seed`` values (by
convention ``seed`` for the base and ``seed + QUERY_SEED_OFFSET`` for queries, see
:func:`synth_queries`).

Rows are produced in generation blocks of ``GEN_BLOCK`` rows; block ``b`` of a sample is
drawn from its own generator seeded by ``SeedSequence([seed, tag(kind), b])``, and row
``i`` depends only on the distribution and on block ``i // GEN_BLOCK``.  Therefore

* the same ``(kind, n, dim, seed, ...)`` always gives the same bytes (for a given NumPy
  version: the bit generators and distribution algorithms of ``np.random.Generator`` are
  the source), whatever chunk size the caller streams with;
* **prefix property**: the first ``m`` rows of an ``n``-row sample (``m <= n``) are the
  ``m``-row sample with the same parameters;
* any row range can be produced without generating the rows before it, so a set larger
  than RAM is streamed to a file chunk by chunk (:func:`write_synth`).

SIFT-like sample, per row (all in float64, then rounded once):
  1. pick cluster ``c`` with probability ``weights[c]``;
  2. ``y = centre[c] * G + profile * E * bg`` with ``G ~ Gamma(SIFT_SHAPE) / SIFT_SHAPE``
     (multiplicative, mean 1) and ``E ~ Exp(1)`` background noise, element-wise;
  3. subtract ``SIFT_FLOOR * mean(y)`` and clip at 0 (creates the zero elements);
  4. SIFT normalisation: scale to unit L2 norm, clip at ``SIFT_CLIP`` (0.2), renormalise,
     multiply by ``SIFT_SCALE`` (512), round half to even, clip to 0..255.

Float sample, per row: ``x = centre[c] + spread[c] * profile * N(0, 1)`` (float64, then
cast to float32).

Ground truth
------------
:func:`ground_truth` is an exact k-NN by squared L2 over a base of any size (an array, a
memmap or a file path; the base is read once, block by block).  faiss ``IndexFlatL2``
proposes ``k + margin`` candidates per base block; their distances are then recomputed
exactly -- in int64 for integer data (float32 is not exact above 2**24), in float64 by
direct differences for float data -- and merged across blocks in ``(distance, id)``
order, so ties are always broken by the smaller id whatever faiss did with them.  A
rigorous bound on faiss' float32 rounding error decides, per query and block, whether a
vector faiss did not propose could still belong to the top k (a long run of ties at the
boundary, or a near tie within the rounding error); if so that query's distances to the
whole block are computed exactly.  The result is therefore exactly the first k rows of
the full ``(distance, id)`` sort, and is deterministic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np

from proxima.golden.vecio import VectorFileError, VectorWriter, read_vectors, write_vectors

__all__ = [
    "DatasetError",
    "KINDS",
    "GEN_BLOCK",
    "QUERY_SEED_OFFSET",
    "SynthSpec",
    "synth_spec",
    "iter_synth",
    "synth",
    "synth_queries",
    "write_synth",
    "ground_truth",
    "write_ground_truth",
    "recall_at_k",
]


class DatasetError(ValueError):
    """Bad arguments for a synthetic data set or a ground-truth computation."""


KINDS = ("sift", "float")
GEN_BLOCK = 1024  # rows per generation block: part of the definition of the bytes
QUERY_SEED_OFFSET = 1_000_003  # synth_queries(seed) samples with seed + this

_KIND_TAG = {"sift": 0x5F17, "float": 0xF107}
_CENTRE_TAG = 0xCE17
_DEFAULT_DIM = {"sift": 128, "float": 96}
_DEFAULT_CLUSTERS = {"sift": 256, "float": 64}

# SIFT-like shape parameters
SIFT_CENTRE_SHAPE = 0.8  # Gamma shape of centre elements (heavy tail, many small values)
SIFT_PROFILE_SIGMA = 0.5  # log-normal sigma of the per-dimension profile
SIFT_SHAPE = 3.0  # Gamma shape of the multiplicative within-cluster noise
SIFT_BACKGROUND = 0.15  # relative level of the additive exponential background
SIFT_FLOOR = 0.25  # fraction of the row mean subtracted before clipping at 0
SIFT_CLIP = 0.2  # SIFT's clip level on the unit-normalised descriptor
SIFT_SCALE = 512.0  # final norm before rounding
# float-set shape parameters
FLOAT_PROFILE_SIGMA = 0.5
FLOAT_SPREAD = (0.35, 0.8)  # per-cluster noise level, uniform in this range


@dataclass(frozen=True)
class SynthSpec:
    """A synthetic distribution: ``kind``, ``dim``, ``n_clusters`` and ``dist_seed``."""

    kind: str
    dim: int
    n_clusters: int
    dist_seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DatasetError(f"unknown synthetic kind {self.kind!r}; known: {KINDS}")
        if self.dim < 1:
            raise DatasetError(f"dim must be >= 1, got {self.dim}")
        if self.n_clusters < 1:
            raise DatasetError(f"n_clusters must be >= 1, got {self.n_clusters}")
        if self.dist_seed < 0:
            raise DatasetError(f"dist_seed must be >= 0, got {self.dist_seed}")

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8) if self.kind == "sift" else np.dtype(np.float32)

    def params(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(weights, profile, centres, spread): the distribution's fixed arrays."""
        return _params(self)


def synth_spec(kind: str, dim: int | None = None, n_clusters: int | None = None,
               dist_seed: int = 0) -> SynthSpec:
    """A :class:`SynthSpec` with the kind's defaults (sift: 128-d, 256 clusters;
    float: 96-d, 64 clusters)."""
    if kind not in KINDS:
        raise DatasetError(f"unknown synthetic kind {kind!r}; known: {KINDS}")
    return SynthSpec(kind, _DEFAULT_DIM[kind] if dim is None else int(dim),
                     _DEFAULT_CLUSTERS[kind] if n_clusters is None else int(n_clusters),
                     int(dist_seed))


@lru_cache(maxsize=16)
def _params(spec: SynthSpec):
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
        [spec.dist_seed, _CENTRE_TAG, _KIND_TAG[spec.kind], spec.dim, spec.n_clusters])))
    w = rng.gamma(1.0, size=spec.n_clusters)
    weights = w / w.sum()
    if spec.kind == "sift":
        profile = rng.lognormal(0.0, SIFT_PROFILE_SIGMA, size=spec.dim)
        centres = profile * rng.gamma(SIFT_CENTRE_SHAPE, size=(spec.n_clusters, spec.dim))
        spread = np.ones(spec.n_clusters)
    else:
        profile = rng.lognormal(0.0, FLOAT_PROFILE_SIGMA, size=spec.dim)
        centres = profile * rng.standard_normal((spec.n_clusters, spec.dim))
        spread = rng.uniform(FLOAT_SPREAD[0], FLOAT_SPREAD[1], size=spec.n_clusters)
    for a in (weights, profile, centres, spread):
        a.setflags(write=False)
    return weights, profile, centres, spread


def _gen_block(spec: SynthSpec, seed: int, block: int) -> np.ndarray:
    """Generation block ``block`` (GEN_BLOCK rows) of the sample with ``seed``."""
    weights, profile, centres, spread = _params(spec)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
        [seed, _KIND_TAG[spec.kind], spec.dim, spec.n_clusters, spec.dist_seed, block])))
    cdf = np.cumsum(weights)
    c = np.searchsorted(cdf, rng.random(GEN_BLOCK) * cdf[-1], side="right")
    c = np.minimum(c, spec.n_clusters - 1)
    if spec.kind == "float":
        z = rng.standard_normal((GEN_BLOCK, spec.dim))
        x = centres[c] + spread[c, None] * profile * z
        return x.astype(np.float32)
    g = rng.gamma(SIFT_SHAPE, 1.0 / SIFT_SHAPE, size=(GEN_BLOCK, spec.dim))
    e = rng.standard_exponential((GEN_BLOCK, spec.dim))
    y = centres[c] * g + (SIFT_BACKGROUND * profile) * e
    y = np.maximum(y - SIFT_FLOOR * y.mean(axis=1, keepdims=True), 0.0)
    y = _unit_rows(y)
    y = _unit_rows(np.minimum(y, SIFT_CLIP))
    return np.clip(np.rint(y * SIFT_SCALE), 0, 255).astype(np.uint8)


def _unit_rows(y: np.ndarray) -> np.ndarray:
    norm = np.sqrt((y * y).sum(axis=1, keepdims=True))
    return y / np.where(norm > 0.0, norm, 1.0)


def iter_synth(spec: SynthSpec, n: int, seed: int = 0, chunk_rows: int = 65536,
               start: int = 0) -> Iterator[np.ndarray]:
    """Yield rows ``start .. n-1`` of the ``seed`` sample of ``spec`` in chunks of at most
    ``chunk_rows`` rows.  The bytes do not depend on ``chunk_rows`` or ``start``."""
    if n < 0 or not 0 <= start <= n:
        raise DatasetError(f"bad row range {start}..{n}")
    if seed < 0:
        raise DatasetError(f"seed must be >= 0, got {seed}")
    if chunk_rows < 1:
        raise DatasetError(f"chunk_rows must be >= 1, got {chunk_rows}")
    row = start
    cache_block, cache = -1, None
    while row < n:
        stop = min(n, row + chunk_rows)
        out = np.empty((stop - row, spec.dim), dtype=spec.dtype)
        r = row
        while r < stop:
            b = r // GEN_BLOCK
            if b != cache_block:
                cache_block, cache = b, _gen_block(spec, seed, b)
            off = r - b * GEN_BLOCK
            take = min(stop - r, GEN_BLOCK - off)
            out[r - row:r - row + take] = cache[off:off + take]
            r += take
        yield out
        row = stop


def synth(kind: str, n: int, dim: int | None = None, seed: int = 0, *,
          n_clusters: int | None = None, dist_seed: int = 0) -> np.ndarray:
    """An ``(n, dim)`` synthetic sample (uint8 for ``sift``, float32 for ``float``)."""
    spec = synth_spec(kind, dim, n_clusters, dist_seed)
    if n < 1:
        raise DatasetError(f"n must be >= 1, got {n}")
    return np.concatenate(list(iter_synth(spec, n, seed, chunk_rows=max(n, 1))))


def synth_queries(kind: str, n: int, dim: int | None = None, seed: int = 0, *,
                  n_clusters: int | None = None, dist_seed: int = 0) -> np.ndarray:
    """Queries for the base ``synth(kind, ..., seed)``: same distribution, sample seed
    ``seed + QUERY_SEED_OFFSET``."""
    return synth(kind, n, dim, seed + QUERY_SEED_OFFSET, n_clusters=n_clusters,
                 dist_seed=dist_seed)


def write_synth(path: os.PathLike | str, kind: str, n: int, dim: int | None = None,
                seed: int = 0, *, n_clusters: int | None = None, dist_seed: int = 0,
                fmt: str | None = None, chunk_rows: int = 65536, progress: bool = False) -> None:
    """Stream a synthetic sample to a vector file (atomic; memory ~ one chunk)."""
    spec = synth_spec(kind, dim, n_clusters, dist_seed)
    if n < 1:
        raise DatasetError(f"n must be >= 1, got {n}")
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, unit="vec", unit_scale=True, desc=f"synth {kind}")
    try:
        with VectorWriter(path, dim=spec.dim, fmt=fmt, dtype=spec.dtype) as w:
            for chunk in iter_synth(spec, n, seed, chunk_rows):
                w.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()


# ------------------------------------------------------------------------------------
# exact ground truth
# ------------------------------------------------------------------------------------

_U = 2.0 ** -24  # float32 unit round-off


def _as_matrix(x, what: str, mmap: bool) -> np.ndarray:
    if isinstance(x, (str, os.PathLike)):
        try:
            return read_vectors(x, mmap=mmap)
        except VectorFileError as e:
            raise DatasetError(f"{what}: {e}") from None
    a = np.asarray(x)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise DatasetError(f"{what} must be a non-empty 2-D array, got shape {a.shape}")
    return a


def _mode(base: np.ndarray, queries: np.ndarray) -> str:
    kb, kq = base.dtype.kind, queries.dtype.kind
    if kb in "iu" and kq in "iu":
        for a, w in ((base, "base"), (queries, "queries")):
            if a.dtype.itemsize > 2:
                raise DatasetError(f"{w} dtype {a.dtype}: integer ground truth supports "
                                   f"elements of at most 16 bits")
        return "int"
    if kb == "f" and kq == "f":
        return "float"
    raise DatasetError(f"base ({base.dtype}) and queries ({queries.dtype}) must both be "
                       f"integer or both be floating point")


def _exact_rows(q: np.ndarray, x: np.ndarray, mode: str) -> np.ndarray:
    """Exact squared L2 between q (..., d) and x (..., d), broadcasting."""
    if mode == "int":
        diff = x.astype(np.int64) - q.astype(np.int64)
        return np.einsum("...d,...d->...", diff, diff)
    diff = x.astype(np.float64) - q.astype(np.float64)
    return (diff * diff).sum(axis=-1)


def _topk_sorted(dist: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest (distance, id) pairs of 1-D arrays, in (distance, id) order."""
    if dist.shape[0] > k:
        kth = np.partition(dist, k - 1)[k - 1]
        sel = np.flatnonzero(dist <= kth)
        dist, ids = dist[sel], ids[sel]
    order = np.lexsort((ids, dist))[:k]
    return dist[order], ids[order]


def ground_truth(base, queries, k: int, *, block_rows: int = 1 << 16,
                 query_rows: int = 512, margin: int | None = None,
                 progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of each query by squared L2, ties to the smaller id.

    ``base`` / ``queries``: arrays (any size; memmaps are read block by block) or vector
    file paths (the base is memory-mapped).  Both integer (elements up to 16 bits; exact
    int64 distances) or both float (float64 distances by direct differences).
    Returns ``(ids, dists)``: ``ids`` int32 ``(nq, k)``; ``dists`` int64 (integer data)
    or float64, both in ascending ``(distance, id)`` order per row.
    """
    import faiss

    base = _as_matrix(base, "base", mmap=True)
    queries = np.ascontiguousarray(_as_matrix(queries, "queries", mmap=False))
    mode = _mode(base, queries)
    n, d = base.shape
    nq = queries.shape[0]
    if queries.shape[1] != d:
        raise DatasetError(f"queries have dim {queries.shape[1]}, base has dim {d}")
    if not 1 <= k <= n:
        raise DatasetError(f"k must be in 1..{n} (base size), got {k}")
    if n > np.iinfo(np.int32).max:
        raise DatasetError(f"base of {n} rows: ids do not fit int32 (ivecs)")
    if block_rows < 1 or query_rows < 1:
        raise DatasetError("block_rows and query_rows must be >= 1")
    if mode == "float" and not np.isfinite(queries).all():
        raise DatasetError("queries contain NaN or infinity")
    if margin is None:
        margin = max(16, k // 2)
    kc_max = k + margin

    q32 = queries.astype(np.float32)
    qnorm = (q32.astype(np.float64) ** 2).sum(axis=1)
    dist_dtype = np.int64 if mode == "int" else np.float64
    fill = np.iinfo(np.int64).max if mode == "int" else np.inf
    best_d = np.full((nq, k), fill, dtype=dist_dtype)
    best_i = np.full((nq, k), np.iinfo(np.int64).max, dtype=np.int64)

    bar = None
    blocks = range(0, n, block_rows)
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, unit="vec", unit_scale=True, desc="ground truth")
    # faiss picks its sequential (direct difference) kernel below a work threshold, which is
    # ~10x slower than its BLAS kernel for a few hundred queries; force BLAS for the
    # duration of this call (the error bound below covers the BLAS kernel) and restore.
    blas_threshold = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = 0
    try:
        for b0 in blocks:
            b1 = min(n, b0 + block_rows)
            xb = np.ascontiguousarray(base[b0:b1])
            if mode == "float" and not np.isfinite(xb).all():
                raise DatasetError(f"base rows {b0}..{b1 - 1} contain NaN or infinity")
            xb32 = xb.astype(np.float32)
            nb = b1 - b0
            kc = min(nb, kc_max)
            index = faiss.IndexFlatL2(d)
            index.add(xb32)
            # bound on |faiss float32 distance - true distance| for this block
            xnorm_max = float((xb32.astype(np.float64) ** 2).sum(axis=1).max())
            for q0 in range(0, nq, query_rows):
                q1 = min(nq, q0 + query_rows)
                fd, fi = index.search(q32[q0:q1], kc)
                if (fi < 0).any():  # pragma: no cover - faiss returns all nb >= kc rows
                    raise DatasetError("faiss returned fewer candidates than requested")
                cand = xb[fi]  # (nqc, kc, d)
                cd = _exact_rows(queries[q0:q1, None, :], cand, mode).astype(dist_dtype)
                ci = fi.astype(np.int64) + b0
                all_d = np.concatenate([best_d[q0:q1], cd], axis=1)
                all_i = np.concatenate([best_i[q0:q1], ci], axis=1)
                order = np.lexsort((all_i, all_d), axis=-1)[:, :k]
                best_d[q0:q1] = np.take_along_axis(all_d, order, axis=1)
                best_i[q0:q1] = np.take_along_axis(all_i, order, axis=1)
                if kc == nb:
                    continue  # faiss proposed the whole block: nothing was left out
                err = (2 * d + 16) * 2 * _U * (qnorm[q0:q1] + xnorm_max)
                if mode == "float":
                    err = err + (d + 4) * 2.0 ** -50 * (qnorm[q0:q1] + xnorm_max)
                # vectors faiss left out have true distance >= fd[:, -1] - err
                unsafe = np.flatnonzero(fd[:, -1].astype(np.float64) - err
                                        <= best_d[q0:q1, -1].astype(np.float64))
                for j in unsafe:
                    qi = q0 + int(j)
                    full = _exact_rows(queries[qi], xb, mode).astype(dist_dtype)
                    all_d = np.concatenate([best_d[qi], full])
                    all_i = np.concatenate([best_i[qi], np.arange(b0, b1, dtype=np.int64)])
                    # the block's proposed candidates are already in best_*: drop duplicates
                    all_d, uidx = _dedup(all_d, all_i)
                    best_d[qi], best_i[qi] = _topk_sorted(all_d, all_i[uidx], k)
            if bar is not None:
                bar.update(nb)
    finally:
        faiss.cvar.distance_compute_blas_threshold = blas_threshold
        if bar is not None:
            bar.close()
    return best_i.astype(np.int32), best_d


def _dedup(dist: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop repeated ids (equal ids carry equal exact distances)."""
    _, uidx = np.unique(ids, return_index=True)
    return dist[uidx], uidx


def write_ground_truth(path: os.PathLike | str, ids: np.ndarray, fmt: str | None = None) -> None:
    """Write ground-truth ids (``(nq, k)`` integers) as ``.ivecs`` (or ``.ibin``/``.npy``)."""
    write_vectors(path, np.asarray(ids), fmt)


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean over queries of ``|found[:, :k] & truth[:, :k]| / k``."""
    found = np.asarray(found)
    truth = np.asarray(truth)
    if found.ndim != 2 or truth.ndim != 2 or found.shape[0] != truth.shape[0]:
        raise DatasetError(f"found {found.shape} and truth {truth.shape} must be (nq, >=k)")
    if not 1 <= k <= min(found.shape[1], truth.shape[1]):
        raise DatasetError(f"k={k} exceeds the result width "
                           f"({found.shape[1]} found, {truth.shape[1]} truth)")
    hits = 0
    for f, t in zip(found[:, :k], truth[:, :k]):
        hits += np.intersect1d(f, t).size
    return hits / (k * found.shape[0])
