"""Frequency reordering and hot selection."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from proxima.config import preset
from proxima.golden.index import Index
from proxima.golden.layout import Layout
from proxima.golden.reorder import (ReorderError, hot_count, relabel, reorder,
                                    sample_base_vectors, visit_frequency)

from .conftest import exact_knn_rows

CFG = preset("tiny")


def make_index(n=300, seed=1, entry=17):
    rng = np.random.default_rng(seed)
    vec = rng.integers(0, 256, (n, CFG.vec.dim), dtype=np.uint8)
    R = CFG.graph.R
    nb = exact_knn_rows(vec, R)
    nb[::5, R - 2:] = -1
    book = rng.integers(0, 256, (CFG.pq.M, 256, CFG.dsub), dtype=np.uint8)
    codes = rng.integers(0, 256, (n, CFG.pq.M), dtype=np.uint8)
    return Index(CFG, vec, nb, entry, book, codes)


def greedy(index: Index, q: np.ndarray):
    """Greedy walk from the entry on exact distances, emitting the search's event vocabulary."""
    dist = lambda v: int(((index.vectors[v].astype(np.int64) - q) ** 2).sum())  # noqa: E731
    cur = index.entry
    events = [("code", cur)]
    seen = {cur}
    while True:
        events.append(("frame", cur))
        best, bd = cur, dist(cur)
        for u in index.neighbor_list(cur).tolist():
            if u not in seen:
                seen.add(u)
                events.append(("code", u))
            if dist(u) < bd:
                best, bd = u, dist(u)
        if best == cur:
            events.append(("raw", cur))
            return SimpleNamespace(events=events, result=cur)
        cur = best


def test_hot_count_exact():
    assert hot_count(CFG, 100) == 3
    assert hot_count(CFG, 101) == 4  # ceil(3.03)
    assert hot_count(CFG, 1) == 1
    assert hot_count(CFG.with_(layout={"hot_fraction": 0.07}), 100) == 7  # 0.07*100 > 7.0 in fp
    assert hot_count(CFG.with_(layout={"hot_fraction": 0.0}), 100) == 0
    assert hot_count(CFG.with_(layout={"hot_fraction": 1.0}), 100) == 100


def test_visit_frequency_counts_frames():
    ix = make_index()
    qs = sample_base_vectors(ix, 20, seed=3)
    counts = visit_frequency(ix, qs, greedy)
    expect = np.zeros(ix.n, np.int64)
    for q in qs:
        for k, v in greedy(ix, q).events:
            if k == "frame":
                expect[v] += 1
    assert np.array_equal(counts, expect)
    assert counts[ix.entry] == len(qs)  # every walk expands the entry first
    with pytest.raises(ReorderError, match="events"):
        visit_frequency(ix, qs[:1], lambda index, q: object())


def test_reorder_by_hand():
    ix = make_index(n=8, entry=5)
    counts = np.array([0, 4, 4, 9, 0, 1, 2, 4])
    new, perm = reorder(ix, counts)
    # entry 5 first, then decreasing counts, ties by old id
    assert perm.tolist() == [5, 3, 1, 2, 7, 6, 0, 4]
    assert new.entry == 0
    assert new.hot.tolist() == [True] + [False] * 7  # ceil(0.03 * 8) = 1


def test_reorder_preserves_graph_and_data():
    ix = make_index()
    counts = visit_frequency(ix, sample_base_vectors(ix, 30, seed=4), greedy)
    new, perm = reorder(ix, counts)
    inv = np.empty_like(perm)
    inv[perm] = np.arange(len(perm))
    assert new.entry == 0 and perm[0] == ix.entry
    H = hot_count(CFG, ix.n)
    assert new.hot.sum() == H and new.hot[:H].all()
    rest = counts[perm[1:]]
    assert (np.diff(rest) <= 0).all()
    assert np.array_equal(new.vectors, ix.vectors[perm])
    assert np.array_equal(new.codes, ix.codes[perm])
    assert np.array_equal(new.labels, ix.labels[perm])  # callers' ids follow their vertices
    for v_new in range(ix.n):
        row = new.neighbors[v_new]
        d = int((row >= 0).sum())
        assert (row[d:] == -1).all() and (np.diff(row[:d]) >= 0).all()
        old = ix.neighbor_list(perm[v_new])
        assert sorted(inv[old].tolist()) == row[:d].tolist()
    # the same walks give the same (renumbered) results on the reordered index
    for q in sample_base_vectors(ix, 10, seed=8):
        assert perm[greedy(new, q).result] == greedy(ix, q).result
    Layout.for_index(new)  # hot ids are a prefix: the image can be laid out


def test_relabel_and_reorder_reject_bad_input():
    ix = make_index(n=10, entry=3)
    with pytest.raises(ReorderError, match="permutation"):
        relabel(ix, np.array([0] * 10))
    with pytest.raises(ReorderError, match="shape"):
        reorder(ix, np.zeros(9))
    with pytest.raises(ReorderError, match=">= 0"):
        reorder(ix, -np.ones(10))
