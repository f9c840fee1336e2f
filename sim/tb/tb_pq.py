"""cocotb testbench of :class:`proxima.hdl.pq.PQUnit` against the golden PQ arithmetic.

Parameters (``PROXIMA_TB_PARAMS``): ``queries`` (queries in the random test), ``codes``
(PQ codes per query; ``queries * codes >= 10k`` for sign-off), ``p_valid`` / ``p_ready``
(per-cycle probabilities of offering an input beat / accepting an output beat), ``p_hole``
(probability that a lane of a code beat is unused), ``flip_expected`` (index of a PQ
distance of the first query whose golden value is changed on purpose: the run must then
fail; -1 = off), ``latency`` and ``build_latency`` (expected cycle counts, see
``PQUnit``).

The codebook is random and loaded through ``cb_wr`` in a random order; each query is
streamed in; every ADT word (``m``, ``c``, value) on ``adt_out`` is compared with
:func:`proxima.golden.pq.build_adt` and every distance (with its id and lane flag) with
:func:`proxima.golden.pq.pq_distances`, by exact equality and with the counts checked.
Port formats are derived here from the configuration as documented in ``hdl/pq.py``.
The bench does not depend on the block-RAM implementation: it runs unchanged on
``PQUnit(bram="generic")`` and on ``PQUnit(bram="ecp5")`` (DP16KD instances, built with
the behavioural model of :func:`proxima.hdl.lib.vendor.dp16kd_model_verilog` as an extra
source), the netlist that is measured on the FPGA.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np

from proxima.golden.pq import build_adt, pq_distances
from proxima.sim.runner import tb_config, tb_params
from proxima.sim.tb import bench


def _w(n: int) -> int:
    return max(1, (n - 1).bit_length())


class Fmt:
    """Bit layout of the PQ unit's ports (see the module docstring of ``hdl/pq.py``)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.M, self.ksub, self.dsub = cfg.pq.M, cfg.pq.ksub, cfg.dsub
        self.P = cfg.engine.pq_codes_per_cycle
        self.eb, self.cb = cfg.vec.elem_bits, cfg.pq.code_bits
        self.idb = cfg.id_bits
        self.addr_w = _w(self.M * self.ksub)
        self.m_w = _w(self.M)
        self.code_lane = 1 + self.idb + self.M * self.cb
        self.dist_lane = 1 + self.idb + cfg.pq_dist_bits

    def cb_beat(self, addr, centroid) -> int:
        w = sum(int(v) << (d * self.eb) for d, v in enumerate(centroid))
        return addr | (w << self.addr_w)

    def adt_word(self, v: int):
        mw, cw = self.m_w, self.cb
        return (v & ((1 << mw) - 1), (v >> mw) & ((1 << cw) - 1), v >> (mw + cw))

    def code_beats(self, codes, ids, used) -> list[int]:
        beats = []
        for s in range(0, len(codes), self.P):
            v = 0
            for p in range(self.P):
                t = s + p
                if t >= len(codes):
                    continue
                code = sum(int(c) << (self.cb * mm) for mm, c in enumerate(codes[t]))
                lane = int(used[t]) | (int(ids[t]) << 1) | (code << (1 + self.idb))
                v |= lane << (p * self.code_lane)
            beats.append(v)
        return beats

    def dist_lanes(self, beat: int):
        out = []
        for p in range(self.P):
            lane = (beat >> (p * self.dist_lane)) & ((1 << self.dist_lane) - 1)
            out.append((lane & 1, (lane >> 1) & ((1 << self.idb) - 1), lane >> (1 + self.idb)))
        return out


async def reset(dut):
    await bench.reset(dut, inputs=["cb_wr", "query", "codes"], outputs=["adt_out", "dists"])


def compare_adt(f: Fmt, words, adt, qi):
    """Every ADT word ``(m, c, value)`` vs the golden ADT, in order."""
    exp = [(mm, c, int(adt[mm, c])) for mm in range(f.M) for c in range(f.ksub)]
    bench.compare([f.adt_word(w) for w in words], exp, f"query {qi}: ADT word")


