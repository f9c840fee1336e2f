"""hdl.engine_mem.MemReader against golden.layout's reads and the image's bytes.

Every read (hot and normal frames, codes, raw vectors; one-access and multi-access
geometries) must request exactly ``Layout.frame_reads`` / ``code_reads`` / ``raw_reads``,
feed the gap decoder the frame's beats from its first byte on and capture the code or raw
vector byte for byte; the neighbour code reads must request every neighbour's code
accesses back to back and hand over each code in order, under random memory gaps and
back-pressure.
"""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from proxima.config import preset
from proxima.hdl.engine_mem import KIND_CODES, MemReader
from tests.hdl.test_engine import _image, _word_source

NARROW = {"nand": {"access_bytes": 8, "cores": 3, "raw_vector_cores": 3}, "pq": {"M": 8}}


@pytest.fixture(scope="module", params=["tiny", "narrow"])
def image(request, tmp_path_factory):
    cfg = preset("tiny")
    if request.param == "narrow":
        cfg = cfg.with_(**NARROW)
    return _image(tmp_path_factory, cfg)


def _bytes(img, core, page, off, n):
    cfg = img.layout.cfg
    Ci, P = cfg.nand.cores, cfg.nand.page_bytes
    arr = img.frames[core] if core < Ci else img.raw[core - Ci]
    return bytes(arr[page * P + off:page * P + off + n])


def _run(img, reads, nb_lists, seed):
    lay = img.layout
    cfg = lay.cfg
    dut = MemReader(cfg, lay, 32)
    beats = _word_source(img, dut.beat_bits)
    rnd = random.Random(seed)
    got = []

    async def serve(ctx, until):
        """Serve requests (latency 1, random gaps) and take outputs until ``until()``."""
        reqs, frame, codes, pending, cycle = [], [], [], [], 0
        while not until(reqs, codes):
            cycle += 1
            assert cycle < 5000, "timeout"
            ids = until.ids
            if ids is not None:
                ctx.set(dut.nb_req_id, ids[min(ctx.get(dut.nb_req_idx), len(ids) - 1)])
                ctx.set(dut.nb_rx_id, ids[min(ctx.get(dut.nb_rx_idx), len(ids) - 1)])
            ctx.set(dut.mem_req.ready, rnd.random() < 0.8)
            if ctx.get(dut.mem_req.valid) and ctx.get(dut.mem_req.ready):
                r = ctx.get(dut.mem_req.payload)
                reqs.append((r.core, r.page, r.offset))
                pending.append([cycle + 1, beats(r.core, r.page, r.offset)])
            give = bool(pending) and pending[0][0] <= cycle and rnd.random() < 0.7
            ctx.set(dut.mem_resp.valid, give)
            if give:
                ctx.set(dut.mem_resp.payload.data, pending[0][1][0])
            ctx.set(dut.frame.ready, rnd.random() < 0.7)
            ctx.set(dut.nb_code.ready, rnd.random() < 0.5)
            if ctx.get(dut.frame.valid) and ctx.get(dut.frame.ready):
                f = ctx.get(dut.frame.payload)
                frame.append((f.data, f.last, f.hot))
            if ctx.get(dut.nb_code.valid) and ctx.get(dut.nb_code.ready):
                codes.append((ctx.get(dut.nb_code.payload), ctx.get(dut.code)))
            if give and ctx.get(dut.mem_resp.ready):
                pending[0][1].pop(0)
                if not pending[0][1]:
                    pending.pop(0)
            await ctx.tick()
        assert not pending
        return reqs, frame, codes

    async def bench(ctx):
        for kind, v in reads:
            ctx.set(dut.start, 1)
            ctx.set(dut.kind, KIND_CODES[kind])
            ctx.set(dut.vertex, v)
            await ctx.tick()
            ctx.set(dut.start, 0)

            def until(reqs, codes):
                return not ctx.get(dut.busy)
            until.ids = None
            reqs, frame, _ = await serve(ctx, until)
            got.append(("read", kind, v, reqs, frame, ctx.get(dut.code), ctx.get(dut.cap),
                        ctx.get(dut.hot)))
        for ids in nb_lists:
            ctx.set(dut.nb_clear, 1)
            await ctx.tick()
            ctx.set(dut.nb_clear, 0)
            ctx.set(dut.nb_run, 1)
            ctx.set(dut.nb_count, len(ids))

            def until(reqs, codes, n=len(ids)):
                return len(codes) == n
            until.ids = ids
            reqs, _, codes = await serve(ctx, until)
            ctx.set(dut.nb_run, 0)
            got.append(("nb", ids, reqs, codes))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return dut, got


