"""Page cache + stride prefetcher RTL vs PageCacheModel: Amaranth simulation and cocotb."""

from __future__ import annotations

import gc
import random
import warnings

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Fragment, Module, Value
from amaranth.sim import Simulator

from proxima.config import preset
from proxima.golden.field.policy import StridePrefetcher
from proxima.golden.field.trace import PageCacheModel
from proxima.hdl.pagecache import (
    ACTION_CODES, BANK_ROWS, OP_CYCLES, QUEUE_DEPTH, REQUEST_CYCLES, RESPONSE_LATENCY,
    SPLIT_READ_SETS, STATS, PageCache, PageCacheError, full_rate_schedule, nand_addr_bits,
)
from proxima.sim.tb.tb_pagecache import Checker, expected, make_dut, mixed_trace, unpack


# ---- parameters and trace helpers ------------------------------------------------------
def test_action_codes_are_the_golden_codes():
    sp = StridePrefetcher(2, 2, 100)
    for key, action in [(10, "alloc"), (10, "repeat"), (13, "train"), (16, "confirm")]:
        d = sp.observe(key)
        assert d.action == action
    sp2 = StridePrefetcher(2, 2, 100)
    codes = [sp2.observe_raw(k)[1] for k in (10, 10, 13, 16)]
    assert codes == [ACTION_CODES[a] for a in ("alloc", "repeat", "train", "confirm")]


def test_geometry_from_config():
    cfg = preset("default")
    dut = make_dut(cfg, {})
    c = cfg.cache
    assert (dut.sets, dut.ways, dut.depth, dut.streams) == \
        (c.sets, c.ways, c.prefetch_depth, c.prefetch_streams)
    assert dut.window == c.lines == PageCacheModel(c).window
    assert dut.addr_bits == nand_addr_bits(cfg)
    assert (1 << dut.addr_bits) >= cfg.nand.cores * cfg.nand.pages_per_core * cfg.nand.page_bytes
    assert dut.line_bits == dut.addr_bits - (c.line_bytes.bit_length() - 1)
    assert dut.resp_layout.size >= 2 * dut.line_bits


def test_bad_parameters_raise():
    cfg = preset("tiny")
    with warnings.catch_warnings():  # a refused block may be collected unelaborated
        warnings.filterwarnings("ignore", message=".*created but never used")
        with pytest.raises(PageCacheError, match="window must be >= 1"):
            PageCache(cfg, window=0)
        with pytest.raises(PageCacheError, match="addr_bits"):
            PageCache(cfg, addr_bits=8)
        with pytest.raises(PageCacheError, match="counter_bits"):
            PageCache(cfg, counter_bits=0)
        with pytest.raises(PageCacheError, match="read_stages must be 1 or 2"):
            PageCache(cfg, read_stages=3)
        with pytest.raises(PageCacheError, match="bank_rows must be a power of two"):
            PageCache(cfg, read_stages=2, bank_rows=6)
        gc.collect()


