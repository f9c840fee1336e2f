"""The in-memory index: what the search reads, whatever it was loaded from.

An :class:`Index` holds, for ``N`` vertices:

``vectors``    ``(N, dim)`` uint8, the quantised raw vectors (exact distances use these)
``neighbors``  ``(N, R)`` int32, each row's neighbour ids sorted ascending, padded with -1
``entry``      the entry vertex (the medoid; 0 after frequency reordering)
``codebook``   ``(M, 256, dsub)`` uint8 PQ centroids (integer, as the ADT builder sees them)
``codes``      ``(N, M)`` uint8 PQ codes
``hot``        ``(N,)`` bool, vertices whose frames carry their neighbours' PQ codes
``quantiser``  optional (lo, scale) float pair used to turn float data into ``vectors``
``labels``     ``(N,)`` int64, the caller's id of each vertex (reordering renumbers vertices;
               searches work on internal ids and report ``labels[id]``); identity by default

The NAND image (``proxima.golden.image``) stores exactly this and decodes back to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from proxima.config import ProximaConfig

__all__ = ["Index", "IndexError_"]


class IndexError_(ValueError):
    """An index whose arrays are inconsistent with each other or with the configuration."""


@dataclass
class Index:
    cfg: ProximaConfig
    vectors: np.ndarray
    neighbors: np.ndarray
    entry: int
    codebook: np.ndarray
    codes: np.ndarray
    hot: np.ndarray = field(default=None)  # type: ignore[assignment]
    quantiser: tuple[float, float] | None = None
    labels: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.hot is None:
            self.hot = np.zeros(len(self.vectors), dtype=bool)
        if self.labels is None:
            self.labels = np.arange(len(self.vectors), dtype=np.int64)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.validate()

    @property
    def bloom_table(self) -> np.ndarray:
        """Per-vertex Bloom bit indices (computed once, see :func:`golden.bloom.bloom_table`)."""
        tab = self.__dict__.get("_bloom_table")
        if tab is None:
            from .bloom import bloom_table
            tab = self.__dict__["_bloom_table"] = bloom_table(self.cfg, self.n)
        return tab

    @property
    def n(self) -> int:
        return int(self.vectors.shape[0])

    def degree(self, v: int) -> int:
        return int(np.count_nonzero(self.neighbors[v] >= 0))

    def neighbor_list(self, v: int) -> np.ndarray:
        row = self.neighbors[v]
        return row[row >= 0]

    def validate(self) -> None:
        cfg = self.cfg
        n = self.vectors.shape[0] if self.vectors.ndim == 2 else -1
        if self.vectors.dtype != np.uint8 or self.vectors.ndim != 2 or \
                self.vectors.shape[1] != cfg.vec.dim:
            raise IndexError_(f"vectors must be uint8 (N, {cfg.vec.dim}), got "
                              f"{self.vectors.dtype} {self.vectors.shape}")
        if n < 1:
            raise IndexError_("index has no vertices")
        if n > cfg.engine.max_vertices:
            raise IndexError_(f"{n} vertices exceed engine.id_bits = {cfg.engine.id_bits}")
        if self.neighbors.dtype != np.int32 or self.neighbors.shape != (n, cfg.graph.R):
            raise IndexError_(f"neighbors must be int32 ({n}, {cfg.graph.R}), got "
                              f"{self.neighbors.dtype} {self.neighbors.shape}")
        if self.neighbors.size and (self.neighbors.max() >= n or self.neighbors.min() < -1):
            raise IndexError_("neighbour ids out of range")
        if not 0 <= self.entry < n:
            raise IndexError_(f"entry {self.entry} out of range 0..{n - 1}")
        if self.codebook.dtype != np.uint8 or \
                self.codebook.shape != (cfg.pq.M, cfg.pq.ksub, cfg.dsub):
            raise IndexError_(f"codebook must be uint8 ({cfg.pq.M}, {cfg.pq.ksub}, {cfg.dsub}), "
                              f"got {self.codebook.dtype} {self.codebook.shape}")
        if self.codes.dtype != np.uint8 or self.codes.shape != (n, cfg.pq.M):
            raise IndexError_(f"codes must be uint8 ({n}, {cfg.pq.M}), got "
                              f"{self.codes.dtype} {self.codes.shape}")
        if self.hot.dtype != bool or self.hot.shape != (n,):
            raise IndexError_("hot must be a bool array of length N")
        if self.labels.shape != (n,) or (n and (self.labels.min() < 0 or
                                                len(np.unique(self.labels)) != n)):
            raise IndexError_("labels must be N distinct non-negative ids")
