"""hdl.cache_tags.TagLookup against one set of the golden model (LRUCache of budget ways)."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Value
from amaranth.lib import data
from amaranth.sim import Simulator

from proxima.golden.field.policy import LRUCache
from proxima.hdl.cache_tags import TagLookup

SET_BITS, TAG_BITS = 3, 10


def _row_value(layout, W, keys, pf):
    """The RTL row of an LRU set: invalid entries at the bottom, LRU first."""
    ents = [(0, 0, 0)] * (W - len(keys)) + [(1, int(pf[k]), k >> SET_BITS) for k in keys]
    v = 0
    esz = layout.elem_shape.size
    for j, (valid, p, tag) in enumerate(ents):
        v |= (valid | (p << 1) | (tag << 2)) << (j * esz)
    return v


@pytest.mark.parametrize("W, split", [(2, False), (4, False), (8, True), (5, True)])
def test_lookup_matches_lru_set(W, split):
    rnd = random.Random(W * 2 + split)
    entry = data.StructLayout({"valid": 1, "pf": 1, "tag": TAG_BITS})
    layout = data.ArrayLayout(entry, W)
    dut = TagLookup(layout, SET_BITS, split=split)
    seen = {"hit": 0, "miss_evict": 0, "pf_hit": 0, "resident_target": 0}

    async def bench(ctx):
        for _ in range(300):
            s = rnd.randrange(1 << SET_BITS)
            pool = [(t << SET_BITS) | s for t in rnd.sample(range(1 << TAG_BITS), 2 * W)]
            model = LRUCache(W)
            for line in rnd.sample(pool, rnd.randrange(0, W + 1)):
                model.put(line, None, 1, prefetched=rnd.random() < 0.5)
            keys = model.keys()
            pf = {k: model.is_prefetched(k) for k in keys}
            line = rnd.choice(keys) if keys and rnd.random() < 0.5 else rnd.choice(pool)
            demand = rnd.random() < 0.6
            ctx.set(Value.cast(dut.row), _row_value(layout, W, keys, pf))
            ctx.set(dut.ntag, ~(line >> SET_BITS) & ((1 << TAG_BITS) - 1))
            ctx.set(dut.tag, line >> SET_BITS)
            ctx.set(dut.set_idx, s)
            ctx.set(dut.demand, demand)
            for _ in range(2 + split):
                await ctx.tick()
            # the golden operation
            hit = line in model
            was_pf = model.is_prefetched(line)
            evicted = []
            if demand:
                if hit:
                    model.get(line)
                    model.take_prefetched(line)
                else:
                    evicted = model.put(line, None, 1, prefetched=False)
            elif not hit:
                evicted = model.put(line, None, 1, prefetched=True)
            assert ctx.get(dut.hit) == hit
            assert bool(ctx.get(dut.pf_hit)) == (hit and was_pf)
            assert ctx.get(dut.ev_valid) == bool(evicted)
            assert ctx.get(dut.ev_pf) == bool(evicted and evicted[0].prefetched)
            if evicted:
                assert ctx.get(dut.ev_line) == evicted[0].key
            assert ctx.get(dut.need_fetch) == (demand and not hit)
            assert ctx.get(dut.need_pf) == (not demand and not hit)
            assert ctx.get(dut.write_row) == (demand or not hit)
            if demand or not hit:
                keys2 = model.keys()
                exp = _row_value(layout, W, keys2, {k: model.is_prefetched(k) for k in keys2})
                assert ctx.get(Value.cast(dut.new_row)) == exp, (keys, line, demand)
            seen["hit"] += hit
            seen["miss_evict"] += bool(evicted)
            seen["pf_hit"] += hit and was_pf
            seen["resident_target"] += hit and not demand

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert min(seen.values()) > 5, seen