def test_mixed_trace_exercises_every_rule():
    cfg = preset("tiny")
    dut = make_dut(cfg, {})
    trace = mixed_trace(dut, 3000, np.random.default_rng(5))
    resp, fetch, pref, stats, examined, _ = expected(dut, trace)
    actions = {r["action"] for r in resp}
    assert actions == set(ACTION_CODES.values())
    assert stats["hits"] > 300 and stats["misses"] > 300
    assert stats["prefetch_issued"] > 100 and stats["prefetch_used"] > 20
    assert stats["prefetch_wasted"] > 20
    assert any(r["evicted_prefetched"] for r in resp)
    assert any(e for (_, e, _) in pref)  # prefetches that evict
    assert any(n < dut.depth for r, n in zip(resp, examined) if r["action"] == 1)  # t < 0
    assert max(a // dut.line_bytes for a in trace) < (1 << dut.line_bits) - dut.window * dut.depth


# ---- Amaranth simulation -------------------------------------------------------------
def _amaranth_run(cfg, count, p_valid, p_ready, seed, *, idle=None, trace=None, **params):
    """Drive ``count`` accesses (a mixed trace unless ``trace`` is given) with random
    valid / ready stalls and check everything against the model.  ``idle``: instead of
    ``p_valid``, wait ``idle[i % len(idle)]`` cycles after acceptance ``i - 1`` before
    offering access ``i``."""
    dut = make_dut(cfg, params)
    rng = np.random.default_rng(seed)
    rnd = random.Random(seed)
    if trace is None:
        trace = mixed_trace(dut, count, rng)
    exp_resp, exp_fetch, exp_pref, stats, examined, model = expected(dut, trace)
    chk = Checker(dut, trace, exp_resp, exp_fetch, exp_pref)
    accepts: list[int] = []
    result: dict = {}

    async def bench(ctx):
        ports = [(getattr(dut, s), getattr(chk, s)) for s in ("resp", "fetch", "prefetch")]
        sent, offering, cycle, wait = 0, False, 0, 0
        while ctx.get(dut.busy):
            await ctx.tick()
        while not chk.done():
            assert cycle < 10 * dut.op_cycles * (1 + dut.depth) * count + 100, "timeout"
            if idle is not None:
                go = wait >= idle[sent % len(idle)]
                wait += 1
            else:
                go = rnd.random() < p_valid
            if not offering and sent < count and go:
                offering = True
                ctx.set(dut.req.payload, trace[sent])
            ctx.set(dut.req.valid, offering)
            readies = []
            for port, _ in ports:
                r = rnd.random() < p_ready
                ctx.set(port.ready, r)
                readies.append(r)
            chk.cycle = cycle
            if offering and ctx.get(dut.req.ready):
                accepts.append(cycle)
                sent += 1
                offering = False
                wait = 0
            for (port, take), r in zip(ports, readies):
                if r and ctx.get(port.valid):
                    take(ctx.get(Value.cast(port.payload)))
            await ctx.tick()
            cycle += 1
        ctx.set(dut.req.valid, 0)
        for port, _ in ports:
            ctx.set(port.ready, 1)
        for _ in range(3):
            for port, take in ports:
                if ctx.get(port.valid):
                    take(ctx.get(Value.cast(port.payload)))
            await ctx.tick()
        result["stats"] = {name: ctx.get(getattr(dut, name)) for name in STATS}
        result["cycles"] = cycle
        # white box: final tag RAM and stream table
        rows = [ctx.get(Value.cast(dut.tag_row(si))) for si in range(dut.sets)]
        valid, last, stride, rank = dut._st
        result["table"] = [(bool(ctx.get(v)), ctx.get(la), ctx.get(st))
                           for v, la, st in zip(valid, last, stride)]
        result["rank"] = [ctx.get(r) for r in rank]
        result["sets"] = [_decode_row(dut, row, si) for si, row in enumerate(rows)]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    chk.finish(result["stats"], stats)
    assert result["sets"] == [model.set_state(si) for si in range(dut.sets)]
    assert result["table"] == model.prefetcher.state()
    assert sorted(range(dut.streams), key=result["rank"].__getitem__) == model.prefetcher.order
    result["resp_cycles"] = chk.resp_cycles
    return dut, accepts, examined, result


def _decode_row(dut, row, si):
    """(line, pf) of the valid entries of one tag-RAM row, LRU first."""
    w = dut.entry_layout.size
    out = []
    for j in range(dut.ways):
        e = unpack(dut.entry_layout, (row >> (j * w)) & ((1 << w) - 1))
        if e["valid"]:
            out.append(((e["tag"] << dut.set_bits) | si, bool(e["pf"])))
    return out


def test_amaranth_tiny_random_stalls():
    _amaranth_run(preset("tiny"), 1200, 0.7, 0.6, seed=1)


def test_amaranth_default_random_stalls():
    _amaranth_run(preset("default"), 1000, 0.8, 0.7, seed=2)


def test_amaranth_paper_preset():
    """256 sets x 8 ways, 8 streams, depth 4, 39-bit addresses; two-cycle tag read in 16
    banks of 16 rows (the default above ``SPLIT_READ_SETS`` sets)."""
    dut, *_ = _amaranth_run(preset("paper"), 400, 0.8, 0.7, seed=7)
    assert (dut.read_stages, dut.bank_rows, dut.banks) == (2, BANK_ROWS, 256 // BANK_ROWS)


def test_read_stages_default_and_cycles():
    for name in ("tiny", "default", "paper"):
        cfg = preset(name)
        dut = make_dut(cfg, {})
        split = cfg.cache.sets > SPLIT_READ_SETS
        assert dut.read_stages == (2 if split else 1)
        assert dut.op_cycles == OP_CYCLES + 2 * split
        assert dut.request_cycles == REQUEST_CYCLES + split     # P1b
        assert dut.response_latency == RESPONSE_LATENCY + 3 * split
    dut = make_dut(preset("tiny"), {"read_stages": 2, "bank_rows": 64})
    assert (dut.bank_rows, dut.banks) == (dut.sets, 1)   # capped at the set count
    dut = make_dut(preset("paper"), {"read_stages": 1})
    assert (dut.bank_rows, dut.banks, dut.op_cycles) == (256, 1, OP_CYCLES)


@pytest.mark.parametrize("sets,read_stages,bank_rows", [
    (8, 2, 2),     # four banks
    (8, 2, 8),     # one bank, registered read
    (32, 1, 16),   # one-cycle read above SPLIT_READ_SETS
    (32, 2, 4),    # eight banks
])
def test_amaranth_tag_read_variants(sets, read_stages, bank_rows):
    """Bit exact and cycle exact (full rate) for every tag-read structure, including the
    forwarding of a row written in the cycle its set is read again (conflict bursts)."""
    cfg = preset("tiny").with_(cache={"sets": sets, "ways": 3, "prefetch_depth": 2})
    params = {"read_stages": read_stages, "bank_rows": bank_rows}
    _amaranth_run(cfg, 500, 0.8, 0.6, seed=12, **params)
    dut, accepts, examined, res = _amaranth_run(cfg, 300, 1.0, 1.0, seed=13, **params)
    assert dut.op_cycles == OP_CYCLES + 2 * (read_stages - 1)
    exp_a, exp_r = full_rate_schedule(examined, dut.op_cycles, dut.request_cycles)
    assert accepts == exp_a and res["resp_cycles"] == exp_r


def test_documented_cycle_constants():
    assert (REQUEST_CYCLES, OP_CYCLES, RESPONSE_LATENCY, QUEUE_DEPTH) == (4, 3, 10, 2)
    # the schedule's special cases stated in the module docstring
    a, r = full_rate_schedule([0] * 20)
    assert r[0] == RESPONSE_LATENCY and set(np.diff(r)) == {REQUEST_CYCLES}
    assert set(np.diff(a)) == {REQUEST_CYCLES}
    a, r = full_rate_schedule([2] * 20)
    assert r[0] == RESPONSE_LATENCY + 2 * OP_CYCLES and set(np.diff(r)) == {3 * OP_CYCLES}
    # two-cycle tag read: 5 cycles per operation and per request, latency 13
    split = (OP_CYCLES + 2, REQUEST_CYCLES + 1)
    a, r = full_rate_schedule([2] * 20, *split)
    assert r[0] == RESPONSE_LATENCY + 3 + 2 * (OP_CYCLES + 2)
    assert set(np.diff(r)) == {3 * (OP_CYCLES + 2)}
    a, r = full_rate_schedule([0] * 20, *split)
    assert r[0] == RESPONSE_LATENCY + 3 and set(np.diff(r)) == {OP_CYCLES + 2}
    assert set(np.diff(a)) == {OP_CYCLES + 2}


@pytest.mark.parametrize("name", ["tiny", "paper"])
def test_amaranth_full_rate_cycles_per_access(name):
    """Valid / ready always high: every acceptance and every response happens exactly in
    the cycle given by ``full_rate_schedule`` (the documented recurrence)."""
    count = 600 if name == "tiny" else 200
    dut, accepts, examined, res = _amaranth_run(preset(name), count, 1.0, 1.0, seed=3)
    ex = np.asarray(examined)
    assert (ex == 0).any() and (ex == dut.depth).any()
    exp_a, exp_r = full_rate_schedule(examined, dut.op_cycles, dut.request_cycles)
    resp = np.asarray(res["resp_cycles"])
    gaps = set(np.diff(resp).tolist())
    assert max(dut.request_cycles, dut.op_cycles) in gaps
    assert dut.op_cycles * (1 + dut.depth) in gaps
    assert accepts == exp_a
    assert resp.tolist() == exp_r
    assert res["cycles"] == resp[-1] + 1


@pytest.mark.parametrize("cache,params", [
    ({"ways": 1, "prefetch_depth": 0, "prefetch_streams": 1}, {}),
    ({"ways": 3, "prefetch_depth": 3, "prefetch_streams": 3}, {"window": 5}),
    ({"sets": 2, "ways": 8, "prefetch_depth": 1, "prefetch_streams": 8}, {"addr_bits": 16}),
])
def test_amaranth_other_geometries(cache, params):
    _amaranth_run(preset("tiny").with_(cache=cache), 500, 0.8, 0.6, seed=4, **params)


def test_amaranth_confirm_line_past_either_end():
    """An entry whose next line ``last + stride`` lies past the end of the line space
    (or below 0) must not confirm on the line that the same low bits name: the RTL keeps
    ``last + stride`` with one bit above the line width and compares only the low ones
    with the request, so this fails if that bit is ignored."""
    cfg = preset("tiny").with_(cache={"prefetch_streams": 4})
    dut = make_dut(cfg, {"addr_bits": 16})
    top, lb = 1 << dut.line_bits, dut.line_bytes
    gap = 2 * dut.window + 1                # lines this far apart never train
    lines, wrapped = [], []
    for n, s in enumerate((1, 2, dut.window)):
        for up in (True, False):
            # fill the table with lines in the middle, away from both ends
            lines += [3 * gap + gap * (dut.streams * (2 * n + up) + k)
                      for k in range(dut.streams)]
            if up:      # train at the top line with stride s, then line last + s - 2**L
                lines += [top - 1 - s, top - 1, s - 1]
            else:       # train at line 0 with stride -s, then line 2**L - s
                lines += [s, 0, top - s]
            wrapped.append(len(lines) - 1)
    trace = [x * lb for x in lines]
    resp = expected(dut, trace)[0]
    assert max(lines) < top
    assert all(resp[w - 1]["action"] == ACTION_CODES["train"] for w in wrapped)
    assert all(resp[w]["action"] == ACTION_CODES["alloc"] for w in wrapped)
    _amaranth_run(cfg, len(trace), 1.0, 1.0, 0, trace=trace, addr_bits=16)


@pytest.mark.parametrize("read_stages", [1, 2])
def test_amaranth_read_after_write_every_gap(read_stages):
    """Pairs of accesses to one set, the second offered 0..15 cycles after the first was
    accepted, outputs always ready: the second access's tag read starts in every cycle
    the pipeline allows relative to the first's row write (with a two-cycle read: the
    cycle the write is requested, the cycle it is written, and later), so each
    forwarding path is exercised (each one's removal fails this test)."""
    cfg = preset("tiny").with_(cache={"sets": 8, "ways": 2, "prefetch_depth": 0})
    dut = make_dut(cfg, {"read_stages": read_stages, "bank_rows": 2})
    lb, sets = dut.line_bytes, dut.sets
    trace, idle = [], []
    rng = np.random.default_rng(21)
    for gap in range(16):
        for _ in range(3):
            s_ = int(rng.integers(0, sets))
            a, b = s_ + sets * int(rng.integers(0, 4)), s_ + sets * int(rng.integers(0, 4))
            trace += [a * lb, b * lb]
            idle += [20, gap]               # the first of a pair meets an idle block
    _amaranth_run(cfg, len(trace), 1.0, 1.0, 0, idle=idle, trace=trace,
                  read_stages=read_stages, bank_rows=2)


def test_amaranth_detects_a_wrong_expectation():
    """The checker really compares: one flipped golden bit makes the run fail."""
    cfg = preset("tiny")
    dut = PageCache(cfg)
    trace = mixed_trace(dut, 50, np.random.default_rng(9))
    resp, fetch, pref, _, _, _ = expected(dut, trace)
    resp[17]["hit"] ^= 1
    chk = Checker(dut, trace, resp, fetch, pref)

    async def bench(ctx):
        ctx.set(dut.resp.ready, 1)
        ctx.set(dut.fetch.ready, 1)
        ctx.set(dut.prefetch.ready, 1)
        sent = 0
        while not chk.done():
            ctx.set(dut.req.valid, sent < len(trace))
            if sent < len(trace):
                ctx.set(dut.req.payload, trace[sent])
            if sent < len(trace) and ctx.get(dut.req.ready):
                sent += 1
            if ctx.get(dut.resp.valid):
                chk.resp(ctx.get(Value.cast(dut.resp.payload)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    with pytest.raises(AssertionError, match="access 17 .*'hit'"):
        sim.run()


def test_amaranth_reset_empties_the_cache():
    """A reset in the middle of operation clears tags, stream table and counters: the same
    trace replayed after a reset gives exactly the fresh model's results again."""
    cfg = preset("tiny")
    dut = make_dut(cfg, {})
    trace = mixed_trace(dut, 300, np.random.default_rng(11))
    resp, fetch, pref, stats, _, _ = expected(dut, trace)
    assert stats["hits"] > 50  # a replay without the clear would differ
    top = Module()
    top.domains.sync = cd = ClockDomain()
    top.submodules.dut = dut
    checkers = [Checker(dut, trace, resp, fetch, pref) for _ in range(2)]
    final = []

    async def bench(ctx):
        for p in (dut.resp, dut.fetch, dut.prefetch):
            ctx.set(p.ready, 1)
        for chk in checkers:
            ctx.set(cd.rst, 1)
            await ctx.tick()
            ctx.set(cd.rst, 0)
            while ctx.get(dut.busy):
                await ctx.tick()
            sent = 0
            while not chk.done():
                ctx.set(dut.req.valid, sent < len(trace))
                if sent < len(trace):
                    ctx.set(dut.req.payload, trace[sent])
                    if ctx.get(dut.req.ready):
                        sent += 1
                for port, take in ((dut.resp, chk.resp), (dut.fetch, chk.fetch),
                                   (dut.prefetch, chk.prefetch)):
                    if ctx.get(port.valid):
                        take(ctx.get(Value.cast(port.payload)))
                await ctx.tick()
            ctx.set(dut.req.valid, 0)
            for _ in range(3):
                for port, take in ((dut.fetch, chk.fetch), (dut.prefetch, chk.prefetch)):
                    if ctx.get(port.valid):
                        take(ctx.get(Value.cast(port.payload)))
                await ctx.tick()
            final.append({name: ctx.get(getattr(dut, name)) for name in STATS})

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for chk, st in zip(checkers, final):
        chk.finish(st, stats)


def test_rtl_elaborates():
    Fragment.get(PageCache(preset("paper")), None)


# ---- cocotb on the generated Verilog ---------------------------------------------------
@pytest.mark.rtl
@pytest.mark.parametrize("preset_name", ["tiny", "default"])
def test_cocotb_pagecache_verilator(preset_name):
    from proxima.sim.runner import run_cocotb
    cfg = preset(preset_name)
    res = run_cocotb(lambda: PageCache(cfg), "proxima_pagecache", "proxima.sim.tb.tb_pagecache",
                     cfg=cfg, build_name=f"pagecache_{preset_name}",
                     parameters={"accesses": 10_000, "timing_accesses": 2000,
                                 "p_valid": 0.7, "p_ready": 0.7})
    assert res.tests == 2 and res.failed == 0


@pytest.mark.rtl
def test_cocotb_pagecache_split_read_verilator():
    """The two-cycle tag read (four banks of 8 rows) on the generated Verilog."""
    from proxima.sim.runner import run_cocotb
    cfg = preset("default").with_(cache={"sets": 32})
    kw = {"read_stages": 2, "bank_rows": 8}
    res = run_cocotb(lambda: PageCache(cfg, **kw), "proxima_pagecache",
                     "proxima.sim.tb.tb_pagecache", cfg=cfg, build_name="pagecache_split_read",
                     parameters={"accesses": 10_000, "timing_accesses": 2000,
                                 "p_valid": 0.7, "p_ready": 0.7, **kw})
    assert res.tests == 2 and res.failed == 0


@pytest.mark.rtl
def test_cocotb_runner_reports_failures():
    """A flipped golden hit bit must make run_cocotb raise."""
    from proxima.sim.runner import CocotbFailure, run_cocotb
    cfg = preset("tiny")
    flipped = r"1 of 1 cocotb tests failed(.|\n)*access 123 \(addr .*'hit': \(1, 0\)"
    with pytest.raises(CocotbFailure, match=flipped):
        run_cocotb(lambda: PageCache(cfg), "proxima_pagecache", "proxima.sim.tb.tb_pagecache",
                   cfg=cfg, build_name="pagecache_tiny", testcase="mixed_trace_with_stalls",
                   parameters={"accesses": 300, "flip_expected": 123})


# ---- synthesised structure -------------------------------------------------------------
def test_split_read_structure_after_synthesis(tmp_path):
    """yosys synth_ecp5 of a two-cycle-read cache (64 sets, 4 banks of 16 rows): the tag
    store is LUT RAM (``DPR16X4``) only; the read-address register drives nothing but the
    RAM cells' read addresses, and the forward decision survives as two flip-flops."""
    from tests.hdl.synth import drivers_and_loads, synth_ecp5
    cfg = preset("tiny").with_(cache={"sets": 64, "ways": 2})
    dut = PageCache(cfg, read_stages=2, bank_rows=16)
    assert dut.banks == 4
    cells, net = synth_ecp5(tmp_path, dut)
    assert cells.get("DP16KD", 0) == 0
    row_bits = dut.row_layout.size
    tag_cells = [k for k, c in net["cells"].items()
                 if c["type"] == "TRELLIS_DPR16X4" and k.startswith("tags")]
    n_ram = len(tag_cells)
    assert {k.split(".")[0] for k in tag_cells} == {f"tags{b}" for b in range(dut.banks)}
    assert n_ram >= dut.banks * -(-row_bits // 4)
    driver, loads = drivers_and_loads(net)

    def ff_bits(name):
        """The bits of a register (nets are split per bit), each driven by a flip-flop."""
        bits = [net["netnames"][f"{name}[{i}]"]["bits"][0] for i in range(dut.set_bits)
                if f"{name}[{i}]" in net["netnames"]]
        assert all(driver[b]["type"] == "TRELLIS_FF" for b in bits), name
        return bits

    addr = ff_bits("c_rd_addr")
    # the bank bits of c_rd_addr are unused (removed): the bank select and the forwarding
    # compare have registers of their own
    assert len(addr) == 4
    for b in addr:                            # the row-in-bank bits: RAM cells only
        assert {(c["type"], p[:3]) for c, p in loads[b]} == {("TRELLIS_DPR16X4", "RAD")}
        assert len(loads[b]) == n_ram
    # the forward decision survives in two copies, each the select of half the row
    fwd = [net["netnames"][name]["bits"][0] for name in ("c_fwd", "c_fwd2")]
    assert fwd[0] != fwd[1] and all(driver[b]["type"] == "TRELLIS_FF" for b in fwd)
    assert all(len(loads[b]) >= row_bits // 4 for b in fwd)
