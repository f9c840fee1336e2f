"""Algorithm 1 (dynamic candidate list + early termination): the search the engine runs.

This module is the specification.  :func:`search` runs one query step by step, written to be
read; :func:`search_batch` (``golden/search_batch.py``) runs many queries in lockstep for
throughput and is tested to give identical results, counters and events.

State of one query
------------------
``C``        candidate list (:class:`proxima.golden.candidates.CandidateList`, the twin of the
             RTL block): at most ``L`` entries ``(pq, id)`` kept sorted by the sorter key
             ``(pq << id_bits) | id`` (distance, then id), each with an *expanded* flag and an
             *exact* slot (the cached exact distance, computed at most once per vertex: a
             vertex that leaves ``C`` can never come back because the visited filter has it).
``visited``  the Bloom filter (:mod:`proxima.golden.bloom`).
``T``        inner list size, starting at ``T0``.

Steps
-----
1. ``visited.test_and_set(entry)``; ``C = [(pq(entry), entry)]``.
2. Loop:

   a. If some entry among the first ``min(T, |C|)`` of ``C`` is not expanded, take the first
      such (the best), mark it expanded and read its neighbour list.  For each neighbour
      ``v`` in row order (ascending id) with ``visited.test_and_set(v)`` false: compute
      ``pq(v)`` from the ADT and collect ``(pq(v), v)``.  Then
      ``C = first L of sort(C + collected)``.  Repeat the loop.
   b. Otherwise (all top-``T`` expanded) this is a *check*: every entry among the first
      ``min(T, |C|)`` without an exact distance gets one; ``topk`` = the ids of the ``k``
      best of those entries by ``(exact, id)``.  If ``topk`` equals the previous check's
      ``topk``, ``stable += 1`` else ``stable = 0``.  If ``stable >= r_eff``: stop
      (``converged``), where ``r_eff = max(r, L // L_per_r)`` (``r`` if ``L_per_r = 0``;
      :attr:`proxima.config.SearchConfig.r_eff`): a longer list also demands a longer run of
      unchanged checks, so raising ``L`` lifts recall towards the graph's own limit instead of
      hitting a ceiling set by ``r``.  Else ``T += T_step``; if ``T > L``: stop (``list_end``).

3. Final rerank: ``Tf = min(T, L, |C|)``; ``pT`` = pq distance of entry ``Tf - 1``.  Every
   entry ``i`` with ``i < Tf`` or ``pq_i * 2**beta_frac_bits < beta_fx * pT`` gets an exact
   distance (cached ones are not recomputed).  Result: the ``k`` best of those by
   ``(exact, id)``.

Events (the NAND reads' logical causes, in order): ``('code', entry)`` first, then per
expansion ``('frame', u)`` followed by ``('code', v)`` for each neighbour that passed the
filter, and ``('raw', v)`` whenever an exact distance is computed.  ``golden/layout.py`` turns
events into physical (core, page, offset) reads.  With the events (``trace``), the
candidate list's merge plan: one flag per merge (a sub-batch of ``engine.sorter_n`` codes of
an expansion), in order, ``True`` where the merge is skipped
(:meth:`~proxima.golden.candidates.CandidateList.insert`): the cycles of the RTL, not its
results, depend on it.

Starting T: ``T0`` defaults to 16 for the ``default`` preset (>= k, so the first check can
already decide the top-k); see docs/ARCHITECTURE.md for the measurement behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from proxima.config import ProximaConfig

from .bloom import BloomFilter
from .candidates import CandidateList
from .distance import exact_distances, sort_key
from .index import Index
from .pq import build_adt

__all__ = ["SearchResult", "search", "COUNTERS"]

COUNTERS = (
    "hops",  # expansions = neighbour-list (frame) reads
    "pq_dists",  # PQ distances computed (= neighbour codes needed)
    "exact_dists",  # exact distances computed (= raw-vector reads)
    "bloom_fp",  # neighbours rejected by the filter that had never been inserted
    "checks",  # convergence checks performed
    "inserted",  # candidates offered to the list (before truncation to L)
    "final_T",
    "final_reranked",  # entries exact-ranked at the end (cached or not)
)

REASONS = ("converged", "list_end")


@dataclass
class SearchResult:
    ids: np.ndarray  # (k,) int64, best first
    dists: np.ndarray  # (k,) int64 exact squared distances
    counters: dict[str, int]
    reason: str
    events: list[tuple[str, int]] = field(default_factory=list)
    #: the candidate list's merge plan (module docstring), with the events
    merge_skips: list[bool] = field(default_factory=list)


def _key(pq: int, v: int, id_bits: int) -> int:
    return sort_key(pq, v, id_bits)


def search(index: Index, query: np.ndarray, cfg: ProximaConfig | None = None,
           trace: bool = True) -> SearchResult:
    """Run Algorithm 1 for one uint8 query on ``index``; see the module docstring."""
    cfg = cfg or index.cfg
    s = cfg.search
    L, k, idb = s.L, s.k, cfg.id_bits
    query = np.asarray(query)
    adt = build_adt(cfg, query, index.codebook)

    adt_l = adt.tolist()
    codes = index.codes

    def pq(v: int) -> int:
        return sum(row[c] for row, c in zip(adt_l, codes[v].tolist()))

    events: list[tuple[str, int]] = []
    skips: list[bool] = []
    emit = events.append if trace else (lambda e: None)
    counters = dict.fromkeys(COUNTERS, 0)
    same_hash = cfg.bloom == index.cfg.bloom and cfg.id_bits == index.cfg.id_bits
    bloom = BloomFilter(cfg, index.bloom_table if same_hash else None)
    truly_seen: set[int] = set()  # only to count false positives; the hardware has no such set

    C = CandidateList(cfg)  # the candidate list, as golden/candidates.py defines it
    exact: dict[int, int] = {}  # a vertex that leaves C never returns: no eviction needed

    def get_exact(v: int) -> int:
        if v not in exact:
            exact[v] = int(exact_distances(query, index.vectors[v][None, :])[0])
            counters["exact_dists"] += 1
            emit(("raw", v))
        return exact[v]

    e = int(index.entry)
    bloom.test_and_set(e)
    truly_seen.add(e)
    emit(("code", e))
    counters["pq_dists"] += 1
    C.reset(_key(pq(e), e, idb))

    mask = (1 << idb) - 1
    T = s.T0
    stable = 0
    prev_topk: tuple[int, ...] | None = None
    reason = "list_end"
    while True:
        found, _, ukey = C.select(T)
        if found:
            u = ukey & mask
            counters["hops"] += 1
            emit(("frame", u))
            new = []
            for v in index.neighbor_list(u):
                v = int(v)
                if bloom.test_and_set(v):
                    if v not in truly_seen:
                        counters["bloom_fp"] += 1
                    continue
                truly_seen.add(v)
                emit(("code", v))
                counters["pq_dists"] += 1
                new.append(_key(pq(v), v, idb))
            counters["inserted"] += len(new)
            plan = C.insert(new)
            if trace:
                skips.extend(plan)
            continue
        # convergence check
        counters["checks"] += 1
        top = C.keys[:min(T, len(C))]
        ranked = sorted((get_exact(kk & mask), kk & mask) for kk in top)
        topk = tuple(v for _, v in ranked[:k])
        stable = stable + 1 if topk == prev_topk else 0
        prev_topk = topk
        if stable >= s.r_eff:
            reason = "converged"
            break
        T += s.T_step
        if T > L:
            break

    # final rerank
    keys = C.keys
    Tf = min(T, L, len(keys))
    pT = keys[Tf - 1] >> idb
    chosen = [kk & mask for i, kk in enumerate(keys)
              if i < Tf or ((kk >> idb) << s.beta_frac_bits) < s.beta_fx * pT]
    ranked = sorted((get_exact(v), v) for v in chosen)[:k]
    counters["final_T"] = Tf
    counters["final_reranked"] = len(chosen)
    ids = np.array([v for _, v in ranked], dtype=np.int64)
    dists = np.array([d for d, _ in ranked], dtype=np.int64)
    return SearchResult(ids, dists, counters, reason, events, skips)
