"""cocotb testbench of :class:`proxima.hdl.sorter.BitonicSorter` against the golden sorter.

Parameters (``PROXIMA_TB_PARAMS``): ``n`` (sorter inputs), ``latency`` (expected cycles),
``transactions`` (vectors in the random test), ``p_valid`` / ``p_ready`` (per-cycle
probabilities of offering an input / accepting an output), ``dist_max`` (distances are
drawn from ``0..dist_max-1`` so ties in distance are common), ``p_pad`` (probability
of a padding slot).
Every output vector is compared with :func:`proxima.golden.sorter.sort_keys` of the
corresponding input vector, in order.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np
from proxima.golden.distance import sort_key
from proxima.golden.sorter import pad_key, sort_keys
from proxima.sim.runner import tb_config, tb_params
from proxima.sim.tb import bench


def _pack(row, width: int) -> int:
    out = 0
    for k, key in enumerate(row):
        out |= int(key) << (k * width)
    return out


def _unpack(value: int, n: int, width: int) -> list[int]:
    mask = (1 << width) - 1
    return [(value >> (k * width)) & mask for k in range(n)]


def _vectors(cfg, n: int, count: int, rng: np.random.Generator, dist_max: int,
             p_pad: float) -> np.ndarray:
    dist = rng.integers(0, min(dist_max, 1 << cfg.pq_dist_bits), size=(count, n),
                        dtype=np.uint64)
    ids = rng.integers(0, 1 << cfg.id_bits, size=(count, n), dtype=np.uint64)
    keys = sort_key(dist, ids, cfg.id_bits)
    pad = rng.random((count, n)) < p_pad
    keys[pad] = np.uint64(pad_key(cfg))
    # a few vectors at the extremes of the key range
    keys[0] = np.uint64(pad_key(cfg))
    if count > 1:
        keys[1] = np.uint64(0)
    if count > 2:
        keys[2] = np.arange(n, dtype=np.uint64)[::-1]
    return keys


async def _reset(dut):
    await bench.reset(dut, inputs=["i"], outputs=["o"])


async def _run(dut, vectors: np.ndarray, p_valid: float, p_ready: float, rnd: random.Random,
               width: int, max_cycles: int):
    """Drive ``vectors`` with random stalls; return (outputs as int lists, cycles)."""
    n = vectors.shape[1]
    source = bench.Source(dut, "i", [_pack(row, width) for row in vectors], p_valid)
    sink = bench.Sink(dut, "o", p_ready, limit=len(vectors),
                      unpack=lambda v: _unpack(v, n, width))
    cycles = await bench.run(dut, [source, sink], rnd, max_cycles=max_cycles)
    return sink.beats, cycles


def _check(vectors, outputs, expected) -> None:
    def explain(t, got, exp):
        return (f"vector {t}: input {[hex(int(x)) for x in vectors[t]]}\n"
                f"  got      {[hex(x) for x in got]}\n  expected {[hex(x) for x in exp]}")
    bench.compare(outputs, [[int(x) for x in e] for e in expected], "vector", explain)


@cocotb.test()
async def random_vectors_with_stalls(dut):
    """>= 10k random vectors, random valid/ready stalls, every output vs the golden model."""
    cfg, p, rnd, rng = bench.setup()
    n, width = int(p["n"]), cfg.sort_key_bits
    count = int(p.get("transactions", 10_000))
    vectors = _vectors(cfg, n, count, rng, int(p.get("dist_max", 8)), float(p.get("p_pad", 0.1)))
    expected = sort_keys(vectors, width)
    await _reset(dut)
    outputs, cycles = await _run(dut, vectors, float(p.get("p_valid", 0.7)),
                                 float(p.get("p_ready", 0.7)), rnd, width, 20 * count + 1000)
    _check(vectors, outputs, expected)
    dut._log.info("%d vectors sorted correctly in %d cycles", count, cycles)


@cocotb.test()
async def full_throughput_and_latency(dut):
    """With valid and ready always high: one vector per cycle, latency as documented."""
    cfg = tb_config()
    p = tb_params()
    n, width, latency = int(p["n"]), cfg.sort_key_bits, int(p["latency"])
    count = 64
    rng = np.random.default_rng(cocotb.RANDOM_SEED + 1)
    vectors = _vectors(cfg, n, count, rng, 1 << 30, 0.0)
    expected = sort_keys(vectors, width)
    await _reset(dut)
    source = bench.Source(dut, "i", [_pack(row, width) for row in vectors])
    sink = bench.Sink(dut, "o", limit=count, unpack=lambda v: _unpack(v, n, width))
    cycles = await bench.run(dut, [source, sink], max_cycles=count + latency + 5)
    assert source.accept_cycles == list(range(count)), "i.ready low without a stall"
    assert sink.cycles[0] == latency, f"latency {sink.cycles[0]}, expected {latency}"
    assert cycles == count + latency, f"{count} vectors took {cycles} cycles"
    outputs = sink.beats
    _check(vectors, outputs, expected)
