"""Golden candidate list: operations by hand, bad input, and Algorithm 1 replayed with it."""

from __future__ import annotations

import numpy as np
import pytest

from proxima.config import preset
from proxima.golden.bloom import BloomFilter
from proxima.golden.candidates import CandidateError, CandidateList
from proxima.golden.distance import exact_distances
from proxima.golden.pq import build_adt
from proxima.golden.search import COUNTERS, search
from proxima.golden.sorter import pad_key


def _k(cfg, d, v):
    return (d << cfg.id_bits) | v


def test_operations_by_hand():
    cfg = preset("tiny")  # L = 16, R = 8
    c = CandidateList(cfg)
    c.reset(_k(cfg, 50, 0))
    assert c.keys == (_k(cfg, 50, 0),) and c.expanded == (False,)
    assert c.select(4) == (True, 0, _k(cfg, 50, 0))
    assert c.next_unexpanded(4) is None
    c.insert([_k(cfg, 60, 3), _k(cfg, 10, 9), _k(cfg, 50, 1)])
    assert c.ids == (9, 0, 1, 3) and c.expanded == (False, True, False, False)
    assert c.next_unexpanded(0) is None
    assert c.next_unexpanded(1) == 0
    c.mark_expanded(0)
    assert c.next_unexpanded(2) is None and c.next_unexpanded(3) == 2
    assert c.next_unexpanded(100) == 2
    c.insert([])
    assert c.ids == (9, 0, 1, 3)
    # fill past L: the worst entries drop out, flags travel with their keys
    c.insert([_k(cfg, 100 + i, 100 + i) for i in range(8)])
    c.insert([_k(cfg, 5, 200 + i) for i in range(8)])
    assert len(c) == cfg.search.L
    assert c.ids[:8] == tuple(range(200, 208))
    assert c.ids[8:12] == (9, 0, 1, 3) and c.expanded[8:12] == (True, True, False, False)
    assert c.ids[12:] == (100, 101, 102, 103)
    assert c.padded()[-1] == (_k(cfg, 103, 103), False)
    c.reset(_k(cfg, 1, 5))
    assert c.entries() == [(_k(cfg, 1, 5), False)]
    assert c.padded()[1:] == [(pad_key(cfg), False)] * (cfg.search.L - 1)


def test_bad_input_raises():
    cfg = preset("tiny")
    c = CandidateList(cfg)
    with pytest.raises(CandidateError, match="reserved"):
        c.reset(pad_key(cfg))
    with pytest.raises(CandidateError, match="does not fit"):
        c.reset(1 << cfg.sort_key_bits)
    with pytest.raises(CandidateError, match="integer"):
        c.reset("x")
    c.reset(_k(cfg, 3, 7))
    with pytest.raises(CandidateError, match="already in"):
        c.insert([_k(cfg, 9, 7)])
    with pytest.raises(CandidateError, match="already in"):
        c.insert([_k(cfg, 9, 8), _k(cfg, 10, 8)])
    with pytest.raises(CandidateError, match="exceeds R"):
        c.insert([_k(cfg, 9, 10 + i) for i in range(cfg.graph.R + 1)])
    with pytest.raises(CandidateError, match="T must be"):
        c.next_unexpanded(-1)
    with pytest.raises(CandidateError, match="outside"):
        c.mark_expanded(1)
    assert c.entries() == [(_k(cfg, 3, 7), False)]  # failed operations change nothing


def replay(index, query, cfg):
    """Algorithm 1 exactly as golden/search.py, with C held in a CandidateList."""
    s = cfg.search
    idb, mask = cfg.id_bits, (1 << cfg.id_bits) - 1
    adt = build_adt(cfg, query, index.codebook).tolist()

    def pq(v):
        return sum(row[c] for row, c in zip(adt, index.codes[v].tolist()))

    events, counters, exact = [], dict.fromkeys(COUNTERS, 0), {}
    bloom = BloomFilter(cfg, index.bloom_table)
    seen = set()

    def get_exact(v):
        if v not in exact:
            exact[v] = int(exact_distances(query, index.vectors[v][None, :])[0])
            counters["exact_dists"] += 1
            events.append(("raw", v))
        return exact[v]

    e = int(index.entry)
    bloom.test_and_set(e)
    seen.add(e)
    events.append(("code", e))
    counters["pq_dists"] += 1
    c = CandidateList(cfg)
    c.reset((pq(e) << idb) | e)
    T, stable, prev, reason = s.T0, 0, None, "list_end"
    while True:
        found, _, key = c.select(T)
        if found:
            u = key & mask
            counters["hops"] += 1
            events.append(("frame", u))
            new = []
            for v in index.neighbor_list(u):
                v = int(v)
                if bloom.test_and_set(v):
                    counters["bloom_fp"] += v not in seen
                    continue
                seen.add(v)
                events.append(("code", v))
                counters["pq_dists"] += 1
                new.append((pq(v) << idb) | v)
            counters["inserted"] += len(new)
            before = set(c.ids)
            c.insert(new)
            for v in before - set(c.ids):
                exact.pop(v, None)
            continue
        counters["checks"] += 1
        top = c.ids[:min(T, len(c))]
        ranked = sorted((get_exact(v), v) for v in top)
        topk = tuple(v for _, v in ranked[:s.k])
        stable = stable + 1 if topk == prev else 0
        prev = topk
        if stable >= s.r_eff:
            reason = "converged"
            break
        T += s.T_step
        if T > s.L:
            break
    Tf = min(T, s.L, len(c))
    pT = c.keys[Tf - 1] >> idb
    chosen = [kk & mask for i, kk in enumerate(c.keys)
              if i < Tf or ((kk >> idb) << s.beta_frac_bits) < s.beta_fx * pT]
    ranked = sorted((get_exact(v), v) for v in chosen)[:s.k]
    counters["final_T"] = Tf
    counters["final_reranked"] = len(chosen)
    return [v for _, v in ranked], [d for d, _ in ranked], counters, reason, events


@pytest.mark.parametrize("L,T0,r", [(None, None, None), (8, 4, 1), (16, 16, 3)])
def test_algorithm1_replay_equals_golden_search(tiny_index, L, T0, r):
    cfg = tiny_index.cfg
    if L is not None:
        cfg = cfg.with_(search={"L": L, "T0": T0, "r": r})
    rng = np.random.default_rng(7)
    queries = tiny_index.vectors[rng.integers(0, tiny_index.n, 12)].astype(np.int64)
    queries = np.clip(queries + rng.integers(-20, 21, queries.shape), 0, 255).astype(np.uint8)
    total_hops = 0
    for q in queries:
        ref = search(tiny_index, q, cfg)
        ids, dists, counters, reason, events = replay(tiny_index, q, cfg)
        assert ids == ref.ids.tolist() and dists == ref.dists.tolist()
        assert counters == ref.counters and reason == ref.reason
        assert events == ref.events
        total_hops += counters["hops"]
    assert total_hops > 12  # the searches really expanded vertices
