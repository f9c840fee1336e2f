"""Candidate list RTL: Amaranth simulation against golden.candidates, cocotb on Verilator.

The list has no sorter of its own: most tests use :class:`CandidateListWithSorter` (a real
:class:`BitonicSorter`); ``test_*_model_sorter`` drive the bare list's ``sort_req`` /
``sort_resp`` from a Python sorter with random latency (0 included), back-pressure and gaps.
"""

from __future__ import annotations

import gc
import random
import re
import warnings

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from proxima.config import preset
from proxima.golden.candidates import CandidateList
from proxima.golden.sorter import pad_key
from proxima.hdl.candidates import (CandidateListError, CandidateListRTL,
                                    CandidateListWithSorter, Op)
from proxima.sim.tb.tb_candidates import command_beats, expected, make_commands
from tests.hdl.synth import drivers_and_loads, synth_ecp5


def _tiny8():
    """tiny with an 8-input sorter: L = 16 = 2 n, two chunks."""
    return preset("tiny").with_(engine={"sorter_n": 8})


def _default32():
    """default with a 32-input sorter: L = 64 = 2 n, R = n (the FPGA preset before it
    moved to a 16-input sorter)."""
    return preset("default").with_(engine={"sorter_n": 32})


def _tiny4():
    """tiny with a 4-input sorter: L = 16 = 4 n, R = 8 = 2 n (two sub-batches per row)."""
    return preset("tiny").with_(engine={"sorter_n": 4})


def _simulate(cfg, beats, n_resp, n_dbg, p_valid, p_ready, seed, dut=None, model=None):
    """Drive command beats; returns (responses, dump beats, accept cycles, error, length,
    stats).  ``model = (p_req_ready, p_resp_valid, min_latency, max_latency)``: ``dut`` is a
    bare :class:`CandidateListRTL` and a Python sorter answers its requests (a request
    accepted in cycle ``a`` is answered from cycle ``a + latency`` on)."""
    dut = dut or CandidateListWithSorter(cfg)
    rnd = random.Random(seed)
    resps, dbg, accepted = [], [], []
    out = {}
    stats = {"requests": 0, "lat0": 0, "req_stalls": 0, "dbg_cycles": []}

    async def bench(ctx):
        cpay = dut.cmd.payload
        sent, offering, cycle = 0, False, 0
        queue = []  # (due cycle, sorted vector)
        while sent < len(beats) or len(resps) < n_resp or len(dbg) < n_dbg:
            assert cycle < 200 * len(beats) + 4 * n_dbg + 100, "timeout"
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
            if model is not None:
                p_qr, p_sv, min_lat, max_lat = model
                qr = rnd.random() < p_qr
                ctx.set(dut.sort_req.ready, qr)
                if ctx.get(dut.sort_req.valid):
                    if qr:
                        vec = sorted(int(x) for x in ctx.get(dut.sort_req.payload))
                        lat = rnd.randint(min_lat, max_lat)
                        queue.append((cycle + lat, vec))
                        stats["requests"] += 1
                        stats["lat0"] += lat == 0
                    else:
                        stats["req_stalls"] += 1
                sv = bool(queue) and queue[0][0] <= cycle and rnd.random() < p_sv
                ctx.set(dut.sort_resp.valid, sv)
                if sv:
                    ctx.set(dut.sort_resp.payload, queue[0][1])
                    assert ctx.get(dut.sort_resp.ready), "the list stalled the sorter"
                    queue.pop(0)
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
                stats["dbg_cycles"].append(cycle)
            await ctx.tick()
            cycle += 1
        out["error"] = ctx.get(dut.error)
        out["length"] = ctx.get(dut.length)
        assert not queue

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return resps, dbg, accepted, out["error"], out["length"], stats


def _check_random(cfg, count, seed, p_valid, p_ready, dist_max=64, dut=None, model=None):
    rng = np.random.default_rng(seed)
    cmds = make_commands(cfg, rng, count, dist_max)
    exp_resp, exp_dumps = expected(cfg, cmds)
    exp_dbg = [b for d in exp_dumps for b in d]
    resps, dbg, _, error, _, stats = _simulate(cfg, command_beats(cmds), len(exp_resp),
                                               len(exp_dbg), p_valid, p_ready, seed,
                                               dut=dut, model=model)
    L = cfg.search.L
    for k, (g, e) in enumerate(zip(dbg, exp_dbg)):
        assert g == e, f"after command {k // L} {cmds[k // L]}: slot {k % L} got {g}, exp {e}"
    assert resps == exp_resp and len(dbg) == len(exp_dbg)
    assert not error
    assert sum(r[0] for r in exp_resp) > 0 and any(not r[0] for r in exp_resp)
    assert any(d[-1][1] != pad_key(cfg) for d in exp_dumps), "the list never filled up"
    return cmds, stats


