"""Pure policies (LRU with byte budget, stride prefetcher) and the page-cache trace model."""

from __future__ import annotations

import random

import pytest
from hypothesis import example, given, settings, strategies as st

from proxima.config import CacheConfig
from proxima.golden.field import LRUCache, PageCacheModel, StridePrefetcher, field_addresses


# ------------------------------------------------------------------ LRU with a byte budget
def test_lru_evicts_least_recently_used_first():
    c = LRUCache(10)
    assert c.put("a", 1, 4) == []
    assert c.put("b", 2, 4) == []
    ev = c.put("c", 3, 4)  # 12 > 10: a goes
    assert [e.key for e in ev] == ["a"]
    assert c.get("b") == 2  # b becomes MRU: order c, b
    ev = c.put("d", 4, 4)
    assert [e.key for e in ev] == ["c"]
    assert c.keys() == ["b", "d"] and c.used == 8


def test_lru_evicts_several_and_rejects_oversized():
    c = LRUCache(10)
    for k in "abcde":
        c.put(k, k, 2)
    ev = c.put("big", 0, 7)
    assert [e.key for e in ev] == ["a", "b", "c", "d"]
    assert c.keys() == ["e", "big"] and c.used == 9
    ev = c.put("huge", 0, 11)
    assert [e.key for e in ev] == ["huge"] and c.keys() == ["e", "big"]


def test_lru_peek_does_not_reorder_and_replace_updates_size():
    c = LRUCache(6)
    c.put("a", 1, 3)
    c.put("b", 2, 3)
    assert c.peek("a") == 1
    assert [e.key for e in c.put("c", 3, 1)] == ["a"]
    c.put("b", 9, 1)  # replace: size shrinks, becomes MRU
    assert c.used == 2 and c.keys() == ["c", "b"] and c.get("b") == 9


def test_lru_prefetched_flag_reported_on_eviction():
    c = LRUCache(2)
    c.put(1, None, 1, prefetched=True)
    c.put(2, None, 1, prefetched=True)
    assert c.take_prefetched(2) is True and c.take_prefetched(2) is False
    ev = c.put(3, None, 1) + c.put(4, None, 1)
    assert [(e.key, e.prefetched) for e in ev] == [(1, True), (2, False)]


# ------------------------------------------------------------------ stride prefetcher
def test_prefetcher_strided_trace():
    p = StridePrefetcher(streams=2, depth=3, window=100)
    acts = [p.observe(k) for k in (0, 10, 20, 30)]
    assert [a.action for a in acts] == ["alloc", "train", "confirm", "confirm"]
    assert acts[2].targets == (30, 40, 50) and acts[3].targets == (40, 50, 60)
    assert acts[3].stride == 10


def test_prefetcher_negative_stride_and_repeat():
    p = StridePrefetcher(streams=1, depth=2, window=None)
    assert [p.observe(k).action for k in (100, 100, 97, 97, 94)] == [
        "alloc", "repeat", "train", "repeat", "confirm"]
    assert p.observe(91).targets == (88, 85)


def test_prefetcher_random_trace_issues_nothing():
    rng = random.Random(7)
    p = StridePrefetcher(streams=4, depth=4, window=64)
    keys = [rng.randrange(1 << 40) for _ in range(2000)]
    decisions = [p.observe(k) for k in keys]
    assert all(d.action == "alloc" for d in decisions)
    assert sum(len(d.targets) for d in decisions) == 0


def test_prefetcher_interleaved_streams_and_lru_replacement():
    p = StridePrefetcher(streams=2, depth=1, window=50)
    trace = [0, 1000, 4, 1008, 8, 1016, 12]
    d = [p.observe(k) for k in trace]
    assert [x.action for x in d] == ["alloc", "alloc", "train", "train", "confirm", "confirm",
                                     "confirm"]
    assert [x.stream for x in d] == [0, 1, 0, 1, 0, 1, 0]
    assert d[-1].targets == (16,)
    # a third far stream replaces the LRU entry (stream 1, last used at 1016)
    a = p.observe(50_000)
    assert (a.action, a.stream) == ("alloc", 1)
    assert p.state() == [(True, 12, 4), (True, 50_000, 0)]


def test_prefetcher_train_picks_nearest_stream():
    p = StridePrefetcher(streams=3, depth=1, window=100)
    for k in (0, 200, 400):
        p.observe(k)
    d = p.observe(190)  # nearest last is 200 (stream 1)
    assert (d.action, d.stream, d.stride) == ("train", 1, -10)


# ------------------------------------------------------------------ page-cache trace model
CFG = CacheConfig(line_bytes=128, sets=4, ways=2, prefetch_depth=2, prefetch_streams=2)


