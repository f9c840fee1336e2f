"""hdl.topk.TopK against golden.search's ranking: sorted((exact, id))[:k] and topk == prev."""

from __future__ import annotations

import gc
import random
import warnings

import pytest
from amaranth.sim import Simulator

from proxima.hdl.topk import TopK


def _run(k, rounds, seed, id_bits=8, dist_bits=6):
    """Rounds of random inserts (distance ties and repeated lists included); after each
    round the list must be the sorted reference and ``same`` the reference's answer."""
    rnd = random.Random(seed)
    dut = TopK(k, id_bits, dist_bits)
    log = []

    async def bench(ctx):
        prev = None
        ctx.set(dut.forget, 1)
        await ctx.tick()
        ctx.set(dut.forget, 0)
        last_round: list = []
        for r in range(rounds):
            ctx.set(dut.clr, 1)
            await ctx.tick()
            ctx.set(dut.clr, 0)
            if last_round and rnd.random() < 0.3:      # the same entries again, reordered
                entries = rnd.sample(last_round, len(last_round))
            else:
                n = rnd.randrange(0, 3 * k)
                ids = rnd.sample(range(1 << id_bits), n)
                entries = [(rnd.randrange(1 << dist_bits) // rnd.choice([1, 8]), v)
                           for v in ids]
            last_round = entries
            for d, v in entries:
                ctx.set(dut.ins, 1)
                ctx.set(dut.ins_id, v)
                ctx.set(dut.ins_dist, d)
                await ctx.tick()
            ctx.set(dut.ins, 0)
            ref = sorted(entries)[:k]
            got = [(ctx.get(dut.dists[x]), ctx.get(dut.ids[x]))
                   for x in range(k) if (ctx.get(dut.valid) >> x) & 1]
            valid = ctx.get(dut.valid)
            assert valid == (1 << len(ref)) - 1, (r, valid)
            assert got == ref, (r, got, ref)
            topk = tuple(v for _, v in ref)
            assert ctx.get(dut.same) == (topk == prev), (r, topk, prev)
            log.append(topk == prev)
            prev = topk
            ctx.set(dut.snap, 1)
            await ctx.tick()
            ctx.set(dut.snap, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return log


@pytest.mark.parametrize("k", [1, 3, 10])
def test_topk_matches_sorted_reference(k):
    log = _run(k, 40, seed=k)
    assert any(log) and not all(log)       # both answers of the check occurred


def test_topk_rejects_k0():
    with warnings.catch_warnings():  # a refused block may be collected unelaborated
        warnings.filterwarnings("ignore", message=".*created but never used")
        with pytest.raises(ValueError, match="k >= 1"):
            TopK(0, 8, 8)
        gc.collect()