_MODEL = (0.5, 0.6, 0, 4)  # request ready 50 %, response valid 60 %, latency 0..4


@pytest.mark.parametrize("cfg_fn, chunks", [
    (lambda: preset("tiny"), 1), (_tiny8, 2),
    (lambda: preset("tiny").with_(engine={"sorter_n": 4}, graph={"R": 4}), 4),
    (_tiny4, 4),                                                          # R = 2 n
    (lambda: preset("tiny").with_(engine={"sorter_n": 4}, graph={"R": 6}), 4)])  # R = 1.5 n
def test_model_sorter_latency_backpressure(cfg_fn, chunks):
    """Bare list, Python sorter: random request back-pressure, latency 0..4, response gaps,
    random command / output stalls; every response and the whole list after every command
    compared with the golden model (rows longer than the sorter: sub-batches)."""
    cfg = cfg_fn()
    assert cfg.list_chunks == chunks and cfg.merge_passes == 2 * chunks
    cmds, stats = _check_random(cfg, 80, seed=11 + chunks, p_valid=0.7, p_ready=0.6,
                                dist_max=6, dut=CandidateListRTL(cfg), model=_MODEL)
    assert sum(op == "insert" for op, _ in cmds) > 20
    assert stats["lat0"] > 5 and stats["req_stalls"] > 10


@pytest.mark.parametrize("changes", [
    # R > L, and a list that is not a power of two with a tiny row
    dict(graph={"R": 16}, search={"L": 4, "T0": 4, "k": 2, "beam_width": 2}),
    dict(engine={"id_bits": 8}, graph={"R": 3, "build_L": 16},
         search={"L": 5, "T0": 4, "k": 2}),
    # three chunks of 4 with full rows
    dict(engine={"sorter_n": 4}, graph={"R": 4, "build_L": 16},
         search={"L": 12, "T0": 4, "k": 2}),
])
def test_other_shapes(changes):
    cfg = preset("tiny").with_(**changes)
    _check_random(cfg, 60, seed=5, p_valid=0.7, p_ready=0.7, dist_max=6,
                  dut=CandidateListRTL(cfg), model=_MODEL)


def test_default_model_sorter():
    """The FPGA preset (L = 64, n = 16: four chunks of 16; rows of R = 32 in two
    sub-batches)."""
    cfg = preset("default")
    assert cfg.search.L == 64 and cfg.list_chunks == 4 and cfg.graph.R == 2 * 16
    cmds, _ = _check_random(cfg, 16, seed=2, p_valid=0.9, p_ready=0.9, dist_max=1000,
                            dut=CandidateListRTL(cfg), model=_MODEL)
    assert any(op == "insert" and len(a) > 16 for op, a in cmds)


def test_default32_model_sorter():
    """The former FPGA preset (L = 64, n = 32 = R, two chunks of 32)."""
    cfg = _default32()
    assert cfg.search.L == 64 and cfg.list_chunks == 2
    _check_random(cfg, 12, seed=2, p_valid=0.9, p_ready=0.9, dist_max=1000,
                  dut=CandidateListRTL(cfg), model=_MODEL)


@pytest.mark.parametrize("cfg_fn, copies", [(_tiny4, 2), (_tiny8, 3),
                                             (lambda: preset("default"), 2)])
def test_copies_model_sorter(cfg_fn, copies):
    """copies > 1 (the faster-clock structure: request selects per slice of the bits,
    comparisons in two halves) against the golden model, as above."""
    cfg = cfg_fn()
    dut = CandidateListRTL(cfg, copies=copies)
    assert dut.req_copies == copies and dut.halves
    if cfg.search.L < 64:
        _check_random(cfg, 40, seed=7, p_valid=0.8, p_ready=0.7, dist_max=6, dut=dut,
                      model=_MODEL)
    else:                                  # as test_default_model_sorter
        _check_random(cfg, 16, seed=2, p_valid=0.9, p_ready=0.9, dist_max=1000, dut=dut,
                      model=_MODEL)


