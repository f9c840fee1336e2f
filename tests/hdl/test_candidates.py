"""Candidate list RTL: Amaranth simulation against golden.candidates, cocotb on Verilator."""

from __future__ import annotations

import gc
import random
import warnings

import numpy as np
import pytest
from amaranth.sim import Simulator

from proxima.config import preset
from proxima.golden.sorter import network_depth, pad_key
from proxima.hdl.candidates import CandidateListError, CandidateListRTL, Op
from proxima.sim.tb.tb_candidates import command_beats, expected, make_commands


def _simulate(cfg, beats, n_resp, n_dbg, p_valid, p_ready, seed, dut=None):
    """Drive command beats; returns (responses, dump beats, accept cycles, error, length)."""
    dut = dut or CandidateListRTL(cfg)
    rnd = random.Random(seed)
    resps, dbg, accepted = [], [], []
    out = {}

    async def bench(ctx):
        cpay = dut.cmd.payload
        sent, offering, cycle = 0, False, 0
        while sent < len(beats) or len(resps) < n_resp or len(dbg) < n_dbg:
            assert cycle < 100 * len(beats) + 4 * n_dbg + 100, "timeout"
            if not offering and sent < len(beats) and rnd.random() < p_valid:
                offering = True
                op, key, T, last = beats[sent]
                ctx.set(cpay.op, Op(op))
                ctx.set(cpay.key, key)
                ctx.set(cpay.T, T)
                ctx.set(cpay.last, last)
            ctx.set(dut.cmd.valid, offering)
            rr, dr = rnd.random() < p_ready, rnd.random() < p_ready
            ctx.set(dut.resp.ready, rr)
            ctx.set(dut.dbg.ready, dr)
            if offering and ctx.get(dut.cmd.ready):
                accepted.append(cycle)
                sent += 1
                offering = False
            if rr and ctx.get(dut.resp.valid):
                r = ctx.get(dut.resp.payload)
                resps.append((r.found, r.pos, r.id, r.key))
            if dr and ctx.get(dut.dbg.valid):
                d = ctx.get(dut.dbg.payload)
                dbg.append((d.pos, d.key, d.expanded, d.last))
            await ctx.tick()
            cycle += 1
        out["error"] = ctx.get(dut.error)
        out["length"] = ctx.get(dut.length)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return resps, dbg, accepted, out["error"], out["length"]


def _check_random(cfg, count, seed, p_valid, p_ready, dist_max=64):
    rng = np.random.default_rng(seed)
    cmds = make_commands(cfg, rng, count, dist_max)
    exp_resp, exp_dumps = expected(cfg, cmds)
    exp_dbg = [b for d in exp_dumps for b in d]
    resps, dbg, _, error, _ = _simulate(cfg, command_beats(cmds), len(exp_resp), len(exp_dbg),
                                        p_valid, p_ready, seed)
    L = cfg.search.L
    for k, (g, e) in enumerate(zip(dbg, exp_dbg)):
        assert g == e, f"after command {k // L} {cmds[k // L]}: slot {k % L} got {g}, exp {e}"
    assert resps == exp_resp and len(dbg) == len(exp_dbg)
    assert not error
    assert sum(r[0] for r in exp_resp) > 0 and any(not r[0] for r in exp_resp)
    assert any(d[-1][1] != pad_key(cfg) for d in exp_dumps), "the list never filled up"
    return cmds


def test_tiny_random_commands_with_stalls():
    cmds = _check_random(preset("tiny"), 250, seed=1, p_valid=0.7, p_ready=0.6, dist_max=8)
    assert sum(op == "insert" for op, _ in cmds) > 50


@pytest.mark.parametrize("changes", [
    # R > L, and a list that is not a power of two with a tiny row
    dict(graph={"R": 16}, search={"L": 4, "T0": 4, "k": 2, "beam_width": 2}),
    dict(engine={"id_bits": 8}, graph={"R": 3, "build_L": 16},
         search={"L": 5, "T0": 4, "k": 2}),
])
def test_other_shapes(changes):
    _check_random(preset("tiny").with_(**changes), 120, seed=5, p_valid=0.7, p_ready=0.7,
                  dist_max=6)


def test_default_preset_random_commands():
    _check_random(preset("default"), 20, seed=2, p_valid=0.9, p_ready=0.9, dist_max=1000)


def _k(cfg, d, v):
    return (d << cfg.id_bits) | v


