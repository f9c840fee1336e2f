"""Multi-queue accelerator (hdl/accel.py) in the Amaranth simulator against golden.search.

Several queries in flight over the shared NAND controller (the image inside the design):
per query (keyed by its tag) the result beats, every counter, the accesses by kind, the
termination reason and the exact sequence of NAND accesses seen on the monitor must equal
the golden search and ``reads_for_events`` of its events, whatever the interleaving.  The
Verilator run with more queries is ``tests/test_accel_sim.py``.
"""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from proxima.config import preset
from proxima.golden.layout import EVENT_KINDS, Layout, reads_for_events
from proxima.golden.search import search
from proxima.hdl.accel import READ_COUNTERS, AccelError, Accelerator
from proxima.hdl.engine import COUNTER_NAMES
from proxima.hdl.reorder import ReorderBuffer
from tests.hdl.test_engine import _image, _queries


@pytest.fixture(scope="module")
def tiny_image(tmp_path_factory):
    return _image(tmp_path_factory, preset("tiny"))


async def drive_batch(ctx, dut, batch, out, rnd, stop_after, *, p_query, p_ready,
                      max_cycles, words=None):
    """Feed the ``(tag, query)`` pairs of ``batch`` to ``dut`` with random back-pressure and
    collect into ``out[tag]`` (prepared by the caller) its result beats ``(id, dist, last)``,
    its statistics beat and its monitored NAND requests ``(core, page, offset, kind)``,
    until ``stop_after`` statistics beats were taken.  ``words``: serve the external store
    port from this word list (a synchronous read: the word in the next cycle, then held)."""
    dim = dut.cfg.vec.dim
    extra = (dut.store_en, dut.store_addr) if words is not None else ()
    qi, ei, n_stats = 0, 0, 0
    for _ in range(max_cycles):
        offer = qi < len(batch) and rnd.random() < p_query
        ctx.set(dut.query.valid, offer)
        if offer:
            ctx.set(dut.query.payload.tag, batch[qi][0])
            ctx.set(dut.query.payload.data, int(batch[qi][1][ei]))
        ctx.set(dut.result.ready, rnd.random() < p_ready)
        ctx.set(dut.stats.ready, rnd.random() < p_ready)
        (_, _, qv, qr, rv, rr, rp, sv, sr, sp, mv, mt, mc, mpg, mo, mk, *store) = \
            await ctx.tick().sample(
                dut.query.valid, dut.query.ready, dut.result.valid, dut.result.ready,
                dut.result.payload, dut.stats.valid, dut.stats.ready, dut.stats.payload,
                dut.mon_valid, dut.mon_tag, dut.mon_core, dut.mon_page, dut.mon_offset,
                dut.mon_kind, *extra)
        if store and store[0]:
            ctx.set(dut.store_data, words[store[1]])
        if qv and qr:
            ei += 1
            if ei == dim:
                qi, ei = qi + 1, 0
        if rv and rr:
            out[rp.tag]["results"].append((rp.id, rp.dist, rp.last))
        if mv:
            out[mt]["reqs"].append((mc, mpg, mo, EVENT_KINDS[mk]))
        if sv and sr:
            out[sp.tag]["stats"] = {n: getattr(sp, n) for n in
                                    ("context", "error", "converged") + COUNTER_NAMES
                                    + READ_COUNTERS}
            n_stats += 1
            if n_stats == stop_after:
                return
    raise AssertionError("timeout")


