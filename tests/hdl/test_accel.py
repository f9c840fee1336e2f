"""Multi-queue accelerator (hdl/accel.py) in the Amaranth simulator against golden.search.

Several queries in flight over the shared NAND controller (the image inside the design):
per query (keyed by its tag) the result beats, every counter, the accesses by kind, the
termination reason and the exact sequence of NAND accesses seen on the monitor must equal
the golden search and ``reads_for_events`` of its events, whatever the interleaving.  The
Verilator run with more queries is ``tests/test_accel_sim.py``.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from proxima.config import preset
from proxima.golden.layout import EVENT_KINDS, reads_for_events
from proxima.golden.search import search
from proxima.hdl.accel import READ_COUNTERS, AccelError, Accelerator
from proxima.hdl.engine import COUNTER_NAMES
from proxima.hdl.reorder import ReorderBuffer
from tests.hdl.test_engine import _image, _queries


@pytest.fixture(scope="module")
def tiny_image(tmp_path_factory):
    return _image(tmp_path_factory, preset("tiny"))


def run_accel(img, queries, *, queues=2, p_query=1.0, p_ready=1.0, seed=0, stall_seed=0,
              reset_after=None, store=None, max_cycles=400_000, **kw):
    """Feed ``queries`` (tags 100, 101, ...) and collect per tag what came out.

    ``reset_after``: pulse ``soft_reset`` once that many statistics beats were taken, then
    stop.  Returns ``(per_tag, dut_counters)``; ``per_tag[tag]`` has ``results`` (id, dist,
    last), ``stats`` and ``reqs`` (core, page, offset, kind) in monitor order."""
    cfg = img.index.cfg
    dut = Accelerator(cfg, img.layout, image=Accelerator.store_image(img) if store is None
                      else store, queues=queues, codebook=img.index.codebook,
                      resp_stall_seed=stall_seed, **kw)
    rnd = random.Random(seed)
    tags = [100 + i for i in range(len(queries))]
    out = {t: {"results": [], "stats": None, "reqs": []} for t in tags}
    glob = {}

    async def bench(ctx):
        ctx.set(dut.entry, int(img.index.entry))
        qi, ei, n_stats = 0, 0, 0
        for cycle in range(max_cycles):
            offer = qi < len(queries) and rnd.random() < p_query
            ctx.set(dut.query.valid, offer)
            if offer:
                ctx.set(dut.query.payload.tag, tags[qi])
                ctx.set(dut.query.payload.data, int(queries[qi][ei]))
            ctx.set(dut.result.ready, rnd.random() < p_ready)
            ctx.set(dut.stats.ready, rnd.random() < p_ready)
            (_, _, qv, qr, rv, rr, rp, sv, sr, sp, mv, mt, mc, mpg, mo, mk) = \
                await ctx.tick().sample(
                    dut.query.valid, dut.query.ready, dut.result.valid, dut.result.ready,
                    dut.result.payload, dut.stats.valid, dut.stats.ready, dut.stats.payload,
                    dut.mon_valid, dut.mon_tag, dut.mon_core, dut.mon_page, dut.mon_offset,
                    dut.mon_kind)
            if qv and qr:
                ei += 1
                if ei == cfg.vec.dim:
                    qi, ei = qi + 1, 0
            if rv and rr:
                out[rp.tag]["results"].append((rp.id, rp.dist, rp.last))
            if mv:
                out[mt]["reqs"].append((mc, mpg, mo, EVENT_KINDS[mk]))
            if sv and sr:
                out[sp.tag]["stats"] = {n: getattr(sp, n) for n in
                                        ("error", "converged") + COUNTER_NAMES + READ_COUNTERS}
                n_stats += 1
                if reset_after is not None and n_stats == reset_after:
                    ctx.set(dut.soft_reset, 1)
                    await ctx.tick()
                    ctx.set(dut.soft_reset, 0)
                    ctx.set(dut.query.valid, 0)
                    await ctx.tick()
                    break
            if n_stats == len(queries):
                break
        else:
            raise AssertionError("timeout")
        for n in ("idle", "g_cycles", "g_busy", "g_queries", "g_arb_wait"):
            glob[n] = ctx.get(getattr(dut, n))
        glob["core_busy"] = [ctx.get(x) for x in dut.core_busy]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out, glob


def check_query(img, q, got, layout=None):
    """One query's outputs against golden.search."""
    cfg = img.index.cfg
    ref = search(img.index, q, cfg)
    exp_reads = [(r.core, r.page, r.offset, r.kind)
                 for r in reads_for_events(ref.events, layout or img.layout)]
    assert got["reqs"] == exp_reads
    assert [(i, d) for i, d, _ in got["results"]] == list(zip(ref.ids.tolist(),
                                                              ref.dists.tolist()))
    assert [x[2] for x in got["results"]] == [0] * (len(ref.ids) - 1) + [1]
    st = got["stats"]
    assert st["error"] == 0
    assert st["converged"] == (ref.reason == "converged")
    for name in COUNTER_NAMES:
        if name != "cycles":
            assert st[name] == ref.counters[name], name
    for kind, name in zip(EVENT_KINDS, READ_COUNTERS):
        assert st[name] == sum(r[3] == kind for r in exp_reads), name
    assert st["cycles"] > 0


