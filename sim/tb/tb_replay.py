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

from proxima.sim.runner import tb_config, tb_params


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
    bad = [i for i, (g, e) in enumerate(zip(got, exp)) if tuple(g) != e]
    bad += list(range(min(len(got), len(exp)), max(len(got), len(exp))))
    first = None if not bad else f"id test {bad[0]}: got " \
        f"{got[bad[0]] if bad[0] < len(got) else None}, golden {exp[bad[0]] if bad[0] < len(exp) else None}"
    _finish(res, "bloom", len(exp), len(bad), cycles, first)


@cocotb.test()
async def replay_pq(dut):
    from proxima.sim.tb import tb_pq as tb
    cfg = tb_config()
    data, res = _data("pq")
    d = data["pq"]
    f = tb.Fmt(cfg)
    rnd = random.Random(0)
    await tb.reset(dut)
    cycles = transactions = 0
    bad: list[str] = []
    for qi, q in enumerate(d["queries"]):
        _, acc, _ = await tb.pump(dut, "query", q, None, 0, 1.0, 0, rnd, 10 * len(q) + 100)
        words, _, oc = await tb.pump(dut, None, [], "adt_out", f.M * f.ksub, 0, 1.0, rnd,
                                     10 * f.M * f.ksub + 100)
        cycles += oc[-1] + 1
        adt = d["adt"][qi]
        for t, w in enumerate(words):
            m, c, v = f.adt_word(w)
            transactions += 1
            if (m, c, v) != (t // f.ksub, t % f.ksub, adt[t]):
                bad.append(f"query {qi} ADT word {t}: got {(m, c, v)}, golden "
                           f"{(t // f.ksub, t % f.ksub, adt[t])}")
        ids, codes, exp = d["ids"][qi], d["codes"][qi], d["expect"][qi]
        if not ids:
            continue
        beats = f.code_beats(codes, ids, [True] * len(ids))
        out, ac, oc = await tb.pump(dut, "codes", beats, "dists", len(beats), 1.0, 1.0, rnd,
                                    20 * len(beats) + 100)
        cycles += oc[-1] - ac[0] + 1
        lanes = [x for b in out for x in f.dist_lanes(b)][:len(ids)]
        for t, (u, i, dist) in enumerate(lanes):
            transactions += 1
            if (u, i, dist) != (1, ids[t], exp[t]):
                bad.append(f"query {qi} code {t}: got (used, id, dist) {(u, i, dist)}, golden "
                           f"{(1, ids[t], exp[t])}")
    _finish(res, "pq", transactions, len(bad), cycles, bad[0] if bad else None)


@cocotb.test()
async def replay_exact(dut):
    from proxima.sim.tb import tb_exact as tb
    cfg = tb_config()
    data, res = _data("exact")
    d = data["exact"]
    f = tb.Fmt(cfg)
    rnd = random.Random(0)
    rng = np.random.default_rng(0)
    await tb.reset(dut)
    cycles = transactions = 0
    bad: list[str] = []
    for qi, q in enumerate(d["queries"]):
        ids, vecs, exp = d["ids"][qi], d["vectors"][qi], d["expect"][qi]
        await tb.pump(dut, "query", f.vec_beats(q, rng), None, 0, 1.0, 0, rnd, 10 * f.beats + 100)
        if not ids:
            continue
        beats = []
        for t in range(len(ids)):
            beats += [b | (int(ids[t]) << (f.L * f.eb)) for b in f.vec_beats(vecs[t], rng)]
        out, ac, oc = await tb.pump(dut, "vecs", beats, "dists", len(ids), 1.0, 1.0, rnd,
                                    20 * len(beats) + 100)
        cycles += oc[-1] - ac[0] + 1
        for t, w in enumerate(out):
            transactions += 1
            g = (w & ((1 << f.dw) - 1), w >> f.dw)
            if g != (exp[t], ids[t]):
                bad.append(f"query {qi} vector {t}: got (dist, id) {g}, golden "
                           f"{(exp[t], ids[t])}")
    _finish(res, "exact", transactions, len(bad), cycles, bad[0] if bad else None)


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
        for t, (g, e) in enumerate(zip(out, exp)):
            if g != [int(x) for x in e]:
                bad.append(f"expansion {t}: sorted keys differ")
        if len(out) != len(vecs):
            bad.append(f"{len(out)} vectors out of {len(vecs)}")
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
    await cocotb.triggers.RisingEdge(dut.clk)
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
        await cocotb.triggers.ReadOnly()
        chk.finish(tb._stats(dut), stats)
    except AssertionError as e:
        bad.append(str(e).splitlines()[0])
    res_stats = dict(stats)
    _finish(res, "pagecache", len(trace), len(bad), cycles, bad[0] if bad else None)
    dut._log.info("page cache on the search trace: %s", res_stats)
