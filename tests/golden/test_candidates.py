"""Golden candidate list: operations by hand, bad input, and its use in Algorithm 1."""

from __future__ import annotations

import numpy as np
import pytest

from proxima.config import preset
from proxima.golden.candidates import CandidateError, CandidateList
from proxima.golden.distance import sort_key
from proxima.golden.search import search
from proxima.golden.sorter import pad_key


def _k(cfg, d, v):
    return sort_key(d, v, cfg.id_bits)


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


def test_merge_plan_flags_the_merges_that_cannot_change_the_list():
    """insert returns one flag per sub-batch of sorter_n keys: skipped when the list is full
    and every key of the sub-batch is larger than its last (after the sub-batches before)."""
    cfg = preset("tiny").with_(engine={"sorter_n": 4})  # L = 16, R = 8: two sub-batches
    L = cfg.search.L
    c = CandidateList(cfg)
    c.reset(_k(cfg, 50, 0))
    assert c.insert([_k(cfg, 900 + i, 1 + i) for i in range(8)]) == (False, False)
    assert c.insert([_k(cfg, 1000 + i, 20 + i) for i in range(6)]) == (False, False)
    assert len(c) == L - 1  # not full yet: never skipped
    assert c.insert([_k(cfg, 2000, 40)]) == (False,)
    assert len(c) == L and c.keys[-1] == _k(cfg, 2000, 40)
    before = c.entries()
    assert c.insert([_k(cfg, 3000 + i, 50 + i) for i in range(6)]) == (True, True)
    assert c.entries() == before  # a skipped merge changes nothing
    # the first sub-batch lowers the last key below the second sub-batch's keys
    plan = c.insert([_k(cfg, 10 + i, 60 + i) for i in range(4)]
                    + [_k(cfg, 1500 + i, 70 + i) for i in range(4)])
    assert plan == (False, True)
    assert c.keys[-1] < _k(cfg, 1500, 70)
    # one key of the sub-batch below the last key: merged
    assert c.insert([_k(cfg, 5000, 80), _k(cfg, 1, 81)]) == (False,)
    assert c.insert([]) == ()


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


@pytest.mark.parametrize("L,T0,r", [(None, None, None), (8, 4, 1), (16, 16, 3)])
def test_a_vertex_enters_the_list_once(tiny_index, L, T0, r):
    """golden.search holds C in a CandidateList and keeps every exact distance it computed
    (no eviction): sound because a vertex that leaves C never returns -- the Bloom filter
    lets each vertex in (its PQ code read) at most once -- and exact distances are taken
    only of list entries."""
    cfg = tiny_index.cfg
    if L is not None:
        cfg = cfg.with_(search={"L": L, "T0": T0, "r": r})
    rng = np.random.default_rng(7)
    queries = tiny_index.vectors[rng.integers(0, tiny_index.n, 12)].astype(np.int64)
    queries = np.clip(queries + rng.integers(-20, 21, queries.shape), 0, 255).astype(np.uint8)
    total_hops = 0
    for q in queries:
        ref = search(tiny_index, q, cfg)
        codes = [v for kind, v in ref.events if kind == "code"]
        raws = [v for kind, v in ref.events if kind == "raw"]
        assert len(codes) == len(set(codes)) == ref.counters["pq_dists"]
        assert len(raws) == len(set(raws)) == ref.counters["exact_dists"]
        assert set(raws) <= set(codes)
        total_hops += ref.counters["hops"]
    assert total_hops > 12  # the searches really expanded vertices
