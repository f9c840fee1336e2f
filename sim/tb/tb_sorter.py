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
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from proxima.golden.sorter import pad_key, sort_keys
from proxima.sim.runner import tb_config, tb_params


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
    keys = (dist << np.uint64(cfg.id_bits)) | ids
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
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.i__payload.value = 0
    dut.o__ready.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


async def _run(dut, vectors: np.ndarray, p_valid: float, p_ready: float, rnd: random.Random,
               width: int, max_cycles: int):
    """Drive ``vectors`` with random stalls; return (outputs as int lists, cycles)."""
    n = vectors.shape[1]
    packed = [_pack(row, width) for row in vectors]
    outputs: list[list[int]] = []
    sent = 0
    offering = False
    cycles = 0
    while len(outputs) < len(vectors):
        if cycles >= max_cycles:
            raise AssertionError(f"timeout: {len(outputs)} of {len(vectors)} vectors out "
                                 f"after {cycles} cycles")
        if not offering and sent < len(vectors) and rnd.random() < p_valid:
            offering = True
            dut.i__payload.value = packed[sent]
        dut.i__valid.value = int(offering)
        o_ready = rnd.random() < p_ready
        dut.o__ready.value = int(o_ready)
        await ReadOnly()
        if offering and int(dut.i__ready.value):
            sent += 1
            offering = False
        if o_ready and int(dut.o__valid.value):
            outputs.append(_unpack(int(dut.o__payload.value), n, width))
        await RisingEdge(dut.clk)
        cycles += 1
    dut.i__valid.value = 0
    return outputs, cycles


@cocotb.test()
async def random_vectors_with_stalls(dut):
    """>= 10k random vectors, random valid/ready stalls, every output vs the golden model."""
    cfg = tb_config()
    p = tb_params()
    n, width = int(p["n"]), cfg.sort_key_bits
    count = int(p.get("transactions", 10_000))
    rnd = random.Random(cocotb.RANDOM_SEED)
    rng = np.random.default_rng(cocotb.RANDOM_SEED)
    vectors = _vectors(cfg, n, count, rng, int(p.get("dist_max", 8)), float(p.get("p_pad", 0.1)))
    expected = sort_keys(vectors, width)
    await _reset(dut)
    outputs, cycles = await _run(dut, vectors, float(p.get("p_valid", 0.7)),
                                 float(p.get("p_ready", 0.7)), rnd, width, 20 * count + 1000)
    for t, (got, exp) in enumerate(zip(outputs, expected)):
        if got != [int(x) for x in exp]:
            raise AssertionError(
                f"vector {t}: input {[hex(int(x)) for x in vectors[t]]}\n"
                f"  got      {[hex(x) for x in got]}\n  expected {[hex(int(x)) for x in exp]}")
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
    packed = [_pack(row, width) for row in vectors]
    dut.o__ready.value = 1
    first_out = None
    outputs = []
    cycle = 0
    while len(outputs) < count:
        assert cycle < count + latency + 5, "pipeline did not deliver in time"
        if cycle < count:
            dut.i__valid.value = 1
            dut.i__payload.value = packed[cycle]
        else:
            dut.i__valid.value = 0
        await ReadOnly()
        if cycle < count:
            assert int(dut.i__ready.value) == 1, f"i.ready low at cycle {cycle} without stall"
        if int(dut.o__valid.value):
            if first_out is None:
                first_out = cycle
            outputs.append(_unpack(int(dut.o__payload.value), n, width))
        await RisingEdge(dut.clk)
        cycle += 1
    assert first_out == latency, f"latency {first_out}, expected {latency}"
    assert cycle == count + latency, f"{count} vectors took {cycle} cycles"
    for t, (got, exp) in enumerate(zip(outputs, expected)):
        assert got == [int(x) for x in exp], f"vector {t} mis-sorted"
