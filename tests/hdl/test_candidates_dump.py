"""hdl.candidates_dump.DumpReader: the dump of a list, through a model of the read port,
is the golden list's padded slots in order (``dbg``), under random back-pressure."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from proxima.config import preset
from proxima.hdl.candidates_dump import DumpReader, dump_layout
from tests.hdl.test_candidates_select import random_list


@pytest.mark.parametrize("p_ready", [1.0, 0.4])
def test_dump_streams_the_list(p_ready):
    cfg = preset("tiny")
    L, G, EB = cfg.search.L, 8, cfg.sort_key_bits + 1
    groups = -(-L // G)
    dut = DumpReader(L, groups, EB, dump_layout(L, cfg.sort_key_bits))
    rnd = random.Random(int(p_ready * 10))
    dumps = []

    async def bench(ctx):
        for _ in range(6):
            golden = random_list(cfg, rnd, 0.4)
            # the list's slots as the RTL holds them: (key << 1) | expanded, empty all ones
            slots = [(k << 1) | e if i < len(golden) else (1 << EB) - 1
                     for i, (k, e) in enumerate(golden.padded())]
            ctx.set(dut.length, len(golden))
            oh, lvl1 = 0, [0] * groups                   # the read port: select, level 1
            ctx.set(dut.start, 1)
            beats, cycle = [], 0
            while not beats or not beats[-1][3]:
                cycle += 1
                assert cycle < 10 * L, "timeout"
                rd_key = 0
                for v in lvl1:
                    rd_key |= v
                ctx.set(dut.rd_key, rd_key)
                take = rnd.random() < p_ready
                ctx.set(dut.dbg.ready, take)
                if take and ctx.get(dut.dbg.valid):
                    d = ctx.get(dut.dbg.payload)
                    beats.append((d.pos, d.key, d.expanded, d.last, cycle))
                go, shift, load = ctx.get(dut.go), ctx.get(dut.shift), ctx.get(dut.load)
                # the port's registers at this edge (level 1 from the current select)
                new_lvl1 = [(sum(slots[i] for i in range(g * G, min(L, (g + 1) * G))
                                 if (oh >> i) & 1)) if (load >> g) & 1 else lvl1[g]
                            for g in range(groups)]
                if go:
                    oh = 1
                else:
                    old = oh
                    for g in range(groups):
                        if (shift >> g) & 1:
                            mask = ((1 << G) - 1) << (g * G)
                            oh = (oh & ~mask) | ((old << 1) & mask)
                oh &= (1 << L) - 1
                lvl1 = new_lvl1
                await ctx.tick()
                ctx.set(dut.start, 0)
            dumps.append((beats, golden.padded(), len(golden)))
            for _ in range(3):
                await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    pad = (1 << cfg.sort_key_bits) - 1
    for beats, padded, n in dumps:
        assert [(p, k, e, last) for p, k, e, last, _ in beats] == \
            [(i, k if i < n else pad, int(e), int(i == L - 1))
             for i, (k, e) in enumerate(padded)]
        if p_ready == 1.0:                               # one beat per cycle, from a + 4
            assert [c for *_, c in beats] == list(range(5, 5 + L))
