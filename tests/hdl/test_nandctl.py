"""NAND controller RTL: Amaranth simulation (hand-computed cycles and random traffic vs the
cycle model), then cocotb on Verilator (>= 10k random requests; the default preset's tR)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from proxima.config import preset
from proxima.golden.nandctl import CtlParams, NandControllerModel, NandCtlError, Request
from proxima.hdl.nandctl import NandController
from proxima.sim.tb.tb_nandctl import random_requests, store_image
from tests.hdl.simulate import refused, simulate

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

# tiny with a small page and 8 pages per core: the page field (3 bits) can name pages the
# 4-page store does not hold, 3 cores leave core 3 unused -- so bad requests exist
SMALL = preset("tiny").with_(nand={"page_bytes": 512, "pages_per_core": 8})
SMALL_KW = dict(cores=3, depth=2, tR_cycles=3, transfer_cycles=2, pages=4, beat_bits=256)


def _sim(dut, reqs, offer, ready, cycles, store=None, port_latency=1):
    """Drive ``dut`` with the driver rule of NandControllerModel.run; returns (accept cycles,
    beats as (cycle, tag, data, last), final error flag).  ``store``: word list served on
    the external store port with the documented one-cycle read latency (the controller
    adds its ``read_latency - 1`` registers); ``port_latency=2``: the port holds the data
    register too (a second register loaded with ``store_en``)."""
    accept, beats, err = [], [], []

    async def bench(ctx):
        nxt, offering = 0, False
        for t in range(cycles):
            if not offering and nxt < len(reqs) and offer(t):
                offering = True
            if offering:
                r = reqs[nxt]
                ctx.set(dut.req.payload, {"tag": r.tag, "core": r.core, "page": r.page,
                                          "offset": r.offset})
            ctx.set(dut.req.valid, offering)
            ctx.set(dut.resp.ready, ready(t))
            if offering and ctx.get(dut.req.ready):
                accept.append(t)
                nxt += 1
                offering = False
            if ready(t) and ctx.get(dut.resp.valid):
                o = dut.resp.payload
                beats.append((t, ctx.get(o.tag), ctx.get(o.data), bool(ctx.get(o.last))))
            await ctx.tick()
        err.append(bool(ctx.get(dut.error)))

    async def memory(ctx):  # synchronous read port with enable (+ a register)
        latch = 0
        async for clk_edge, rst, en, addr in ctx.tick().sample(dut.store_en, dut.store_addr):
            if en:
                if port_latency == 2:
                    ctx.set(dut.store_data, latch)
                    latch = store[addr]
                else:
                    ctx.set(dut.store_data, store[addr])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    if store is not None:
        sim.add_process(memory)
    sim.run()
    return accept, beats, err[0]


def _check_vs_model(cfg, kw, reqs, offer, ready, image, external=False, port_latency=1):
    params = CtlParams.from_cfg(cfg, **kw)
    exp = NandControllerModel(params, image, strict=False).run(reqs, offer, ready)
    if external:
        dut = NandController(cfg, external_store=True, store_port_latency=port_latency,
                             **kw)
        store = NandControllerModel(params, image).words
    else:
        dut = NandController(cfg, image=image, **kw)
        store = None
    acc, beats, err = _sim(dut, reqs, offer, ready, exp.cycles + 3, store, port_latency)
    assert acc == exp.accept
    assert beats == [tuple(b) for b in exp.beats]
    assert err == exp.error
    return exp, acc, beats


def _hand(kw_extra, reqs, cycles=60):
    cfg = SMALL
    kw = dict(SMALL_KW, tR_cycles=3, transfer_cycles=2, beat_bits=1024) | kw_extra
    params = CtlParams.from_cfg(cfg, **kw)
    image = store_image(params, 5)
    dut = NandController(cfg, image=image, **kw)
    acc, beats, err = _sim(dut, reqs, lambda t: True, lambda t: True, cycles)
    return params, NandControllerModel(params, image).words, acc, beats, err


def test_one_core_two_requests_hand_cycles():
    # service 5, 2 beats: req 0 accepted 0, popped 1, serves 2..6, done 7, beats 8, 9;
    # req 1 accepted 1, popped 6 (with the completion), serves 7..11, done 12, beats 13, 14
    reqs = [Request(1, 0, 2, 128), Request(2, 0, 0, 0)]
    p, words, acc, beats, err = _hand({"beat_bits": 512}, reqs)
    assert p.service == 5 and p.beats == 2
    assert acc == [0, 1]
    w0 = (2 * p.page_bytes + 128) // p.beat_bytes
    assert beats == [(8, 1, words[w0], False), (9, 1, words[w0 + 1], True),
                     (13, 2, words[0], False), (14, 2, words[1], True)]
    assert not err


def test_two_cores_in_parallel_hand_cycles():
    # core 0 done 7 -> beats 8, 9; core 1 accepted 1, done 8, waits for the engine: 10, 11
    reqs = [Request(3, 0, 0, 0), Request(4, 1, 1, 256)]
    p, words, acc, beats, err = _hand({"beat_bits": 512}, reqs)
    w1 = ((1 * p.pages + 1) * p.page_bytes + 256) // p.beat_bytes
    assert acc == [0, 1]
    assert beats == [(8, 3, words[0], False), (9, 3, words[1], True),
                     (10, 4, words[w1], False), (11, 4, words[w1 + 1], True)]


def test_two_cycle_store_read_hand_cycles():
    # the two requests of test_two_cores_in_parallel_hand_cycles with a two-cycle store
    # read: every beat one cycle later (done 7 -> beats 9, 10; core 1's at 11, 12)
    reqs = [Request(3, 0, 0, 0), Request(4, 1, 1, 256)]
    p, words, acc, beats, err = _hand({"beat_bits": 512, "read_latency": 2}, reqs)
    w1 = ((1 * p.pages + 1) * p.page_bytes + 256) // p.beat_bytes
    assert p.done_to_beat == 2 and acc == [0, 1]
    assert beats == [(9, 3, words[0], False), (10, 3, words[1], True),
                     (11, 4, words[w1], False), (12, 4, words[w1 + 1], True)]


def test_two_cycle_store_read_holds_under_back_pressure():
    # one access of 4 beats, read latency 2, resp.ready low in cycles 10 and 11: the first
    # beat (in the output register from 9) goes at 9, the second waits in the output
    # register through the stall (12), the pipeline holds the third behind it (13, 14)
    kw = dict(SMALL_KW, tR_cycles=3, transfer_cycles=2, beat_bits=256, read_latency=2)
    params = CtlParams.from_cfg(SMALL, **kw)
    image = store_image(params, 3)
    dut = NandController(SMALL, image=image, **kw)
    reqs = [Request(5, 1, 0, 0)]
    ready = lambda t: t not in (10, 11)  # noqa: E731
    acc, beats, err = _sim(dut, reqs, lambda t: True, ready, 30)
    words = NandControllerModel(params, image).words
    w = params.pages * params.page_bytes // params.beat_bytes
    assert [(b[0], b[2]) for b in beats] == [(9, words[w]), (12, words[w + 1]),
                                             (13, words[w + 2]), (14, words[w + 3])]
    exp = NandControllerModel(params, image).run(reqs, out_ready=ready)
    assert [tuple(b) for b in exp.beats] == beats


def test_fifo_full_back_pressure_hand_cycles():
    # depth 1: req 0 at 0; req 1 waits while the FIFO holds req 0 (popped in 1) -> 2;
    # req 2 waits until req 1 is popped with req 0's completion in 6 -> accepted in 7
    reqs = [Request(0, 2, 0, 0), Request(1, 2, 0, 0), Request(2, 2, 0, 0)]
    p, words, acc, beats, err = _hand({"depth": 1}, reqs)
    assert p.beats == 1
    assert acc == [0, 2, 7]
    w = (2 * p.pages * p.page_bytes) // p.beat_bytes
    assert beats == [(8, 0, words[w], True), (13, 1, words[w], True),
                     (18, 2, words[w], True)]


def test_bad_requests_set_error_and_get_no_response():
    reqs = [Request(0, 3, 0, 0), Request(1, 0, 5, 0), Request(2, 0, 0, 1),
            Request(3, 1, 0, 0)]
    p, words, acc, beats, err = _hand({}, reqs)
    assert acc == [0, 1, 2, 3] and err
    assert [b[1] for b in beats] == [3]


def _stalls(seed, p_offer: float, p_ready: float, n: int = 50_000):
    """Per-cycle request offers and response readies (``cycle -> bool``), seeded."""
    rnd = random.Random(seed)
    offer = [rnd.random() < p_offer for _ in range(n)]
    ready = [rnd.random() < p_ready for _ in range(n)]
    return offer.__getitem__, ready.__getitem__


@pytest.mark.parametrize("latency", [1, 2, 3])
def test_random_traffic_with_stalls_matches_model(latency):
    kw = SMALL_KW | {"read_latency": latency}
    params = CtlParams.from_cfg(SMALL, **kw)
    rng = np.random.default_rng(7)
    reqs = random_requests(params, 400, rng, p_bad=0.05)
    offer, ready = _stalls(7, 0.6, 0.5, n=100_000)
    exp, acc, beats = _check_vs_model(SMALL, kw, reqs, offer,
                                      ready, store_image(params, 11))
    assert exp.error and exp.completion_stalls > 0 and len(acc) == 400


@pytest.mark.parametrize("cfg_nand,kw", [
    ({"page_bytes": 512, "pages_per_core": 8},  # one core, one beat per access, one page
     dict(cores=1, depth=1, tR_cycles=1, transfer_cycles=0, pages=1, beat_bits=1024)),
    ({"page_bytes": 128, "pages_per_core": 4},  # one word per page (no word bits), 2 cores
     dict(cores=2, depth=3, tR_cycles=2, transfer_cycles=1, pages=4, beat_bits=1024)),
    ({"page_bytes": 256, "pages_per_core": 2},  # 5 cores (3 unused core codes), byte beats
     dict(cores=5, depth=2, tR_cycles=9, transfer_cycles=4, pages=2, beat_bits=8)),
    ({"page_bytes": 256, "pages_per_core": 2},  # service 1, 2 beats
     dict(cores=3, depth=2, tR_cycles=1, transfer_cycles=0, pages=2, beat_bits=512)),
    ({"page_bytes": 256, "pages_per_core": 2},  # service 1, one beat: a grant every cycle
     dict(cores=3, depth=2, tR_cycles=1, transfer_cycles=0, pages=2, beat_bits=1024)),
])
@pytest.mark.parametrize("latency", [1, 2])
def test_edge_shapes_match_model(cfg_nand, kw, latency):
    cfg = preset("tiny").with_(nand=cfg_nand, engine={"store_latency": latency})
    params = CtlParams.from_cfg(cfg, **kw)
    rng = np.random.default_rng(params.cores)
    reqs = random_requests(params, 60 if params.beats <= 8 else 10, rng, p_bad=0.1)
    offer, ready = _stalls(params.cores, 0.6, 0.7)
    _check_vs_model(cfg, kw, reqs, offer, ready,
                    store_image(params, 13))


def _refused(match, make):
    """``make()`` raises ``NandCtlError`` (:func:`tests.hdl.simulate.refused`)."""
    refused(NandCtlError, match, make)


@pytest.mark.parametrize("latency", [1, 2, 3])
def test_external_store_port_matches_model(latency):
    kw = dict(SMALL_KW, cores=2, depth=3, tR_cycles=6, beat_bits=128, read_latency=latency)
    params = CtlParams.from_cfg(SMALL, **kw)
    rng = np.random.default_rng(8)
    reqs = random_requests(params, 150, rng)
    offer, ready = _stalls(8, 0.5, 0.6)
    _check_vs_model(SMALL, kw, reqs, offer, ready,
                    store_image(params, 12), external=True)


def test_external_store_port_with_its_own_data_register_matches_model():
    """Read latency 3 with a port of latency 2 (the board's block RAM output register in
    place of the controller's data register): the model's cycles, beats and data."""
    kw = dict(SMALL_KW, cores=2, depth=3, tR_cycles=6, beat_bits=128, read_latency=3)
    params = CtlParams.from_cfg(SMALL, **kw)
    rng = np.random.default_rng(9)
    reqs = random_requests(params, 150, rng)
    offer, ready = _stalls(9, 0.5, 0.6)
    _check_vs_model(SMALL, kw, reqs, offer, ready,
                    store_image(params, 14), external=True, port_latency=2)
    # the same port behind a controller that still adds its own register: wrong data
    dut = NandController(SMALL, external_store=True, **kw)
    exp = NandControllerModel(params, store_image(params, 14), strict=False).run(
        reqs, offer, ready)
    _, beats, _ = _sim(dut, reqs, offer, ready, exp.cycles + 3,
                       NandControllerModel(params, store_image(params, 14)).words, 2)
    assert beats != [tuple(b) for b in exp.beats]
    _refused("store_port_latency", lambda: NandController(
        SMALL, external_store=True, store_port_latency=2, **(kw | {"read_latency": 2})))
    _refused("store_port_latency", lambda: NandController(SMALL, store_port_latency=2, **kw))


def test_registry_block_elaborates_default_with_external_store():
    from proxima.hdl.registry import build_block
    cfg = preset("default")
    dut = build_block("nandctl", cfg)
    Fragment.get(dut, None)
    p = dut.params
    assert dut.external_store and p.cores == cfg.nand.cores + cfg.nand.raw_vector_cores
    assert p.service == 56 and p.pages == cfg.nand.pages_per_core
    assert p.beats == cfg.nand.access_bytes * 8 // p.beat_bits


def test_bad_construction_raises():
    _refused("image", lambda: NandController(SMALL, external_store=True, image=b"\0",
                                             **SMALL_KW))
    _refused("store image has", lambda: NandController(SMALL, image=b"\0" * 7, **SMALL_KW))
    _refused("power of two", lambda: NandController(SMALL, **(SMALL_KW | {"pages": 3})))


# ---- cocotb on the generated Verilog ---------------------------------------------------
def _cocotb(cfg, kw, build_name, external=False, **tb):
    from proxima.sim.runner import run_cocotb
    params = CtlParams.from_cfg(cfg, **kw)
    image_seed = tb.pop("image_seed", 1)
    image = store_image(params, image_seed)
    if external:
        def factory():
            return NandController(cfg, external_store=True, **kw)
    else:
        def factory():
            return NandController(cfg, image=image, **kw)
    return run_cocotb(factory, "proxima_nandctl", "proxima.sim.tb.tb_nandctl", cfg=cfg,
                      build_name=build_name,
                      parameters={"ctl": kw, "image_seed": image_seed, "external": external,
                                  **tb})


@pytest.mark.rtl
def test_cocotb_nandctl_10k_random():
    res = _cocotb(SMALL, SMALL_KW, "nandctl_small", requests=10_000,
                  p_valid=0.7, p_ready=0.7, p_bad=0.02)
    assert res.tests == 1 and res.failed == 0


@pytest.mark.rtl
def test_cocotb_nandctl_default_tR():
    cfg = preset("default")
    kw = dict(cores=4, pages=2)  # the preset's tR, transfer, depth, beat width
    p = CtlParams.from_cfg(cfg, **kw)
    assert p.service == cfg.tR_cycles + 26 and p.depth == cfg.engine.queues
    assert p.read_latency == 3  # the preset's registered store read (inside the controller)
    # the store is the external port here, served by the testbench (no image in the Verilog)
    res = _cocotb(cfg, kw, "nandctl_default", external=True, requests=400,
                  p_valid=0.5, p_ready=0.8)
    assert res.tests == 1 and res.failed == 0


@pytest.mark.rtl
def test_cocotb_nandctl_detects_wrong_cycles():
    from proxima.sim.runner import CocotbFailure
    with pytest.raises(CocotbFailure, match="1 of 1 cocotb tests failed"):
        _cocotb(SMALL, SMALL_KW, "nandctl_small", requests=200, skew=1)


# ---- address mapper (events -> requests) -----------------------------------------------
def _events(lay, count, rng, tag_bits):
    ev = []
    for i in range(count):
        kind = ("frame", "code", "code", "raw")[int(rng.integers(0, 4))]
        if kind == "frame" and rng.random() < 0.4:
            v = int(rng.integers(0, max(1, lay.hot)))  # a hot frame (then codes are free)
        else:
            v = int(rng.integers(0, lay.n))
        ev.append((i % (1 << tag_bits), kind, v))
    return ev


def _run_mapper(dut, events, p_valid, p_ready, seed, bad_at=(), geom=None):
    """``geom``: a Layout whose registers are written to ``dut.geom`` before the events."""
    from proxima.hdl.nandctl import EVENT_CODES, geometry_init
    rnd = random.Random(seed)
    out, err, cyc = [], [], []

    async def bench(ctx):
        if geom is not None:
            ctx.set(dut.geom, geometry_init(geom))
            await ctx.tick()
        nxt, offering, idle, t = 0, False, 0, 0
        while idle < 20:
            if not offering and nxt < len(events) and rnd.random() < p_valid:
                offering = True
                tag, kind, v = events[nxt]
                ctx.set(dut.ev.payload, {"tag": tag, "kind": EVENT_CODES.get(kind, 3), "v": v})
            ctx.set(dut.ev.valid, offering)
            rdy = rnd.random() < p_ready
            ctx.set(dut.req.ready, rdy)
            if offering and ctx.get(dut.ev.ready):
                nxt += 1
                offering = False
            if rdy and ctx.get(dut.req.valid):
                o = dut.req.payload
                out.append(Request(ctx.get(o.tag), ctx.get(o.core), ctx.get(o.page),
                                   ctx.get(o.offset)))
                cyc.append(t)
            idle = idle + 1 if nxt == len(events) and not ctx.get(dut.req.valid) else 0
            await ctx.tick()
            t += 1
        err.append(bool(ctx.get(dut.error)))

    simulate(dut, bench)
    _run_mapper.cycles = cyc
    return out, err[0]


@pytest.mark.parametrize("name,changes,n,hot,W", [
    ("tiny", {}, 3000, 90, 12),
    # 16 B accesses, R = 16: 48-byte frame stride (85 frames per page: constant dividers),
    # three-access frames, multi-access hot frames
    ("tiny", {"nand": {"access_bytes": 16}, "graph": {"R": 16}}, 2000, 50, 16),
    ("default", {}, 20_000, 600, 14),
])
def test_address_mapper_matches_layout_reads(name, changes, n, hot, W):
    from proxima.golden.layout import Layout
    from proxima.golden.nandctl import requests_for_events
    from proxima.hdl.nandctl import NandAddressMapper
    cfg = preset(name).with_(**changes)
    lay = Layout(cfg, n, hot, W)
    params = CtlParams.from_cfg(cfg)
    dut = NandAddressMapper(lay, params)
    rng = np.random.default_rng(n)
    events = _events(lay, 300, rng, params.tag_bits)
    expected = requests_for_events(params, lay, events)
    got, err = _run_mapper(dut, events, 0.8, 0.7, n)
    assert got == expected and not err
    assert len(expected) > len(events) // 2
    if changes:
        assert lay.frames_per_page & (lay.frames_per_page - 1) and lay.frame_access_count > 1
        assert lay.hot_accesses > 1


@pytest.mark.parametrize("name,changes", [
    ("tiny", {"nand": {"access_bytes": 16}, "graph": {"R": 16}}),
    ("default", {}),
])
def test_address_mapper_serves_other_geometries_at_run_time(name, changes):
    """One mapper elaborated for the nominal (largest) image; the geometry registers of
    smaller images with other hot counts and slot widths (frames per page a power of two or
    not, by the reciprocal rule) give exactly golden's requests."""
    from proxima.golden.layout import Layout
    from proxima.golden.nandctl import requests_for_events
    from proxima.hdl.nandctl import NandAddressMapper
    cfg = preset(name).with_(**changes)
    params = CtlParams.from_cfg(cfg)
    dut = NandAddressMapper.from_config(cfg)
    rng = np.random.default_rng(7)
    fpps = set()
    for n, hot, W in ((1500, 40, 3), (777, 0, 11), (4000, 333, cfg.id_bits - 2)):
        lay = Layout(cfg, n, hot, W)
        fpps.add(lay.frames_per_page)
        events = _events(lay, 150, rng, params.tag_bits)
        got, err = _run_mapper(dut, events, 0.9, 0.8, n, geom=lay)
        assert got == requests_for_events(params, lay, events) and not err
    assert len(fpps) > 1


def test_address_mapper_full_rate_and_bad_events():
    from proxima.golden.layout import Layout
    from proxima.golden.nandctl import requests_for_events
    from proxima.hdl.nandctl import NandAddressMapper
    cfg = preset("tiny")
    lay = Layout(cfg, 500, 20, 10)
    params = CtlParams.from_cfg(cfg)
    events = [(1, "frame", 3), (2, "code", 7), (3, "raw", 499), (4, "frame", 100),
              (5, "code", 101), (6, "raw", 42)]
    expected = requests_for_events(params, lay, events)
    dut = NandAddressMapper(lay, params)
    got, err = _run_mapper(dut, events, 1.0, 1.0, 0)
    assert got == expected and not err
    # one access per cycle from cycle 1; the code event after hot frame 3 costs one cycle
    k = len(requests_for_events(params, lay, events[:1]))
    assert _run_mapper.cycles == list(range(1, k + 1)) + list(range(k + 2, len(got) + 2))
    # a vertex out of range is dropped and flagged; the next event is mapped as usual
    dut = NandAddressMapper(lay, params)
    got, err = _run_mapper(dut, [(0, "raw", 500), (1, "raw", 5)], 1.0, 1.0, 0)
    assert err and got == requests_for_events(params, lay, [(1, "raw", 5)])


def test_address_mapper_from_config_elaborates():
    from proxima.hdl.nandctl import NandAddressMapper
    for name in ("tiny", "default"):
        dut = NandAddressMapper.from_config(preset(name))
        Fragment.get(dut, None)
        assert dut.layout.n == preset(name).engine.max_vertices


def test_mapper_into_controller_end_to_end():
    """Events -> mapper -> controller -> beats: every event's bursts are the store bytes
    of its layout reads."""
    from amaranth.hdl import Elaboratable, Module
    from amaranth.lib import wiring
    from proxima.golden.layout import Layout
    from proxima.golden.nandctl import requests_for_events, store_words, word_address
    from proxima.hdl.nandctl import NandAddressMapper
    cfg = preset("tiny")
    lay = Layout(cfg, 400, 12, 9)
    pages = 1 << (max(lay.index_pages_per_core, lay.raw_pages_per_core) - 1).bit_length()
    params = CtlParams.from_cfg(cfg, depth=2, tR_cycles=4, transfer_cycles=3, pages=pages,
                                beat_bits=256, tag_bits=6)
    image = store_image(params, 21)
    kw = dict(depth=2, tR_cycles=4, transfer_cycles=3, pages=pages, beat_bits=256, tag_bits=6)

    class Top(Elaboratable):
        def __init__(self):
            self.mapper = NandAddressMapper(lay, params)
            self.ctl = NandController(cfg, image=image, **kw)

        def elaborate(self, platform):
            m = Module()
            m.submodules.mapper, m.submodules.ctl = self.mapper, self.ctl
            wiring.connect(m, self.mapper.req, self.ctl.req)
            return m

    top = Top()
    rng = np.random.default_rng(22)
    events = _events(lay, 60, rng, params.tag_bits)
    reqs = requests_for_events(params, lay, events)
    assert len(reqs) > len(events) // 2
    words = store_words(params, image)
    expected: dict[int, list] = {}
    for r in reqs:
        b = word_address(params, r)
        expected.setdefault(r.tag, []).append(words[b:b + params.beats])
    from proxima.hdl.nandctl import EVENT_CODES
    bursts: dict[int, list] = {}

    async def bench(ctx):
        ev, resp = top.mapper.ev, top.ctl.resp
        nxt, cur, t = 0, [], 0
        while sum(len(x) for x in bursts.values()) < len(reqs):
            assert t < 40 * len(reqs) + 200, "timeout"
            if nxt < len(events):
                tag, kind, v = events[nxt]
                ctx.set(ev.payload, {"tag": tag, "kind": EVENT_CODES[kind], "v": v})
            ctx.set(ev.valid, nxt < len(events))
            ctx.set(resp.ready, 1)
            if nxt < len(events) and ctx.get(ev.ready):
                nxt += 1
            if ctx.get(resp.valid):
                cur.append(ctx.get(resp.payload.data))
                if ctx.get(resp.payload.last):
                    bursts.setdefault(ctx.get(resp.payload.tag), []).append(cur)
                    cur = []
            await ctx.tick()
            t += 1

    simulate(top, bench)
    assert set(bursts) == set(expected)
    for tag in expected:  # one tag's accesses may finish out of order on different cores
        assert sorted(bursts[tag]) == sorted(expected[tag]), f"tag {tag}"


@pytest.mark.parametrize("name", ["tiny", "default"])
def test_frame_location_with_geometry_registers_is_exact(name):
    """``frame_location`` on the geometry registers (the reader's and the mapper's
    address, the offset as ``j stride - q (fpp stride)``) equals golden's
    ``Layout.frame_address`` to the byte (the requests only see access-aligned offsets)
    for several geometries and every vertex of each (up to 600 of them)."""
    from amaranth.hdl import Module, Signal

    from proxima.golden.layout import Layout
    from proxima.hdl.nandctl import frame_location, geometry_init, geometry_layout
    cfg = preset(name)
    m = Module()
    geom = Signal(geometry_layout(cfg))
    v = Signal(cfg.id_bits)
    core, page, off = (Signal(16), Signal(16), Signal(24))
    c, p, o = frame_location(cfg, geom, v)
    m.d.comb += [core.eq(c), page.eq(p), off.eq(o)]
    n_max = cfg.engine.max_vertices
    lays = [Layout(cfg, n, int(n * f), w) for n, f, w in (
        (n_max, cfg.layout.hot_fraction, cfg.id_bits), (n_max // 3 + 7, 0.1, 3),
        (n_max // 2 + 1, 0.0, cfg.id_bits - 1), (97, 0.05, 1))]
    assert len({lay.frames_per_page for lay in lays}) > 1

    async def bench(ctx):
        checked = 0
        for lay in lays:
            ctx.set(geom, geometry_init(lay))
            step = max(1, lay.n // 600)
            for x in range(0, lay.n, step):
                ctx.set(v, x)
                got = (ctx.get(core), ctx.get(page), ctx.get(off))
                assert got == lay.frame_address(x), (lay.n, x)
                checked += 1
        assert checked > 1000
    simulate(m, bench, clock=False)


@pytest.mark.parametrize("name", ["tiny", "default"])
def test_code_location_with_geometry_registers_is_exact(name):
    """``code_location`` (the reader's code-read address) on the geometry registers equals
    golden's ``Layout.code_address`` to the byte for every copy of 4, vertices below and
    above ``code_copy_count`` and several geometries (copied fractions 1, 0.3, 0)."""
    from amaranth.hdl import Module, Signal

    from proxima.golden.layout import Layout
    from proxima.hdl.nandctl import code_location, geometry_init, geometry_layout
    X = 4
    cfg = preset(name).with_(layout={"hot_copies": X})
    m = Module()
    geom = Signal(geometry_layout(cfg))
    v, copy = Signal(cfg.id_bits), Signal(2)
    core, page, off = (Signal(16), Signal(16), Signal(24))
    c, p, o = code_location(cfg, geom, v, copy)
    m.d.comb += [core.eq(c), page.eq(p), off.eq(o)]
    n_max = cfg.engine.max_vertices
    lays = [Layout(cfg.with_(layout={"code_copy_fraction": f}), n, int(n * h), w)
            for f, n, h, w in ((1.0, n_max, cfg.layout.hot_fraction, cfg.id_bits),
                               (0.3, n_max // 3 + 7, 0.1, 3), (0.0, 97, 0.05, 1))]
    assert [lay.code_copy_count > 0 for lay in lays] == [True, True, False]

    async def bench(ctx):
        checked = moved = 0
        for lay in lays:
            ctx.set(geom, geometry_init(lay))
            step = max(1, lay.n // 300)
            for x in list(range(0, lay.n, step)) + [lay.code_copy_count - 1, lay.n - 1]:
                x = max(0, x)
                ctx.set(v, x)
                for cc in range(X):
                    ctx.set(copy, cc)
                    got = (ctx.get(core), ctx.get(page), ctx.get(off))
                    assert got == lay.code_address(x, cc), (lay.n, x, cc)
                    moved += got != lay.code_address(x, 0)
                    checked += 1
        assert checked > 1000 and moved > 300
    simulate(m, bench, clock=False)
