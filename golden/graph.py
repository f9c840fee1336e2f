"""Graph builders: Vamana (DiskANN), the HNSW base layer (faiss), DiskANN graph files.

A :class:`Graph` is the adjacency the index container (:mod:`proxima.golden.index`) stores:
``neighbors`` is ``(N, R)`` int32, each row's ids sorted ascending and padded with -1 at the
end; ``entry`` is the vertex searches start from.  No row holds its own vertex or an id twice.

Distances
---------
Every build distance is the squared L2 distance by direct differences.  Default kernel:
``faiss.fvec_L2sqr_by_idx`` in float32.  On uint8 data every partial sum is an integer below
``2**24`` while ``D * 255**2 < 2**24`` (D <= 258), so the kernel is *exact* and equals the
int64 reference whatever its summation order; wider uint8 data uses a numpy float64 kernel
(exact).  float32 data is computed in float32 (approximate, deterministic on a given
machine).  Candidate lists order by (distance, id) (the key holds the distance as float32,
exact in the uint8 case); the RobustPrune test ``alpha * d1 <= d2`` is evaluated in float64.

RobustPrune (as the DiskANN code does it)
-----------------------------------------
``robust_prune(p, V, alpha, R)``: drop ``p`` and duplicates from ``V``; repeatedly take the
candidate ``p*`` closest to ``p`` (ties: lower id), append it to the result, and remove every
remaining candidate ``v`` with ``alpha * d(p*, v) <= d(p, v)``; stop at ``R`` results or an
empty pool.  ``d`` is the *squared* distance, so alpha multiplies squared distances as in the
DiskANN implementation (the paper states the rule on plain distances: ``alpha = 1.2`` here
equals ``sqrt(1.2)`` there).  DiskANN's optional alpha ramp and "saturate graph" are not used.

Vamana (DiskANN) and how this build deviates from sequential insertion
----------------------------------------------------------------------
DiskANN: start from a random graph where every vertex has ``R`` distinct random out-neighbours;
entry = medoid (the vertex closest to the centroid, lowest id on ties); two passes, alpha = 1
then ``gcfg.alpha`` (``gcfg.passes == 1`` runs only the second); in each pass visit the vertices
in a random order; for vertex ``p``: greedy search for ``p`` from the entry with list size
``build_L``, collecting the expanded (visited) set ``V``; ``N(p) = RobustPrune(p, V u N(p))``;
for each new neighbour ``j``: add ``p`` to ``N(j)`` and, if ``|N(j)| > R``, set
``N(j) = RobustPrune(j, N(j), alpha, R)``.

Sequential insertion is a per-vertex Python loop (far too slow for 10^5 vertices), so this
module inserts in *batches*, as parallel Vamana builds (ParlayANN) do:

* batch sizes grow geometrically (1, 2, 4, ...: prefix doubling) in each pass up to
  ``max(1, min(max_batch, batch_fraction * N, seen_budget_bytes // N))`` vertices (defaults
  2048, 0.02, 256 MB: the per-batch visited bitmap holds ``batch * N`` bytes);
* all greedy searches of a batch run in lockstep on the graph as it was before the batch
  (each vertex of the batch expands one candidate per step; vectorised over the batch), so
  vertices of the same batch do not see each other's new edges;
* the batch's out-edges are pruned together, written, and then all reverse edges of the
  batch are applied in bulk: for every target ``j`` the incoming ids are merged with ``N(j)``
  at once, and ``j`` is pruned once (pool = ``N(j)`` u incoming) if that exceeds ``R``
  (sequential Vamana would prune after each single overflowing insertion).

Unlike ParlayANN (which starts from an empty graph) the batches run on DiskANN's random initial
graph.  With a batch of one vertex this *is* sequential Vamana; the deviation is bounded by the
batch cap.  The searches and prunes of a batch are split over threads; each vertex's result
depends only on the graph as it was before the batch, so the graph does not depend on the
thread count.  The result is deterministic for a given seed and machine (random numbers come
only from ``numpy.random.default_rng(seed)``; every sort is stable or fully keyed).

The greedy search is the textbook one (expand the best unexpanded candidate until the best
``L`` are all expanded) with one exact shortcut: a node already seen by this search is never
re-evaluated (a node that fell off the list can never re-enter it, since the ``L``-th distance
only decreases).

HNSW
----
:func:`build_hnsw_base` builds a faiss ``IndexHNSWFlat`` with ``M = R // 2`` (level-0 degree
``2M``) and ``efConstruction = build_L`` and keeps only the level-0 adjacency.  The entry is
the medoid (not faiss' top-level entry point, which is a random vertex of the top layer and is
only a good start when the upper layers are used).

DiskANN in-memory graph file
----------------------------
Little-endian: ``u64 expected_file_size, u32 max_observed_degree, u32 start,
u64 num_frozen_points``, then per vertex ``u32 k`` and ``k`` u32 neighbour ids.  The vertex
count is implied by the file size.  Files with frozen points are refused (their vertices would
not line up with a vector file).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np

from proxima.config import GraphConfig

from .atomic import atomic_open

__all__ = [
    "GraphError",
    "GraphFileError",
    "Graph",
    "medoid",
    "squared_distances",
    "robust_prune",
    "greedy_search",
    "random_regular_graph",
    "build_vamana",
    "build_hnsw_base",
    "read_diskann_graph",
    "write_diskann_graph",
    "DISKANN_HEADER",
]


class GraphError(ValueError):
    """A graph whose arrays are malformed or a build asked for with impossible inputs."""


class GraphFileError(GraphError):
    """A DiskANN graph file that is truncated, inconsistent or unsupported."""


# --------------------------------------------------------------------------------------------
# the Graph container
# --------------------------------------------------------------------------------------------
@dataclass
class Graph:
    """Adjacency ``(N, R)`` int32 (rows ascending, -1 padded at the end) and an entry vertex."""

    neighbors: np.ndarray
    entry: int

    def __post_init__(self) -> None:
        self.entry = int(self.entry)
        self.validate()

    @property
    def n(self) -> int:
        return int(self.neighbors.shape[0])

    @property
    def R(self) -> int:
        return int(self.neighbors.shape[1])

    def validate(self) -> None:
        a = self.neighbors
        if not isinstance(a, np.ndarray) or a.dtype != np.int32 or a.ndim != 2:
            raise GraphError(f"neighbors must be a 2-D int32 array, got "
                             f"{getattr(a, 'dtype', type(a))} {getattr(a, 'shape', '')}")
        n, r = a.shape
        if n < 1 or r < 1:
            raise GraphError(f"graph must have >= 1 vertex and R >= 1, got shape {a.shape}")
        if not 0 <= self.entry < n:
            raise GraphError(f"entry {self.entry} out of range 0..{n - 1}")
        if a.min() < -1 or a.max() >= n:
            raise GraphError(f"neighbour ids out of range: must be in -1..{n - 1}")
        pad = a < 0
        if np.any(pad[:, :-1] & ~pad[:, 1:]):
            bad = int(np.nonzero((pad[:, :-1] & ~pad[:, 1:]).any(1))[0][0])
            raise GraphError(f"row {bad}: -1 padding must come after all neighbour ids")
        both = ~pad[:, 1:]
        if np.any(both & (a[:, 1:] <= a[:, :-1])):
            bad = int(np.nonzero((both & (a[:, 1:] <= a[:, :-1])).any(1))[0][0])
            raise GraphError(f"row {bad}: neighbour ids must be strictly ascending "
                             f"(sorted, no duplicates): {a[bad].tolist()}")
        self_loop = a == np.arange(n, dtype=np.int32)[:, None]
        if self_loop.any():
            bad = int(np.nonzero(self_loop.any(1))[0][0])
            raise GraphError(f"row {bad} contains a self loop")

    def degrees(self) -> np.ndarray:
        """Out-degree of every vertex, int64 ``(N,)``."""
        return np.count_nonzero(self.neighbors >= 0, axis=1).astype(np.int64)

    @classmethod
    def from_lists(cls, lists, R: int, entry: int) -> "Graph":
        """Build from per-vertex id sequences (any order; duplicates/self loops are errors)."""
        n = len(lists)
        if n < 1:
            raise GraphError("graph must have >= 1 vertex")
        if R < 1:
            raise GraphError(f"R must be >= 1, got {R}")
        out = np.full((n, R), -1, dtype=np.int32)
        for v, lst in enumerate(lists):
            row = np.asarray(lst, dtype=np.int64).ravel()
            if row.size > R:
                raise GraphError(f"vertex {v} has {row.size} neighbours > R = {R}")
            row = np.sort(row)
            if row.size and (row[0] < 0 or row[-1] >= n):
                raise GraphError(f"vertex {v}: neighbour id out of range 0..{n - 1}")
            if row.size > 1 and np.any(row[1:] == row[:-1]):
                raise GraphError(f"vertex {v}: duplicate neighbour ids")
            out[v, :row.size] = row
        return cls(out, entry)

    def to_lists(self) -> list[np.ndarray]:
        """Per-vertex neighbour arrays (int32, ascending)."""
        return [row[row >= 0].copy() for row in self.neighbors]

    def reachable(self) -> np.ndarray:
        """Bool ``(N,)``: vertices reachable from ``entry`` (breadth first search)."""
        n = self.n
        seen = np.zeros(n, dtype=bool)
        seen[self.entry] = True
        frontier = np.array([self.entry], dtype=np.int64)
        while frontier.size:
            nb = self.neighbors[frontier].ravel()
            nb = nb[nb >= 0]
            nb = np.unique(nb[~seen[nb]])
            seen[nb] = True
            frontier = nb
        return seen

    def stats(self) -> dict:
        """Degree statistics and the fraction of vertices reachable from the entry."""
        deg = self.degrees()
        return {
            "n": self.n,
            "R": self.R,
            "entry": self.entry,
            "mean_degree": float(deg.mean()),
            "min_degree": int(deg.min()),
            "max_degree": int(deg.max()),
            "edges": int(deg.sum()),
            "reachable_fraction": float(self.reachable().mean()),
        }


# --------------------------------------------------------------------------------------------
# distances
# --------------------------------------------------------------------------------------------
def _check_vectors(vectors) -> np.ndarray:
    x = np.asarray(vectors)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise GraphError(f"vectors must be a non-empty 2-D array (N, D), got shape {x.shape}")
    if x.dtype not in (np.uint8, np.float32):
        raise GraphError(f"vectors must be uint8 or float32, got {x.dtype}")
    if x.dtype == np.float32 and not np.all(np.isfinite(x)):
        raise GraphError("vectors contain NaN or infinity")
    if x.shape[0] >= 2 ** 31 - 1:
        raise GraphError(f"too many vectors for int32 ids: {x.shape[0]}")
    return x


def squared_distances(vectors: np.ndarray, query, ids=None) -> np.ndarray:
    """Reference squared L2 from ``query`` to ``vectors[ids]``: exact int64 for uint8 data,
    float64 for float data."""
    x = vectors if ids is None else vectors[np.asarray(ids, dtype=np.int64)]
    if vectors.dtype == np.uint8:
        d = x.astype(np.int64) - np.asarray(query, dtype=np.int64)
        return np.einsum("...d,...d->...", d, d)
    d = x.astype(np.float64) - np.asarray(query, dtype=np.float64)
    return np.einsum("...d,...d->...", d, d)


class _Space:
    """The build's distance kernel: ``by_idx(q, ids)`` = squared L2 from each query row to the
    vectors ``ids`` of that row (-1 = skip, left at +inf).

    ``faiss`` backend: ``faiss.fvec_L2sqr_by_idx`` on a float32 copy (direct differences in
    float32: exact on uint8 data while ``D * 255**2 < 2**24``, i.e. D <= 258; deterministic
    on float data).  ``numpy`` backend: float64 direct differences (exact on uint8 data for
    any practical D).  ``auto`` picks faiss when it is exact (uint8) or for float data.
    """

    def __init__(self, x: np.ndarray, backend: str = "auto") -> None:
        if backend not in ("auto", "faiss", "numpy"):
            raise GraphError(f"unknown distance backend {backend!r}: auto, faiss or numpy")
        self.x = x
        self.d = x.shape[1]
        fits = x.dtype == np.float32 or self.d * 255 ** 2 < 2 ** 24
        if backend == "faiss" and not fits:
            raise GraphError(f"faiss float32 distances are not exact for uint8 D = {self.d}")
        self.use_faiss = backend == "faiss" or (backend == "auto" and fits)
        if self.use_faiss:
            import faiss

            self._faiss = faiss
            self.xf = np.ascontiguousarray(x, dtype=np.float32)
            self.dtype = np.float32
        else:
            self.dtype = np.float64

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Vectors ``ids`` as query rows for :meth:`by_idx`."""
        if self.use_faiss:
            return np.ascontiguousarray(self.xf[ids])
        return self.x[ids].astype(np.float64)

    def by_idx(self, q: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """``(A, W)`` distances from ``q[a]`` to ``x[ids[a, w]]``; +inf where ``ids < 0``."""
        a, w = ids.shape
        out = np.full((a, w), np.inf, dtype=self.dtype)
        if a == 0 or w == 0:
            return out
        if self.use_faiss:
            f = self._faiss
            ids = np.ascontiguousarray(ids, dtype=np.int64)
            f.fvec_L2sqr_by_idx(f.swig_ptr(out), f.swig_ptr(q), f.swig_ptr(self.xf),
                                f.swig_ptr(ids), self.d, a, w)
            return out
        r, c = np.nonzero(ids >= 0)
        diff = self.x[ids[r, c]].astype(np.float64) - q[r]
        out[r, c] = np.einsum("pd,pd->p", diff, diff)
        return out


def medoid(vectors: np.ndarray, chunk: int = 65536) -> int:
    """The vertex closest (squared L2, float64) to the centroid; lowest id on ties."""
    x = _check_vectors(vectors)
    c = np.zeros(x.shape[1], dtype=np.float64)
    for i in range(0, x.shape[0], chunk):
        c += x[i:i + chunk].astype(np.float64).sum(axis=0)
    c /= x.shape[0]
    best, best_d = 0, np.inf
    for i in range(0, x.shape[0], chunk):
        d = x[i:i + chunk].astype(np.float64) - c
        dd = np.einsum("nd,nd->n", d, d)
        j = int(np.argmin(dd))
        if dd[j] < best_d:
            best, best_d = i + j, float(dd[j])
    return best


# --------------------------------------------------------------------------------------------
# reference (one vertex at a time) RobustPrune and greedy search: the specification
# --------------------------------------------------------------------------------------------
def robust_prune(vectors: np.ndarray, p: int, candidates, alpha: float, R: int) -> np.ndarray:
    """Reference RobustPrune (module docstring): returns the kept ids in pick order (int64)."""
    x = _check_vectors(vectors)
    if R < 1:
        raise GraphError(f"R must be >= 1, got {R}")
    if not alpha >= 1.0:
        raise GraphError(f"alpha must be >= 1.0, got {alpha}")
    c = np.unique(np.asarray(candidates, dtype=np.int64).ravel())  # ascending, no duplicates
    if c.size and (c[0] < 0 or c[-1] >= x.shape[0]):
        raise GraphError("candidate id out of range")
    c = c[c != p]
    dp = squared_distances(x, x[p], c).astype(np.float64)
    order = np.lexsort((c, dp))
    c, dp = c[order], dp[order]
    alive = np.ones(c.size, dtype=bool)
    out: list[int] = []
    while len(out) < R and alive.any():
        i = int(np.argmax(alive))
        out.append(int(c[i]))
        alive[i] = False
        rest = np.nonzero(alive)[0]
        if rest.size:
            dstar = squared_distances(x, x[c[i]], c[rest]).astype(np.float64)
            alive[rest[alpha * dstar <= dp[rest]]] = False
    return np.asarray(out, dtype=np.int64)


def greedy_search(graph: Graph, vectors: np.ndarray, query, L: int,
                  start: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference greedy search: ``(ids, dists, expanded)``.

    ``ids``/``dists``: the final candidate list (at most ``L``, ordered by (distance, id));
    ``expanded``: the vertices expanded, in expansion order (the Vamana "visited" set).
    """
    x = _check_vectors(vectors)
    if L < 1:
        raise GraphError(f"L must be >= 1, got {L}")
    if x.shape[0] != graph.n:
        raise GraphError(f"graph has {graph.n} vertices but {x.shape[0]} vectors were given")
    q = np.asarray(query)
    s = graph.entry if start is None else int(start)
    seen = {s}
    ids = [s]
    dists = [squared_distances(x, q, [s])[0]]
    expanded_flags = [False]
    expanded: list[int] = []
    while True:
        try:
            i = expanded_flags.index(False)
        except ValueError:
            break
        v = ids[i]
        expanded_flags[i] = True
        expanded.append(v)
        nb = [int(u) for u in graph.neighbors[v] if u >= 0 and int(u) not in seen]
        if not nb:
            continue
        seen.update(nb)
        nd = squared_distances(x, q, nb)
        all_ids = ids + nb
        all_d = list(dists) + list(nd)
        all_f = expanded_flags + [False] * len(nb)
        order = sorted(range(len(all_ids)), key=lambda k: (all_d[k], all_ids[k]))[:L]
        ids = [all_ids[k] for k in order]
        dists = [all_d[k] for k in order]
        expanded_flags = [all_f[k] for k in order]
    return (np.asarray(ids, dtype=np.int64), np.asarray(dists),
            np.asarray(expanded, dtype=np.int64))


# --------------------------------------------------------------------------------------------
# vectorised building blocks
# --------------------------------------------------------------------------------------------
_BIG = np.iinfo(np.int64).max
_SENT = np.uint64(0xFFFF_FFFF_FFFF_FFFF)  # empty list slot; bit 0 set: never "unexpanded"
_INF_KEY = np.uint64(0x7F80_0000 << 32)  # keys from here up carry an infinite distance


def _unique_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ids (``< 0`` = empty) -> ascending unique ids, -1 padded; and the counts."""
    b = np.where(a < 0, _BIG, a.astype(np.int64))
    b.sort(axis=1)
    if b.shape[1] > 1:
        dup = np.zeros(b.shape, dtype=bool)
        dup[:, 1:] = b[:, 1:] == b[:, :-1]
        dup &= b != _BIG
        if dup.any():
            b[dup] = _BIG
            b.sort(axis=1)
    cnt = np.count_nonzero(b != _BIG, axis=1)
    w = max(1, int(cnt.max())) if cnt.size else 1
    b = b[:, :w]
    b[b == _BIG] = -1
    return b, cnt


def _prune_batch(space: _Space, pts: np.ndarray, pools: np.ndarray, alpha: float, R: int,
                 chunk_rows: int = 1024) -> np.ndarray:
    """RobustPrune for many vertices at once; identical to :func:`robust_prune` when the
    distances are exact.  ``pools`` (K, W) int, -1 = empty.  Returns (K, R) int32, pick
    order, -1 padded.  Each pick step computes distances from the pick to the candidates
    still alive only."""
    k_all = pts.shape[0]
    out = np.full((k_all, R), -1, dtype=np.int32)
    if k_all == 0:
        return out
    pools = np.where(pools == pts[:, None], -1, pools)
    pools, cnt = _unique_rows(pools)
    order = np.argsort(cnt, kind="stable")  # similar pool sizes together: little padding
    for c0 in range(0, k_all, chunk_rows):
        rows = order[c0:c0 + chunk_rows]
        w = max(1, int(cnt[rows[-1]]))  # ascending counts: the last row is the widest
        k = rows.size
        ids = pools[rows, :w]
        dp = space.by_idx(space.rows(pts[rows]), ids).astype(np.float64)
        srt = np.argsort(dp, axis=1, kind="stable")  # ids ascending within the row: (d, id)
        ids = np.take_along_axis(ids, srt, axis=1)
        dp = np.take_along_axis(dp, srt, axis=1)
        alive = ids >= 0
        res = np.full((k, R), -1, dtype=np.int32)
        live = np.arange(k)  # rows of this chunk that may still pick; compacted lazily
        for s in range(R):
            anyal = alive.any(axis=1)
            if not anyal.any():
                break
            if anyal.sum() * 2 < live.size:  # drop finished rows once they are the majority
                live, ids, dp, alive = live[anyal], ids[anyal], dp[anyal], alive[anyal]
                anyal = np.ones(live.size, dtype=bool)
            ar = np.arange(live.size)
            first = np.argmax(alive, axis=1)
            pick = ids[ar, first]  # rows with nothing alive: a stale id, unused below
            res[live[anyal], s] = pick[anyal]
            alive[ar, first] = False
            dd = space.by_idx(space.rows(np.maximum(pick, 0)), np.where(alive, ids, -1))
            alive &= ~(alpha * dd.astype(np.float64) <= dp)
        out[rows] = res
    return out


class _BatchSearcher:
    """Greedy searches of a batch of base vertices, in lockstep (one expansion per step)."""

    def __init__(self, space: _Space, graph: np.ndarray, entry: int, L: int,
                 max_batch: int) -> None:
        self.space = space
        self.g = graph
        self.entry = entry
        self.L = L
        n = graph.shape[0]
        self.n = n
        self.seen = np.zeros(max_batch * n, dtype=bool)

    @staticmethod
    def _keys(d: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Key = float32 bits of d (non-negative: monotone) << 32 | id << 1 | expanded.

        An id of -1 (with d = +inf) gives a key >= ``_INF_KEY``: never a list entry."""
        k = np.asarray(d, dtype=np.float32).view(np.uint32).astype(np.uint64)
        k <<= np.uint64(32)
        k |= ids.astype(np.int32, copy=False).view(np.uint32).astype(np.uint64) << np.uint64(1)
        # (an id of -1 sets bits 1..32 only: with d = +inf the key stays >= _INF_KEY)
        return k

    def run(self, qids: np.ndarray, row0: int = 0) -> np.ndarray:
        """Expanded sets ``(B, S)`` int64 (-1 padded), in expansion order.

        Uses rows ``row0 .. row0 + B - 1`` of the visited bitmap (and leaves them clear), so
        threads searching disjoint row ranges may share one searcher."""
        sp, g, L, n, seen = self.space, self.g, self.L, self.n, self.seen
        b = qids.shape[0]
        if row0 < 0 or (row0 + b) * n > seen.size:
            raise GraphError(f"batch rows {row0}..{row0 + b - 1} exceed the visited bitmap")
        qv_all = sp.rows(qids)
        keys = np.full((b, L), _SENT, dtype=np.uint64)
        ent = np.full((b, 1), self.entry, dtype=np.int64)
        keys[:, 0] = self._keys(sp.by_idx(qv_all, ent)[:, 0], ent[:, 0])
        idx_t = np.int32 if seen.size < 2 ** 31 else np.int64
        rows0 = np.arange(b, dtype=idx_t)  # local rows; bitmap row = row0 + local row
        touched = [(rows0 + idx_t(row0)) * idx_t(n) + idx_t(self.entry)]
        seen[touched[0]] = True
        steps: list[tuple[np.ndarray, np.ndarray]] = []
        active = rows0
        base = (active + idx_t(row0)) * idx_t(n)
        qv = qv_all
        one = np.uint64(1)
        idmask = np.uint64(0x7FFF_FFFF)
        k = keys
        while True:
            unexp = (k & one) == 0  # empty slots (_SENT) have bit 0 set
            has = unexp.any(axis=1)
            if not has.all():
                keys[active] = k
                active = active[has]
                if active.size == 0:
                    break
                k = keys[active]
                unexp = unexp[has]
                base = (active + idx_t(row0)) * idx_t(n)
                qv = np.ascontiguousarray(qv[has])
            a = active.size
            ar = np.arange(a)
            pos = np.argmax(unexp, axis=1)
            sel = k[ar, pos]
            k[ar, pos] = sel | one
            node = ((sel >> one) & idmask).astype(np.int64)
            steps.append((active, node))
            nb = g[node]
            flat = base[:, None] + nb  # nb = -1 lands on some other slot: masked below
            new = (nb >= 0) & ~seen[flat]
            fl = flat[new]
            if fl.size == 0:
                continue
            seen[fl] = True
            touched.append(fl)
            ids = np.where(new, nb, np.int64(-1))
            nk = self._keys(sp.by_idx(qv, ids), nb)  # not new: d = inf, key >= _INF_KEY
            # only rows where some new key beats the current L-th entry need a merge
            need = np.nonzero((nk < np.minimum(k[:, L - 1:L], _INF_KEY)).any(axis=1))[0]
            if need.size == 0:
                continue
            nkn = nk[need]
            nkn[nkn >= _INF_KEY] = _SENT
            m = np.concatenate([k[need], nkn], axis=1)
            m.sort(axis=1)
            k[need] = m[:, :L]
        for t in touched:
            seen[t] = False
        s_max = len(steps)
        vis = np.full((b, max(1, s_max)), -1, dtype=np.int64)
        for s, (rows, node) in enumerate(steps):
            vis[rows, s] = node
        return vis


def random_regular_graph(n: int, R: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, R)`` int32: each vertex gets ``min(R, n-1)`` distinct random non-self
    out-neighbours (unsorted, -1 padded when ``n - 1 < R``)."""
    g = np.full((n, R), -1, dtype=np.int32)
    deg = min(R, n - 1)
    if deg <= 0:
        return g
    if n - 1 <= 2 * deg:
        for v in range(n):  # small n: a permutation of the other vertices per row
            others = np.concatenate([np.arange(v), np.arange(v + 1, n)])
            g[v, :deg] = rng.permutation(others)[:deg]
        return g
    cand = rng.integers(0, n - 1, size=(n, deg), dtype=np.int64)
    while True:
        srt = np.sort(cand, axis=1)
        dup_sorted = np.zeros(cand.shape, dtype=bool)
        dup_sorted[:, 1:] = srt[:, 1:] == srt[:, :-1]
        if not dup_sorted.any():
            break
        # mark, in original positions, the later occurrences of repeated values
        order = np.argsort(cand, axis=1, kind="stable")
        dup = np.zeros(cand.shape, dtype=bool)
        np.put_along_axis(dup, order, dup_sorted, axis=1)
        cand[dup] = rng.integers(0, n - 1, size=int(dup.sum()), dtype=np.int64)
    ar = np.arange(n, dtype=np.int64)[:, None]
    cand = cand + (cand >= ar)  # skip self: values in [0, n-1) -> [0, n) \ {v}
    g[:, :deg] = cand.astype(np.int32)
    return g


def _add_reverse_edges(space: _Space, g: np.ndarray, pts: np.ndarray, out: np.ndarray,
                       alpha: float, R: int, prune=None, chunk_rows: int = 8192) -> None:
    """For every edge p -> j in ``out`` (rows of ``pts``) add j -> p; prune overfull rows
    (``prune(pts, pools, alpha)``, default :func:`_prune_batch`)."""
    if prune is None:
        def prune(p, pl, a):
            return _prune_batch(space, p, pl, a, R)
    src = np.repeat(pts.astype(np.int64), out.shape[1])
    dst = out.ravel().astype(np.int64)
    m = dst >= 0
    src, dst = src[m], dst[m]
    if dst.size == 0:
        return
    order = np.lexsort((src, dst))
    src, dst = src[order], dst[order]
    js, start, cnt = np.unique(dst, return_index=True, return_counts=True)
    rank = np.arange(dst.size) - np.repeat(start, cnt)
    grp = np.repeat(np.arange(js.size), cnt)
    by_cnt = np.argsort(cnt, kind="stable")
    for c0 in range(0, js.size, chunk_rows):
        gsel = by_cnt[c0:c0 + chunk_rows]
        width = int(cnt[gsel].max())
        local = np.full(js.size, -1, dtype=np.int64)
        local[gsel] = np.arange(gsel.size)
        e = local[grp] >= 0
        inc = np.full((gsel.size, width), -1, dtype=np.int64)
        inc[local[grp[e]], rank[e]] = src[e]
        j = js[gsel]
        pool, pc = _unique_rows(np.concatenate([g[j].astype(np.int64), inc], axis=1))
        fits = pc <= R
        if fits.any():
            w = min(R, pool.shape[1])
            row = np.full((int(fits.sum()), R), -1, dtype=np.int32)
            row[:, :w] = pool[fits, :w]
            g[j[fits]] = row
        if (~fits).any():
            g[j[~fits]] = prune(j[~fits], pool[~fits], alpha)


def _sorted_rows(g: np.ndarray) -> np.ndarray:
    s, _ = _unique_rows(g)
    out = np.full(g.shape, -1, dtype=np.int32)
    out[:, :s.shape[1]] = s[:, :g.shape[1]]
    return out


# --------------------------------------------------------------------------------------------
# builders
# --------------------------------------------------------------------------------------------
class _Workers:
    """Splits independent per-vertex work (searches, prunes) over threads.  Each vertex's
    result depends only on its own inputs, so the output does not depend on the thread
    count.  numpy and faiss release the GIL in the heavy operations; faiss' own OpenMP
    pool is held to one thread meanwhile (it would oversubscribe the cores)."""

    def __init__(self, threads: int) -> None:
        self.threads = max(1, int(threads))
        self.pool = None
        if self.threads > 1:
            from concurrent.futures import ThreadPoolExecutor
            self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="vamana")

    def split(self, n: int, min_rows: int = 64) -> list[slice]:
        parts = min(self.threads, max(1, n // min_rows))
        bounds = np.linspace(0, n, parts + 1).astype(np.int64)
        return [slice(int(bounds[i]), int(bounds[i + 1])) for i in range(parts)]

    def map(self, fn, args: list) -> list:
        if self.pool is None or len(args) == 1:
            return [fn(*a) for a in args]
        return list(self.pool.map(lambda a: fn(*a), args))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


class _faiss_threads:
    """Context: faiss' OpenMP pool at ``n`` threads (``None``: unchanged), restored after."""

    def __init__(self, n: int | None) -> None:
        self.n = n
        self.old = None

    def __enter__(self):
        if self.n is not None:
            import faiss

            self.old = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(int(self.n))
        return self

    def __exit__(self, *exc) -> None:
        if self.old is not None:
            import faiss

            faiss.omp_set_num_threads(self.old)


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def build_vamana(vectors: np.ndarray, gcfg: GraphConfig, seed: int = 0, progress: bool = True,
                 max_batch: int = 2048, batch_fraction: float = 0.02,
                 seen_budget_bytes: int = 1 << 28, threads: int | None = None,
                 backend: str = "auto") -> Graph:
    """Vamana graph (module docstring) with batched, ParlayANN-style insertion.

    ``max_batch``/``batch_fraction`` cap the batch size; the visited bitmap costs
    ``batch * N`` bytes and the cap is lowered to keep it under ``seen_budget_bytes``.
    ``threads`` (default: the CPUs this process may use) splits each batch's searches and
    prunes over threads; the graph is the same for any thread count.  ``backend`` selects
    the distance kernel (``auto``/``faiss``/``numpy``, see :class:`_Space`); on uint8 data
    all backends give the same graph.
    """
    x = _check_vectors(vectors)
    gcfg.validate()
    R, L = gcfg.R, gcfg.build_L
    n = x.shape[0]
    if max_batch < 1 or not 0 < batch_fraction <= 1:
        raise GraphError("max_batch must be >= 1 and batch_fraction in (0, 1]")
    if seen_budget_bytes < n:
        raise GraphError(f"seen_budget_bytes must be >= N = {n}")
    rng = np.random.default_rng(seed)
    space = _Space(x, backend)
    entry = medoid(x)
    g = random_regular_graph(n, R, rng)
    workers = _Workers(_default_threads() if threads is None else threads)
    # the batch cap does not depend on the thread count: neither does the graph
    cap = max(1, min(max_batch, int(batch_fraction * n), seen_budget_bytes // n))
    searcher = _BatchSearcher(space, g, entry, L, cap)

    def search(pts: np.ndarray) -> np.ndarray:
        parts = workers.split(pts.size)
        vis = workers.map(lambda sl: searcher.run(pts[sl], sl.start), [(sl,) for sl in parts])
        w = max(v.shape[1] for v in vis)
        return np.concatenate([np.pad(v, ((0, 0), (0, w - v.shape[1])), constant_values=-1)
                               for v in vis], axis=0)

    def prune(pts: np.ndarray, pools: np.ndarray, alpha: float) -> np.ndarray:
        parts = workers.split(pts.size)
        res = workers.map(lambda sl: _prune_batch(space, pts[sl], pools[sl], alpha, R),
                          [(sl,) for sl in parts])
        return np.concatenate(res, axis=0)

    alphas = [1.0, float(gcfg.alpha)] if gcfg.passes == 2 else [float(gcfg.alpha)]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n * len(alphas), desc="vamana", unit="pt", smoothing=0.05)
    try:
        with _faiss_threads(1 if space.use_faiss else None):
            for alpha in alphas:
                perm = rng.permutation(n)
                pos, bs = 0, 1
                while pos < n:
                    pts = perm[pos:pos + bs].astype(np.int64)
                    vis = search(pts)
                    out = prune(pts, np.concatenate([vis, g[pts].astype(np.int64)], axis=1),
                                alpha)
                    g[pts] = out
                    _add_reverse_edges(space, g, pts, out, alpha, R, prune=prune)
                    pos += pts.size
                    bs = min(2 * bs, cap)
                    if bar is not None:
                        bar.update(pts.size)
    finally:
        workers.close()
        if bar is not None:
            bar.close()
    return Graph(_sorted_rows(g), entry)


def build_hnsw_base(vectors: np.ndarray, gcfg: GraphConfig, seed: int = 0,
                    threads: int | None = 1) -> Graph:
    """Level-0 adjacency of a faiss ``IndexHNSWFlat`` (``M = R // 2``, ``efConstruction =
    build_L``); entry = medoid.  ``threads`` sets faiss' OpenMP threads for the build (1, the
    default, is deterministic; more threads make faiss' insertion order racy); ``None`` keeps
    faiss' setting.  ``seed`` seeds the level assignment."""
    import faiss

    x = _check_vectors(vectors)
    gcfg.validate()
    if gcfg.R % 2:
        raise GraphError(f"HNSW level-0 degree is 2*M: graph.R must be even, got {gcfg.R}")
    n, d = x.shape
    index = faiss.IndexHNSWFlat(d, gcfg.R // 2)
    index.hnsw.efConstruction = gcfg.build_L
    index.hnsw.rng = faiss.RandomGenerator(int(seed))
    old = faiss.omp_get_max_threads()
    if threads is not None:
        faiss.omp_set_num_threads(int(threads))
    try:
        index.add(np.ascontiguousarray(x, dtype=np.float32))
    finally:
        faiss.omp_set_num_threads(old)
    h = index.hnsw
    nbrs = faiss.vector_to_array(h.neighbors)
    offsets = faiss.vector_to_array(h.offsets).astype(np.int64)
    lo, hi = h.cum_nb_neighbors(0), h.cum_nb_neighbors(1)
    if offsets.size != n + 1 or hi - lo != gcfg.R:
        raise GraphError(f"unexpected faiss HNSW layout: {offsets.size} offsets for {n} "
                         f"vectors, level-0 width {hi - lo} (expected {gcfg.R})")
    base = nbrs[offsets[:n, None] + np.arange(lo, hi)[None, :]].astype(np.int64)
    base[base == np.arange(n)[:, None]] = -1
    return Graph(_sorted_rows(base), medoid(x))


# --------------------------------------------------------------------------------------------
# DiskANN in-memory graph files
# --------------------------------------------------------------------------------------------
DISKANN_HEADER = struct.Struct("<QIIQ")  # file size, max degree, start, frozen points


def read_diskann_graph(path, R: int | None = None) -> Graph:
    """Read a DiskANN in-memory graph; ``R`` defaults to the header's max_observed_degree (a
    list longer than that, or than ``R``, is an error)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise GraphFileError(f"{path}: cannot read: {e}") from None
    hs = DISKANN_HEADER.size
    if len(raw) < hs:
        raise GraphFileError(f"{path}: {len(raw)} bytes, shorter than the {hs}-byte header")
    size, max_deg, start, frozen = DISKANN_HEADER.unpack_from(raw, 0)
    if size != len(raw):
        raise GraphFileError(f"{path}: header says {size} bytes but the file has {len(raw)} "
                             f"(truncated or trailing data)")
    if frozen:
        raise GraphFileError(f"{path}: {frozen} frozen points: not supported")
    words = np.frombuffer(raw, dtype="<u4", offset=hs, count=(len(raw) - hs) // 4)
    if (len(raw) - hs) % 4:
        raise GraphFileError(f"{path}: body is not a whole number of 32-bit words")
    # walk the k-prefixed lists
    starts: list[int] = []
    pos, nw = 0, words.size
    kk = words  # alias
    while pos < nw:
        k = int(kk[pos])
        if k > max_deg:
            raise GraphFileError(f"{path}: vertex {len(starts)} has degree {k} > "
                                 f"max_observed_degree {max_deg}")
        if pos + 1 + k > nw:
            raise GraphFileError(f"{path}: vertex {len(starts)} list of {k} ids runs past the "
                                 f"end of the file (truncated)")
        starts.append(pos)
        pos += 1 + k
    n = len(starts)
    if n == 0:
        raise GraphFileError(f"{path}: no vertices")
    if start >= n:
        raise GraphFileError(f"{path}: start point {start} out of range for {n} vertices")
    st = np.asarray(starts, dtype=np.int64)
    deg = words[st].astype(np.int64)
    r = max_deg if R is None else int(R)
    if r < 1:
        raise GraphFileError(f"{path}: R must be >= 1")
    if deg.max() > r:
        raise GraphFileError(f"{path}: a vertex has {int(deg.max())} neighbours > R = {r}")
    rows = np.full((n, r), -1, dtype=np.int64)
    col = np.arange(r)[None, :]
    m = col < deg[:, None]
    idx = (st[:, None] + 1 + col)[m]
    ids = words[idx].astype(np.int64)
    if ids.size and ids.max() >= n:
        raise GraphFileError(f"{path}: neighbour id {int(ids.max())} out of range for {n} "
                             f"vertices")
    rows[m] = ids
    if np.any(rows == np.arange(n)[:, None]):
        raise GraphFileError(f"{path}: self loop in the graph")
    uniq, cnt = _unique_rows(rows)
    if np.any(cnt != deg):
        bad = int(np.nonzero(cnt != deg)[0][0])
        raise GraphFileError(f"{path}: vertex {bad} lists a neighbour twice")
    out = np.full((n, r), -1, dtype=np.int32)
    out[:, :uniq.shape[1]] = uniq[:, :r]
    try:
        return Graph(out, int(start))
    except GraphError as e:
        raise GraphFileError(f"{path}: {e}") from None


def write_diskann_graph(path, graph: Graph) -> None:
    """Write ``graph`` as a DiskANN in-memory graph (atomic: temp file + rename)."""
    if not isinstance(graph, Graph):
        raise GraphError(f"expected a Graph, got {type(graph).__name__}")
    graph.validate()
    path = os.fspath(path)
    deg = graph.degrees()
    n = graph.n
    size = DISKANN_HEADER.size + 4 * int(n + deg.sum())
    body = np.empty(n + int(deg.sum()), dtype="<u4")
    pos = np.concatenate([[0], np.cumsum(deg + 1)[:-1]])
    body[pos] = deg
    m = graph.neighbors >= 0
    body[(pos[:, None] + 1 + np.arange(graph.R)[None, :])[m]] = graph.neighbors[m]
    header = DISKANN_HEADER.pack(size, int(deg.max()), graph.entry, 0)
    with atomic_open(path) as f:
        f.write(header)
        f.write(body.tobytes())
