"""Baseline: DiskANN beam search on the same graph and PQ codes.

The candidate list holds at most ``L`` entries sorted by the same key as Algorithm 1
(``(pq << id_bits) | id``).  Each round takes the first ``W = search.beam_width`` unexpanded
entries, reads their frames together (one I/O round), computes the exact distance of each
expanded vertex (DiskANN stores the full vector beside the neighbour list, so this costs no
extra read on DiskANN's own layout; on Proxima's layout it is a raw-vector read), and inserts
every unvisited neighbour with its PQ distance.  The visited set is exact, as in DiskANN.
It stops when the first ``L`` entries are all expanded and returns the ``k`` best expanded
vertices by ``(exact, id)``.

Events use the same vocabulary as :mod:`proxima.golden.search`; ``('code', v)`` events are
emitted for every PQ distance, but DiskANN keeps PQ codes in RAM, so reports count them apart.
"""

from __future__ import annotations

import numpy as np

from proxima.config import ProximaConfig

from .distance import exact_distances, sort_key
from .index import Index
from .pq import build_adt
from .search import SearchResult

__all__ = ["beam_search"]


def beam_search(index: Index, query: np.ndarray, cfg: ProximaConfig | None = None,
                L: int | None = None, W: int | None = None, trace: bool = True) -> SearchResult:
    cfg = cfg or index.cfg
    L = L or cfg.search.L
    W = W or cfg.search.beam_width
    k, idb = cfg.search.k, cfg.id_bits
    mask = (1 << idb) - 1
    query = np.asarray(query)
    adt = build_adt(cfg, query, index.codebook)
    m_idx = np.arange(cfg.pq.M)
    events: list[tuple[str, int]] = []
    emit = events.append if trace else (lambda e: None)
    counters = {"hops": 0, "rounds": 0, "pq_dists": 0, "exact_dists": 0}

    def key(v: int) -> int:
        counters["pq_dists"] += 1
        emit(("code", v))
        return sort_key(adt[m_idx, index.codes[v]].sum(), v, idb)

    e = int(index.entry)
    visited = {e}
    keys = [key(e)]
    expanded: set[int] = set()
    exact: dict[int, int] = {}
    while True:
        beam = [kk & mask for kk in keys if (kk & mask) not in expanded][:W]
        if not beam:
            break
        counters["rounds"] += 1
        new = []
        for u in beam:
            expanded.add(u)
            counters["hops"] += 1
            emit(("frame", u))
            emit(("raw", u))
            counters["exact_dists"] += 1
            exact[u] = int(exact_distances(query, index.vectors[u][None, :])[0])
        for u in beam:
            for v in index.neighbor_list(u):
                v = int(v)
                if v not in visited:
                    visited.add(v)
                    new.append(key(v))
        keys = sorted(keys + new)[:L]
    ranked = sorted((d, v) for v, d in exact.items())[:k]
    ids = np.array([v for _, v in ranked], dtype=np.int64)
    dists = np.array([d for d, _ in ranked], dtype=np.int64)
    return SearchResult(ids, dists, counters, "list_end", events)
