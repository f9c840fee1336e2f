"""Search engine top (hdl/engine.py) in the Amaranth simulator against golden.search.

A small ``tiny`` index with hot vertices (so both frame kinds occur) is written as an image
and read back; the testbench serves the engine's memory requests from the image's core arrays
and checks, per query, the result (ids and exact distances, best first), every counter, the
termination reason and the exact sequence of NAND accesses, which must be
``reads_for_events(golden events)``.
"""

from __future__ import annotations

import gc
import random
import warnings

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from proxima.config import preset
from proxima.golden.image import read_image, write_image
from proxima.golden.index import Index
from proxima.golden.layout import EVENT_KINDS, Layout, reads_for_events
from proxima.golden.pq import encode, train_codebook
from proxima.golden.search import search
from proxima.hdl.engine import COUNTER_NAMES, EngineError, SearchEngine
from tests.golden.conftest import clustered_u8, knn_plus_random_graph

N_VERTICES = 300
N_HOT = 12


def _image(tmp_path_factory, cfg, n=N_VERTICES, n_hot=N_HOT, *, seed=3, path=None, book=None):
    """A clustered image of ``n`` vectors (``n_hot`` hot), written to ``path`` (default: a
    new temporary folder) and read back; ``book``: its PQ codebook (default: trained on it)."""
    x = clustered_u8(n, cfg.vec.dim, seed=seed)
    nb = knn_plus_random_graph(x, cfg.graph.R, seed=seed)
    book = train_codebook(cfg, x, seed=seed) if book is None else book
    hot = np.arange(n) < n_hot
    index = Index(cfg, x, nb, 0, book, encode(cfg, x, book), hot=hot)
    path = path or tmp_path_factory.mktemp("engine") / "tiny.pxi"
    write_image(path, index)
    return read_image(path)


@pytest.fixture(scope="module")
def tiny_image(tmp_path_factory):
    """tiny: every structure in one 128-byte access, frames and raw vectors at offsets
    inside it (the engine skips the beats before them)."""
    return _image(tmp_path_factory, preset("tiny"))


@pytest.fixture(scope="module")
def narrow_image(tmp_path_factory):
    """8-byte accesses on 3 + 3 cores and 8-byte codes (M = 8): a normal frame's neighbour
    part is 2 accesses and its code lies in the third (not read with the frame: the gap
    decoder closes the frame's code stream as truncated), frames have a stride of 3
    accesses (170 per page), a hot frame takes more accesses than there are cores, a raw
    vector 2 accesses; core, slot and page arithmetic divide by 3 and 170."""
    cfg = preset("tiny").with_(nand={"access_bytes": 8, "cores": 3, "raw_vector_cores": 3},
                               pq={"M": 8})
    img = _image(tmp_path_factory, cfg)
    lay = img.layout
    A = cfg.nand.access_bytes
    assert (lay.frame_access_count, lay.code_access_count, lay.raw_access_count) == (2, 1, 2)
    assert lay.code_offset >= lay.frame_access_count * A
    fpp = lay.frames_per_page
    assert lay.hot_accesses > cfg.nand.cores and fpp & (fpp - 1)  # not a power of two
    return img


def _queries(cfg, n, seed):
    return clustered_u8(n, cfg.vec.dim, seed=100 + seed)


def _word_source(img, beat_bits):
    """Beats of one access ``(core, page, offset)`` as the engine expects them."""
    lay = img.layout
    cfg = lay.cfg
    A, P, Ci = cfg.nand.access_bytes, cfg.nand.page_bytes, cfg.nand.cores
    bb = beat_bits // 8

    def beats(core, page, offset):
        assert offset % A == 0, offset
        arr = img.frames[core] if core < Ci else img.raw[core - Ci]
        base = page * P + offset
        data = bytes(arr[base:base + A])
        assert len(data) == A, (core, page, offset)
        return [int.from_bytes(data[i:i + bb], "little") for i in range(0, A, bb)]

    return beats


def _layout(img, cfg):
    """The image's geometry under ``cfg`` (search parameters changed, same frames)."""
    lay = img.layout
    return Layout(cfg, lay.n, lay.hot, lay.gap_width)


