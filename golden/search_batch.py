"""Algorithm 1 for many queries in lockstep: the fast path of the golden model.

Same algorithm, same integers and same outputs as :func:`proxima.golden.search.search` (the
readable spec; ``tests/golden/test_search.py`` checks ids, distances, counters and events
agree query by query).  Each loop iteration advances every unfinished query by one step: an
expansion or a convergence check.  State lives in ``(Q, L)`` arrays; neighbour slots are
processed one at a time across all queries so that the Bloom filter sees ids in the same
order as the hardware (a neighbour's bits can make a later neighbour of the same row look
visited).
"""

from __future__ import annotations

import numpy as np

from proxima.config import ProximaConfig

from .distance import sort_key
from .index import Index
from .pq import build_adt
from .search import COUNTERS, SearchResult

__all__ = ["search_batch"]

_INF = np.int64(1) << np.int64(62)


def _chunk_size(n_vertices: int, bloom_bits: int) -> int:
    # seen-bitset + filter bits (bool) + list state, in bytes
    per_query = n_vertices // 8 + bloom_bits + 8192
    return int(max(1, min(256, (256 << 20) // per_query)))


_HASH_BITS = 20  # scratch tables of 2**20 entries: cache-resident, few false alarms


def _set_earlier(lin: np.ndarray, valid: np.ndarray, slot: np.ndarray, scratch: np.ndarray,
                 mark: np.ndarray) -> np.ndarray:
    """``(E, R, H)`` bool: the filter bit ``lin[e, j, h]`` was also addressed by a valid slot
    ``j' < j`` of the same row (rows belong to different queries, so ``lin`` values of
    different rows never coincide).

    Such collisions are rare.  Every slot writes its number to a small hashed ``scratch``
    table at ``lin mod 2**_HASH_BITS`` and reads it back; where another slot's number comes
    back (a real collision, or only a hash clash), all slots on that hash bucket are resolved
    exactly by sorting their ``(lin, slot)`` pairs.  ``scratch`` and ``mark`` are left as they
    were found.
    """
    h = lin & ((1 << _HASH_BITS) - 1)
    slots = slot[:len(lin)]
    scratch[h] = slots
    clash = (scratch[h] != slots) & valid[:, :, None]
    out = np.zeros(lin.shape, dtype=bool)
    if clash.any():
        mark[h[clash]] = True
        sel = mark[h] & valid[:, :, None]
        mark[h[clash]] = False
        where = np.nonzero(sel)
        lv, jv = lin[where], slots[where]
        order = np.lexsort((jv, lv))
        later = np.zeros(len(order), dtype=bool)
        later[1:] = lv[order][1:] == lv[order][:-1]  # not the first slot on this bit
        res = np.empty(len(order), dtype=bool)
        res[order] = later
        out[where] = res
    return out


def search_batch(index: Index, queries: np.ndarray, cfg: ProximaConfig | None = None,
                 trace: bool = False, workers: int = 1) -> list[SearchResult]:
    """Run Algorithm 1 for every row of ``queries``; results in query order.

    ``workers > 1`` splits the queries over that many forked processes (queries are
    independent, so results do not depend on the split).
    """
    cfg = cfg or index.cfg
    queries = np.asarray(queries)
    if queries.ndim != 2 or queries.shape[1] != cfg.vec.dim:
        raise ValueError(f"queries must be (Q, {cfg.vec.dim}), got {queries.shape}")
    step = _chunk_size(index.n, cfg.bloom.bits)
    if workers > 1 and len(queries) >= 2 * workers:
        step = min(step, -(-len(queries) // workers))
    chunks = [queries[s:s + step] for s in range(0, len(queries), step)]
    if workers > 1 and len(chunks) > 1:
        import multiprocessing as mp

        index.bloom_table  # computed once, before forking
        global _SHARED
        _SHARED = (index, cfg, trace)
        try:
            with mp.get_context("fork").Pool(min(workers, len(chunks))) as pool:
                parts = pool.map(_run_shared, chunks)
        finally:
            _SHARED = None
        return [r for part in parts for r in part]
    out: list[SearchResult] = []
    for c in chunks:
        out.extend(_run(index, c, cfg, trace))
    return out


def _merge_plan(keys: np.ndarray, cnt: np.ndarray, nk: np.ndarray, new: np.ndarray, L: int,
                n: int, out: list[list[bool]]) -> None:
    """Append each row's merge plan to ``out[row]``
    (:meth:`~proxima.golden.candidates.CandidateList.insert`): the row's new keys ``nk[new]``
    in slot order, as sub-batches of ``n``, merged one after the other into the list
    ``keys`` (``cnt`` entries, the rest ``_INF``); a sub-batch is skipped when the list
    holds ``L`` entries and its smallest key is larger than the list's last."""
    rank = np.cumsum(new, axis=1) - 1
    cur, c = keys, cnt
    flags = []
    for b in range(-(-new.shape[1] // n)):
        sub = new & (rank >= b * n) & (rank < (b + 1) * n)
        has = sub.any(axis=1)
        if not has.any():
            break
        sk = np.where(sub, nk, _INF)
        flags.append((has, (c == L) & (sk.min(axis=1) > cur[:, L - 1])))
        cur = np.sort(np.concatenate([cur, sk], axis=1), axis=1)[:, :L]
        c = np.minimum(L, c + sub.sum(axis=1))
    for r, o in enumerate(out):
        o.extend(bool(f[r]) for h, f in flags if h[r])


_SHARED = None  # (index, cfg, trace) inherited by forked workers


def _run_shared(chunk: np.ndarray) -> list[SearchResult]:
    index, cfg, trace = _SHARED
    return _run(index, chunk, cfg, trace)


def _run(index: Index, queries: np.ndarray, cfg: ProximaConfig, trace: bool):
    s = cfg.search
    L, k, idb, R = s.L, s.k, cfg.id_bits, cfg.graph.R
    mask = np.int64((1 << idb) - 1)
    Q = len(queries)
    qi = np.arange(Q)
    H, B = cfg.bloom.hashes, cfg.bloom.bank_bits
    same_hash = cfg.bloom == index.cfg.bloom and cfg.id_bits == index.cfg.id_bits
    if same_hash:
        btab = index.bloom_table
    else:
        from .bloom import bloom_table
        btab = bloom_table(cfg, index.n)
    codes = index.codes.astype(np.intp)
    nbrs_all = index.neighbors
    vecs = index.vectors
    qv = queries.astype(np.int64)

    M, K = cfg.pq.M, cfg.pq.ksub
    adt = build_adt(cfg, queries, index.codebook).reshape(-1)  # (Q * M * 256,)
    adt = adt.astype(np.int32 if cfg.pq.adt_bits < 31 else np.int64)
    m_off = np.arange(M, dtype=np.intp) * K

    def pq_of(qrows: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """PQ distances for ids (E, S) of queries qrows (E,)."""
        lin = codes[ids] + m_off + (qrows * (M * K))[:, None, None]  # (E, S, M)
        return adt[lin].sum(axis=-1, dtype=np.int64)

    def exact_of(qrows: np.ndarray, ids: np.ndarray) -> np.ndarray:
        d = vecs[ids].astype(np.int64) - qv[qrows]
        return (d * d).sum(axis=-1)

    # the filters of all queries, flat, plus one dummy bit that padding slots address
    flat = np.zeros(Q * H * B + 1, dtype=bool)
    dummy = Q * H * B
    scratch = np.zeros(1 << _HASH_BITS, dtype=np.int16)  # slot numbers, collision checks
    mark = np.zeros(1 << _HASH_BITS, dtype=bool)
    seen = np.zeros((Q, (index.n + 7) // 8), dtype=np.uint8)
    keys = np.full((Q, L), _INF, dtype=np.int64)
    expd = np.zeros((Q, L), dtype=bool)
    exa = np.full((Q, L), -1, dtype=np.int64)
    cnt = np.ones(Q, dtype=np.int64)
    T = np.full(Q, s.T0, dtype=np.int64)
    stable = np.zeros(Q, dtype=np.int64)
    prev = np.full((Q, k), -2, dtype=np.int64)
    active = np.ones(Q, dtype=bool)
    converged = np.zeros(Q, dtype=bool)
    ctr = {c: np.zeros(Q, dtype=np.int64) for c in COUNTERS}
    events: list[list[tuple[str, int]]] = [[] for _ in range(Q)]
    skips: list[list[bool]] = [[] for _ in range(Q)]
    col = np.arange(L)
    hrow = np.arange(H)
    slot = np.ascontiguousarray(np.broadcast_to(np.arange(R, dtype=np.int16)[None, :, None],
                                                (Q, R, H)))

    e = int(index.entry)
    flat[((qi[:, None] * H + hrow) * B + btab[e]).ravel()] = True
    seen[:, e >> 3] |= np.uint8(1 << (e & 7))
    keys[:, 0] = sort_key(pq_of(qi, np.full((Q, 1), e))[:, 0], e, idb)
    ctr["pq_dists"] += 1
    if trace:
        for ev in events:
            ev.append(("code", e))

    def fill_exact(qrows: np.ndarray, want: np.ndarray) -> None:
        """Compute exact distances where ``want`` (E, L) and none is cached; events in order."""
        need = want & (exa[qrows] < 0)
        r_, c_ = np.nonzero(need)  # row-major: per query in position order
        if len(r_):
            ids = keys[qrows[r_], c_] & mask
            d = exact_of(qrows[r_], ids)
            exa[qrows[r_], c_] = d
            np.add.at(ctr["exact_dists"], qrows[r_], 1)
            if trace:
                for q_, v in zip(qrows[r_].tolist(), ids.tolist()):
                    events[q_].append(("raw", v))

    while active.any():
        aq = np.nonzero(active)[0]
        Tq = np.minimum(T[aq], cnt[aq])
        window = col[None, :] < Tq[:, None]
        cand = window & ~expd[aq]
        has = cand.any(axis=1)

        # ---- expansions ------------------------------------------------------------
        eq = aq[has]
        if len(eq):
            pos = np.argmax(cand[has], axis=1)
            expd[eq, pos] = True
            u = keys[eq, pos] & mask
            ctr["hops"][eq] += 1
            nb = nbrs_all[u]  # (E, R) ascending, -1 padded
            valid = nb >= 0
            safe = np.where(valid, nb, 0)
            idx = btab[safe]  # (E, R, H) bank-local bit indices
            lin = (eq[:, None, None] * H + hrow) * B + idx  # into flat
            lin[~valid] = dummy
            pre = flat[lin]  # bits as they were before this row
            # the filter sees the row's ids one after another: bit h of slot j was also set
            # if an earlier slot j' < j of the same row addressed the same bit of bank h
            hit = (pre | _set_earlier(lin, valid, slot, scratch, mark)).all(axis=2) & valid
            flat[lin] = True
            byte, bit = safe >> 3, (safe & 7).astype(np.uint8)
            was = (seen[eq[:, None], byte] >> bit) & 1
            ctr["bloom_fp"][eq] += (hit & (was == 0)).sum(axis=1)
            new = valid & ~hit
            r_, c_ = np.nonzero(new)
            # unbuffered: two ids of one row may share a byte of the bitset
            np.bitwise_or.at(seen, (eq[r_], byte[r_, c_]), np.uint8(1) << bit[r_, c_])
            nnew = new.sum(axis=1)
            ctr["pq_dists"][eq] += nnew
            ctr["inserted"][eq] += nnew
            nk = np.full(nb.shape, _INF, dtype=np.int64)
            r_, c_ = np.nonzero(new)
            ids_new = safe[r_, c_]
            nk[r_, c_] = sort_key(pq_of(eq[r_], ids_new[:, None])[:, 0], ids_new, idb)
            if trace:
                for q_, uu, row, nr in zip(eq.tolist(), u.tolist(), nb.tolist(), new.tolist()):
                    ev = events[q_]
                    ev.append(("frame", uu))
                    ev.extend(("code", vv) for vv, f in zip(row, nr) if f)
                _merge_plan(keys[eq], cnt[eq], nk, new, L, cfg.engine.sorter_n,
                            [skips[q_] for q_ in eq.tolist()])
            allk = np.concatenate([keys[eq], nk], axis=1)
            alle = np.concatenate([expd[eq], np.zeros_like(new)], axis=1)
            alld = np.concatenate([exa[eq], np.full(new.shape, -1, dtype=np.int64)], axis=1)
            order = np.argsort(allk, axis=1, kind="stable")[:, :L]
            keys[eq] = np.take_along_axis(allk, order, axis=1)
            expd[eq] = np.take_along_axis(alle, order, axis=1)
            exa[eq] = np.take_along_axis(alld, order, axis=1)
            cnt[eq] = np.minimum(L, cnt[eq] + nnew)

        # ---- convergence checks ------------------------------------------------------
        cq = aq[~has]
        if len(cq):
            ctr["checks"][cq] += 1
            win = window[~has]
            fill_exact(cq, win)
            rank = np.where(win, (exa[cq] << idb) | (keys[cq] & mask), _INF)
            order = np.argsort(rank, axis=1)[:, :k]
            top = np.take_along_axis(rank, order, axis=1)
            topk = np.where(top < _INF, top & mask, -1)
            same = (topk == prev[cq]).all(axis=1)
            prev[cq] = topk
            stable[cq] = np.where(same, stable[cq] + 1, 0)
            done = stable[cq] >= s.r_eff
            converged[cq[done]] = True
            active[cq[done]] = False
            go = cq[~done]
            T[go] += s.T_step
            active[go[T[go] > L]] = False

    # ---- final rerank -------------------------------------------------------------------
    Tf = np.minimum(np.minimum(T, L), cnt)
    pT = keys[qi, Tf - 1] >> idb
    pqd = keys >> idb
    inlist = col[None, :] < cnt[:, None]
    chosen = inlist & ((col[None, :] < Tf[:, None]) |
                       ((pqd << s.beta_frac_bits) < s.beta_fx * pT[:, None]))
    fill_exact(qi, chosen)
    rank = np.where(chosen, (exa << idb) | (keys & mask), _INF)
    order = np.argsort(rank, axis=1)[:, :k]
    top = np.take_along_axis(rank, order, axis=1)
    ctr["final_T"][:] = Tf
    ctr["final_reranked"][:] = chosen.sum(axis=1)

    results = []
    for q_ in range(Q):
        ok = top[q_] < _INF
        ids = (top[q_][ok] & mask).astype(np.int64)
        dists = (top[q_][ok] >> idb).astype(np.int64)
        counters = {c: int(ctr[c][q_]) for c in COUNTERS}
        reason = "converged" if converged[q_] else "list_end"
        results.append(SearchResult(ids, dists, counters, reason, events[q_] if trace else [],
                                    skips[q_] if trace else []))
    return results
