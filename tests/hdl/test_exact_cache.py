"""hdl.exact_cache.ExactCache against golden.search's ``exact`` dictionary.

A random candidate list evolves as golden.candidates does (inserts keep the order of what
they keep and drop the tail; a vertex that leaves never returns); after every dump the
cache must show, at each list position, the exact distance exactly when the dictionary has
one for that vertex, and exact distances stored at random positions must read back.
"""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from proxima.hdl.exact_cache import ExactCache

ID_BITS, PQ_BITS, EX_BITS = 10, 8, 12


def _run(L, rounds, seed):
    rnd = random.Random(seed)
    dut = ExactCache(L, ID_BITS, PQ_BITS, EX_BITS)
    stats = {"carried": 0, "new": 0}

    async def bench(ctx):
        exact: dict[int, int] = {}          # the golden model's cache
        gone: set[int] = set()
        fresh = iter(rnd.sample(range(1 << ID_BITS), 1 << ID_BITS))
        keys: list[int] = []                # the list: (pq << ID_BITS) | id, ascending
        ctx.set(dut.flush, 1)
        await ctx.tick()
        ctx.set(dut.flush, 0)
        for _ in range(rounds):
            # an insert of new vertices, truncated to L (golden CandidateList.insert)
            new = [(rnd.randrange(1 << PQ_BITS) << ID_BITS) | next(fresh)
                   for _ in range(rnd.randrange(0, L))]
            merged = sorted(keys + new)
            gone.update(kk & ((1 << ID_BITS) - 1) for kk in merged[L:])
            keys = merged[:L]
            # dump: one slot per cycle, with random gaps
            ctx.set(dut.rebuild, 1)
            await ctx.tick()
            ctx.set(dut.rebuild, 0)
            for pos in range(L):
                while rnd.random() < 0.3:
                    await ctx.tick()
                key = keys[pos] if pos < len(keys) else (1 << (ID_BITS + PQ_BITS)) - 1
                ctx.set(dut.dump_valid, 1)
                ctx.set(dut.dump_pos, pos)
                ctx.set(dut.dump_key, key)
                await ctx.tick()
                ctx.set(dut.dump_valid, 0)
            ctx.set(dut.swap, 1)
            ctx.set(dut.length, len(keys))
            await ctx.tick()
            ctx.set(dut.swap, 0)
            # every slot against the dictionary; then compute some exact distances
            for pos, kk in enumerate(keys):
                v = kk & ((1 << ID_BITS) - 1)
                ctx.set(dut.addr, pos)
                e = ctx.get(dut.entry)
                assert (e.id, e.pq) == (v, kk >> ID_BITS), pos
                assert e.has == (v in exact), (pos, v)
                if e.has:
                    assert e.ex == exact[v]
                    stats["carried"] += 1
                elif rnd.random() < 0.5:
                    d = rnd.randrange(1 << EX_BITS)
                    exact[v] = d
                    stats["new"] += 1
                    ctx.set(dut.put, 1)
                    ctx.set(dut.exact, d)
                    await ctx.tick()
                    ctx.set(dut.put, 0)
                    assert ctx.get(dut.entry).ex == d and ctx.get(dut.entry).has
            assert not gone & {kk & ((1 << ID_BITS) - 1) for kk in keys}

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return stats


@pytest.mark.parametrize("L", [4, 16])
def test_exact_cache_matches_the_dictionary(L):
    stats = _run(L, 30, seed=L)
    assert stats["carried"] > 5 and stats["new"] > 5
