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

from proxima.sim.runner import tb_params
from proxima.sim.tb import bench

__all__ = ["engine_transactions"]


def engine_transactions(img, queries, cfg, layout, engine) -> dict:
    """JSON-able test data: the image bytes, port formats and golden expectations."""
    from proxima.golden.layout import EVENT_KINDS, reads_for_events
    from proxima.golden.search import search
    from proxima.hdl.engine import COUNTER_NAMES
    from proxima.hdl.nandctl import geometry_word

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
        "geom": geometry_word(cfg, layout),
        "req": bench.fields(engine.req_layout), "result": bench.fields(engine.result_layout),
        "queries": [[int(x) for x in q] for q in queries], "expect": exp,
    }


class _Memory:
    """Serves ``mem_req`` (always ready) from the core contents: ``latency`` cycles after a
    request its access's beats go out on ``mem_resp``, in request order, each offered with
    probability ``p``.  ``requests``: the ``(core, page, offset, kind)`` of each request."""

    done = True

    def __init__(self, dut, d: dict, latency: int, p: float):
        self.dut, self.latency, self.p = dut, latency, p
        self.cores = [bytes.fromhex(h) for h in d["cores"]]
        self.access, self.page, self.beat = d["access"], d["page"], d["beat_bits"] // 8
        self.fmt = d["req"]
        self.requests: list[list[int]] = []
        self.pending: list[list] = []  # [due cycle, beats left]
        self.give = False

    def beats(self, core, page, offset) -> list[int]:
        base = page * self.page + offset
        data = self.cores[core][base:base + self.access]
        assert len(data) == self.access, f"access outside core {core}: page {page} offset {offset}"
        bb = self.beat
        return [int.from_bytes(data[i:i + bb], "little") for i in range(0, self.access, bb)]

    def drive(self, rnd, cycle: int) -> None:
        self.give = (bool(self.pending) and self.pending[0][0] <= cycle
                     and bench.chance(self.p, rnd, cycle))
        self.dut.mem_resp__valid.value = int(self.give)
        if self.give:
            w = self.pending[0][1]
            self.dut.mem_resp__payload.value = w[0] | (int(len(w) == 1) << (8 * self.beat))
        self.dut.mem_req__ready.value = 1

    def sample(self, cycle: int) -> None:
        if int(self.dut.mem_req__valid.value):
            a = list(bench.unpack(self.dut.mem_req__payload.value, self.fmt,
                                  ("core", "page", "offset", "kind")))
            self.requests.append(a)
            self.pending.append([cycle + self.latency, self.beats(*a[:3])])
        if self.give and int(self.dut.mem_resp__ready.value):
            self.pending[0][1].pop(0)
            if not self.pending[0][1]:
                self.pending.pop(0)

    def stop(self) -> None:
        self.dut.mem_resp__valid.value = 0
        self.dut.mem_req__ready.value = 0


@cocotb.test()
async def engine_queries(dut):
    """The queries of the data file, each checked against golden.search."""
    p = tb_params()
    d = json.loads(Path(p["data"]).read_text())
    p_mem, p_ready = float(p.get("p_mem", 1.0)), float(p.get("p_ready", 1.0))
    latency = int(p.get("latency", 1))
    rnd = random.Random(cocotb.RANDOM_SEED)
    await bench.reset(dut, inputs=["query", "cb_wr", "mem_resp"], outputs=["mem_req", "result"],
                      signals={"entry": d["entry"], "geom": d["geom"]})

    for qi, (q, e) in enumerate(zip(d["queries"], d["expect"])):
        await bench.run(dut, [bench.Source(dut, "query", q)], max_cycles=100 * len(q) + 100)
        mem = _Memory(dut, d, latency, p_mem)
        result = bench.Sink(dut, "result", p_ready, unpack=lambda r: list(bench.unpack(
            r, d["result"], ("id", "dist", "last"))))
        status = {"done": False}
        done = bench.Probe(lambda cycle: status.update(done=bool(int(dut.done.value))))
        await bench.run(dut, [mem, result, done], rnd, max_cycles=500_000,
                        until=lambda: status["done"])
        reqs, results = mem.requests, result.beats
        assert not mem.pending, f"query {qi}: response beats left untaken"
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