def compare_dists(f: Fmt, beats, exp_d, ids, used, qi):
    """Every lane ``(used, id, dist)`` vs golden (an unused lane's distance is not
    compared)."""
    n = len(exp_d)
    if len(beats) != -(-n // f.P):
        raise AssertionError(f"query {qi}: {len(beats)} distance beats for {n} codes")
    lanes = [x for b in beats for x in f.dist_lanes(b)][:n]
    got = [(u, i, d if u else 0) for u, i, d in lanes]
    exp = [(int(u), int(i), int(d) if u else 0) for u, i, d in zip(used, ids, exp_d)]
    bench.compare(got, exp, f"query {qi}: code")


async def load_codebook(dut, f, book, p_valid, rnd, rng):
    beats = [f.cb_beat(m * f.ksub + c, book[m, c]) for m in range(f.M) for c in range(f.ksub)]
    order = rng.permutation(len(beats))
    await bench.pump(dut, "cb_wr", [beats[i] for i in order], None, 0, p_valid, 0, rnd,
               10 * len(beats) + 100)


async def load_query(dut, f, q, p_valid, p_ready, rnd):
    """Stream query ``q`` in and take its ADT words; returns (words, their cycles)."""
    await bench.pump(dut, "query", [int(x) for x in q], None, 0, p_valid, 0, rnd,
                     10 * len(q) + 100)
    words, _, out_c = await bench.pump(dut, None, [], "adt_out", f.M * f.ksub, 0, p_ready, rnd,
                                       10 * f.M * f.ksub + 100)
    return words, out_c


async def distances(dut, f, beats, p_valid, p_ready, rnd, max_cycles):
    """Stream code ``beats`` in and take as many distance beats; returns (beats, accept
    cycles, output cycles)."""
    return await bench.pump(dut, "codes", beats, "dists", len(beats), p_valid, p_ready, rnd,
                            max_cycles)


@cocotb.test()
async def random_queries_and_codes_with_stalls(dut):
    """Random codebook and queries; every ADT word and >= 10k PQ distances vs golden."""
    cfg, p, rnd, rng = bench.setup()
    n_q, n_codes = int(p.get("queries", 3)), int(p.get("codes", 4000))
    p_hole, flip = float(p.get("p_hole", 0.1)), int(p.get("flip_expected", -1))
    pv, pr = bench.stall_probabilities(p)
    f = Fmt(cfg)
    book = rng.integers(0, cfg.vec.elem_max + 1, size=(f.M, f.ksub, f.dsub))
    book[:, 0] = 0
    book[:, 1] = cfg.vec.elem_max
    await reset(dut)
    await load_codebook(dut, f, book, pv, rnd, rng)
    total = 0
    for qi in range(n_q):
        q = bench.random_query(cfg, rng, qi)
        adt = build_adt(cfg, q, book)
        words, _ = await load_query(dut, f, q, pv, pr, rnd)
        compare_adt(f, words, adt, qi)
        codes = rng.integers(0, f.ksub, size=(n_codes, f.M))
        codes[: n_codes // 8] = np.argmax(adt, axis=1)  # the largest entries
        ids = rng.integers(0, 1 << f.idb, size=n_codes)
        used = rng.random(n_codes) >= p_hole
        exp_d = pq_distances(adt, codes)
        if qi == 0 and 0 <= flip < n_codes:
            exp_d[flip] += 1
            used[flip] = True
        beats = f.code_beats(codes, ids, used)
        out, _, _ = await distances(dut, f, beats, pv, pr, rnd, 20 * len(beats) + 100)
        compare_dists(f, out, exp_d, ids, used, qi)
        total += n_codes
    dut._log.info("%d queries: %d ADT words and %d PQ distances matched the golden model",
                  n_q, n_q * f.M * f.ksub, total)


@cocotb.test()
async def full_rate_build_and_distances(dut):
    """No stalls: the last ADT word leaves ``build_latency`` cycles after the query, codes
    go in at P per cycle and the distances come out ``latency`` cycles later, one beat per
    cycle (both expectations are parameters)."""
    cfg = tb_config()
    f = Fmt(cfg)
    rnd = random.Random(2)
    rng = np.random.default_rng(cocotb.RANDOM_SEED + 7)
    book = rng.integers(0, cfg.vec.elem_max + 1, size=(f.M, f.ksub, f.dsub))
    await reset(dut)
    await load_codebook(dut, f, book, 1.0, rnd, rng)
    q = rng.integers(0, cfg.vec.elem_max + 1, size=cfg.vec.dim)
    adt = build_adt(cfg, q, book)
    words, out_c = await load_query(dut, f, q, 1.0, 1.0, rnd)
    compare_adt(f, words, adt, 0)
    assert out_c == list(range(out_c[0], out_c[0] + f.M * f.ksub)), "ADT: one entry per cycle"
    build_latency = int(tb_params()["build_latency"])
    assert out_c[-1] + 1 == build_latency, \
        f"ADT build took {out_c[-1] + 1} cycles, expected {build_latency}"
    n = 64 * f.P
    codes = rng.integers(0, f.ksub, size=(n, f.M))
    ids = rng.integers(0, 1 << f.idb, size=n)
    used = np.ones(n, dtype=bool)
    beats = f.code_beats(codes, ids, used)
    out, acc_c, out_c = await distances(dut, f, beats, 1.0, 1.0, rnd, len(beats) + 100)
    compare_dists(f, out, pq_distances(adt, codes), ids, used, 0)
    assert acc_c == list(range(acc_c[0], acc_c[0] + len(beats))), "not one beat per cycle"
    lat = int(tb_params()["latency"])
    assert out_c == [c + lat for c in acc_c], f"distance latency is not {lat} cycles"