def _run(img, queries, *, cfg=None, p_mem=1.0, p_ready=1.0, latency=1, seed=0,
         beat_bits=None):
    """Run the queries through the RTL engine; per query a dict of what it did."""
    cfg = cfg or img.index.cfg
    dut = SearchEngine(cfg, _layout(img, cfg), codebook=img.index.codebook,
                       beat_bits=beat_bits)
    beats = _word_source(img, dut.beat_bits)
    rnd = random.Random(seed)
    out = []

    async def bench(ctx):
        ctx.set(dut.entry, int(img.index.entry))
        for q in queries:
            reqs, results = [], []
            pending = []  # [due cycle, beats]
            # the query
            for e in q:
                ctx.set(dut.query.valid, 1)
                ctx.set(dut.query.payload, int(e))
                await ctx.tick().until(dut.query.ready)
            ctx.set(dut.query.valid, 0)
            cycle = 0
            while True:
                cycle += 1
                assert cycle < 200_000, "timeout"
                if ctx.get(dut.mem_req.valid):
                    r = ctx.get(dut.mem_req.payload)
                    reqs.append((r.core, r.page, r.offset, EVENT_KINDS[r.kind]))
                    pending.append([cycle + latency, beats(r.core, r.page, r.offset)])
                ctx.set(dut.mem_req.ready, 1)
                give = bool(pending) and pending[0][0] <= cycle and rnd.random() < p_mem
                ctx.set(dut.mem_resp.valid, give)
                if give:
                    w = pending[0][1]
                    ctx.set(dut.mem_resp.payload.data, w[0])
                    ctx.set(dut.mem_resp.payload.last, len(w) == 1)
                take = rnd.random() < p_ready
                ctx.set(dut.result.ready, take)
                if take and ctx.get(dut.result.valid):
                    r = ctx.get(dut.result.payload)
                    results.append((r.id, r.dist, r.last))
                if give and ctx.get(dut.mem_resp.ready):
                    pending[0][1].pop(0)
                    if not pending[0][1]:
                        pending.pop(0)
                await ctx.tick()
                if ctx.get(dut.done):
                    break
            ctx.set(dut.result.ready, 0)
            ctx.set(dut.mem_resp.valid, 0)
            assert not pending, "the engine left response beats untaken"
            rec = {n: ctx.get(getattr(dut, n)) for n in COUNTER_NAMES}
            rec.update(reqs=reqs, results=results, converged=ctx.get(dut.converged),
                       error=ctx.get(dut.error))
            out.append(rec)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


def _check(img, queries, got, cfg=None, refs=None):
    """Compare with golden.search (or the given golden results, e.g. from search_batch)."""
    cfg = cfg or img.index.cfg
    refs = refs or [search(img.index, q, cfg) for q in queries]
    reasons = []
    for qi, (q, g, ref) in enumerate(zip(queries, got, refs)):
        reasons.append(ref.reason)
        exp_reads = [(r.core, r.page, r.offset, r.kind)
                     for r in reads_for_events(ref.events, _layout(img, cfg))]
        assert not g["error"], qi
        assert g["reqs"] == exp_reads, (qi, len(g["reqs"]), len(exp_reads))
        assert [(i, d) for i, d, _ in g["results"]] == list(zip(ref.ids.tolist(),
                                                                ref.dists.tolist())), qi
        assert [last for _, _, last in g["results"]] == \
            [0] * (len(ref.ids) - 1) + [1], qi
        for name in COUNTER_NAMES:
            if name != "cycles":
                assert g[name] == ref.counters[name], (qi, name, g[name], ref.counters[name])
        assert g["converged"] == (ref.reason == "converged"), qi
        assert g["cycles"] > 0
    return reasons


def test_engine_matches_golden_search(tiny_image):
    img = tiny_image
    q = _queries(img.index.cfg, 3, seed=0)
    got = _run(img, q)
    assert _check(img, q, got) == ["converged"] * len(q)
    # the traffic covered both frame kinds and both read paths of a code
    kinds = {k for g in got for *_, k in g["reqs"]}
    assert kinds == set(EVENT_KINDS)
    # the beta threshold took entries past Tf into the final rerank
    assert any(g["final_reranked"] > g["final_T"] for g in got)
    for g in got:
        print("cycles", g["cycles"], "hops", g["hops"], "reads", len(g["reqs"]))


def test_engine_with_memory_gaps_and_result_backpressure(tiny_image):
    img = tiny_image
    q = _queries(img.index.cfg, 2, seed=1)
    got = _run(img, q, p_mem=0.6, p_ready=0.5, latency=7, seed=5)
    _check(img, q, got)


def test_engine_list_end(tiny_image):
    """r = 15 never converges on this list: T grows past L (``list_end``, every entry then
    reranked); T0 = k and T_step = 3 (T jumps from 16 to 19, past L)."""
    cfg = preset("tiny").with_(search={"r": 15, "T0": 4, "T_step": 3})
    img = tiny_image
    q = _queries(cfg, 2, seed=2)
    got = _run(img, q, cfg=cfg)
    assert _check(img, q, got, cfg) == ["list_end"] * len(q)
    assert all(g["final_T"] == cfg.search.L for g in got)


@pytest.mark.parametrize("search", [
    {"k": 1, "T0": 1, "T_step": 1, "r": 1, "beta": 1.0},  # smallest top-k, T and r
    {"k": 16, "T0": 16, "T_step": 5, "r": 2, "beta": 2.0},  # k = T0 = L: the whole list
    {"r": 1, "L_per_r": 4},  # the stop rule tied to L: r_eff = L // 4 = 4 > r
], ids=["k1_T1_r1", "k16_T16", "r_eff_from_L"])
def test_engine_search_parameter_extremes(tiny_image, search):
    cfg = preset("tiny").with_(search=search)
    q = np.concatenate([_queries(cfg, 1, seed=5),
                        np.random.default_rng(5).integers(0, 256, (1, cfg.vec.dim),
                                                          dtype=np.uint8)])
    got = _run(tiny_image, q, cfg=cfg, p_mem=0.9, p_ready=0.7, seed=11)
    _check(tiny_image, q, got, cfg)