def run_accel(img, queries, *, queues=2, p_query=1.0, p_ready=1.0, seed=0, stall_seed=0,
              reset_after=None, then=(), max_cycles=400_000, store_latency=None, **kw):
    """Feed ``queries`` (tags 100, 101, ...) and collect per tag what came out.

    ``reset_after``: pulse ``soft_reset`` once that many statistics beats were taken
    (``glob["after_reset"]`` records the global counters right after it), then feed the
    queries ``then`` (tags 200, 201, ...) in the same simulation.  Returns ``(per_tag,
    glob)``; ``per_tag[tag]`` has ``results`` (id, dist, last), ``stats`` and ``reqs``
    (core, page, offset, kind) in monitor order; ``glob`` the global counters at the end.
    ``store_latency``: the Accelerator's ``engine.store_latency`` (a search-time field:
    the image's configuration otherwise)."""
    cfg, lay = img.index.cfg, img.layout
    if store_latency is not None:
        cfg = cfg.with_(engine={"store_latency": int(store_latency)})
        lay = Layout(cfg, lay.n, lay.hot, lay.gap_width)
    dut = Accelerator(cfg, lay, image=Accelerator.store_image(img), queues=queues,
                      codebook=img.index.codebook, resp_stall_seed=stall_seed, **kw)
    rnd = random.Random(seed)
    batches = [list(zip((100 + i for i in range(len(queries))), queries))]
    if reset_after is not None:
        batches.append(list(zip((200 + i for i in range(len(then))), then)))
    out = {t: {"results": [], "stats": None, "reqs": []} for b in batches for t, _ in b}
    glob = {"read_latency": dut.ctl.params.read_latency}

    def read_globals(ctx):
        g = {n: ctx.get(getattr(dut, n))
             for n in ("idle", "g_cycles", "g_busy", "g_queries", "g_arb_wait", "g_sort")}
        g["core_busy"] = [ctx.get(x) for x in dut.core_busy]
        return g

    def run_batch(ctx, batch, stop_after):
        return drive_batch(ctx, dut, batch, out, rnd, stop_after, p_query=p_query,
                           p_ready=p_ready, max_cycles=max_cycles)

    async def bench(ctx):
        ctx.set(dut.entry, int(img.index.entry))
        ctx.set(dut.entry_code, int.from_bytes(bytes(img.index.codes[img.index.entry]),
                                               "little"))
        await run_batch(ctx, batches[0], len(queries) if reset_after is None else reset_after)
        if reset_after is not None:
            ctx.set(dut.query.valid, 0)
            ctx.set(dut.soft_reset, 1)
            await ctx.tick()
            ctx.set(dut.soft_reset, 0)
            glob["after_reset"] = read_globals(ctx)
            await run_batch(ctx, batches[1], len(then))
        glob.update(read_globals(ctx))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out, glob


def check_query(img, q, got):
    """One query's outputs against golden.search (hot frames from the context's copy)."""
    cfg, lay = img.index.cfg, img.layout
    ref = search(img.index, q, cfg)
    copy = got["stats"]["context"] % lay.hot_copies
    exp_reads = [(r.core, r.page, r.offset, r.kind)
                 for r in reads_for_events(ref.events, lay, copy)]
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


@pytest.mark.parametrize("queues,stall,n,path", [(1, 0, 1, 32), (3, 0x1D, 3, None),
                                                 (2, 0x2B, 2, 128), (2, 0, 2, 1024)])
