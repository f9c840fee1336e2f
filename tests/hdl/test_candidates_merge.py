"""hdl.candidates_merge: MergeCompare against ``>``, MergeControl's request sequence
and its cycle count against ProximaConfig.insert_cycles_for."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from proxima.config import preset
from proxima.hdl.candidates_merge import MergeCompare, MergeControl, Req


@pytest.mark.parametrize("EB, halves", [(41, False), (41, True), (9, True), (6, False)])
def test_compare_is_greater_than(EB, halves):
    """gt[i] = a[i] > b[i] (b given complemented), or 1 while a_ones[i], a cycle after the
    operands."""
    w = 4
    rnd = random.Random(EB + halves)
    dut = MergeCompare(w, EB, halves)
    mask = (1 << EB) - 1

    async def bench(ctx):
        for _ in range(300):
            a = [rnd.randrange(1 << EB) for _ in range(w)]
            b = [rnd.choice([rnd.randrange(1 << EB), a[i], a[i] ^ 1, a[i] ^ (1 << (EB - 1)),
                             mask])
                 for i in range(w)]
            z = [rnd.random() < 0.2 for _ in range(w)]
            for i in range(w):
                ctx.set(dut.a[i], a[i])
                ctx.set(dut.bn[i], ~b[i] & mask)
            ctx.set(dut.a_ones, sum(v << i for i, v in enumerate(z)))
            await ctx.tick()
            assert ctx.get(dut.gt) == sum((z[i] or a[i] > b[i]) << i for i in range(w))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def _merge(j, lat, p_ready=1.0, p_valid=1.0, seed=0, skip=False):
    """One merge against a model sorter; (requests in order, cycle of fin after go).
    ``skip``: the ``skip`` input high throughout (the list's verdict)."""
    dut = MergeControl(j)
    rnd = random.Random(seed)
    res = {}

    async def bench(ctx):
        ctx.set(dut.skip, int(skip))
        ctx.set(dut.go, 1)
        await ctx.tick()
        ctx.set(dut.go, 0)
        reqs, queue, cycle = [], [], 1
        while True:
            assert cycle < 100 * (j + 1) * (lat + 10), "timeout"
            r = rnd.random() < p_ready
            ctx.set(dut.req_ready, r)
            if r and ctx.get(dut.req_valid):
                reqs.append((Req(ctx.get(dut.kind)), ctx.get(dut.chunk)))
                queue.append(cycle + lat)
            v = bool(queue) and queue[0] <= cycle and rnd.random() < p_valid
            ctx.set(dut.resp_valid, v)
            if v:
                assert ctx.get(dut.merging)
                kind = reqs[len(reqs) - len(queue)][0]
                assert ctx.get(dut.rr_c_next) == (kind != Req.X)
                assert ctx.get(dut.rr_x_next) == (kind == Req.X)
                queue.pop(0)
            if ctx.get(dut.fin):
                res["fin"] = cycle
                break
            await ctx.tick()
            cycle += 1
        await ctx.tick()
        assert not ctx.get(dut.merging) and not queue
        res["reqs"] = reqs

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return res["reqs"], res["fin"]


def _expected_requests(j):
    out = [(Req.S, 0)]
    for t in range(j):
        out.append((Req.X, t))
        if t < j - 1:
            out.append((Req.Y, t))
    return out


@pytest.mark.parametrize("j", [1, 2, 4])
@pytest.mark.parametrize("lat", [0, 3, 21])
def test_control_schedule_is_the_config_formula(j, lat):
    cfg = preset("default")
    reqs, fin = _merge(j, lat)
    assert reqs == _expected_requests(j)
    assert len(reqs) == 2 * j
    # fin is the last cycle of the merge: the next command is accepted a cycle later
    assert fin + 1 == cfg.insert_cycles_for(lat, chunks=j)


@pytest.mark.parametrize("j", [1, 4])
def test_skipped_merge_sends_nothing(j):
    """``skip`` in cycle a + 2: no request, fin in a + 3, the next command 4 cycles after
    the last INSERT beat (``cfg.insert_skip_cycles``)."""
    reqs, fin = _merge(j, 3, skip=True)
    assert reqs == [] and fin + 1 == preset("default").insert_skip_cycles == 4


@pytest.mark.parametrize("seed", range(3))
def test_control_with_stalls(seed):
    reqs, _ = _merge(4, 2, p_ready=0.5, p_valid=0.5, seed=seed)
    assert reqs == _expected_requests(4)
