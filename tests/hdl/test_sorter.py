"""Bitonic sorter: golden network, Amaranth simulation, cocotb on Verilator."""

from __future__ import annotations

import gc
import itertools
import random
import re
import warnings

import numpy as np
import pytest
from amaranth.hdl import Fragment, UnusedElaboratable, Value

from proxima.config import preset, sorter_pipeline_latency
from proxima.golden.sorter import (
    SorterError, bitonic_network, make_keys, network_depth, pad_key, pad_vector, sort_keys,
    split_keys,
)
from proxima.hdl.sorter import BitonicSorter
from tests.hdl.synth import drivers_and_loads, synth_ecp5
from tests.hdl.simulate import simulate


# ---- golden model --------------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 4, 8, 16, 32, 64, 128, 256])
def test_network_shape(n):
    p = n.bit_length() - 1
    net = bitonic_network(n)
    assert len(net) == network_depth(n) == p * (p + 1) // 2
    for stage in net:
        slots = [s for (i, j, _) in stage for s in (i, j)]
        assert sorted(slots) == list(range(n)), "each slot exactly once per stage"
        assert all(i < j for (i, j, _) in stage)


@pytest.mark.parametrize("n", [2, 4, 8, 16])
def test_network_sorts_every_zero_one_input(n):
    # 0-1 principle: a comparator network that sorts all 0/1 inputs sorts everything
    rows = np.array(list(itertools.product([0, 1], repeat=n)), dtype=np.uint64)
    assert (sort_keys(rows) == np.sort(rows, axis=1)).all()


