"""Index build: vectors -> graph + PQ -> :class:`~proxima.golden.index.Index`.

Steps (each defined in its own module):

1. float data is quantised to the hardware's integer format (:mod:`proxima.golden.quant`);
2. the graph is built (:mod:`proxima.golden.graph`: Vamana or the HNSW base layer);
3. the PQ codebook is trained and every vector encoded (:mod:`proxima.golden.pq`);
4. optionally, vertices are renumbered by visit frequency and the hottest marked hot
   (:mod:`proxima.golden.reorder`), which the NAND image layout uses.
"""

from __future__ import annotations

import numpy as np

from proxima.config import ProximaConfig

from .index import Index
from .pq import encode, train_codebook

__all__ = ["prepare_vectors", "build_graph", "build_index", "reorder_index", "GRAPH_KINDS"]

GRAPH_KINDS = ("vamana", "hnsw")


def prepare_vectors(cfg: ProximaConfig, base: np.ndarray, queries: np.ndarray | None = None):
    """Return ``(base_u8, queries_u8, quantiser)``; float inputs are quantised together.

    The quantiser is fitted on the base set only and applied to both.  Integer inputs must
    already be in the hardware's element range.
    """
    from .quant import Quantiser

    if base.ndim != 2 or base.shape[1] != cfg.vec.dim:
        raise ValueError(f"base vectors have shape {base.shape}, configuration wants "
                         f"(N, {cfg.vec.dim}) (set vec.dim)")
    if queries is not None and (queries.ndim != 2 or queries.shape[1] != base.shape[1]):
        raise ValueError(f"queries have shape {queries.shape}, base has dimension {base.shape[1]}")
    if np.issubdtype(base.dtype, np.floating):
        qz = Quantiser.fit(np.asarray(base), cfg)
        b = qz.quantise(np.asarray(base))
        q = qz.quantise(np.asarray(queries)) if queries is not None else None
        return b, q, (float(qz.lo), float(qz.scale))

    def to_u8(a):
        a = np.asarray(a)
        if a.size and (a.min() < 0 or a.max() > cfg.vec.elem_max):
            raise ValueError(f"integer vectors must lie in 0..{cfg.vec.elem_max}")
        return a.astype(np.uint8)

    return to_u8(base), (to_u8(queries) if queries is not None else None), None


def _check_u8(vectors: np.ndarray) -> None:
    if vectors.dtype != np.uint8:
        raise ValueError("build_index takes uint8 vectors; use prepare_vectors for float data")


def build_graph(cfg: ProximaConfig, vectors: np.ndarray, graph: str = "vamana", seed: int = 0,
                progress: bool = True):
    """The ``graph`` kind's graph over uint8 ``vectors`` (depends on ``cfg.graph`` only)."""
    from . import graph as graphs

    _check_u8(vectors)
    if graph == "vamana":
        return graphs.build_vamana(vectors, cfg.graph, seed=seed, progress=progress)
    if graph == "hnsw":
        return graphs.build_hnsw_base(vectors, cfg.graph, seed=seed)
    raise ValueError(f"unknown graph kind {graph!r}; choose from {GRAPH_KINDS}")


def build_index(cfg: ProximaConfig, vectors: np.ndarray, graph: str = "vamana", seed: int = 0,
                progress: bool = True, quantiser=None, prebuilt=None) -> Index:
    """Build the graph and PQ index over uint8 ``vectors`` (see :func:`prepare_vectors`);
    ``prebuilt``: a :func:`build_graph` result for the same vectors and ``cfg.graph`` to use
    instead of building the graph again."""
    _check_u8(vectors)
    g = prebuilt if prebuilt is not None else build_graph(cfg, vectors, graph, seed, progress)
    book = train_codebook(cfg, vectors, seed=seed + 1)
    codes = encode(cfg, vectors, book)
    return Index(cfg, np.ascontiguousarray(vectors), g.neighbors.astype(np.int32), int(g.entry),
                 book, codes, quantiser=quantiser)


def reorder_index(index: Index, seed: int = 0, progress: bool = True) -> tuple[Index, "np.ndarray"]:
    """Renumber by visit frequency on searches of sampled base vectors; mark the hottest.

    Visit frequency = how often a vertex is expanded (its ``'frame'`` events) when Algorithm 1
    searches ``cfg.layout.reorder_sample`` base vectors.  Returns ``(new_index, perm)`` with
    ``perm[new_id] = old_id`` (see :func:`proxima.golden.reorder.reorder`).
    """
    from .reorder import reorder, sample_base_vectors
    from .search_batch import search_batch

    sample = sample_base_vectors(index, seed=seed)
    counts = np.zeros(index.n, dtype=np.int64)
    for res in search_batch(index, sample, trace=True):
        frames = [v for kind, v in res.events if kind == "frame"]
        np.add.at(counts, np.asarray(frames, dtype=np.int64), 1)
    return reorder(index, counts)