def test_by_hand_and_cycle_counts():
    """Fill past L, select, and the documented cycle counts with no stalls."""
    cfg = preset("tiny")
    L, R = cfg.search.L, cfg.graph.R
    cmds = [("reset", _k(cfg, 40, 1)), ("select", 1),
            ("insert", [_k(cfg, 50 - i, 10 + i) for i in range(R)]),
            ("insert", [_k(cfg, 30, 30 + i) for i in range(R)]),
            ("insert", [_k(cfg, 20, 60)]), ("select", 0), ("select", 3), ("select", L + 5)]
    exp_resp, exp_dumps = expected(cfg, cmds)
    assert exp_resp[0] == (1, 0, 1, _k(cfg, 40, 1))
    assert exp_resp[1] == (0, 0, 0, 0)
    assert exp_resp[2] == (1, 0, 60, _k(cfg, 20, 60))
    # without dumps: measure when each command beat is accepted
    beats = command_beats(cmds, dump_after=False) + command_beats([("reset", 5)], False)
    dut = CandidateListRTL(cfg)
    resps, _, acc, error, length = _simulate(cfg, beats, len(exp_resp), 0, 1.0, 1.0, 0, dut=dut)
    assert resps == exp_resp and not error and length == 1
    lat = network_depth(cfg.engine.sorter_n)
    assert dut.sorter_latency == lat
    # beat 2..9: first batch (R beats at one per cycle); the next beat waits for the merge
    first_batch_last = 2 + R - 1
    assert acc[first_batch_last] - acc[2] == R - 1
    assert acc[first_batch_last + 1] - acc[first_batch_last] == 2 * lat + 3
    # full list dump after the same commands equals the golden list
    _, dbg, _, _, _ = _simulate(cfg, command_beats(cmds), len(exp_resp),
                                L * len(cmds), 1.0, 1.0, 0)
    assert dbg == [b for d in exp_dumps for b in d]
    assert exp_dumps[-1][-1][1] != pad_key(cfg)  # the list is full at the end


def test_grouped_sorter_stages():
    """stages_per_reg = 3: fewer register levels, same results, insert cost as documented."""
    cfg = preset("tiny")
    R = cfg.graph.R
    dut = CandidateListRTL(cfg, stages_per_reg=3)
    assert dut.sorter_latency == -(-network_depth(cfg.engine.sorter_n) // 3)
    cmds = make_commands(cfg, np.random.default_rng(9), 60, 8)
    exp_resp, exp_dumps = expected(cfg, cmds)
    _, dbg, _, _, _ = _simulate(cfg, command_beats(cmds), len(exp_resp),
                                cfg.search.L * len(cmds), 0.8, 0.8, 9, dut=dut)
    assert dbg == [b for d in exp_dumps for b in d]
    beats = command_beats([("reset", 7), ("insert", [_k(cfg, 2, 10 + i) for i in range(R)]),
                           ("select", 1)], False)
    dut = CandidateListRTL(cfg, stages_per_reg=3)
    resps, _, acc, _, _ = _simulate(cfg, beats, 1, 0, 1.0, 1.0, 0, dut=dut)
    assert acc[R + 1] - acc[R] == 2 * dut.sorter_latency + 3


def test_batch_overflow_sets_error_and_bad_parameters():
    cfg = preset("tiny")
    R = cfg.graph.R
    beats = command_beats([("reset", _k(cfg, 5, 3))], False)
    beats += [(Op.INSERT.value, _k(cfg, 1, 100 + i), 0, int(i == R)) for i in range(R + 1)]
    beats += [(Op.SELECT.value, 0, 1, 0)]
    resps, _, _, error, length = _simulate(cfg, beats, 1, 0, 1.0, 1.0, 0)
    assert error == 1 and length == R + 1
    # the first R keys were kept, the last dropped: best is dist 1, smallest id 100
    assert resps == [(1, 0, 100, _k(cfg, 1, 100))]
    with warnings.catch_warnings():  # the refused objects are never elaborated
        warnings.filterwarnings("ignore", message=".*created but never used")
        with pytest.raises(CandidateListError, match="stages_per_reg"):
            CandidateListRTL(cfg, stages_per_reg=0)
        with pytest.raises(CandidateListError, match="flag"):
            CandidateListRTL(cfg.with_(engine={"id_bits": 32}))
        gc.collect()


# ---- cocotb on the generated Verilog ---------------------------------------------------
@pytest.mark.rtl
def test_cocotb_candidates_verilator():
    from proxima.sim.runner import run_cocotb
    cfg = preset("tiny")
    dut = CandidateListRTL(cfg)
    lay = dut.cmd_layout
    res = run_cocotb(dut, "proxima_candidates",
                     "proxima.sim.tb.tb_candidates", cfg=cfg, build_name="candidates_tiny",
                     parameters={"commands": 10_000, "dist_max": 16,
                                 "off_key": lay["key"].offset, "off_T": lay["T"].offset,
                                 "off_last": lay["last"].offset})
    assert res.tests == 1 and res.failed == 0