def test_engine_block_parameters(tiny_image):
    """Other block shapes: a list of two sorter chunks (sorter_n = 8, L = 16), 3 exact
    lanes (the last beat of a vector has one lane), one PQ lane, a Bloom filter of 3 banks
    of 320 bits (not a power of two: the hash takes an extra stage)."""
    cfg = preset("tiny").with_(engine={"sorter_n": 8, "exact_lanes": 3,
                                       "pq_codes_per_cycle": 1},
                               bloom={"bits": 960, "hashes": 3})
    assert cfg.list_chunks == 2
    q = _queries(cfg, 2, seed=6)
    got = _run(tiny_image, q, cfg=cfg, p_mem=0.9, latency=2, seed=13)
    _check(tiny_image, q, got, cfg)


def test_engine_rows_longer_than_the_sorter(tiny_image):
    """sorter_n = 4 < R = 8: neighbour rows are inserted in sub-batches of 4 (the candidate
    list holds cmd.ready low during each merge), L = 16 in four chunks."""
    cfg = preset("tiny").with_(engine={"sorter_n": 4})
    assert cfg.list_chunks == 4 and cfg.graph.R == 8 and cfg.insert_merges(8) == 2
    q = _queries(cfg, 2, seed=8)
    got = _run(tiny_image, q, cfg=cfg, p_mem=0.9, latency=2, seed=19)
    _check(tiny_image, q, got, cfg)
    # more keys than 4 per expansion on average: some rows did need two sub-batches
    assert any(g["inserted"] > 4 * g["hops"] for g in got)


def test_engine_multi_access_reads(narrow_image):
    """Structures spanning several accesses, 16-bit beats (4 per access)."""
    img = narrow_image
    q = _queries(img.index.cfg, 2, seed=4)
    got = _run(img, q, beat_bits=16, p_mem=0.8, latency=3, seed=7)
    _check(img, q, got)
    hot_frames = [r for g in got for r in g["reqs"] if r[3] == "frame" and r[1] == 0]
    assert len(hot_frames) >= img.layout.hot_accesses


@pytest.mark.slow
def test_engine_default_preset(tmp_path_factory):
    """The FPGA preset (L = 64 in four chunks of a 16-input sorter, rows of R = 32 in two
    sub-batches, M = 16, dim 128, 64-bit beats, hot frames of 5 accesses): one query, about
    30k cycles (about a minute in the simulator)."""
    cfg = preset("default")
    img = _image(tmp_path_factory, cfg, n=2000, n_hot=60)
    assert cfg.list_chunks == 4 and cfg.graph.R == 2 * cfg.engine.sorter_n
    assert img.layout.hot_accesses > 1
    q = _queries(cfg, 1, seed=0)
    got = _run(img, q)
    _check(img, q, got)


def test_engine_on_an_image_built_by_the_cli(tmp_path):
    """The real flow (``proxima dataset synth`` + ``build-index``: Vamana graph, PQ,
    frequency reordering, hot vertices), expectations from golden.search_batch."""
    from proxima.cli import main
    from proxima.golden.datasets import synth_queries
    from proxima.golden.search_batch import search_batch

    base = tmp_path / "base.u8bin"
    assert main(["dataset", "synth", "--kind", "sift", "--dim", "16", "--n", "1200",
                 "--out", str(base), "--no-progress"]) == 0
    assert main(["build-index", "--preset", "tiny", "--base", str(base),
                 "-o", str(tmp_path / "index.pxi"), "--quiet"]) == 0
    img = read_image(tmp_path / "index.pxi")
    assert img.layout.hot > 0
    q = synth_queries("sift", 2, 16, seed=0)
    got = _run(img, q, p_mem=0.8, latency=4, seed=17)
    _check(img, q, got, refs=search_batch(img.index, q, trace=True))


def test_engine_rejects_a_layout_of_another_configuration(tiny_image):
    other = preset("tiny").with_(search={"L": 8})
    with warnings.catch_warnings():  # the refused engine is never elaborated
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(EngineError, match="another configuration"):
            SearchEngine(other, tiny_image.layout)
        gc.collect()


@pytest.mark.rtl
def test_engine_verilog_cocotb(tiny_image, tmp_path):
    """The generated Verilog under Verilator: the same golden checks (sim/tb/tb_engine.py),
    with memory gaps, response latency and result back-pressure."""
    import json

    from proxima.sim.runner import run_cocotb
    from proxima.sim.tb.tb_engine import engine_transactions

    img = tiny_image
    cfg = img.index.cfg
    q = _queries(cfg, 3, seed=3)

    dut = SearchEngine(cfg, img.layout, codebook=img.index.codebook)
    path = tmp_path / "engine.json"
    path.write_text(json.dumps(engine_transactions(img, q, cfg, img.layout, dut)))
    res = run_cocotb(dut, "proxima_engine", "proxima.sim.tb.tb_engine", cfg=cfg,
                     build_name="engine_tiny",
                     parameters={"data": str(path), "p_mem": 0.7, "p_ready": 0.6,
                                 "latency": 5})
    assert res.tests == 1 and res.failed == 0
