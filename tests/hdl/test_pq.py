"""PQ unit RTL (hdl/pq.py) against the golden twin (golden/pq.py): ADT build and distances."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Fragment

from proxima.config import preset
from proxima.golden.pq import build_adt, pq_distances
from proxima.hdl.lib.vendor import write_dp16kd_model
from proxima.hdl.pq import PQError, PQUnit, pack_codebook
from tests.hdl.simulate import simulate

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


async def pump(ctx, src, beats, dst, n_out, p_valid, p_ready, rnd, *, max_cycles,
               on_cycle=None):
    """Send ``beats`` (already packed ints) on ``src`` while taking ``n_out`` beats from
    ``dst``, each side stalling at random.  Returns the output beats (ints)."""
    out, sent, offering, cycle = [], 0, False, 0
    while sent < len(beats) or len(out) < n_out:
        assert cycle < max_cycles, f"timeout: sent {sent}/{len(beats)}, got {len(out)}/{n_out}"
        if src is not None:
            if not offering and sent < len(beats) and rnd.random() < p_valid:
                offering = True
                ctx.set(src.payload.as_value() if hasattr(src.payload, "as_value")
                        else src.payload, beats[sent])
            ctx.set(src.valid, offering)
        r = dst is not None and len(out) < n_out and rnd.random() < p_ready
        if dst is not None:
            ctx.set(dst.ready, r)
        if on_cycle is not None:
            on_cycle(ctx, cycle)
        if offering and ctx.get(src.ready):
            sent += 1
            offering = False
        if r and ctx.get(dst.valid):
            p = dst.payload
            out.append(ctx.get(p.as_value() if hasattr(p, "as_value") else p))
        await ctx.tick()
        cycle += 1
    if src is not None:
        ctx.set(src.valid, 0)
    if dst is not None:
        ctx.set(dst.ready, 0)
    return out


def pack_codes(cfg, dut, codes, ids, used):
    """Pack code rows into P-lane beats (lane p = bits [p*lane_w, (p+1)*lane_w))."""
    lane_w = dut.code_lane.size
    beats = []
    P = dut.lanes
    for s in range(0, len(codes), P):
        v = 0
        for p in range(P):
            t = s + p
            if t >= len(codes):
                continue
            code = sum(int(c) << (8 * mm) for mm, c in enumerate(codes[t]))
            lane = int(used[t]) | (int(ids[t]) << 1) | (code << (1 + cfg.id_bits))
            v |= lane << (p * lane_w)
        beats.append(v)
    return beats


def unpack_dists(cfg, dut, beats, count):
    lane_w = dut.dist_lane.size
    out = []
    for v in beats:
        for p in range(dut.lanes):
            lane = (v >> (p * lane_w)) & ((1 << lane_w) - 1)
            out.append((lane & 1, (lane >> 1) & ((1 << cfg.id_bits) - 1),
                        lane >> (1 + cfg.id_bits)))
    return out[:count]


def unpack_adt(cfg, dut, beats):
    lay = dut.adt_layout
    mw, cw = lay["m"].width, lay["c"].width
    return [(v & ((1 << mw) - 1), (v >> mw) & ((1 << cw) - 1), v >> (mw + cw)) for v in beats]


def run_pq(cfg, *, queries, codebook, n_codes, seed, p_valid=0.8, p_ready=0.7,
           load_codebook=True, extreme=False, tree_levels=1, ram_regs=2):
    """Load the codebook (through cb_wr or at elaboration), then for each query: stream the
    query, compare every ADT word, stream codes, compare every distance."""
    dut = PQUnit(cfg, codebook=None if load_codebook else codebook, tree_levels=tree_levels,
                 ram_regs=ram_regs)
    rng = np.random.default_rng(seed)
    rnd = random.Random(seed)
    M, ksub, dim = cfg.pq.M, cfg.pq.ksub, cfg.vec.dim
    words = pack_codebook(cfg, codebook)
    addr_w = dut.cb_layout["addr"].width
    results = {"adt_cycles": []}

    async def bench(ctx):
        if load_codebook:
            beats = [a | (w << addr_w) for a, w in enumerate(words)]
            order = rng.permutation(len(beats))
            await pump(ctx, dut.cb_wr, [beats[i] for i in order], None, 0, p_valid, 0, rnd,
                       max_cycles=10 * len(beats) + 100)
        for qi, q in enumerate(queries):
            expected_adt = build_adt(cfg, q, codebook)
            # the query in, then the ADT words out (the build back-pressured at random)
            await pump(ctx, dut.query, [int(x) for x in q], None, 0, p_valid, 0, rnd,
                       max_cycles=10 * dim + 100)
            assert not ctx.get(dut.adt_valid), "adt_valid must drop while the ADT builds"
            t0 = [0]

            def count(ctx, cycle):
                t0[0] = cycle
            adt = await pump(ctx, None, [], dut.adt_out, M * ksub, 0, p_ready if qi else 1.0,
                             rnd, max_cycles=10 * M * ksub + 100, on_cycle=count)
            results["adt_cycles"].append(t0[0] + 1)
            got = unpack_adt(cfg, dut, adt)
            exp = [(mm, c, int(expected_adt[mm, c])) for mm in range(M) for c in range(ksub)]
            assert len(got) == len(exp) == M * ksub
            for t, (g, e) in enumerate(zip(got, exp)):
                assert g == e, f"query {qi}: ADT word {t}: got (m, c, value) {g}, golden {e}"
            for _ in range(3):
                await ctx.tick()
            assert ctx.get(dut.adt_valid)
            # codes in, distances out
            codes = rng.integers(0, ksub, size=(n_codes, M))
            if extreme:
                codes[: n_codes // 2] = np.argmax(expected_adt, axis=1)
            ids = rng.integers(0, 1 << cfg.id_bits, size=n_codes)
            used = rng.random(n_codes) < 0.9
            beats = pack_codes(cfg, dut, codes, ids, used)
            outs = await pump(ctx, dut.codes, beats, dut.dists, len(beats), p_valid, p_ready,
                              rnd, max_cycles=20 * len(beats) + 100)
            got = unpack_dists(cfg, dut, outs, n_codes)
            exp_d = pq_distances(expected_adt, codes)
            assert len(got) == n_codes
            for t in range(n_codes):
                e = (int(used[t]), int(ids[t]), int(exp_d[t]))
                g = got[t]
                assert g[:2] == e[:2], f"query {qi}: code {t}: lane fields {g[:2]} != {e[:2]}"
                if used[t]:
                    assert g[2] == e[2], f"query {qi}: code {t}: dist {g[2]} != golden {e[2]}"
            results.setdefault("dists", []).append(exp_d)
        # the credits must keep both output FIFOs from ever overflowing
        assert not ctx.get(dut.adt_fifo_overflow), "ADT output FIFO overflowed"
        assert not ctx.get(dut.dist_fifo_overflow), "distance output FIFO overflowed"
        assert not ctx.get(dut.credit_error), "a registered credit flag left its counter"

    simulate(dut, bench)
    return dut, results


def random_codebook(cfg, rng):
    return rng.integers(0, cfg.vec.elem_max + 1, size=(cfg.pq.M, cfg.pq.ksub, cfg.dsub),
                        dtype=np.int64).astype(np.uint8)


def test_tiny_codebook_via_write_port_two_queries_with_stalls():
    cfg = preset("tiny")
    rng = np.random.default_rng(5)
    book = random_codebook(cfg, rng)
    queries = rng.integers(0, 256, size=(2, cfg.vec.dim))
    queries[1, :] = 255 - queries[1, :]
    run_pq(cfg, queries=queries, codebook=book, n_codes=150, seed=5)


def test_default_codebook_at_elaboration_full_rate_build_time():
    cfg = preset("default")
    rng = np.random.default_rng(6)
    book = random_codebook(cfg, rng)
    q = rng.integers(0, 256, size=(1, cfg.vec.dim))
    dut, res = run_pq(cfg, queries=q, codebook=book, n_codes=64, seed=6, load_codebook=False,
                      p_valid=1.0, p_ready=1.0)
    # M*ksub entries at one per cycle plus the pipeline, without stalls
    assert res["adt_cycles"][0] == dut.build_latency == cfg.pq.M * 256 + dut.build_stages


@pytest.mark.parametrize("tree_levels,ram_regs", [(1, 3), (2, 0)])
def test_rounding_and_saturation_corner(tree_levels, ram_regs):
    """adt_bits = 4 and dsub = 1: (65025 + 2048) >> 12 = 16 > 15 saturates; extreme codes;
    one and two adder-tree levels per pipeline stage, three and no fabric register(s)
    after every block RAM's output register."""
    cfg = preset("tiny").with_(vec={"dim": 8}, pq={"M": 8, "adt_bits": 4})
    assert cfg.adt_shift == 12
    rng = np.random.default_rng(7)
    book = random_codebook(cfg, rng)
    book[:, :8] = 255
    book[:, 8:16] = 0
    q = np.zeros((2, cfg.vec.dim), dtype=np.int64)
    q[1] = 255
    adt = build_adt(cfg, q[0], book)
    assert adt.max() == cfg.adt_max and (adt_raw_sat := (adt == cfg.adt_max).sum()) >= 8
    assert adt_raw_sat < adt.size
    dut, _ = run_pq(cfg, queries=q, codebook=book, n_codes=60, seed=7, extreme=True,
                    tree_levels=tree_levels, ram_regs=ram_regs)
    # M = 8: three tree levels; address register, RAM + its output register, entry
    # registers, tree, FIFO (2)
    assert dut.latency == 3 + dut.ram_regs + -(-3 // tree_levels) + 2


def test_elaboration_and_bad_codebooks():
    cfg = preset("tiny")
    dut = PQUnit(cfg)
    Fragment.get(dut, None)
    assert dut.lanes == cfg.engine.pq_codes_per_cycle
    assert dut.dist_lane["dist"].width == cfg.pq_dist_bits
    with pytest.raises(PQError, match="tree_levels"):
        PQUnit(cfg, tree_levels=0)
    with pytest.raises(PQError, match="ram_regs"):
        PQUnit(cfg, ram_regs=-1)
    with pytest.raises(PQError, match="bram"):
        PQUnit(cfg, bram="xilinx")
    with pytest.raises(PQError, match="shape"):
        PQUnit(cfg, codebook=np.zeros((2, 2, 2), dtype=np.uint8))
    with pytest.raises(PQError, match="integers"):
        pack_codebook(cfg, np.zeros((cfg.pq.M, 256, cfg.dsub), dtype=np.float32))
    with pytest.raises(PQError, match="0..255"):
        pack_codebook(cfg, np.full((cfg.pq.M, 256, cfg.dsub), 256, dtype=np.int64))


# ---- cocotb on the generated Verilog (Verilator) ----------------------------------------
def dp16kd_model() -> Path:
    """The behavioural DP16KD model (hdl/lib/vendor.py) in the simulation build root."""
    from proxima.sim.runner import REPO_ROOT
    root = Path(os.environ.get("PROXIMA_SIM_BUILD", REPO_ROOT / "build" / "sim"))
    return write_dp16kd_model(root / "models" / "dp16kd.v")


@pytest.mark.rtl
@pytest.mark.parametrize("name,queries,codes,bram", [
    ("tiny", 3, 3400, "generic"), ("default", 3, 3400, "ecp5")])
def test_cocotb_pq_10k_random(name, queries, codes, bram):
    """The same testbench on the generic RAMs and on the DP16KD instances (the netlist
    that is measured on the FPGA) with the behavioural DP16KD model."""
    from proxima.sim.runner import run_cocotb
    cfg = preset(name)
    assert queries * codes >= 10_000
    dut = PQUnit(cfg, bram=bram)
    extra = [dp16kd_model()] if bram == "ecp5" else []
    res = run_cocotb(lambda: PQUnit(cfg, bram=bram), "proxima_pq", "proxima.sim.tb.tb_pq",
                     cfg=cfg, build_name=f"pq_{name}_{bram}", extra_sources=extra,
                     parameters={"queries": queries, "codes": codes, "latency": dut.latency,
                                 "build_latency": dut.build_latency})
    assert res.tests == 2 and res.failed == 0


@pytest.mark.rtl
def test_cocotb_pq_detects_a_wrong_expectation():
    """One golden distance off by one on purpose: the comparison must fail the run."""
    from proxima.sim.runner import CocotbFailure, run_cocotb
    cfg = preset("tiny")
    with pytest.raises(CocotbFailure, match="code 123"):
        run_cocotb(lambda: PQUnit(cfg), "proxima_pq", "proxima.sim.tb.tb_pq", cfg=cfg,
                   build_name="pq_tiny_generic", testcase="random_queries_and_codes_with_stalls",
                   parameters={"queries": 1, "codes": 300, "flip_expected": 123})
