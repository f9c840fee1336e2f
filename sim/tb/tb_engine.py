"""cocotb testbench of :class:`proxima.hdl.engine.SearchEngine` (the generated Verilog)
against golden.search.

Parameters (``PROXIMA_TB_PARAMS``): ``data``, the path of a JSON file written by
:func:`engine_transactions` (the image's core contents, the port formats, the queries and per
query the golden result, counters, reason and NAND accesses), and ``p_mem`` / ``p_ready`` /
``latency`` (per-cycle probability of offering a response beat / taking a result beat, and
cycles from a request to its first beat).

The testbench serves ``mem_req`` from the core contents, beat by beat on ``mem_resp``, and
checks per query: every access (core, page, offset, kind) in order, the result beats (id,
exact distance, ``last``), every counter but ``cycles`` and ``converged``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from proxima.sim.runner import tb_params

__all__ = ["engine_transactions"]


def _fields(layout) -> dict:
    """``{name: [offset, width]}`` of a StructLayout (the packed port format)."""
    return {name: [f.offset, f.width] for name, f in layout}


def engine_transactions(img, queries, cfg, layout, engine) -> dict:
    """JSON-able test data: the image bytes, port formats and golden expectations."""
    from proxima.golden.layout import EVENT_KINDS, reads_for_events
    from proxima.golden.search import search
    from proxima.hdl.engine import COUNTER_NAMES

    cores = [bytes(img.frames[c]).hex() for c in range(img.frames.shape[0])]
    cores += [bytes(img.raw[c]).hex() for c in range(img.raw.shape[0])]
    exp = []
    for q in queries:
        ref = search(img.index, q, cfg)
        exp.append({
            "reads": [[r.core, r.page, r.offset, EVENT_KINDS.index(r.kind)]
                      for r in reads_for_events(ref.events, layout)],
            "ids": ref.ids.tolist(), "dists": ref.dists.tolist(),
            "counters": {n: ref.counters[n] for n in COUNTER_NAMES if n != "cycles"},
            "converged": int(ref.reason == "converged"),
        })
    return {
        "cores": cores, "access": cfg.nand.access_bytes, "page": cfg.nand.page_bytes,
        "beat_bits": engine.beat_bits, "entry": int(img.index.entry),
        "req": _fields(engine.req_layout), "result": _fields(engine.result_layout),
        "queries": [[int(x) for x in q] for q in queries], "expect": exp,
    }


def _get(word: int, field) -> int:
    off, width = field
    return (word >> off) & ((1 << width) - 1)


@cocotb.test()
async def engine_queries(dut):
    """The queries of the data file, each checked against golden.search."""
    p = tb_params()
    d = json.loads(Path(p["data"]).read_text())
    p_mem, p_ready = float(p.get("p_mem", 1.0)), float(p.get("p_ready", 1.0))
    latency = int(p.get("latency", 1))
    rnd = random.Random(cocotb.RANDOM_SEED)
    cores = [bytes.fromhex(h) for h in d["cores"]]
    A, P, bb = d["access"], d["page"], d["beat_bits"] // 8
    fq, fr = d["req"], d["result"]

    def beats(core, page, offset):
        base = page * P + offset
        data = cores[core][base:base + A]
        assert len(data) == A, f"access outside core {core}: page {page} offset {offset}"
        return [int.from_bytes(data[i:i + bb], "little") for i in range(0, A, bb)]

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for s in ("query", "cb_wr", "mem_resp"):
        getattr(dut, f"{s}__valid").value = 0
        getattr(dut, f"{s}__payload").value = 0
    dut.mem_req__ready.value = 0
    dut.result__ready.value = 0
    dut.entry.value = d["entry"]
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0

    for qi, (q, e) in enumerate(zip(d["queries"], d["expect"])):
        for x in q:
            dut.query__valid.value = 1
            dut.query__payload.value = x
            await ReadOnly()
            while not int(dut.query__ready.value):
                await RisingEdge(dut.clk)
                await ReadOnly()
            await RisingEdge(dut.clk)
        dut.query__valid.value = 0
        reqs, results, pending = [], [], []
        cycle = 0
        while True:
            cycle += 1
            assert cycle < 500_000, f"query {qi}: timeout"
            give = bool(pending) and pending[0][0] <= cycle and rnd.random() < p_mem
            dut.mem_resp__valid.value = int(give)
            if give:
                w = pending[0][1]
                dut.mem_resp__payload.value = w[0] | (int(len(w) == 1) << (8 * bb))
            take = rnd.random() < p_ready
            dut.result__ready.value = int(take)
            dut.mem_req__ready.value = 1
            await ReadOnly()
            if int(dut.mem_req__valid.value):
                r = int(dut.mem_req__payload.value)
                a = [_get(r, fq[n]) for n in ("core", "page", "offset", "kind")]
                reqs.append(a)
                pending.append([cycle + latency, beats(*a[:3])])
            if give and int(dut.mem_resp__ready.value):
                pending[0][1].pop(0)
                if not pending[0][1]:
                    pending.pop(0)
            if take and int(dut.result__valid.value):
                r = int(dut.result__payload.value)
                results.append([_get(r, fr[n]) for n in ("id", "dist", "last")])
            finished = int(dut.done.value)
            await RisingEdge(dut.clk)
            if finished:
                break
        dut.mem_resp__valid.value = 0
        dut.result__ready.value = 0
        assert not pending, f"query {qi}: response beats left untaken"
        assert not int(dut.error.value), f"query {qi}: error flag"
        n_ok = sum(a == b for a, b in zip(reqs, e["reads"]))
        assert reqs == e["reads"], (f"query {qi}: {len(reqs)} accesses, golden "
                                    f"{len(e['reads'])}; first {n_ok} agree")
        exp_res = [[i, dd, int(t == len(e["ids"]) - 1)]
                   for t, (i, dd) in enumerate(zip(e["ids"], e["dists"]))]
        assert results == exp_res, f"query {qi}: result {results}, golden {exp_res}"
        for name, v in e["counters"].items():
            got = int(getattr(dut, name).value)
            assert got == v, f"query {qi}: counter {name} = {got}, golden {v}"
        assert int(dut.converged.value) == e["converged"], f"query {qi}: reason"
        dut._log.info("query %d: %d accesses, %d cycles, counters match", qi, len(reqs),
                      int(dut.cycles.value))
