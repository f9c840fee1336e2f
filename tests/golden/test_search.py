"""Algorithm 1: hand-checkable cases, the batched path equals the scalar spec, beam search."""

import numpy as np
import pytest

from proxima.config import preset
from proxima.golden.beam import beam_search
from proxima.golden.index import Index
from proxima.golden.pq import build_adt, pq_distances
from proxima.golden.search import search
from proxima.golden.search_batch import search_batch

from .conftest import clustered_u8


def _same(a, b):
    assert np.array_equal(a.ids, b.ids)
    assert np.array_equal(a.dists, b.dists)
    assert a.counters == b.counters
    assert a.reason == b.reason
    assert a.events == b.events
    assert a.merge_skips == b.merge_skips


def test_batch_equals_scalar_default(default_index):
    q = clustered_u8(60, default_index.cfg.vec.dim, seed=77)
    scalar = [search(default_index, v) for v in q]
    batch = search_batch(default_index, q, trace=True)
    for a, b in zip(scalar, batch):
        _same(a, b)
    # one plan flag per merge (sub-batches of sorter_n codes), both kinds present
    n = default_index.cfg.engine.sorter_n
    for r in scalar:
        per_frame, cur = [], None
        for kind, _ in r.events:
            if kind == "frame":
                cur = [0]
                per_frame.append(cur)
            elif kind == "code" and cur is not None:
                cur[0] += 1
        assert len(r.merge_skips) == sum(-(-c // n) for c, in per_frame)
    flags = [f for r in scalar for f in r.merge_skips]
    assert any(flags) and not all(flags)


def test_batch_equals_scalar_with_bloom_false_positives(tiny_index):
    # a filter far too small for the visited set: false positives must be frequent and the
    # sequential (within-row) filter semantics must still agree between the two paths
    cfg = tiny_index.cfg.with_(bloom={"bits": 64, "hashes": 2}, search={"L": 16})
    q = clustered_u8(80, cfg.vec.dim, seed=5)
    scalar = [search(tiny_index, v, cfg) for v in q]
    batch = search_batch(tiny_index, q, cfg, trace=True)
    assert sum(r.counters["bloom_fp"] for r in scalar) > 0
    for a, b in zip(scalar, batch):
        _same(a, b)


def test_forked_workers_give_the_same_results(default_index):
    q = clustered_u8(40, default_index.cfg.vec.dim, seed=8)
    one = search_batch(default_index, q, trace=True)
    two = search_batch(default_index, q, trace=True, workers=2)
    for a, b in zip(one, two):
        _same(a, b)


def test_result_distances_are_exact_and_sorted(default_index):
    q = clustered_u8(20, default_index.cfg.vec.dim, seed=3)
    for v, r in zip(q, search_batch(default_index, q)):
        d = ((default_index.vectors[r.ids].astype(np.int64) - v.astype(np.int64)) ** 2).sum(1)
        assert np.array_equal(d, r.dists)
        assert list(zip(r.dists, r.ids)) == sorted(zip(r.dists, r.ids))


def test_recall_on_small_clustered_set(default_index):
    import faiss
    q = clustered_u8(100, default_index.cfg.vec.dim, seed=11)
    flat = faiss.IndexFlatL2(q.shape[1])
    flat.add(default_index.vectors.astype(np.float32))
    _, gt = flat.search(q.astype(np.float32), 10)
    res = search_batch(default_index, q)
    rec = np.mean([len(set(r.ids) & set(g)) / 10 for r, g in zip(res, gt)])
    assert rec >= 0.8, rec


def _line_index(cfg, n):
    """A path graph 0-1-2-...-(n-1) on points along one axis: every step is forced."""
    x = np.zeros((n, cfg.vec.dim), dtype=np.uint8)
    x[:, 0] = np.arange(n) * (200 // n)
    nb = np.full((n, cfg.graph.R), -1, dtype=np.int32)
    for i in range(n):
        row = [j for j in (i - 1, i + 1) if 0 <= j < n]
        nb[i, :len(row)] = row
    # codebook: subspace 0 centroid c has first element c, so PQ distance is exact on axis 0
    book = np.zeros((cfg.pq.M, cfg.pq.ksub, cfg.dsub), dtype=np.uint8)
    book[0, :, 0] = np.arange(256)
    codes = np.zeros((n, cfg.pq.M), dtype=np.uint8)
    codes[:, 0] = x[:, 0]
    return Index(cfg, x, nb, 0, book, codes)


def test_path_graph_walks_to_the_far_end_hand_checked():
    cfg = preset("tiny").with_(search={"L": 16, "T0": 4, "T_step": 2, "r": 2, "k": 4},
                               pq={"adt_bits": 18})
    n = 10
    idx = _line_index(cfg, n)
    q = np.zeros(cfg.vec.dim, dtype=np.uint8)
    q[0] = idx.vectors[n - 1, 0]  # query sits on the last vertex
    r = search(idx, q)
    assert r.ids[0] == n - 1 and r.dists[0] == 0
    assert list(r.ids) == [9, 8, 7, 6]
    # the walk expands 0, 1, ..., 9 in order: one frame per vertex
    frames = [v for kind, v in r.events if kind == "frame"]
    assert frames[:n] == list(range(n))
    # every vertex's PQ code is needed exactly once (the filter never re-admits a vertex)
    codes = [v for kind, v in r.events if kind == "code"]
    assert sorted(codes) == list(range(n))
    assert r.counters["bloom_fp"] == 0
    # exact distances are cached: never two raw reads of one vertex
    raws = [v for kind, v in r.events if kind == "raw"]
    assert len(raws) == len(set(raws)) == r.counters["exact_dists"]


def test_pq_distance_of_entry_matches_adt(default_index):
    q = clustered_u8(1, default_index.cfg.vec.dim, seed=9)[0]
    adt = build_adt(default_index.cfg, q, default_index.codebook)
    r = search(default_index, q)
    e = default_index.entry
    assert r.events[0] == ("code", e)
    assert pq_distances(adt, default_index.codes[e]) >= 0


def test_early_termination_saves_work(default_index):
    q = clustered_u8(40, default_index.cfg.vec.dim, seed=21)
    eager = search_batch(default_index, q, default_index.cfg.with_(search={"r": 1}))
    patient = search_batch(default_index, q, default_index.cfg.with_(search={"r": 15}))
    assert np.mean([r.counters["hops"] for r in eager]) < \
        np.mean([r.counters["hops"] for r in patient])
    assert all(r.reason == "list_end" for r in patient)


def test_stop_rule_tied_to_L(tiny_index):
    """``r_eff = max(r, L // L_per_r)``: the scalar spec and the batch agree when the list
    length sets the run of unchanged checks, and a longer run never stops earlier."""
    tied = tiny_index.cfg.with_(search={"L_per_r": 4})  # L = 16: r_eff = 4 > r = 2
    fixed = tiny_index.cfg.with_(search={"L_per_r": 0})
    assert (tied.search.r_eff, fixed.search.r_eff) == (4, tied.search.r)
    q = clustered_u8(40, tied.vec.dim, seed=13)
    scalar = [search(tiny_index, v, tied) for v in q]
    for a, b in zip(scalar, search_batch(tiny_index, q, tied, trace=True)):
        _same(a, b)
    short = search_batch(tiny_index, q, fixed)
    assert all(a.counters["checks"] >= b.counters["checks"] for a, b in zip(scalar, short))
    assert sum(a.counters["checks"] for a in scalar) > sum(b.counters["checks"] for b in short)


def test_beam_search_baseline(default_index):
    q = clustered_u8(20, default_index.cfg.vec.dim, seed=4)
    for v in q:
        r = beam_search(default_index, v)
        assert r.counters["hops"] == r.counters["exact_dists"]
        assert r.counters["rounds"] * default_index.cfg.search.beam_width >= r.counters["hops"]
        frames = [u for kind, u in r.events if kind == "frame"]
        assert len(frames) == len(set(frames))
        assert list(zip(r.dists, r.ids)) == sorted(zip(r.dists, r.ids))


def test_bad_query_shape(default_index):
    with pytest.raises(ValueError, match="queries must be"):
        search_batch(default_index, np.zeros((3, 5), dtype=np.uint8))