@pytest.mark.parametrize("queues,stall", [(1, 0), (3, 0x1D), (4, 0)])
def test_accel_matches_golden_per_query(tiny_image, queues, stall):
    queries = _queries(tiny_image.index.cfg, 8, seed=queues)
    out, glob = run_accel(tiny_image, queries, queues=queues, p_query=0.7, p_ready=0.6,
                          seed=queues, stall_seed=stall)
    for i, q in enumerate(queries):
        check_query(tiny_image, q, out[100 + i])
    assert glob["g_queries"] == len(queries)
    assert glob["idle"] == 1
    n_reads = sum(len(o["reqs"]) for o in out.values())
    service = sum(glob["core_busy"])
    assert service >= n_reads  # every access held its core for >= 1 cycle
    assert glob["g_busy"] <= glob["g_cycles"]


def test_accel_queries_overlap(tiny_image):
    """With 4 contexts the batch takes clearly fewer cycles than one context."""
    queries = _queries(tiny_image.index.cfg, 8, seed=7)
    _, one = run_accel(tiny_image, queries, queues=1)
    _, four = run_accel(tiny_image, queries, queues=4)
    assert four["g_cycles"] < 0.6 * one["g_cycles"], (four["g_cycles"], one["g_cycles"])


def test_accel_soft_reset_mid_batch(tiny_image):
    queries = _queries(tiny_image.index.cfg, 6, seed=11)
    out, glob = run_accel(tiny_image, queries, queues=3, reset_after=1)
    assert glob["g_cycles"] == 0 and glob["g_queries"] == 0 and glob["idle"] == 1
    # the design is clean after the reset: a new batch matches
    out, glob = run_accel(tiny_image, queries[:3], queues=3)
    for i, q in enumerate(queries[:3]):
        check_query(tiny_image, q, out[100 + i])


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_accel_rejects_bad_options(tiny_image):
    cfg = tiny_image.index.cfg
    with pytest.raises(AccelError, match="reorder_slots"):
        Accelerator(cfg, tiny_image.layout, reorder_slots=3)
    with pytest.raises(AccelError, match="queues"):
        Accelerator(cfg, tiny_image.layout, queues=0)


def test_reorder_buffer_restores_issue_order():
    """Accesses written in a scrambled order come out in issue order, beat for beat."""
    S, nb = 4, 4
    dut = ReorderBuffer(S, nb, 16)
    rnd = random.Random(5)
    n_acc = 40

    async def bench(ctx):
        issued, inflight, got = 0, [], []
        writing = None  # (slot, access number, beat)
        for _ in range(5000):
            can = ctx.get(dut.can_issue)
            do_issue = can and issued < n_acc and rnd.random() < 0.5
            if do_issue:
                inflight.append((ctx.get(dut.slot), issued))
            ctx.set(dut.issue, do_issue)
            if writing is None and inflight and rnd.random() < 0.6:
                writing = [*inflight.pop(rnd.randrange(len(inflight))), 0]
            w = writing is not None and rnd.random() < 0.8
            ctx.set(dut.w_en, w)
            if w:
                slot, acc, b = writing
                ctx.set(dut.w_slot, slot)
                ctx.set(dut.w_beat, b)
                ctx.set(dut.w_data, acc * 16 + b)
                ctx.set(dut.w_last, b == nb - 1)
            ctx.set(dut.out.ready, rnd.random() < 0.7)
            _, _, ov, ordy, op = await ctx.tick().sample(dut.out.valid, dut.out.ready,
                                                          dut.out.payload)
            if do_issue:
                issued += 1
            if w:
                writing[2] += 1
                if writing[2] == nb:
                    writing = None
            if ov and ordy:
                got.append((op.data, op.last))
            if len(got) == n_acc * nb:
                break
        assert got == [(a * 16 + b, int(b == nb - 1)) for a in range(n_acc) for b in range(nb)]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
