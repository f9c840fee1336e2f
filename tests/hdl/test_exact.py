"""Exact-distance RTL (hdl/exact.py) against the golden twin (golden/distance.py)."""

from __future__ import annotations

import gc
import random
import warnings

import numpy as np
import pytest
from amaranth.hdl import Fragment, UnusedElaboratable

from proxima.config import preset
from proxima.golden.distance import exact_distances
from proxima.hdl.exact import ExactDistanceUnit
from tests.hdl.simulate import simulate


def _latency(cfg) -> int:
    """The unit's latency, from an instance that is dropped unelaborated (the cocotb run
    elaborates its own)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        dut = ExactDistanceUnit(cfg)
        latency = dut.latency
        del dut
        gc.collect()
    return latency


def beats_of(dut, vec) -> list[int]:
    """A vector (dim elements) as ``beats`` packed lane words (padding lanes random)."""
    L, eb = dut.lanes, dut.eb
    padded = list(int(x) for x in vec) + [0xA5] * (dut.beats * L - len(vec))
    return [sum(padded[b * L + p] << (p * eb) for p in range(L)) for b in range(dut.beats)]


def run_exact(cfg, *, queries, vectors_per_query, seed, p_valid=0.8, p_ready=0.7,
              extreme=False):
    dut = ExactDistanceUnit(cfg)
    rng = np.random.default_rng(seed)
    rnd = random.Random(seed)
    dim, idb = cfg.vec.dim, cfg.id_bits
    dw = dut.dist_layout["dist"].width
    stats = {"accept": [], "out": []}

    async def bench(ctx):
        for qi, q in enumerate(queries):
            vecs = rng.integers(0, 256, size=(vectors_per_query, dim))
            if extreme:
                vecs[0] = 255 - q  # not maximal in general, but full-range differences
                vecs[1] = np.where(q < 128, 255, 0)
                vecs[2] = q
            ids = rng.integers(0, 1 << idb, size=vectors_per_query)
            exp = exact_distances(q, vecs)
            # the query (random stalls)
            qb = beats_of(dut, q)
            i = 0
            while i < len(qb):
                v = rnd.random() < p_valid
                ctx.set(dut.query.valid, v)
                ctx.set(dut.query.payload.as_value(), qb[i])
                if v and ctx.get(dut.query.ready):
                    i += 1
                await ctx.tick()
            ctx.set(dut.query.valid, 0)
            # vectors in, distances out, concurrently
            beats = []
            for t in range(vectors_per_query):
                for b in beats_of(dut, vecs[t]):
                    beats.append(b | (int(ids[t]) << (dut.lanes * dut.eb)))
            got, sent, offering, cycle = [], 0, False, 0
            while len(got) < vectors_per_query:
                assert cycle < 20 * len(beats) + 100, "timeout"
                if not offering and sent < len(beats) and rnd.random() < p_valid:
                    offering = True
                    ctx.set(dut.vecs.payload.as_value(), beats[sent])
                ctx.set(dut.vecs.valid, offering)
                r = rnd.random() < p_ready
                ctx.set(dut.dists.ready, r)
                if offering and ctx.get(dut.vecs.ready):
                    if qi == 0:
                        stats["accept"].append(cycle)
                    sent += 1
                    offering = False
                if r and ctx.get(dut.dists.valid):
                    w = ctx.get(dut.dists.payload.as_value())
                    got.append((w & ((1 << dw) - 1), w >> dw))
                    if qi == 0:
                        stats["out"].append(cycle)
                await ctx.tick()
                cycle += 1
            ctx.set(dut.vecs.valid, 0)
            ctx.set(dut.dists.ready, 0)
            assert len(got) == vectors_per_query
            for t in range(vectors_per_query):
                assert got[t] == (int(exp[t]), int(ids[t])), \
                    f"query {qi} vector {t}: got (dist, id) {got[t]}, golden {int(exp[t]), int(ids[t])}"

    simulate(dut, bench)
    return dut, stats


def test_elaborates_with_config_widths():
    cfg = preset("default")
    dut = ExactDistanceUnit(cfg)
    Fragment.get(dut, None)
    assert dut.dist_layout["dist"].width == cfg.exact_dist_bits
    assert dut.beats * dut.lanes == cfg.vec.dim
    # A0, A1, squares (3 stages at 8 bits), tree (2 levels for 4 lanes), acc, FIFO (2)
    assert (dut.square_stages, dut.tree_stages) == (3, 2)
    assert dut.latency == 5 + dut.square_stages + dut.tree_stages == 10


def test_tiny_full_rate_latency():
    cfg = preset("tiny")
    rng = np.random.default_rng(1)
    dut, st = run_exact(cfg, queries=rng.integers(0, 256, size=(1, cfg.vec.dim)),
                        vectors_per_query=20, seed=1, p_valid=1.0, p_ready=1.0, extreme=True)
    acc = st["accept"]
    assert acc == list(range(acc[0], acc[0] + 20 * dut.beats)), "one beat per cycle"
    lasts = acc[dut.beats - 1::dut.beats]
    assert st["out"] == [c + dut.latency for c in lasts]


@pytest.mark.parametrize("name,seed", [("tiny", 2), ("default", 3)])
def test_random_stalls_and_query_reload(name, seed):
    cfg = preset(name)
    rng = np.random.default_rng(seed)
    qs = rng.integers(0, 256, size=(3, cfg.vec.dim))
    qs[1] = 0
    qs[2] = 255
    run_exact(cfg, queries=qs, vectors_per_query=40, seed=seed, extreme=True)


def test_dim_not_a_multiple_of_lanes():
    cfg = preset("tiny").with_(engine={"exact_lanes": 3})  # 16 = 5 * 3 + 1
    rng = np.random.default_rng(4)
    dut, _ = run_exact(cfg, queries=rng.integers(0, 256, size=(2, cfg.vec.dim)),
                       vectors_per_query=40, seed=4)
    assert dut.beats == 6


def test_single_lane_paper_style():
    cfg = preset("tiny").with_(engine={"exact_lanes": 1})
    rng = np.random.default_rng(8)
    run_exact(cfg, queries=rng.integers(0, 256, size=(1, cfg.vec.dim)),
              vectors_per_query=15, seed=8, extreme=True)


# ---- cocotb on the generated Verilog (Verilator) ----------------------------------------
@pytest.mark.rtl
@pytest.mark.parametrize("name,overrides,vectors", [
    ("tiny", {}, 2500),                                # 10k vectors (80k beats)
    ("default", {}, 400),                              # 1.6k vectors = 51k beats of 4 lanes
    ("tiny", {"engine": {"exact_lanes": 3}}, 2500),    # dim 16 = 5 * 3 + 1: padded last beat
])
def test_cocotb_exact_10k_random(name, overrides, vectors):
    from proxima.sim.runner import run_cocotb
    cfg = preset(name).with_(**overrides) if overrides else preset(name)
    lanes = cfg.engine.exact_lanes
    assert 4 * vectors * -(-cfg.vec.dim // lanes) >= 10_000
    res = run_cocotb(lambda: ExactDistanceUnit(cfg), "proxima_exact", "proxima.sim.tb.tb_exact",
                     cfg=cfg, build_name=f"exact_{name}_l{lanes}",
                     parameters={"queries": 4, "vectors": vectors,
                                 "latency": _latency(cfg)})
    assert res.tests == 2 and res.failed == 0


@pytest.mark.rtl
def test_cocotb_exact_detects_a_wrong_expectation():
    from proxima.sim.runner import CocotbFailure, run_cocotb
    cfg = preset("tiny")
    with pytest.raises(CocotbFailure, match="vector 42"):
        run_cocotb(lambda: ExactDistanceUnit(cfg), "proxima_exact", "proxima.sim.tb.tb_exact",
                   cfg=cfg, build_name=f"exact_tiny_l{cfg.engine.exact_lanes}",
                   testcase="random_vectors_with_stalls",
                   parameters={"queries": 1, "vectors": 100, "flip_expected": 42,
                               "latency": _latency(cfg)})


def test_one_beat_per_vector_slow_consumer_credits():
    """lanes = dim (one beat per vector, a vector per cycle) and a consumer that is ready
    one cycle in five: the output FIFO fills, the credits stop the input, nothing is lost."""
    cfg = preset("tiny").with_(engine={"exact_lanes": 16})
    rng = np.random.default_rng(10)
    dut, _ = run_exact(cfg, queries=rng.integers(0, 256, size=(2, cfg.vec.dim)),
                       vectors_per_query=60, seed=10, p_valid=1.0, p_ready=0.2)
    assert dut.beats == 1 and dut.fifo_depth == dut.latency + 2
