"""hdl.candidates_select.ListSelect against golden CandidateList.select (which slot)."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from proxima.config import preset
from proxima.golden.candidates import CandidateList
from proxima.hdl.candidates_select import ListSelect


def random_list(cfg, rnd, p_expanded=0.3):
    """A golden list of random length (filled by inserts of at most R ids): an expanded
    prefix of random length, then entries expanded with probability ``p_expanded``."""
    golden = CandidateList(cfg)
    ids = rnd.sample(range(1, 1 << cfg.id_bits), rnd.randrange(1, cfg.search.L + 1))
    golden.reset(ids[0])
    for k in range(1, len(ids), cfg.graph.R):
        golden.insert(ids[k:k + cfg.graph.R])
    cut = rnd.randrange(len(golden) + 1)
    for pos in range(len(golden)):
        if pos < cut or rnd.random() < p_expanded:
            golden.mark_expanded(pos)
    return golden


@pytest.mark.parametrize("L", [16, 64, 13])
def test_select_matches_golden(L):
    cfg = preset("tiny").with_(search={"L": L, "beam_width": 1})
    rnd = random.Random(L)
    dut = ListSelect(L, (L).bit_length())
    seen = {"none": 0, "high": 0}

    async def bench(ctx):
        for _ in range(150):
            golden = random_list(cfg, rnd)
            flags = sum(1 << i for i, (_, e) in enumerate(golden.padded())
                        if i < len(golden) and not e)
            T = rnd.randrange(0, L + 1)
            exp = golden.next_unexpanded(T)
            ctx.set(dut.go, 1)
            ctx.set(dut.T, T)
            await ctx.tick()                             # cycle a + 1
            ctx.set(dut.go, 0)
            ctx.set(dut.unexpanded, flags)
            await ctx.tick()
            assert ctx.get(dut.s2)                       # a + 2
            await ctx.tick()
            assert ctx.get(dut.s3)                       # a + 3
            assert ctx.get(dut.first) == (0 if exp is None else 1 << exp)
            await ctx.tick()                             # a + 4
            assert (ctx.get(dut.found), ctx.get(dut.pos)) == \
                ((False, 0) if exp is None else (True, exp)), (flags, T, exp)
            await ctx.tick()
            assert ctx.get(dut.s5)
            seen["none"] += exp is None
            seen["high"] += exp is not None and exp >= 8

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert 0 < seen["none"] < 150 and seen["high"] > 0
