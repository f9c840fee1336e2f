"""cocotb replay of real search traffic through one block (see :mod:`proxima.sim.replay`).

Parameters (``PROXIMA_TB_PARAMS``): ``data`` (the transactions JSON written by
``replay_transactions``), ``result`` (where this test writes ``{"transactions",
"mismatches", "cycles"}``).  One test per block (``replay_<block>``); the runner selects it
with ``testcase``.  Inputs are driven with no stalls, so ``cycles`` is the block's busy time
for this traffic.  Every output is compared with the golden expectation carried in the
data; the test fails when any differs (after writing its result).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from proxima.sim.runner import tb_config, tb_params
from proxima.sim.tb import bench


def _data(block: str):
    p = tb_params()
    return json.loads(Path(p["data"]).read_text()), Path(p["result"])


def _finish(res_path: Path, block: str, transactions: int, mismatches: int, cycles: int,
            first: str | None):
    res_path.write_text(json.dumps({"transactions": transactions, "mismatches": mismatches,
                                    "cycles": cycles, "first_mismatch": first}))
    if mismatches:
        raise AssertionError(f"{block}: {mismatches} of {transactions} transactions differ "
                             f"from the golden model; first: {first}")


@cocotb.test()
async def replay_bloom(dut):
    from proxima.sim.tb import tb_bloom as tb
    cfg = tb_config()
    data, res = _data("bloom")
    ops = [None if x < 0 else int(x) for x in data["bloom"]["ops"]]
    exp = [tuple(e) for e in data["bloom"]["expect"]]
    await tb.reset(dut)  # the filter holds ready low while it initialises its banks
    got, _, _, cycles = await tb.drive(dut, cfg, ops, 1.0, 1.0, random.Random(0),
                                       40 * len(ops) + 64 * cfg.bloom.bank_bits + 1000)
    bad = bench.mismatches([tuple(g) for g in got], exp, "id test")
    _finish(res, "bloom", len(exp), len(bad), cycles, bad[0] if bad else None)


async def _per_query(dut, block: str, tb, step) -> None:
    """Replay ``block``'s traffic query by query: ``await step(f, d, qi)`` drives query
    ``qi`` and returns ``(cycles, transactions, mismatch lines)``."""
    data, res = _data(block)
    f = tb.Fmt(tb_config())
    await tb.reset(dut)
    cycles = transactions = 0
    bad: list[str] = []
    for qi in range(len(data[block]["queries"])):
        c, n, b = await step(f, data[block], qi)
        cycles, transactions, bad = cycles + c, transactions + n, bad + b
    _finish(res, block, transactions, len(bad), cycles, bad[0] if bad else None)


@cocotb.test()
async def replay_pq(dut):
    from proxima.sim.tb import tb_pq as tb
    rnd = random.Random(0)

    async def step(f, d, qi):
        words, oc = await tb.load_query(dut, f, d["queries"][qi], 1.0, 1.0, rnd)
        exp = [(t // f.ksub, t % f.ksub, v) for t, v in enumerate(d["adt"][qi])]
        bad = bench.mismatches([f.adt_word(w) for w in words], exp, f"query {qi} ADT word")
        ids, codes, dists = d["ids"][qi], d["codes"][qi], d["expect"][qi]
        if not ids:
            return oc[-1] + 1, len(exp), bad
        beats = f.code_beats(codes, ids, [True] * len(ids))
        out, ac, dc = await tb.distances(dut, f, beats, 1.0, 1.0, rnd, 20 * len(beats) + 100)
        lanes = [x for b in out for x in f.dist_lanes(b)][:len(ids)]
        bad += bench.mismatches(lanes, [(1, i, e) for i, e in zip(ids, dists)],
                                f"query {qi} code (used, id, dist)")
        return oc[-1] + 1 + dc[-1] - ac[0] + 1, len(exp) + len(ids), bad

    await _per_query(dut, "pq", tb, step)


@cocotb.test()
async def replay_exact(dut):
    from proxima.sim.tb import tb_exact as tb
    rnd = random.Random(0)
    rng = np.random.default_rng(0)

    async def step(f, d, qi):
        ids, vecs, exp = d["ids"][qi], d["vectors"][qi], d["expect"][qi]
        await bench.pump(dut, "query", f.vec_beats(d["queries"][qi], rng), None, 0, 1.0, 0, rnd,
                         10 * f.beats + 100)
        if not ids:
            return 0, 0, []
        beats = f.id_beats(vecs, ids, rng)
        out, ac, oc = await bench.pump(dut, "vecs", beats, "dists", len(ids), 1.0, 1.0, rnd,
                                       20 * len(beats) + 100)
        return oc[-1] - ac[0] + 1, len(ids), bench.mismatches(
            [f.dist_id(w) for w in out], list(zip(exp, ids)), f"query {qi} vector (dist, id)")

    await _per_query(dut, "exact", tb, step)


@cocotb.test()
async def replay_sorter(dut):
    from proxima.golden.sorter import sort_keys
    from proxima.sim.tb import tb_sorter as tb
    cfg = tb_config()
    data, res = _data("sorter")
    vecs = np.array(data["sorter"]["vectors"], dtype=np.uint64)
    bad: list[str] = []
    cycles = 0
    if len(vecs):
        exp = sort_keys(vecs, cfg.sort_key_bits)
        await tb._reset(dut)
        out, cycles = await tb._run(dut, vecs, 1.0, 1.0, random.Random(0), cfg.sort_key_bits,
                                    20 * len(vecs) + 1000)
        bad = bench.mismatches(out, [[int(x) for x in e] for e in exp], "expansion",
                               lambda t, g, e: f"expansion {t}: sorted keys differ")
    _finish(res, "sorter", len(vecs), len(bad), cycles, bad[0] if bad else None)


@cocotb.test()
async def replay_gapdec(dut):
    from proxima.golden.layout import Layout
    from proxima.hdl.gapdec import default_word_bits
    from proxima.sim.tb import tb_gapdec as tb
    cfg = tb_config()
    data, res = _data("gapdec")
    d = data["gapdec"]
    lay = Layout(cfg, *d["layout"])
    wb = default_word_bits(cfg)
    frames = []
    for hexbytes, hot in zip(d["frames"], d["hot"]):
        fb = bytes.fromhex(hexbytes)
        ids, codes = tb.expected_beats(lay, fb, bool(hot))
        frames.append(tb.Frame(tb._words(fb, len(fb), wb, int(hot)), ids, codes, 0, bool(hot)))
    await tb._reset(dut)
    dut.gap_width.value = lay.gap_width
    await RisingEdge(dut.clk)
    bad = []
    cycles = 0
    try:
        cycles, _, _ = await tb._run_segment(
            dut, frames, wb, cfg.id_bits, lay.code_bytes, 1.0, 1.0, random.Random(0),
            200 * sum(len(f.words) + len(f.ids) + 4 for f in frames) + 1000)
    except AssertionError as e:
        bad.append(str(e).splitlines()[0])
    n = sum(len(f.ids) + len(f.codes) for f in frames)
    _finish(res, "gapdec", n, len(bad), cycles, bad[0] if bad else None)


@cocotb.test()
async def replay_pagecache(dut):
    from proxima.sim.tb import tb_pagecache as tb
    cfg = tb_config()
    data, res = _data("pagecache")
    d = data["pagecache"]
    pc = tb.make_dut(cfg, {"addr_bits": d["addr_bits"]})
    trace = [int(a) for a in d["addrs"]]
    exp_resp, exp_fetch, exp_pref, stats, _, _ = tb.expected(pc, trace)
    chk = tb.Checker(pc, trace, exp_resp, exp_fetch, exp_pref)
    await tb._reset(dut)
    bad = []
    cycles = 0
    try:
        cycles, _ = await tb._drive(dut, trace, chk, 1.0, 1.0, random.Random(0),
                                    max_cycles=(4 + pc.depth) * len(trace) * 20 + 1000)
        await ReadOnly()
        chk.finish(tb._stats(dut), stats)
    except AssertionError as e:
        bad.append(str(e).splitlines()[0])
    res_stats = dict(stats)
    _finish(res, "pagecache", len(trace), len(bad), cycles, bad[0] if bad else None)
    dut._log.info("page cache on the search trace: %s", res_stats)
