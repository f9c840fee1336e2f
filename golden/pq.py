"""Product quantisation: training, encoding, the ADT and PQ distances, in integers.

Arithmetic contract (the PQ unit ``hdl/pq.py`` implements exactly this):

* Vectors are ``dim`` unsigned ``elem_bits``-bit integers, split into ``M`` subspaces of
  ``dsub = dim / M`` consecutive elements.
* The codebook holds ``M x 256`` centroids of ``dsub`` elements, themselves unsigned
  ``elem_bits``-bit integers (k-means centroids rounded half-to-even and clipped).
* Encoding picks, per subspace, the centroid with the smallest exact integer squared distance;
  ties go to the smaller centroid index.
* ADT entry ``ADT[m][c] = min(adt_max, (raw + half) >> s)`` where
  ``raw = sum_d (q[m*dsub + d] - C[m][c][d])**2`` (``cfg.adt_raw_bits`` wide),
  ``s = cfg.adt_shift`` and ``half = (1 << (s-1))`` if ``s > 0`` else 0 (round half up), and
  ``adt_max = 2**pq.adt_bits - 1`` (saturation).
* PQ distance of a vertex with code ``c`` = ``sum_m ADT[m][c[m]]``, ``cfg.pq_dist_bits`` wide,
  an exact integer sum (no overflow by construction of the width).
"""

from __future__ import annotations

import numpy as np

from proxima.config import ProximaConfig

__all__ = ["train_codebook", "encode", "build_adt", "pq_distances", "adt_raw"]


def train_codebook(cfg: ProximaConfig, vectors: np.ndarray, seed: int = 1234) -> np.ndarray:
    """k-means (faiss) per subspace on a sample; returns ``(M, 256, dsub)`` uint8 centroids."""
    import faiss

    M, ksub, dsub = cfg.pq.M, cfg.pq.ksub, cfg.dsub
    n = vectors.shape[0]
    rng = np.random.default_rng(seed)
    take = min(n, cfg.pq.train_size)
    sample = vectors[np.sort(rng.choice(n, size=take, replace=False))] if take < n else vectors
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    book = np.zeros((M, ksub, dsub), dtype=np.uint8)
    for m in range(M):
        x = np.ascontiguousarray(sample[:, m * dsub:(m + 1) * dsub])
        k = min(ksub, len(x))
        km = faiss.Kmeans(dsub, k, niter=cfg.pq.train_iters, seed=seed + m, verbose=False,
                          min_points_per_centroid=1, max_points_per_centroid=1 << 20)
        km.train(x)
        cent = np.clip(np.rint(km.centroids), 0, cfg.vec.elem_max).astype(np.uint8)
        book[m, :k] = cent
        if k < ksub:  # fewer training points than centroids: repeat the last ones
            book[m, k:] = cent[-1]
    return book


def encode(cfg: ProximaConfig, vectors: np.ndarray, codebook: np.ndarray,
           block: int = 65536) -> np.ndarray:
    """Nearest centroid per subspace (exact integer distance, ties to the smaller index)."""
    M, dsub = cfg.pq.M, cfg.dsub
    n = vectors.shape[0]
    codes = np.empty((n, M), dtype=np.uint8)
    book = codebook.astype(np.int64)
    csq = (book ** 2).sum(axis=2)  # (M, 256)
    for s in range(0, n, block):
        x = np.asarray(vectors[s:s + block], dtype=np.int64)
        for m in range(M):
            xs = x[:, m * dsub:(m + 1) * dsub]
            # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 is constant per row, so argmin over
            # (|c|^2 - 2 x.c) is exact in int64 and np.argmin returns the first (smallest) index.
            d = csq[m][None, :] - 2 * (xs @ book[m].T)
            codes[s:s + block, m] = np.argmin(d, axis=1)
    return codes


def adt_raw(cfg: ProximaConfig, query: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Un-shifted ADT: ``(..., M, 256)`` int64 exact sums of squared differences.

    ``query`` is one vector ``(dim,)`` or a batch ``(Q, dim)``.  Computed as
    ``|q|^2 - 2 q.c + |c|^2`` with float64 products, which are exact here: every term is an
    integer below ``dsub * 255**2 < 2**53``.
    """
    M, dsub = cfg.pq.M, cfg.dsub
    query = np.asarray(query)
    lead = query.shape[:-1]
    q = query.reshape(-1, M, dsub).astype(np.float64)  # (Q, M, dsub)
    c = codebook.astype(np.float64)  # (M, 256, dsub)
    cross = np.einsum("qmd,mkd->qmk", q, c, optimize=True)
    raw = (q * q).sum(-1)[:, :, None] - 2.0 * cross + (c * c).sum(-1)[None]
    return np.rint(raw).astype(np.int64).reshape(lead + (M, codebook.shape[1]))


def build_adt(cfg: ProximaConfig, query: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """The query's ADT as the hardware stores it: ``(..., M, 256)`` int64 in ``0..adt_max``."""
    raw = adt_raw(cfg, query, codebook)
    s = cfg.adt_shift
    if s:
        raw = (raw + (1 << (s - 1))) >> s
    return np.minimum(raw, cfg.adt_max)


def pq_distances(adt: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """PQ distances of the vertices whose codes are the rows of ``codes`` (int64)."""
    codes = np.asarray(codes)
    m = np.arange(adt.shape[0])
    return adt[m, codes.astype(np.int64)].sum(axis=-1)