def test_copies_default_follows_the_clock():
    cfg = preset("default")
    assert cfg.engine.clock_mhz <= CandidateListRTL.SINGLE_COPY_MHZ
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        assert CandidateListRTL(cfg).req_copies == 1
        fast = CandidateListRTL(cfg.with_(engine={"clock_mhz": 150.0}))
        assert fast.req_copies == 2 and fast.halves
        with pytest.raises(CandidateListError, match="copies"):
            CandidateListRTL(cfg, copies=0)
        del fast
        gc.collect()


def _dirty_cases(cfg):
    """Command lists for the storage's empty slots: no RESET after the domain reset; a
    RESET after a full list (the old keys stay in the RAM words); a batch that reaches
    exactly into the first empty chunk; a full batch after a RESET."""
    L, R, n = cfg.search.L, cfg.graph.R, cfg.engine.sorter_n
    def full(base):
        return [("insert", [_k(cfg, 3 + i % 7, base + b * R + i) for i in range(R)])
                for b in range(-(-L // R) + 1)]
    return [
        [("insert", [_k(cfg, 9, 1), _k(cfg, 2, 2)]), ("select", L), ("select", L)],
        [("reset", _k(cfg, 50, 7))] + full(100) + [("reset", _k(cfg, 60, 8)), ("select", 2),
                                                   ("insert", [_k(cfg, 70, 9)]),
                                                   ("select", L)],
        [("reset", _k(cfg, 1, 1)), ("insert", [_k(cfg, 2, 20 + i) for i in range(n)]),
         ("insert", [_k(cfg, 0, 40)]), ("select", L)],
        [("reset", _k(cfg, 1, 1))] + full(100)[:1] + [("select", L)] + full(300)
        + [("reset", 5)],
    ]


@pytest.mark.parametrize("cfg_fn", [_tiny4, _tiny8, lambda: preset("default")])
@pytest.mark.parametrize("case", range(4))
def test_empty_chunks_read_as_empty(cfg_fn, case):
    """Slots at or past the length (after the domain reset, after a RESET) read as empty in
    every merge, SELECT and DUMP, whatever the RAM words still hold; the list after every
    command equals the golden list."""
    cfg = cfg_fn()
    cmds = _dirty_cases(cfg)[case]
    exp_resp, exp_dumps = expected(cfg, cmds)
    exp_dbg = [b for d in exp_dumps for b in d]
    resps, dbg, _, error, _, _ = _simulate(cfg, command_beats(cmds), len(exp_resp),
                                           len(exp_dbg), 0.9, 0.9, case,
                                           dut=CandidateListRTL(cfg), model=_MODEL)
    assert dbg == exp_dbg and resps == exp_resp and not error


def test_wrapper_with_bitonic_sorter_random():
    """Wrapper with a real BitonicSorter, two chunks, random stalls (cocotb runs 10k)."""
    _check_random(_tiny8(), 40, seed=3, p_valid=0.7, p_ready=0.6, dist_max=8)


def _k(cfg, d, v):
    return (d << cfg.id_bits) | v


def _by_hand(cfg):
    L, R = cfg.search.L, cfg.graph.R
    cmds = [("reset", _k(cfg, 40, 1)), ("select", 1),
            ("insert", [_k(cfg, 50 - i, 10 + i) for i in range(R)]),
            ("insert", [_k(cfg, 30, 30 + i) for i in range(R)]),
            ("insert", [_k(cfg, 20, 60)]), ("select", 0), ("select", 3), ("select", L + 5)]
    exp_resp, exp_dumps = expected(cfg, cmds)
    assert exp_resp[0] == (1, 0, 1, _k(cfg, 40, 1))
    assert exp_resp[1] == (0, 0, 0, 0)
    assert exp_resp[2] == (1, 0, 60, _k(cfg, 20, 60))
    assert exp_dumps[-1][-1][1] != pad_key(cfg)  # the list is full at the end
    return cmds, exp_resp, exp_dumps


def _check_cycles(cfg, dut, model=None):
    """The documented cycle counts with no stalls: one cycle per INSERT beat, merge_cycles
    from the last one to the next command, select_latency + 1 from a SELECT to the next."""
    R = cfg.graph.R
    cmds, exp_resp, _ = _by_hand(cfg)
    beats = command_beats(cmds, dump_after=False) + command_beats([("reset", 5)], False)
    resps, _, acc, error, length, _ = _simulate(cfg, beats, len(exp_resp), 0, 1.0, 1.0, 0,
                                                dut=dut, model=model)
    assert resps == exp_resp and not error and length == 1
    first_batch_last = 2 + R - 1
    assert acc[first_batch_last] - acc[2] == R - 1
    assert acc[1] - acc[0] == 2  # a RESET takes two cycles
    return acc[first_batch_last + 1] - acc[first_batch_last], acc[2] - acc[1]


@pytest.mark.parametrize("cfg_fn", [lambda: preset("tiny"), _tiny8])
@pytest.mark.parametrize("lat", [0, 1, 7])
def test_cycle_counts_fixed_latency(cfg_fn, lat):
    cfg = cfg_fn()
    dut = CandidateListRTL(cfg)
    merge, select = _check_cycles(cfg, dut, model=(1.0, 1.0, lat, lat))
    j = cfg.list_chunks
    assert merge == dut.merge_cycles(lat) == (j + 1) * lat + 7 * j + 3
    assert select == dut.select_latency + 1


@pytest.mark.parametrize("lat", [0, 5])
def test_sub_batch_cycle_counts(lat):
    """R = 2 n: the beat that fills the request register starts a merge like a last beat
    (the next beat is accepted merge_cycles later), so a full row costs two merges."""
    cfg = _tiny4()
    n, R = cfg.engine.sorter_n, cfg.graph.R
    assert R == 2 * n
    dut = CandidateListRTL(cfg)
    cmds = [("reset", _k(cfg, 40, 1)), ("insert", [_k(cfg, 50 - i, 10 + i) for i in range(R)]),
            ("select", 0), ("insert", [_k(cfg, 3, 70 + i) for i in range(n + 1)]),
            ("select", 2)]
    exp_resp, _ = expected(cfg, cmds)
    beats = command_beats(cmds, dump_after=False)
    resps, _, acc, error, length, _ = _simulate(cfg, beats, len(exp_resp), 0, 1.0, 1.0, 0,
                                                dut=dut, model=(1.0, 1.0, lat, lat))
    assert resps == exp_resp and not error and length == min(cfg.search.L, 1 + R + n + 1)
    merge = dut.merge_cycles(lat)
    row = acc[1:1 + R]                      # the R beats of the first batch
    assert [b - a for a, b in zip(row, row[1:])] == [1] * (n - 1) + [merge] + [1] * (n - 1)
    assert acc[1 + R] - row[-1] == merge    # the SELECT after the second merge
    second = acc[2 + R:2 + R + n + 1]       # n + 1 keys: a full sub-batch and one key
    assert second[n] - second[n - 1] == merge and acc[-1] - second[-1] == merge
    assert cfg.insert_merges(R) == 2 and cfg.insert_merges(n + 1) == 2


@pytest.mark.parametrize("cfg_fn, lat", [(lambda: preset("tiny"), 3), (_tiny4, 0),
                                         (_tiny4, 5)])
def test_skipped_merges_follow_the_golden_plan(cfg_fn, lat):
    """Every merge costs what the golden merge plan says: ``cfg.insert_skip_cycles`` from
    its triggering INSERT beat (the last of the batch, or with R > n the n-th of a
    sub-batch) to the next accepted beat when the list is full and every key of the
    sub-batch is larger than its last, else ``merge_cycles`` (no stalls anywhere)."""
    cfg = cfg_fn()
    n = cfg.engine.sorter_n
    dut = CandidateListRTL(cfg)
    rng = np.random.default_rng(11)
    cmds = make_commands(cfg, rng, 160, dist_max=1 << 12, p_reset=0.01, p_insert=0.6)
    exp_resp, _ = expected(cfg, cmds)
    beats = command_beats(cmds, dump_after=False)
    resps, _, acc, error, _, _ = _simulate(cfg, beats, len(exp_resp), 0, 1.0, 1.0, 0,
                                           dut=dut, model=(1.0, 1.0, lat, lat))
    assert resps == exp_resp and not error
    golden = CandidateList(cfg)
    want, got, i = [], [], 0
    for op, arg in cmds:
        if op == "insert":
            plan = golden.insert(arg)
            for b, skipped in enumerate(plan):
                t = i + min(b * n + n - 1, len(arg) - 1)  # the beat that starts merge b
                if t + 1 < len(acc):
                    want.append(cfg.insert_skip_cycles if skipped else dut.merge_cycles(lat))
                    got.append(acc[t + 1] - acc[t])
            i += len(arg)
        else:
            golden.reset(arg) if op == "reset" else golden.select(arg)
            i += 1
    assert got == want
    assert cfg.insert_skip_cycles in want and dut.merge_cycles(lat) in want
    assert sum(w == cfg.insert_skip_cycles for w in want) > 5, "too few skipped merges"


@pytest.mark.parametrize("R", [8, 6])
def test_sub_batch_overflow(R):
    """A row of R + 2 keys with R > n: the extra keys are dropped and error is set; the
    list holds the first R keys (R = 2 n: the last sub-batch is full when the extra beats
    come, so the final beat ends the batch without a merge)."""
    cfg = _tiny4().with_(graph={"R": R})
    beats = command_beats([("reset", _k(cfg, 5, 3))], False)
    beats += [(Op.INSERT.value, _k(cfg, 1, 100 + i), 0, int(i == R + 1)) for i in range(R + 2)]
    beats += [(Op.SELECT.value, 0, 1, 0), (Op.INSERT.value, _k(cfg, 0, 7), 0, 1),
              (Op.SELECT.value, 0, 1, 0)]
    resps, _, _, error, length, _ = _simulate(cfg, beats, 2, 0, 1.0, 1.0, 0,
                                              dut=CandidateListRTL(cfg), model=_MODEL)
    assert error == 1 and length == R + 2
    # the first R keys were kept, the rest dropped; the batch after it works as usual
    assert resps == [(1, 0, 100, _k(cfg, 1, 100)), (1, 0, 7, _k(cfg, 0, 7))]


def test_dump_cycles():
    """DUMP: first beat four cycles after the command, then one per cycle; next command
    in the cycle after the last beat."""
    cfg = preset("tiny")
    L = cfg.search.L
    beats = command_beats([("reset", _k(cfg, 3, 4)), ("select", 2)], [True, False])
    beats += command_beats([("reset", 9)], False)
    _, dbg, acc, _, _, stats = _simulate(cfg, beats, 1, L, 1.0, 1.0, 0,
                                         dut=CandidateListRTL(cfg), model=_MODEL)
    cyc = stats["dbg_cycles"]
    assert cyc[0] - acc[1] == 4 and cyc == list(range(cyc[0], cyc[0] + L))
    assert acc[2] - cyc[-1] == 1
    assert dbg[0] == (0, _k(cfg, 3, 4), 0, 0) and dbg[-1] == (L - 1, pad_key(cfg), 0, 1)


def test_dump_stalls_use_the_spare():
    """dbg.ready low for stretches: every beat still comes once and in order (the skid
    buffer's spare takes the beat that arrives while the output waits)."""
    cfg = preset("tiny")
    L = cfg.search.L
    beats = command_beats([("reset", _k(cfg, 3, 4)), ("insert", [_k(cfg, 2, 9)])],
                          [True, True])
    _, dbg, _, _, _, _ = _simulate(cfg, beats, 0, 2 * L, 1.0, 0.3, 5,
                                   dut=CandidateListRTL(cfg), model=_MODEL)
    assert [d[0] for d in dbg] == list(range(L)) * 2
    assert dbg[L] == (0, _k(cfg, 2, 9), 0, 0) and dbg[L + 1] == (1, _k(cfg, 3, 4), 0, 0)


def test_wrapper_by_hand_and_cycle_counts():
    """Two chunks with a real BitonicSorter (of whatever latency it has): the documented
    insert cost, and the list after every command equals the golden list."""
    cfg = _tiny8()
    dut = CandidateListWithSorter(cfg)
    assert dut.sorter_latency == dut.sorter.latency
    merge, select = _check_cycles(cfg, dut)
    assert merge == dut.merge_cycles == 3 * dut.sorter.latency + 17
    assert select == dut.select_latency + 1
    cmds, exp_resp, exp_dumps = _by_hand(cfg)
    _, dbg, _, _, _, _ = _simulate(cfg, command_beats(cmds), len(exp_resp),
                                   cfg.search.L * len(cmds), 1.0, 1.0, 0,
                                   dut=CandidateListWithSorter(cfg))
    assert dbg == [b for d in exp_dumps for b in d]
    # sorter options pass through; the cost follows the sorter's latency
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*created but never used")
        grouped = CandidateListWithSorter(cfg, stages_per_reg=3)
        assert grouped.sorter.stages_per_reg == 3
        assert grouped.merge_cycles == 3 * grouped.sorter.latency + 17
        del grouped
        gc.collect()


def test_batch_overflow_sets_error_and_bad_parameters():
    cfg = preset("tiny")
    R = cfg.graph.R
    beats = command_beats([("reset", _k(cfg, 5, 3))], False)
    beats += [(Op.INSERT.value, _k(cfg, 1, 100 + i), 0, int(i == R)) for i in range(R + 1)]
    beats += [(Op.SELECT.value, 0, 1, 0)]
    resps, _, _, error, length, _ = _simulate(cfg, beats, 1, 0, 1.0, 1.0, 0,
                                              dut=CandidateListRTL(cfg), model=_MODEL)
    assert error == 1 and length == R + 1
    # the first R keys were kept, the last dropped: best is dist 1, smallest id 100
    assert resps == [(1, 0, 100, _k(cfg, 1, 100))]
    with warnings.catch_warnings():  # the refused objects are never elaborated
        warnings.filterwarnings("ignore", message=".*created but never used")
        with pytest.raises(CandidateListError, match="stages_per_reg"):
            CandidateListWithSorter(cfg, stages_per_reg=0)
        with pytest.raises(CandidateListError, match="flag"):
            CandidateListRTL(cfg.with_(engine={"id_bits": 32}))
        gc.collect()


def test_list_alone_has_no_sorter():
    """The registry's block is the list alone, with the sorter ports of the documented shape."""
    from proxima.hdl.registry import build_block
    cfg = preset("default")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*created but never used")
        blk = build_block("candidates", cfg)
        assert type(blk) is CandidateListRTL
        assert blk.sort_req.payload.shape() == blk.sort_resp.payload.shape()
        assert len(blk.sort_req.payload.as_value()) == 16 * (cfg.sort_key_bits + 1)
        assert blk.merge_cycles(30) == 5 * 30 + 7 * 4 + 3
        del blk
        gc.collect()


# ---- cocotb on the generated Verilog ---------------------------------------------------
@pytest.mark.rtl
@pytest.mark.parametrize("name, cfg_fn, commands, dist_max", [
    ("tiny", lambda: preset("tiny"), 10_000, 16),     # L = n = 16: one chunk
    ("tiny8", _tiny8, 10_000, 16),                    # L = 16 = 2 n: two chunks
    ("tiny4", _tiny4, 10_000, 16),                    # four chunks, R = 2 n: sub-batches
])
def test_cocotb_candidates_verilator(name, cfg_fn, commands, dist_max):
    """Wrapper with a real BitonicSorter; every SELECT response compared, the whole list
    compared after a random quarter of the commands (and after the last).  The FPGA preset
    (default: sorter_n = 16, L = 64, R = 32) runs in the Amaranth simulator above
    (test_default_model_sorter): its Verilator build, 64 slots of 41 bits and a 16-input
    sorter, is too slow for this file; tiny4 has the same shape in miniature (four chunks,
    rows of two sub-batches)."""
    from proxima.sim.runner import run_cocotb
    cfg = cfg_fn()
    dut = CandidateListWithSorter(cfg)
    lay = dut.cmd_layout
    res = run_cocotb(dut, "proxima_candidates",
                     "proxima.sim.tb.tb_candidates", cfg=cfg, build_name=f"candidates_{name}",
                     parameters={"commands": commands, "dist_max": dist_max, "p_dump": 0.25,
                                 "off_key": lay["key"].offset, "off_T": lay["T"].offset,
                                 "off_last": lay["last"].offset})
    assert res.tests == 1 and res.failed == 0


@pytest.mark.parametrize("name", ["tiny", "default"])
def test_config_insert_cycles_is_the_rtl_schedule(name):
    """The timing model charges cfg.insert_cycles per insert: it must be the RTL's count.
    The list's schedule is ``cfg.insert_cycles_for`` (measured against the RTL by
    test_cycle_counts_fixed_latency and test_wrapper_by_hand_and_cycle_counts); here the
    sorter the list is built with must have the latency the configuration assumes."""
    from proxima.hdl.candidates import CandidateListWithSorter
    cfg = preset(name)
    with warnings.catch_warnings():  # built for its schedule, deliberately not elaborated
        warnings.simplefilter("ignore", UnusedElaboratable)
        dut = CandidateListWithSorter(cfg)
        cycles, lat = dut.merge_cycles, dut.sorter.latency
        del dut
        gc.collect()
    assert lat == cfg.sorter_latency
    assert cycles == cfg.insert_cycles


@pytest.mark.rtl
@pytest.mark.parametrize("copies", [1, 2])
def test_synthesis_list_in_lut_ram_and_comparators_straight_from_storage(tmp_path, copies):
    """yosys synth_ecp5 of the list at tiny with a 4-input sorter (four chunks, sub-batches):
    the keys are LUT-RAM (``TRELLIS_DPR16X4``, two words per chunk, no flip-flop per slot), every replicated
    enable / select survives as its own flip-flop (opt_merge would fold equal ones into
    one), and the comparators' carry chains take every key bit straight from the RAM and
    every key bit of the complemented carry straight from its flip-flop (no inverter)."""
    cfg = _tiny4()
    dut = CandidateListRTL(cfg, copies=copies)
    L, n, w, j, EB, KB = dut.L, dut.n, dut.w, dut.chunks, dut.ext_bits, dut.key_bits
    cells, net = synth_ecp5(tmp_path, dut)
    driver, loads = drivers_and_loads(net)
    assert cells.get("TRELLIS_DPR16X4") == -(-(w * KB) // 4) * -(-(2 * j) // 16)
    ff_q = {c["connections"]["Q"][0] for c in net["cells"].values()
            if c["type"] == "TRELLIS_FF"}
    # flip-flops: no slot storage beyond the L flags and the last key (skipped merges; the
    # request and carry registers are n keys each; the responses go straight into the
    # carry and the RAM)
    assert cells["TRELLIS_FF"] < 2 * n * EB + 2 * L + KB + 40 * n * copies + 200

    def kept(pattern):
        return {nm for nm, v in net["netnames"].items()
                if re.fullmatch(pattern, nm) and v["bits"][0] in ff_q}

    for name, count in (("req_en", n * copies), ("req_ld", n * copies),
                        ("req_ysel", n * copies)):
        assert kept(rf"{name}\d+") == {f"{name}{k}" for k in range(count)}, name
    for k in range(n):
        assert kept(rf"req_clr{k}_\d+") == {f"req_clr{k}_{c}" for c in range(copies)}
    for k in range(w):
        assert kept(rf"req_sela{k}_\d+") == {f"req_sela{k}_{c}" for c in range(copies)}
    # the comparators' chains: the CCU2C cells that read a RAM output
    ram_out = {b for c in net["cells"].values() if c["type"] == "TRELLIS_DPR16X4"
               for b in c["connections"]["DO"] if not isinstance(b, str)}
    chains = [c for c in net["cells"].values() if c["type"] == "CCU2C"
              and any(b in ram_out for p in ("A0", "A1", "B0", "B1")
                      for b in c["connections"][p])]
    operands = [b for c in chains for p in ("A0", "A1", "B0", "B1")
                for b in c["connections"][p] if not isinstance(b, str)]
    from_ram = {b for b in operands if b in ram_out}
    from_ff = {b for b in operands if b in ff_q}
    assert from_ram == ram_out                       # every key bit, straight from the RAM
    carry_q = {v["bits"][0] for nm, v in net["netnames"].items()   # (split nets)
               if (mt := re.fullmatch(r"carry(\d+)\[(\d+)\]", nm))
               and int(mt[1]) >= n - w and int(mt[2]) > 0}   # the key bits, not the flag
    assert len(carry_q) == w * KB and carry_q <= from_ff   # straight from the flip-flops
    # the rest: per slot the empty bit (slot at or past the length) on top of the chain
    others = {b for b in operands if b not in ram_out and b not in ff_q}
    assert len(others) <= w
