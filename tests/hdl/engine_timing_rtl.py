"""Cycle measurements of the RTL search engine for the timing model (golden/engine_timing.py).

:func:`run_engine` runs queries one at a time through :class:`proxima.hdl.engine.SearchEngine`
in the Amaranth simulator with its memory served by the golden NAND controller
(:class:`proxima.golden.nandctl.NandControllerModel`, always ready) behind a reorder buffer of
``reorder_slots`` accesses in request order, as in the multi-queue ``Accelerator``: a
request is accepted only while fewer than ``reorder_slots`` accesses wait for their last
beat to reach the engine; a beat emitted by the controller in cycle ``t`` can reach the
engine in cycle ``t + 1 + resp_delay - 1`` at the earliest, one beat per cycle, in request
order.  Per query it records the ``cycles`` counter, the other counters, every request's
accept cycle and every beat's delivery cycle (relative to the query's first counted cycle).

Shared by ``tests/golden/test_engine_timing.py`` and ``benchmarks/bench_engine_timing.py``.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from amaranth.sim import Simulator

from proxima.golden.layout import Layout
from proxima.golden.nandctl import CtlParams, NandControllerModel, Request
from proxima.hdl.accel import Accelerator
from proxima.hdl.engine import COUNTER_NAMES, SearchEngine
from tests.hdl.test_engine import _word_source


def run_engine(img, queries, *, cfg=None, reorder_slots: int = 4, resp_delay: int = 1,
               max_cycles: int = 2_000_000):
    """Run ``queries`` through the single-query RTL engine (module doc); per query a dict
    with the counters, ``reqs`` [(accept cycle, core)], ``beats`` [delivery cycle]."""
    cfg = cfg or img.layout.cfg
    lay = img.layout
    layout = Layout(cfg, lay.n, lay.hot, lay.gap_width)
    dut = SearchEngine(cfg, layout, codebook=img.index.codebook)
    beats_of = _word_source(img, dut.beat_bits)
    params = CtlParams.from_cfg(cfg, pages=Accelerator.store_pages(lay), beat_bits=dut.beat_bits,
                                tag_bits=16)
    ctl = NandControllerModel(params)
    nb = params.beats
    out = []

    async def bench(ctx):
        ctx.set(dut.entry, int(img.index.entry))
        for q in queries:
            for e in q:
                ctx.set(dut.query.valid, 1)
                ctx.set(dut.query.payload, int(e))
                await ctx.tick().until(dut.query.ready)
            ctx.set(dut.query.valid, 0)
            t = 0  # cycle 0 is the first counted one (after the last query element)
            order: deque = deque()  # request index, in request order, until delivered
            data: dict = {}  # request index -> its beats' data
            arrived: dict = {}  # request index -> [emission cycles]
            sent: dict = {}  # request index -> beats delivered
            reqs, beats = [], []
            n_req = 0
            while True:
                assert t < max_cycles, "timeout"
                # response to the engine: the oldest request's next beat, if it has come in
                give = False
                if order:
                    h = order[0]
                    i = sent[h]
                    got = arrived[h]
                    if i < len(got) and got[i] + resp_delay <= t:
                        give = True
                        ctx.set(dut.mem_resp.payload.data, data[h][i])
                        ctx.set(dut.mem_resp.payload.last, i == nb - 1)
                ctx.set(dut.mem_resp.valid, give)
                # request from the engine
                offer = None
                if ctx.get(dut.mem_req.valid) and len(order) < reorder_slots:
                    r = ctx.get(dut.mem_req.payload)
                    offer = Request(n_req % (1 << params.tag_bits), int(r.core), int(r.page),
                                    int(r.offset))
                    ok = ctl.ready(offer)
                else:
                    ok = False
                ctx.set(dut.mem_req.ready, ok)
                ctx.set(dut.result.ready, 1)
                took = give and ctx.get(dut.mem_resp.ready)
                acc, beat = ctl.step(offer if ok else None, True)
                assert acc == ok
                if ok:
                    reqs.append((t, offer.core))
                    order.append(n_req)
                    data[n_req] = beats_of(offer.core, offer.page, offer.offset)
                    arrived[n_req], sent[n_req] = [], 0
                    n_req += 1
                if beat is not None:
                    # tags count requests modulo 2**tag_bits; the oldest matching one
                    idx = next(k for k in order if k % (1 << params.tag_bits) == beat.tag
                               and len(arrived[k]) < nb)
                    arrived[idx].append(t)
                if took:
                    beats.append(t)
                    sent[order[0]] += 1
                    if sent[order[0]] == nb:
                        h = order.popleft()
                        del data[h], arrived[h], sent[h]
                await ctx.tick()
                t += 1
                if ctx.get(dut.done):
                    break
            ctx.set(dut.mem_resp.valid, 0)
            ctx.set(dut.result.ready, 0)
            assert not order, "the engine left accesses untaken"
            rec = {n: int(ctx.get(getattr(dut, n))) for n in COUNTER_NAMES}
            rec.update(reqs=reqs, beats=beats, error=int(ctx.get(dut.error)),
                       converged=int(ctx.get(dut.converged)))
            out.append(rec)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


def tiny_image(tmp_dir, cfg=None, n=300, n_hot=12, seed=3):
    """A small clustered index written as an image and read back (as tests/hdl/test_engine)."""
    from proxima.config import preset
    from proxima.golden.image import read_image, write_image
    from proxima.golden.index import Index
    from proxima.golden.pq import encode, train_codebook
    from tests.golden.conftest import clustered_u8, knn_plus_random_graph
    cfg = cfg or preset("tiny")
    x = clustered_u8(n, cfg.vec.dim, seed=seed)
    nbrs = knn_plus_random_graph(x, cfg.graph.R, seed=seed)
    book = train_codebook(cfg, x, seed=seed)
    hot = np.arange(n) < n_hot
    index = Index(cfg, x, nbrs, 0, book, encode(cfg, x, book), hot=hot)
    path = f"{tmp_dir}/{cfg.name}_{n}.pxi"
    write_image(path, index)
    return read_image(path)


def run_accel(img, queries, queues: int, *, max_cycles: int = 5_000_000, **kw):
    """Run ``queries`` as one batch through :class:`proxima.hdl.accel.Accelerator` (queries
    offered back to back, results and statistics always taken).  Returns ``(total, stats,
    core_busy)``: cycles from the first query beat offered to the last statistics beat taken
    (inclusive), each query's statistics beat (by index), and the per-core busy counters."""
    from proxima.hdl.accel import STAT_COUNTERS
    cfg = img.index.cfg
    dut = Accelerator(cfg, img.layout, image=Accelerator.store_image(img), queues=queues,
                      codebook=img.index.codebook, **kw)
    stats = {}
    res = {}

    async def bench(ctx):
        ctx.set(dut.entry, int(img.index.entry))
        ctx.set(dut.result.ready, 1)
        ctx.set(dut.stats.ready, 1)
        qi, ei = 0, 0
        for cycle in range(max_cycles):
            offer = qi < len(queries)
            ctx.set(dut.query.valid, offer)
            if offer:
                ctx.set(dut.query.payload.tag, qi)
                ctx.set(dut.query.payload.data, int(queries[qi][ei]))
            _, _, qv, qr, sv, sp = await ctx.tick().sample(
                dut.query.valid, dut.query.ready, dut.stats.valid, dut.stats.payload)
            if qv and qr:
                ei += 1
                if ei == cfg.vec.dim:
                    qi, ei = qi + 1, 0
            if sv:
                stats[int(sp.tag)] = {n: int(getattr(sp, n))
                                      for n in ("error", "converged") + STAT_COUNTERS}
                if len(stats) == len(queries):
                    res["total"] = cycle + 1
                    break
        else:
            raise AssertionError("timeout")
        res["core_busy"] = [int(ctx.get(x)) for x in dut.core_busy]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return res["total"], [stats[i] for i in range(len(queries))], res["core_busy"]