def test_reads_match_the_layout_and_the_image(image):
    lay = image.layout
    cfg = lay.cfg
    A, C, bb = cfg.nand.access_bytes, cfg.pq_code_bytes, 4
    rnd = random.Random(1)
    vs = [0, lay.hot - 1, lay.hot, lay.n - 1] + rnd.sample(range(lay.n), 6)
    reads = [(kind, v) for v in vs for kind in ("frame", "code", "raw")]
    # the neighbour code reads follow a normal frame (a code read leaves ``hot`` low)
    nb_lists = [rnd.sample(range(lay.n), n) for n in (1, 5, cfg.graph.R)]
    dut, got = _run(image, reads, nb_lists, seed=2)
    for rec in got:
        if rec[0] == "read":
            _, kind, v, reqs, frame, code, cap, hot = rec
            exp = {"frame": lay.frame_reads, "code": lay.code_reads, "raw": lay.raw_reads}
            exp_reads = exp[kind](v)
            assert reqs == [(r.core, r.page, r.offset) for r in exp_reads], (kind, v)
            if kind == "frame":
                is_hot = v < lay.hot
                assert hot == is_hot
                core, page, off = (exp_reads[0].core, exp_reads[0].page,
                                   exp_reads[0].offset)
                data = b"".join(_bytes(image, r.core, r.page, r.offset, A)
                                for r in exp_reads)
                start = 0 if is_hot else (lay.frame_address(v)[2] % A) // bb * bb
                served = data[start:]
                assert b"".join(d.to_bytes(bb, "little") for d, _, _ in frame) == served
                assert [last for _, last, _ in frame] == [0] * (len(frame) - 1) + [1]
                assert {h for _, _, h in frame} == {int(is_hot)}
            else:
                assert frame == []
            if kind == "code":
                core, page, off = lay.frame_address(v)
                assert code.to_bytes(C, "little") == \
                    _bytes(image, core, page, off + lay.code_offset, C), v
            if kind == "raw":
                core, page, off = lay.raw_address(v)
                nbytes = lay.vector_bytes
                assert (cap & ((1 << (8 * nbytes)) - 1)).to_bytes(nbytes, "little") == \
                    _bytes(image, core, page, off, nbytes), v
        else:
            _, ids, reqs, codes = rec
            assert reqs == [(r.core, r.page, r.offset) for v in ids for r in lay.code_reads(v)]
            assert [v for v, _ in codes] == ids
            for v, code in codes:
                core, page, off = lay.frame_address(v)
                assert code.to_bytes(C, "little") == \
                    _bytes(image, core, page, off + lay.code_offset, C), v


def test_request_timing(image):
    """The docstring's "Timing": a read's first request valid ``request_latency`` cycles
    after ``start``, then one per cycle while ``mem_req.ready`` is high; the first neighbour
    code request in the cycle after the first ``nb_run`` cycle, then one per cycle."""
    lay = image.layout
    cfg = lay.cfg
    dut = MemReader(cfg, lay, 32)
    v = lay.n - 1  # a normal vertex
    ids = [lay.n - 1, lay.hot, lay.n // 2]
    seen = {}

    async def bench(ctx):
        ctx.set(dut.mem_req.ready, 1)
        ctx.set(dut.start, 1)
        ctx.set(dut.kind, KIND_CODES["frame"])
        ctx.set(dut.vertex, v)
        valid = []
        for _ in range(MemReader.request_latency + len(lay.frame_reads(v)) + 2):
            valid.append(ctx.get(dut.mem_req.valid))
            await ctx.tick()
            ctx.set(dut.start, 0)
        seen["read"] = valid
        # finish the read: serve its beats
        ctx.set(dut.mem_resp.valid, 1)
        ctx.set(dut.frame.ready, 1)
        while ctx.get(dut.busy):
            await ctx.tick()
        ctx.set(dut.mem_resp.valid, 0)
        ctx.set(dut.nb_clear, 1)
        await ctx.tick()
        ctx.set(dut.nb_clear, 0)
        ctx.set(dut.nb_run, 1)
        ctx.set(dut.nb_count, len(ids))
        valid = []
        for _ in range(1 + len(ids) * lay.code_access_count + 2):
            ctx.set(dut.nb_req_id, ids[min(ctx.get(dut.nb_req_idx), len(ids) - 1)])
            valid.append(ctx.get(dut.mem_req.valid))
            await ctx.tick()
        seen["nb"] = valid

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    n = len(lay.frame_reads(v))
    assert seen["read"] == [0] * MemReader.request_latency + [1] * n + [0, 0]
    n = len(ids) * lay.code_access_count
    assert seen["nb"] == [0] + [1] * n + [0, 0]