def test_trace_sequential_exact_results():
    m = PageCacheModel(CFG)
    res = m.run([0, 4, 128, 256, 384, 512])
    r0, r1, r2, r3, r4, r5 = res
    assert (r0.line, r0.hit, r0.fill, r0.stream_action) == (0, False, 0, "alloc")
    assert (r1.line, r1.hit, r1.fill, r1.stream_action) == (0, True, None, "repeat")
    assert (r2.hit, r2.stream_action, r2.prefetches) == (False, "train", ())
    assert (r3.line, r3.hit, r3.stream_action, r3.prefetches) == (2, False, "confirm", (3, 4))
    assert r3.prefetch_evicted == (None, None)  # sets 3 and 0 have free ways
    assert (r4.hit, r4.prefetch_hit, r4.prefetches) == (True, True, (5,))
    assert (r5.hit, r5.prefetch_hit, r5.prefetches) == (True, True, (6,))
    s = m.stats
    assert (s.accesses, s.hits, s.misses, s.prefetch_issued, s.prefetch_used) == (6, 3, 3, 4, 2)


def test_trace_true_lru_within_set_and_wasted_prefetch():
    cfg = CacheConfig(line_bytes=64, sets=2, ways=2, prefetch_depth=1, prefetch_streams=1)
    m = PageCacheModel(cfg, window=1)  # window 1: only unit strides train
    # set 0 receives lines 0, 2, 4 ...: 0, 2 fill; touch 0; 4 evicts 2 (LRU), not 0
    r = m.run([0, 128, 0, 256])
    assert r[3].evicted == 2 and m.set_state(0) == [(0, False), (4, False)]
    m.reset()
    # lines 0,1,2 (stride 1) -> prefetch 3 (set 1); then far accesses in set 1 evict it unused
    r = m.run([0, 64, 128, 64 * 101, 64 * 201, 64 * 301])
    assert r[2].prefetches == (3,)
    assert m.stats.prefetch_wasted == 1 and m.stats.prefetch_used == 0
    assert 3 in [e for x in r for e in (x.evicted,) if e is not None]


def test_trace_prefetch_skips_resident_lines_and_inserts_mru():
    cfg = CacheConfig(line_bytes=1, sets=1, ways=4, prefetch_depth=2, prefetch_streams=1)
    m = PageCacheModel(cfg)
    # window = lines = 4: 5 alloc, 0 is 5 away -> re-alloc the only stream, 1 trains +1
    assert [r.stream_action for r in m.run([5, 0, 1])] == ["alloc", "alloc", "train"]
    r = m.access(2)  # confirm +1: targets 3, 4
    assert r.prefetches == (3, 4)
    # set LRU->MRU before the prefetches: 5, 0, 1, 2; each prefetch evicts the LRU line
    assert r.prefetch_evicted == (5, 0)
    assert m.set_state(0) == [(1, False), (2, False), (3, True), (4, True)]
    r = m.access(3)  # hit prefetched, confirm: targets 4 (resident, skipped), 5
    assert r.prefetch_hit and r.prefetches == (5,) and r.prefetch_evicted == (1,)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 1 << 14), min_size=1, max_size=300),
       st.sampled_from([1, 2, 4]), st.sampled_from([1, 2, 3]), st.integers(0, 3))
@example(addrs=[256, 240, 224], sets=1, ways=1, depth=1)  # a prefetch evicts its demand line
def test_trace_invariants(addrs, sets, ways, depth):
    cfg = CacheConfig(line_bytes=16, sets=sets, ways=ways, prefetch_depth=depth,
                      prefetch_streams=2)
    m = PageCacheModel(cfg)
    resident: set[int] = set()
    for a in addrs:
        r = m.access(a)
        assert r.hit == (r.line in resident)
        resident.add(r.line)
        if r.evicted is not None:
            resident.discard(r.evicted)
        for t, ev in zip(r.prefetches, r.prefetch_evicted):
            assert t not in resident
            resident.add(t)
            if ev is not None:
                resident.discard(ev)
        # the demanded line stays resident unless one of its own prefetches evicted it
        # (a set of one way: the prefetch takes the only line)
        assert m.resident(r.line) == (r.line in resident)
        assert r.line in resident or r.line in r.prefetch_evicted
        assert all(len(m.set_state(i)) <= ways for i in range(sets))
    s = m.stats
    assert s.hits + s.misses == s.accesses == len(addrs)
    assert s.prefetch_used + s.prefetch_wasted <= s.prefetch_issued


def test_field_addresses():
    assert field_addresses((3, 4), 4, [[0, 0], [1, 2], [2, 3]]) == [0, 24, 44]
    assert field_addresses((10,), 8, [0, 9]) == [0, 72]


def test_trace_addr_bits_bounds_prefetch():
    cfg = CacheConfig(line_bytes=16, sets=4, ways=2, prefetch_depth=3, prefetch_streams=1)
    m = PageCacheModel(cfg, addr_bits=8)  # 16 lines: 0..15
    r = m.run([16 * 12, 16 * 13, 16 * 14])
    assert r[2].stream_action == "confirm" and r[2].prefetches == (15,)
    with pytest.raises(ValueError):
        m.access(256)


def test_trace_rejects_bad_input():
    with pytest.raises(ValueError):
        PageCacheModel(CFG).access(-1)
    with pytest.raises(Exception):
        PageCacheModel(CacheConfig(sets=3))