def test_accel_matches_golden_per_query(tiny_image, queues, stall, n, path):
    """One context (no arbiter) on a path as narrow as its beat (32 bits), and three with
    random NAND latency and back-pressure on every host stream on the default path (256
    bits); paths 4 beats wide and one access wide.  More queries, more contexts:
    tests/test_accel_sim.py (Verilator)."""
    queries = _queries(tiny_image.index.cfg, n, seed=queues)
    out, glob = run_accel(tiny_image, queries, queues=queues, p_query=0.7, p_ready=0.6,
                          seed=queues, stall_seed=stall, path_bits=path)
    for i, q in enumerate(queries):
        check_query(tiny_image, q, out[100 + i])
    assert glob["g_queries"] == len(queries)
    assert glob["idle"] == 1
    n_reads = sum(len(o["reqs"]) for o in out.values())
    service = tiny_image.index.cfg.tR_cycles
    assert sum(glob["core_busy"]) >= n_reads * service
    assert glob["g_busy"] <= glob["g_cycles"]
    # a merge takes up to sorter_n inserted candidates and sends at most list_chunks + 1
    # vectors through the sorter (fewer while the list holds fewer chunks)
    cfg = tiny_image.index.cfg
    inserted = sum(out[100 + i]["stats"]["inserted"] for i in range(len(queries)))
    assert -(-inserted // cfg.engine.sorter_n) <= glob["g_sort"]
    assert glob["g_sort"] <= (cfg.list_chunks + 1) * inserted


def test_accel_two_cycle_store_read_matches_golden(tiny_image):
    """The controller's store read registered once more (engine.store_latency = 2, the
    FPGA board's): every query's reads, results and counters equal golden, with random
    NAND latency and back-pressure; the read costs cycles, never results."""
    assert tiny_image.index.cfg.engine.store_latency == 1
    queries = _queries(tiny_image.index.cfg, 2, seed=12)
    out, glob = run_accel(tiny_image, queries, queues=2, p_query=0.7, p_ready=0.6, seed=12,
                          stall_seed=0x35, store_latency=2)
    for i, q in enumerate(queries):
        check_query(tiny_image, q, out[100 + i])
    assert glob["g_queries"] == len(queries) and glob["idle"] == 1
    assert glob["read_latency"] == 2


@pytest.fixture(scope="module")
def copies_image(tmp_path_factory):
    """Two copies of the hot region (paper-style hot-node duplication)."""
    return _image(tmp_path_factory, preset("tiny").with_(layout={"hot_copies": 2}))


def test_accel_hot_copies(copies_image):
    """Context q reads hot frames, and the codes of vertices below ``code_copy_count``
    (every vertex here), from copy q % 2 (the code-copy region, core-rotated, for copy 1)
    and takes the entry's code from the ``entry_code`` register (no code read for it), as
    reads_for_events(..., copy).  The Bloom filters use block RAM here (the FPGA option),
    which must not change anything."""
    lay = copies_image.layout
    assert lay.hot_copies == 2 and lay.code_copy_count == lay.n
    queries = _queries(copies_image.index.cfg, 2, seed=5)
    out, _ = run_accel(copies_image, queries, queues=2, p_query=0.5,
                       bloom_options={"ram": "block"})
    assert {o["stats"]["context"] for o in out.values()} == {0, 1}
    for i, q in enumerate(queries):
        check_query(copies_image, q, out[100 + i])
    # the code reads of context 1 come from the code-copy region, context 0's never do
    for o in out.values():
        codes = [r for r in o["reqs"] if r[3] == "code"]
        in_copy = sum(r[1] >= lay.code_copy_page for r in codes)
        assert codes and in_copy == (len(codes) if o["stats"]["context"] else 0)


def test_accel_soft_reset_mid_batch(tiny_image):
    """A reset after the first of two queries drops the other (in flight) and clears the
    counters; a new query in the same run is then served exactly."""
    queries = _queries(tiny_image.index.cfg, 3, seed=11)
    out, glob = run_accel(tiny_image, queries[:2], queues=2, reset_after=1, then=queries[2:])
    after = glob["after_reset"]
    assert after["g_cycles"] == 0 and after["g_queries"] == 0 and after["idle"] == 1
    assert sum(o["stats"] is not None for t, o in out.items() if t < 200) == 1
    for i, q in enumerate(queries[2:]):
        check_query(tiny_image, q, out[200 + i])
    assert glob["g_queries"] == 1


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_accel_rejects_bad_options(tiny_image):
    cfg = tiny_image.index.cfg
    with pytest.raises(AccelError, match="reorder_slots"):
        Accelerator(cfg, tiny_image.layout, reorder_slots=3)
    with pytest.raises(AccelError, match="queues"):
        Accelerator(cfg, tiny_image.layout, queues=0)
    for bad in (96, 2048):
        with pytest.raises(AccelError, match="path_bits"):
            Accelerator(cfg, tiny_image.layout, path_bits=bad)


@pytest.mark.parametrize("lanes", [1, 2, 4])
def test_reorder_buffer_restores_issue_order(lanes):
    """Accesses written in a scrambled order come out in issue order, beat for beat; with
    ``lanes`` > 1 they are written as wide beats (the shared path) and come out narrow."""
    S, nb, bits = 4, 4, 16
    nb_in = nb // lanes
    dut = ReorderBuffer(S, nb, bits, in_bits=bits * lanes)
    assert (dut.lanes, dut.nb_in) == (lanes, nb_in)
    rnd = random.Random(5 + lanes)
    n_acc = 40

    def word(acc, wb):  # written beat wb of access acc: its narrow beats, lane 0 lowest
        return sum((acc * 16 + wb * lanes + i) << (bits * i) for i in range(lanes))

    async def bench(ctx):
        issued, inflight, got = 0, [], []
        writing = None  # (slot, access number, written beat)
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
                ctx.set(dut.w_data, word(acc, b))
                ctx.set(dut.w_last, b == nb_in - 1)
            ctx.set(dut.out.ready, rnd.random() < 0.7)
            _, _, ov, ordy, op = await ctx.tick().sample(dut.out.valid, dut.out.ready,
                                                          dut.out.payload)
            if do_issue:
                issued += 1
            if w:
                writing[2] += 1
                if writing[2] == nb_in:
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


# ---- run-time geometry: one elaboration, images of different geometry ----------------------
def run_images(dut, phases, *, p_query=0.7, p_ready=0.6, seed=0, max_cycles=400_000):
    """Run each ``(img, queries)`` phase on one elaborated ``dut`` (``external_store=True``):
    the testbench serves the store port from the phase's image and writes the phase's
    geometry registers, entry and entry code while the accelerator is idle.  Returns
    ``out[tag]`` as :func:`run_accel` (phase ``p`` uses tags ``100 * (p + 1) + i``)."""
    from proxima.golden.nandctl import store_words
    from proxima.hdl.nandctl import geometry_init

    rnd = random.Random(seed)
    out = {}

    async def bench(ctx):
        for ph, (img, queries) in enumerate(phases):
            dut.check_geometry(img.layout)
            words = store_words(dut.ctl.params, Accelerator.store_image(img, pages=dut.pages))
            assert ctx.get(dut.idle)
            ctx.set(dut.geom, geometry_init(img.layout))
            ctx.set(dut.entry, int(img.index.entry))
            ctx.set(dut.entry_code, int.from_bytes(bytes(img.index.codes[img.index.entry]),
                                                   "little"))
            batch = [(100 * (ph + 1) + i, q) for i, q in enumerate(queries)]
            out.update({t: {"results": [], "stats": None, "reqs": []} for t, _ in batch})
            await drive_batch(ctx, dut, batch, out, rnd, len(batch), p_query=p_query,
                              p_ready=p_ready, max_cycles=max_cycles, words=words)
            ctx.set(dut.query.valid, 0)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("copies", [1, 2])
def test_accel_one_elaboration_serves_two_geometries(tmp_path_factory, copies):
    """One Accelerator, elaborated for the smaller image's layout (reset values) with a store
    large enough for both: a second image with another N, hot count and slot width runs on it
    once its geometry registers, entry and store are loaded, and every query of both equals
    golden (ids, distances, counters, the NAND access sequence); with two hot copies too.
    Images that do not fit are refused on the host side with a one-line error."""
    cfg = preset("tiny").with_(layout={"hot_copies": copies})
    img_a = _image(tmp_path_factory, cfg, seed=3)
    # the codebook is the engine's init (written through cb_wr otherwise): shared here
    img_b = _image(tmp_path_factory, cfg, n=1400, n_hot=70, seed=4, book=img_a.index.codebook)
    la, lb = img_a.layout, img_b.layout
    assert (la.n, la.hot) != (lb.n, lb.hot) and la.gap_width != lb.gap_width
    assert la.registers() != lb.registers()
    pages = Accelerator.store_pages(lb)
    dut = Accelerator(cfg, la, queues=2, codebook=img_a.index.codebook, external_store=True,
                      pages=pages)
    qa = _queries(cfg, 2, seed=21)
    qb = _queries(cfg, 2, seed=22)
    out = run_images(dut, [(img_a, qa), (img_b, qb)], seed=copies)
    for i, q in enumerate(qa):
        check_query(img_a, q, out[100 + i])
    for i, q in enumerate(qb):
        check_query(img_b, q, out[200 + i])
    if copies == 1:
        with pytest.raises(AccelError, match="pages per core, the store holds"):
            Accelerator(cfg, la, pages=1).check_geometry(lb)
        with pytest.raises(AccelError, match="another configuration"):
            dut.check_geometry(_image(tmp_path_factory, preset("tiny").with_(
                search={"L": 8}), n=50, n_hot=2).layout)
