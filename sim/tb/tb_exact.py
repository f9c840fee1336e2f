"""cocotb testbench of :class:`proxima.hdl.exact.ExactDistanceUnit` against the golden model.

Parameters (``PROXIMA_TB_PARAMS``): ``queries`` and ``vectors`` (vectors per query;
``queries * vectors >= 10k`` for sign-off), ``latency`` (expected cycles from a vector's
last beat to its distance), ``p_valid`` / ``p_ready`` (per-cycle
probabilities of offering an input beat / accepting an output), ``flip_expected`` (index of
a distance of the first query whose golden value is changed on purpose: the run must then
fail; -1 = off).

Each query is loaded (random stalls), then random vectors (plus extreme ones: all-equal,
all-max differences) stream through; every (distance, id) is compared with
:func:`proxima.golden.distance.exact_distances` by exact equality, with the count checked.
Padding lanes of a last beat (``dim`` not a multiple of the lanes) carry garbage on purpose.
Port formats are derived from the configuration as documented in ``hdl/exact.py``.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np

from proxima.golden.distance import exact_distances
from proxima.sim.runner import tb_config, tb_params
from proxima.sim.tb import bench


class Fmt:
    def __init__(self, cfg):
        self.L = cfg.engine.exact_lanes
        self.eb = cfg.vec.elem_bits
        self.dim = cfg.vec.dim
        self.beats = -(-self.dim // self.L)
        self.idb = cfg.id_bits
        self.dw = cfg.exact_dist_bits

    def dist_id(self, word: int) -> tuple[int, int]:
        """``(dist, id)`` of a ``dists`` beat."""
        return word & ((1 << self.dw) - 1), word >> self.dw

    def id_beats(self, vecs, ids, rng) -> list[int]:
        """The ``vecs`` beats of ``vecs`` (one row per vector) tagged with ``ids``."""
        return [b | (int(i) << (self.L * self.eb))
                for v, i in zip(vecs, ids) for b in self.vec_beats(v, rng)]

    def vec_beats(self, v, rng) -> list[int]:
        pad = [int(x) for x in rng.integers(0, 1 << self.eb, size=self.beats * self.L - self.dim)]
        e = [int(x) for x in v] + pad
        return [sum(e[b * self.L + p] << (p * self.eb) for p in range(self.L))
                for b in range(self.beats)]


async def reset(dut):
    await bench.reset(dut, inputs=["query", "vecs"], outputs=["dists"])


def make_vectors(cfg, q, n, rng):
    emax = cfg.vec.elem_max
    vecs = rng.integers(0, emax + 1, size=(n, cfg.vec.dim))
    if n >= 3:
        vecs[0] = q
        vecs[1] = np.where(q <= emax // 2, emax, 0)  # |difference| >= half the range
        vecs[2] = emax - q
    return vecs


async def run_query(dut, f, q, vecs, ids, exp, pv, pr, rnd, rng, qi):
    await bench.pump(dut, "query", f.vec_beats(q, rng), None, 0, pv, 0, rnd, 10 * f.beats + 100)
    beats = f.id_beats(vecs, ids, rng)
    out, acc_c, out_c = await bench.pump(dut, "vecs", beats, "dists", len(vecs), pv, pr,
                                         rnd, 20 * len(beats) + 100)
    bench.compare([f.dist_id(w) for w in out], list(zip(map(int, exp), map(int, ids))),
                  f"query {qi}: vector")
    return acc_c, out_c


@cocotb.test()
async def random_vectors_with_stalls(dut):
    """>= 10k random vectors over several queries, random stalls, every distance vs golden."""
    cfg, p, rnd, rng = bench.setup()
    f = Fmt(cfg)
    n_q, n_v = int(p.get("queries", 4)), int(p.get("vectors", 2500))
    pv, pr = bench.stall_probabilities(p)
    flip = int(p.get("flip_expected", -1))
    await reset(dut)
    for qi in range(n_q):
        q = bench.random_query(cfg, rng, qi)
        vecs = make_vectors(cfg, q, n_v, rng)
        ids = rng.integers(0, 1 << f.idb, size=n_v)
        exp = exact_distances(q, vecs)
        if qi == 0 and 0 <= flip < n_v:
            exp[flip] += 1
        await run_query(dut, f, q, vecs, ids, exp, pv, pr, rnd, rng, qi)
    dut._log.info("%d exact distances over %d queries matched the golden model", n_q * n_v, n_q)


@cocotb.test()
async def full_rate_timing(dut):
    """No stalls: one beat per cycle, each distance ``latency`` (parameter) cycles after its
    vector's last beat."""
    cfg = tb_config()
    f = Fmt(cfg)
    rnd = random.Random(3)
    rng = np.random.default_rng(cocotb.RANDOM_SEED + 3)
    await reset(dut)
    q = rng.integers(0, cfg.vec.elem_max + 1, size=cfg.vec.dim)
    vecs = make_vectors(cfg, q, 50, rng)
    ids = rng.integers(0, 1 << f.idb, size=50)
    acc_c, out_c = await run_query(dut, f, q, vecs, ids, exact_distances(q, vecs), 1.0, 1.0,
                                   rnd, rng, 0)
    assert acc_c == list(range(acc_c[0], acc_c[0] + len(acc_c))), "not one beat per cycle"
    lat = int(tb_params()["latency"])
    assert out_c == [c + lat for c in acc_c[f.beats - 1::f.beats]], \
        f"latency is not {lat} cycles"
