"""hdl.prefetch.StridePrefetcher against golden StridePrefetcher, observation by observation."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from proxima.golden.field.policy import StridePrefetcher as GoldenPrefetcher
from proxima.hdl.prefetch import ACTION_CODES, StridePrefetcher


def _trace(kind, count, rng, L, window):
    top = (1 << L) - 1
    if kind == "random":                       # mostly far apart: alloc, some train
        return [int(x) for x in rng.integers(0, top + 1, count)]
    if kind == "near":                         # a small region: train, repeat, confirm
        return [int(x) for x in rng.integers(100, 100 + 3 * window, count)]
    # interleaved strided streams, some beyond the window, with repeats and restarts
    heads = [int(h) for h in rng.integers(0, top + 1, 3)]
    strides = [int(s) for s in rng.choice([1, -1, 3, -7, window, window + 1, 0], 3)]
    out = []
    while len(out) < count:
        s = int(rng.integers(0, 3))
        if rng.random() < 0.05:
            heads[s] = int(rng.integers(0, top + 1))
        if rng.random() < 0.1:
            out.append(out[-1] if out else heads[s])
            continue
        heads[s] = (heads[s] + strides[s]) % (top + 1)
        out.append(heads[s])
    return out


def _run(trace, *, N, L, window, split, gap=0):
    stride_bits = max(1, min(window, (1 << L) - 1).bit_length()) + 1
    dut = StridePrefetcher(streams=N, line_bits=L, window=window, stride_bits=stride_bits,
                           split=split)
    model = GoldenPrefetcher(N, 2, window)
    got: list = []

    async def bench(ctx):
        for line in trace:
            ctx.set(dut.line, line)
            ctx.set(dut.load, 1)
            await ctx.tick()
            ctx.set(dut.load, 0)
            for _ in range(dut.latency - 1 + gap):
                await ctx.tick()
            s, code, stride = model.observe_raw(line)
            got.append(((ctx.get(dut.stream), ctx.get(dut.action), ctx.get(dut.stride),
                         ctx.get(dut.key)), (s, code, stride, line)))
            ctx.set(dut.push, 1)
            await ctx.tick()
            ctx.set(dut.push, 0)
            await ctx.tick()                   # the ranks update a cycle after the push
            table = [(bool(ctx.get(dut.valid[i])), ctx.get(dut.last[i]),
                      ctx.get(dut.table_stride[i])) for i in range(N)]
            assert table == model.state(), (len(got), line)
            ranks = [ctx.get(dut.rank[i]) for i in range(N)]
            assert sorted(range(N), key=ranks.__getitem__) == model.order

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("kind", ["random", "near", "strided"])
def test_prefetcher_matches_golden(kind, split):
    N, L, window = 4, 12, 16
    rng = np.random.default_rng(["random", "near", "strided"].index(kind) * 2 + split)
    got = _run(_trace(kind, 250, rng, L, window), N=N, L=L, window=window, split=split)
    codes = set()
    for k, (rtl, gold) in enumerate(got):
        s, code, stride, line = gold
        codes.add(code)
        # the job's stride only matters on confirm (it drives the targets)
        assert rtl[:2] == (s, code) and rtl[3] == line, (k, rtl, gold)
        if code == ACTION_CODES["confirm"]:
            assert rtl[2] == stride, (k, rtl, gold)
    if kind != "random":
        assert codes == set(ACTION_CODES.values())


def test_prefetcher_eight_streams_with_gaps():
    rng = np.random.default_rng(3)
    trace = _trace("strided", 120, rng, 10, 40) + _trace("near", 60, rng, 10, 40)
    for rtl, gold in _run(trace, N=8, L=10, window=40, split=True, gap=2):
        assert rtl[:2] == gold[:2]


def test_prefetcher_detects_a_wrong_model():
    """The comparison can fail: another window changes the decisions."""
    rng = np.random.default_rng(1)
    trace = _trace("near", 100, rng, 12, 16)
    got = _run(trace, N=4, L=12, window=16, split=False)
    other = GoldenPrefetcher(4, 2, 4)
    assert any(rtl[:2] != other.observe_raw(line)[:2]
               for (rtl, (_, _, _, line)) in got)
