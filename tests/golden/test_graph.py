"""Tests for proxima.golden.graph: RobustPrune, greedy search, Vamana, HNSW base, DiskANN files."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest

from proxima.config import GraphConfig
from proxima.golden import graph as gm
from proxima.golden.datasets import synth, synth_queries
from proxima.golden.graph import (
    Graph,
    GraphError,
    GraphFileError,
    build_hnsw_base,
    build_vamana,
    greedy_search,
    medoid,
    random_regular_graph,
    read_diskann_graph,
    robust_prune,
    squared_distances,
    write_diskann_graph,
)

GC = GraphConfig(R=16, build_L=32, alpha=1.2)
N, DIM = 2000, 32


@pytest.fixture(scope="module")
def data():
    return synth("sift", N, dim=DIM, seed=3)


@pytest.fixture(scope="module")
def vamana(data):
    return build_vamana(data, GC, seed=7, progress=False, threads=1)


# ---------------------------------------------------------------------------------------------
# RobustPrune on hand-checkable 2-D sets
# ---------------------------------------------------------------------------------------------
def _pts2d(coords, dtype=np.uint8):
    return (np.asarray(coords, dtype=np.int64) + 10).astype(dtype)


# p = (0,0); a = (1,0), b = (2,0) behind a, c = (0,3), e = (2,1)
# squared distances from p: a 1, b 4, e 5, c 9
# d(a,b) = 1, d(a,e) = 2, d(a,c) = 10, d(e,c) = 8, d(b,c) = 13, d(b,e) = 1
PTS = _pts2d([(0, 0), (1, 0), (2, 0), (0, 3), (2, 1)])
P, A, B, C, E = range(5)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_robust_prune_alpha_one(dtype):
    x = PTS.astype(dtype)
    # alpha = 1: a occludes b (1 <= 4) and e (2 <= 5) but not c (10 > 9)
    assert robust_prune(x, P, [B, C, A, E], 1.0, 4).tolist() == [A, C]


def test_robust_prune_larger_alpha_keeps_more():
    # alpha = 3: b still occluded (3 <= 4), e kept (6 > 5); then e vs c: 3*8 > 9 keeps c
    assert robust_prune(PTS, P, [B, C, A, E], 3.0, 4).tolist() == [A, E, C]
    # alpha = 5: nothing is occluded by a (5*1 > 4, 5*2 > 5); b vs e: 5*1 <= 5 removes e
    assert robust_prune(PTS, P, [B, C, A, E], 5.0, 4).tolist() == [A, B, C]


def test_robust_prune_degree_bound_self_and_duplicates():
    assert robust_prune(PTS, P, [A, A, P, B, C, E], 5.0, 1).tolist() == [A]
    assert robust_prune(PTS, P, [P], 1.2, 4).tolist() == []
    with pytest.raises(GraphError):
        robust_prune(PTS, P, [7], 1.2, 4)
    with pytest.raises(GraphError):
        robust_prune(PTS, P, [A], 0.9, 4)


def test_robust_prune_ties_break_by_id():
    # q1 = (0,2) and q2 = (2,0)... use two points at equal distance on the same ray side
    x = _pts2d([(0, 0), (0, 2), (2, 0), (0, 4)])
    # both 1 and 2 at distance 4; 1 (lower id) first; 1 occludes 3 (4 <= 16), 2 kept
    assert robust_prune(x, 0, [2, 3, 1], 1.0, 4).tolist() == [1, 2]


def test_batched_prune_matches_reference(data):
    space = gm._Space(data)
    rng = np.random.default_rng(0)
    pts = rng.choice(N, 60, replace=False)
    pools = rng.integers(-1, N, size=(60, 70))
    pools[:5, :] = -1  # empty pools
    pools[5:10, 3] = pts[5:10]  # self in the pool
    for alpha in (1.0, 1.2, 2.0):
        out = gm._prune_batch(space, pts, pools, alpha, GC.R, chunk_rows=16)
        for i, p in enumerate(pts):
            ref = robust_prune(data, int(p), pools[i][pools[i] >= 0], alpha, GC.R)
            got = out[i][out[i] >= 0]
            assert got.tolist() == ref.tolist(), (alpha, i)
            assert np.all(out[i][got.size:] == -1)


# ---------------------------------------------------------------------------------------------
# Vamana build properties
# ---------------------------------------------------------------------------------------------
def _check_graph_rows(g: Graph, R: int):
    a = g.neighbors
    assert a.dtype == np.int32 and a.shape == (g.n, R)
    for v in range(g.n):
        row = a[v]
        ids = row[row >= 0]
        k = ids.size
        assert np.all(row[k:] == -1), v  # padding only at the end
        assert np.all(np.diff(ids) > 0), v  # sorted, no duplicates
        assert v not in ids  # no self loop
        assert k <= R


def test_vamana_properties(data, vamana):
    g = vamana
    _check_graph_rows(g, GC.R)
    assert g.entry == medoid(data)
    st = g.stats()
    assert st["max_degree"] <= GC.R and st["min_degree"] >= 1
    assert st["reachable_fraction"] == 1.0
    assert g.reachable().all()
    assert st["mean_degree"] > GC.R / 2


def test_vamana_deterministic_and_thread_independent(data, vamana):
    again = build_vamana(data, GC, seed=7, progress=False, threads=1)
    assert np.array_equal(again.neighbors, vamana.neighbors) and again.entry == vamana.entry
    other = build_vamana(data, GC, seed=8, progress=False, threads=1)
    assert not np.array_equal(other.neighbors, vamana.neighbors)
    # batches of 500 rows: really split over 2 and 3 threads; same graph as 1 thread
    sub = data[:1000]
    kw = dict(seed=1, progress=False, batch_fraction=0.5)
    one = build_vamana(sub, GC, threads=1, **kw)
    for t in (2, 3):
        assert np.array_equal(build_vamana(sub, GC, threads=t, **kw).neighbors, one.neighbors)


def test_vamana_recall_at_1(data, vamana):
    queries = synth_queries("sift", 100, dim=DIM, seed=3)
    hits = 0
    for q in queries:
        ids, dists, expanded = greedy_search(vamana, data, q, GC.build_L)
        truth = squared_distances(data, q)
        assert dists[0] == truth[ids[0]]
        assert np.all(np.diff(dists) >= 0)
        hits += int(truth[ids[0]] == truth.min())
    assert hits / len(queries) >= 0.9


def test_batched_search_matches_reference(data, vamana):
    space = gm._Space(data)
    s = gm._BatchSearcher(space, vamana.neighbors, vamana.entry, GC.build_L, 40)
    qids = np.arange(0, N, N // 40)[:40]
    vis = s.run(qids)
    assert not s.seen.any()  # bitmap cleared for the next batch
    for i, q in enumerate(qids):
        _, _, expanded = greedy_search(vamana, data, data[q], GC.build_L)
        assert vis[i][vis[i] >= 0].tolist() == expanded.tolist()


def test_vamana_backends_agree():
    # the faiss float32 kernel is exact on uint8 data: same graph as the float64 numpy kernel
    x = synth("sift", 400, dim=16, seed=11)
    gc = GraphConfig(R=8, build_L=16)
    a = build_vamana(x, gc, seed=2, progress=False, threads=1, backend="faiss")
    b = build_vamana(x, gc, seed=2, progress=False, threads=1, backend="numpy")
    assert np.array_equal(a.neighbors, b.neighbors)
    with pytest.raises(GraphError, match="not exact"):
        gm._Space(np.zeros((4, 300), np.uint8), "faiss")
    with pytest.raises(GraphError, match="backend"):
        gm._Space(x, "gpu")


def test_vamana_single_pass_float_and_tiny_sets():
    rng = np.random.default_rng(1)
    xf = rng.normal(size=(300, 8)).astype(np.float32)
    g = build_vamana(xf, GraphConfig(R=8, build_L=16, passes=1), seed=0, progress=False,
                     threads=1)
    _check_graph_rows(g, 8)
    assert g.stats()["reachable_fraction"] > 0.95
    one = build_vamana(np.zeros((1, 4), np.uint8), GraphConfig(R=4, build_L=4), progress=False)
    assert one.neighbors.tolist() == [[-1] * 4] and one.entry == 0
    three = build_vamana(_pts2d([(0, 0), (5, 0), (0, 9)]), GraphConfig(R=4, build_L=4),
                         progress=False)
    _check_graph_rows(three, 4)
    assert three.reachable().all()


def test_vamana_bad_inputs():
    with pytest.raises(GraphError, match="uint8 or float32"):
        build_vamana(np.zeros((10, 4), np.int32), GC, progress=False)
    with pytest.raises(GraphError, match="2-D"):
        build_vamana(np.zeros(10, np.uint8), GC, progress=False)
    with pytest.raises(GraphError, match="NaN"):
        build_vamana(np.full((10, 4), np.nan, np.float32), GC, progress=False)


def test_random_regular_graph():
    rng = np.random.default_rng(0)
    for n, r in ((500, 16), (20, 16), (10, 4)):
        g = random_regular_graph(n, r, rng)
        deg = min(r, n - 1)
        for v in range(n):
            ids = g[v][g[v] >= 0]
            assert ids.size == deg and np.unique(ids).size == deg and v not in ids
            assert ids.max() < n


def test_medoid():
    x = _pts2d([(0, 0), (10, 0), (4, 1), (0, 10), (10, 10)])
    assert medoid(x) == 2  # centroid (4.8, 4.2)


# ---------------------------------------------------------------------------------------------
# Graph container
# ---------------------------------------------------------------------------------------------
def test_graph_lists_round_trip_and_stats():
    g = Graph.from_lists([[2, 1], [0], [], [1]], R=3, entry=0)
    assert g.neighbors.tolist() == [[1, 2, -1], [0, -1, -1], [-1, -1, -1], [1, -1, -1]]
    assert g.degrees().tolist() == [2, 1, 0, 1]
    assert [x.tolist() for x in g.to_lists()] == [[1, 2], [0], [], [1]]
    st = g.stats()
    assert st["reachable_fraction"] == 0.75  # vertex 3 has no in-edge
    assert (st["min_degree"], st["max_degree"], st["mean_degree"]) == (0, 2, 1.0)


@pytest.mark.parametrize("rows, msg", [
    ([[2, 1]], "ascending"),
    ([[1, 1]], "ascending"),
    ([[-1, 1]], "padding"),
    ([[0, 1]], "self loop"),
    ([[1, 5]], "range"),
])
def test_graph_rejects_bad_rows(rows, msg):
    a = np.array(rows + [[0, -1], [0, -1]], dtype=np.int32)
    with pytest.raises(GraphError, match=msg):
        Graph(a, 0)


def test_graph_rejects_bad_shapes():
    with pytest.raises(GraphError):
        Graph(np.zeros((3, 2), np.int64), 0)
    with pytest.raises(GraphError, match="entry"):
        Graph(np.full((3, 2), -1, np.int32), 3)
    with pytest.raises(GraphError, match="R"):
        Graph.from_lists([[1, 2, 3], [0]], R=2, entry=0)
    with pytest.raises(GraphError, match="duplicate"):
        Graph.from_lists([[1, 1], [0]], R=2, entry=0)


# ---------------------------------------------------------------------------------------------
# HNSW base layer
# ---------------------------------------------------------------------------------------------
def test_hnsw_base(data):
    g = build_hnsw_base(data, GC, seed=0)
    _check_graph_rows(g, GC.R)
    assert g.n == N and g.entry == medoid(data)
    st = g.stats()
    assert st["min_degree"] >= 1 and st["max_degree"] <= GC.R
    assert st["reachable_fraction"] > 0.99
    again = build_hnsw_base(data, GC, seed=0)
    assert np.array_equal(again.neighbors, g.neighbors)
    other = build_hnsw_base(data, GC, seed=1)  # the seed drives faiss' level assignment
    assert not np.array_equal(other.neighbors, g.neighbors)
    with pytest.raises(GraphError, match="even"):
        build_hnsw_base(data, GraphConfig(R=15, build_L=32), seed=0)


# ---------------------------------------------------------------------------------------------
# DiskANN graph files
# ---------------------------------------------------------------------------------------------
def _diskann_bytes(lists, start=0, frozen=0, max_deg=None, size=None):
    body = b"".join(struct.pack(f"<I{len(x)}I", len(x), *x) for x in lists)
    if max_deg is None:
        max_deg = max(len(x) for x in lists)
    if size is None:
        size = 24 + len(body)
    return struct.pack("<QIIQ", size, max_deg, start, frozen) + body


def test_diskann_read_hand_made(tmp_path):
    p = tmp_path / "g.index"
    p.write_bytes(_diskann_bytes([[2, 1], [0, 2, 3], [], [1]], start=1))
    g = read_diskann_graph(p)
    assert g.entry == 1 and g.R == 3
    assert g.neighbors.tolist() == [[1, 2, -1], [0, 2, 3], [-1, -1, -1], [1, -1, -1]]
    assert read_diskann_graph(p, R=5).R == 5
    with pytest.raises(GraphFileError, match="> R"):
        read_diskann_graph(p, R=2)
    # a header degree above every list is accepted as the row capacity
    p.write_bytes(_diskann_bytes([[1], [0]], max_deg=3))
    assert read_diskann_graph(p).neighbors.tolist() == [[1, -1, -1], [0, -1, -1]]


def test_diskann_round_trip(tmp_path, vamana):
    p = tmp_path / "v.index"
    write_diskann_graph(p, vamana)
    assert p.stat().st_size == 24 + 4 * (vamana.n + int(vamana.degrees().sum()))
    back = read_diskann_graph(p, R=GC.R)
    assert np.array_equal(back.neighbors, vamana.neighbors) and back.entry == vamana.entry
    # overwrite in place, no temp files left behind
    small = Graph.from_lists([[1], [0]], R=1, entry=1)
    write_diskann_graph(p, small)
    assert read_diskann_graph(p).neighbors.tolist() == [[1], [0]]
    assert sorted(os.listdir(tmp_path)) == ["v.index"]


@pytest.mark.parametrize("blob, msg", [
    (b"\x00" * 10, "header"),
    (_diskann_bytes([[1], [0]])[:-2], "bytes"),
    (_diskann_bytes([[1], [0]], size=36), "header says"),
    (_diskann_bytes([[1], [0]]) + b"\x00" * 4, "header says"),
    (_diskann_bytes([[1], [0]], start=2), "start point"),
    (_diskann_bytes([[1], [0]], frozen=1), "frozen"),
    (_diskann_bytes([[1], [5]]), "out of range"),
    (_diskann_bytes([[1, 1], [0]]), "twice"),
    (_diskann_bytes([[0], [0]]), "self loop"),
    (_diskann_bytes([[1, 0], [0]], max_deg=1), "max_observed_degree"),
    (struct.pack("<QIIQ", 24, 0, 0, 0), "no vertices"),
])
def test_diskann_bad_files(tmp_path, blob, msg):
    p = tmp_path / "bad.index"
    p.write_bytes(blob)
    with pytest.raises(GraphFileError, match=msg):
        read_diskann_graph(p)


def test_diskann_truncated_list(tmp_path):
    # a list header claiming more ids than the file holds (size field consistent with file)
    blob = bytearray(_diskann_bytes([[1], [0, 2, 3]], max_deg=3))
    blob = blob[:-8]
    blob[0:8] = struct.pack("<Q", len(blob))
    p = tmp_path / "t.index"
    p.write_bytes(bytes(blob))
    with pytest.raises(GraphFileError, match="truncated"):
        read_diskann_graph(p)


def test_diskann_missing_file_and_bad_graph(tmp_path):
    with pytest.raises(GraphFileError, match="cannot read"):
        read_diskann_graph(tmp_path / "nope")
    with pytest.raises(GraphError):
        write_diskann_graph(tmp_path / "x", np.zeros((2, 2), np.int32))
