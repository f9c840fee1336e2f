"""Shared sorter (hdl/shared_sorter.py): vectors from several clients, each sorted
(golden.sorter.sort_keys) and returned to its own client in its request order."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from proxima.config import preset
from proxima.golden.sorter import sort_keys
from proxima.hdl.shared_sorter import SharedSorter


@pytest.mark.parametrize("clients", [2, 5])
def test_shared_sorter_returns_each_clients_vectors_in_order(clients):
    cfg = preset("tiny")
    n = cfg.engine.sorter_n
    dut = SharedSorter(cfg, n, clients)
    rnd = random.Random(clients)
    kmax = (1 << dut.sorter.key_bits) - 1
    reqs = [[[rnd.randint(0, kmax) for _ in range(n)] for _ in range(12)]
            for _ in range(clients)]
    got = [[] for _ in range(clients)]

    async def bench(ctx):
        pos = [0] * clients
        for _ in range(3000):
            for c in range(clients):
                offer = pos[c] < len(reqs[c]) and rnd.random() < 0.6
                ctx.set(dut.i[c].valid, offer)
                if offer:
                    ctx.set(dut.i[c].payload, reqs[c][pos[c]])
                ctx.set(dut.o[c].ready, rnd.random() < 0.7)
            sampled = await ctx.tick().sample(
                *[x for c in range(clients) for x in (dut.i[c].valid, dut.i[c].ready,
                                                      dut.o[c].valid, dut.o[c].ready,
                                                      dut.o[c].payload)])
            vals = sampled[2:]
            for c in range(clients):
                iv, ir, ov, orr, op = vals[5 * c:5 * c + 5]
                if iv and ir:
                    pos[c] += 1
                if ov and orr:
                    got[c].append([int(x) for x in op])
            if all(len(g) == len(r) for g, r in zip(got, reqs)):
                return
        raise AssertionError("timeout")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for c in range(clients):
        assert got[c] == [sorted(v) for v in reqs[c]] == [list(sort_keys(v)) for v in reqs[c]]