@pytest.mark.parametrize("n", [32, 64, 256])
def test_network_sorts_random_keys(n):
    rng = np.random.default_rng(n)
    rows = rng.integers(0, 1 << 48, size=(200, n), dtype=np.uint64)
    rows[:, : n // 4] = rows[:, :1]  # duplicates
    assert (sort_keys(rows, 48) == np.sort(rows, axis=1)).all()


def test_keys_order_by_distance_then_id_and_padding_last():
    cfg = preset("tiny")
    dist = np.array([5, 3, 5, 0, 3, 5], dtype=np.uint64)
    ids = np.array([9, 7, 2, 4, 1, 0], dtype=np.uint64)
    keys = pad_vector(cfg, make_keys(cfg, dist, ids), 8)
    out = sort_keys(keys, cfg.sort_key_bits)
    d, i = split_keys(cfg, out[:6])
    assert list(zip(d.tolist(), i.tolist())) == [(0, 4), (3, 1), (3, 7), (5, 0), (5, 2), (5, 9)]
    assert (out[6:] == pad_key(cfg)).all()


def test_bad_inputs_raise():
    cfg = preset("tiny")
    with pytest.raises(SorterError, match="power of two"):
        bitonic_network(12)
    with pytest.raises(SorterError, match="power of two"):
        sort_keys(np.zeros(6, dtype=np.uint64))
    with pytest.raises(SorterError, match="non-negative"):
        sort_keys(np.array([1, -1]))
    with pytest.raises(SorterError, match="integer"):
        sort_keys(np.array([1.0, 2.0]))
    with pytest.raises(SorterError, match="does not fit"):
        sort_keys(np.array([1, 1 << 20]), key_bits=20)
    with pytest.raises(SorterError, match="padding"):
        make_keys(cfg, [(1 << cfg.pq_dist_bits) - 1], [(1 << cfg.id_bits) - 1])
    with pytest.raises(SorterError, match="ids must be in"):
        make_keys(cfg, [1], [1 << cfg.id_bits])
    with pytest.raises(SorterError, match="do not fit"):
        pad_vector(cfg, np.arange(17, dtype=np.uint64), 16)
    # the refused sorters are never elaborated: collect them here, not in a later test
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(SorterError):
            BitonicSorter(cfg, n=24)
        with pytest.raises(SorterError, match="stages_per_reg"):
            BitonicSorter(cfg, stages_per_reg=0)
        with pytest.raises(SorterError, match="enable_keys"):
            BitonicSorter(cfg, enable_keys=0)
        with pytest.raises(SorterError, match="read_keys"):
            BitonicSorter(cfg, read_keys=0)
        gc.collect()


# ---- Amaranth simulation -------------------------------------------------------------
def _pack(row, w):
    return sum(int(k) << (i * w) for i, k in enumerate(row))


def _unpack(v, n, w):
    return [(v >> (i * w)) & ((1 << w) - 1) for i in range(n)]


def _amaranth_run(cfg, n, count, p_valid, p_ready, seed, **options):
    dut = BitonicSorter(cfg, n=n, **options)
    n, w = dut.n, cfg.sort_key_bits
    rng = np.random.default_rng(seed)
    dist = rng.integers(0, 6, size=(count, n), dtype=np.uint64)
    ids = rng.integers(0, 1 << cfg.id_bits, size=(count, n), dtype=np.uint64)
    vectors = (dist << np.uint64(cfg.id_bits)) | ids
    vectors[rng.random((count, n)) < 0.15] = np.uint64(pad_key(cfg))
    # keys equal in one chunk and not the other exercise the chunk combination
    vectors[0] = np.uint64(pad_key(cfg))
    if count > 1:
        vectors[1] = np.arange(n, dtype=np.uint64)[::-1] << np.uint64(w // 2)
    if count > 2:
        vectors[2] = (np.arange(n, dtype=np.uint64) % 3) << np.uint64(w // 2) | \
            np.arange(n, dtype=np.uint64)[::-1]
    expected = sort_keys(vectors, w)
    rnd = random.Random(seed)
    got, events = [], {}

    async def bench(ctx):
        ipay, opay = Value.cast(dut.i.payload), Value.cast(dut.o.payload)
        sent, offering, cycle = 0, False, 0
        while len(got) < count:
            assert cycle < 20 * count + 100, "timeout"
            if not offering and sent < count and rnd.random() < p_valid:
                offering = True
                ctx.set(ipay, _pack(vectors[sent], w))
            ctx.set(dut.i.valid, offering)
            o_ready = rnd.random() < p_ready
            ctx.set(dut.o.ready, o_ready)
            if offering and ctx.get(dut.i.ready):
                events.setdefault("first_in", cycle)
                events["last_in"] = cycle
                sent += 1
                offering = False
            if o_ready and ctx.get(dut.o.valid):
                events.setdefault("first_out", cycle)
                events["last_out"] = cycle
                got.append(_unpack(ctx.get(opay), n, w))
            await ctx.tick()
            cycle += 1

    simulate(dut, bench)
    for t in range(count):
        assert got[t] == [int(x) for x in expected[t]], f"vector {t} mis-sorted"
    return dut, events


def test_amaranth_default_preset_full_rate_latency():
    cfg = preset("default")
    n = cfg.engine.sorter_n
    dut, ev = _amaranth_run(cfg, None, 40, 1.0, 1.0, seed=1)
    assert dut.n == n and dut.depth == network_depth(n)
    groups = -(-network_depth(n) // cfg.engine.sorter_stages_per_reg)
    assert dut.latency == 2 * groups + 1 == cfg.sorter_latency
    assert ev["first_in"] == 0 and ev["first_out"] == dut.latency
    # one vector per cycle in and out while the consumer is ready
    assert ev["last_in"] == 39 and ev["last_out"] == 39 + dut.latency


def test_amaranth_default_preset_random_stalls():
    _amaranth_run(preset("default"), None, 120, 0.6, 0.5, seed=2)


def test_amaranth_paper_preset_256_inputs():
    """The largest sorter of the issue's range (N = 256, the paper preset's key width) sorts
    with random stalls; latency 2 * 36 + 1."""
    cfg = preset("paper")
    assert cfg.engine.sorter_n == 256
    dut, _ = _amaranth_run(cfg, None, 6, 0.8, 0.6, seed=5)
    assert dut.latency == cfg.sorter_latency == 73


# (options, latency of the 10-stage N = 16 network)
VARIANTS = [
    (dict(), 21),
    (dict(stages_per_reg=3), 9),
    (dict(stages_per_reg=4), 7),
    (dict(enable_keys=1), 21),
    (dict(enable_keys=5), 21),
    (dict(enable_keys=16), 21),
    (dict(read_keys=1), 21),
    (dict(read_keys=3, enable_keys=4), 21),
]


def test_amaranth_skid_output_stage_under_heavy_stalls():
    """skid: the pipeline enable is a register, so one vector leaves the pipeline after the
    consumer stops; it must be kept (side register) and order kept, whatever the stalls."""
    cfg = preset("tiny")
    for seed, (pv, pr) in enumerate([(1.0, 0.2), (1.0, 0.5), (0.5, 0.9), (1.0, 0.8)]):
        _amaranth_run(cfg, 8, 150, pv, pr, seed=100 + seed)
        _amaranth_run(cfg, 8, 150, pv, pr, seed=200 + seed, enable_keys=3, read_keys=3)


def test_stages_per_reg_comes_from_the_configuration():
    """Without the option the sorter groups ``engine.sorter_stages_per_reg`` stages, the
    figure behind ``cfg.sorter_latency``; the option still overrides it."""
    cfg = preset("tiny").with_(engine={"sorter_stages_per_reg": 2})
    full, ev = _amaranth_run(cfg, 16, 12, 1.0, 1.0, seed=9)
    assert full.stages_per_reg == 2 and full.latency == cfg.sorter_latency == 11
    assert ev["first_out"] == 11 and ev["last_out"] == 11 + 11
    with warnings.catch_warnings():  # only its latency is read: never elaborated
        warnings.simplefilter("ignore", UnusedElaboratable)
        one = BitonicSorter(cfg, stages_per_reg=1)
        assert one.latency == 21
        del one
        gc.collect()


@pytest.mark.parametrize("options,latency", VARIANTS, ids=[str(v[0]) for v in VARIANTS])
def test_amaranth_structures(options, latency):
    cfg = preset("tiny")
    assert cfg.engine.sorter_n == 16
    dut, _ = _amaranth_run(cfg, 16, 80, 0.7, 0.6, seed=len(str(options)), **options)
    assert dut.latency == latency == sorter_pipeline_latency(dut.depth, dut.stages_per_reg)
    full, ev = _amaranth_run(cfg, 16, 12, 1.0, 1.0, seed=9, **options)
    # measured: the first vector comes out `latency` cycles after it went in, then one per
    # cycle
    assert ev["first_in"] == 0 and ev["first_out"] == full.latency
    assert ev["last_in"] == 11 and ev["last_out"] == 11 + full.latency


@pytest.mark.rtl
@pytest.mark.parametrize("stages", [1, 2])
def test_synthesis_keeps_swap_copies_and_bare_carry_chains(tmp_path, stages):
    """yosys synth_ecp5 of an N = 4 sorter: both copies of every registered swap decision
    (the first stage's of each register group) survive as their own flip-flops (not merged
    by opt_merge), each drives the multiplexers of half the key bits of both outputs, and
    each such 40-bit comparison is one bare carry chain whose carry-out is a copy's D input
    (no LUT behind the chain); every comparison of the network is a carry chain."""
    cfg = preset("default")
    n, w = 4, cfg.sort_key_bits
    dut = BitonicSorter(cfg, n=n, stages_per_reg=stages)
    cells, net = synth_ecp5(tmp_path, dut)
    ces = -(-dut.depth // stages) * n // 2  # registered decisions
    all_ces = dut.depth * n // 2
    driver, loads = drivers_and_loads(net)
    swap_q = [v["bits"][0] for name, v in net["netnames"].items()
              if re.fullmatch(r"l\d+_ce\d+_swap_n\d", name)]
    assert len(swap_q) == ces * dut.SWAP_COPIES
    assert all(len(loads[b]) == 2 * w // dut.SWAP_COPIES for b in swap_q)
    ffs = {c["connections"]["Q"][0]: c for c in net["cells"].values()
           if c["type"] == "TRELLIS_FF"}
    chains = 0
    for b in swap_q:
        d = driver[ffs[b]["connections"]["DI"][0]]
        assert d["type"] == "CCU2C", "a LUT between the comparator chain and its copy"
        chains += 1
    assert chains == ces * dut.SWAP_COPIES
    # the comparators' chains (w / 2 CCU2C each) are all but the few of the enable roots
    assert all_ces * (w // 2) <= cells["CCU2C"] < all_ces * (w // 2) + 4 * dut.roots


@pytest.mark.rtl
@pytest.mark.parametrize("enable_keys", [1, 3])
def test_synthesis_keeps_every_enable_copy(tmp_path, enable_keys):
    """skid: yosys synth_ecp5 of an N = 4 sorter keeps every root of the enable (each with its
    own occupancy and two decision registers) and every leaf copy (one per level and per
    ``enable_keys`` keys, plus ``i.ready``), and the output FIFO's write enables and read
    pointers per key group: no copy is merged into another."""
    cfg = preset("default")
    n, w = 4, cfg.sort_key_bits
    dut = BitonicSorter(cfg, n=n, enable_keys=enable_keys, stages_per_reg=1)
    cells, net = synth_ecp5(tmp_path, dut)
    ffs = cells["TRELLIS_FF"]
    ces, levels = dut.depth * n // 2, 2 * dut.depth
    G, D = -(-n // enable_keys), dut.FIFO_DEPTH
    R = dut.roots
    assert R * (R - 1) // 2 >= levels * G + 1 + G > (R - 1) * (R - 2) // 2
    # pipeline keys, swap copies, valid bits; FIFO entries; roots (2-bit occupancy and two
    # decision registers); leaves; per FIFO group D write enables; a 2-bit read pointer per
    # ``read_keys`` keys; the 2-bit write pointer
    assert ffs == (levels * n * w + ces * dut.SWAP_COPIES + levels + D * n * w
                   + 4 * R + levels * G + 1 + G * D + 2 * -(-n // dut.read_keys) + 2)
    qbits = {c["connections"]["Q"][0] for c in net["cells"].values()
             if c["type"] == "TRELLIS_FF"}
    kept = {nm for nm, v in net["netnames"].items()
            if re.fullmatch(r"l\d+_e\d+_en|ctl\d+_adv1?", nm) and v["bits"][0] in qbits}
    assert kept == ({f"l{lv}_e{g}_en" for lv in range(levels) for g in range(G)}
                    | {f"ctl{r}_adv" for r in range(R)} | {f"ctl{r}_adv1" for r in range(R)})


def test_rtl_elaborates_the_golden_network():
    dut = BitonicSorter(preset("tiny"))
    Fragment.get(dut, None)
    assert dut.network == bitonic_network(16) and dut.depth == network_depth(16)


# ---- cocotb on the generated Verilog ---------------------------------------------------
@pytest.mark.rtl
def test_cocotb_sorter_verilator():
    from proxima.sim.runner import run_cocotb
    cfg = preset("tiny")
    n = cfg.engine.sorter_n
    res = run_cocotb(lambda: BitonicSorter(cfg), "proxima_sorter", "proxima.sim.tb.tb_sorter",
                     cfg=cfg, build_name="sorter_tiny",
                     parameters={"n": n, "latency": cfg.sorter_latency,
                                 "transactions": 10_000})
    assert res.tests == 2 and res.failed == 0


@pytest.mark.rtl
def test_cocotb_runner_reports_failures():
    """A wrong expectation (latency off by one) must make run_cocotb raise."""
    from proxima.sim.runner import CocotbFailure, run_cocotb
    cfg = preset("tiny")
    n = cfg.engine.sorter_n
    with pytest.raises(CocotbFailure, match="1 of 1 cocotb tests failed"):
        run_cocotb(lambda: BitonicSorter(cfg), "proxima_sorter", "proxima.sim.tb.tb_sorter",
                   cfg=cfg, build_name="sorter_tiny", testcase="full_throughput_and_latency",
                   parameters={"n": n, "latency": cfg.sorter_latency + 1})
