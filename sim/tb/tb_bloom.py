"""cocotb testbench of :class:`proxima.hdl.bloom.BloomFilter` against the golden filter.

Parameters (``PROXIMA_TB_PARAMS``): ``transactions`` (ids in the random test, >= 10k for
sign-off), ``p_valid`` / ``p_ready`` (per-cycle probabilities of offering an operation /
accepting a response), ``p_clear`` (probability of a clear before an id), ``id_pool``
(ids are drawn half from a pool of this size, so hits are common), ``p_repeat``
(probability of repeating the previous id: back-to-back read-modify-write hazards),
``depth`` (RAM words per bank, to bound the post-reset wait), ``latency`` (expected cycles
from an accepted id to its response), ``flip_expected`` (index of a
response whose golden ``hit`` is inverted on purpose: the run must then fail; -1 = off).

The filter never stalls its pipeline on ``resp.ready``: with ``p_ready < p_valid`` its
response buffer fills and ``req.ready`` falls (credit flow control), which this testbench
exercises together with the read-modify-write forwarding and the epoch clears.

The golden twin is :class:`proxima.golden.bloom.BloomFilter` built from ``PROXIMA_CFG``;
the requests and clears are applied to it in accepted order and every response (hit, id) is
compared with exact equality; the number of responses is checked too.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np

from proxima.golden.bloom import BloomFilter as GoldenBloom
from proxima.sim.runner import tb_config, tb_params
from proxima.sim.tb import bench


def make_ops(cfg, n_ids, rng, p_clear, id_pool, p_repeat):
    ops, last = [], 0
    pool = rng.integers(0, 1 << cfg.id_bits, size=max(1, id_pool))
    for _ in range(n_ids):
        if rng.random() < p_clear:
            ops.append(None)  # clear
        if rng.random() < p_repeat:
            x = last
        elif rng.random() < 0.5:
            x = int(pool[rng.integers(0, len(pool))])
        else:
            x = int(rng.integers(0, 1 << cfg.id_bits))
        ops.append(x)
        last = x
    return ops


def golden(cfg, ops):
    g = GoldenBloom(cfg)
    out = []
    for op in ops:
        if op is None:
            g.clear()
        else:
            out.append((int(g.test_and_set(op)), op))
    return out


async def reset(dut):
    await bench.reset(dut, inputs=["req"], outputs=["resp"], signals={"clear": 0})


class OpSource(bench.Source):
    """The operations on ``req``: an id is a test-and-set beat, ``None`` a clear (the
    ``clear`` / ``clear_ready`` handshake instead of ``req``)."""

    def present(self, op) -> None:
        if op is not None:
            self.payload_h.value = op

    def set_valid(self, offering: bool) -> None:
        is_clear = offering and self.beats[self.sent] is None
        self.dut.clear.value = int(is_clear)
        self.valid_h.value = int(offering and not is_clear)

    def accepted(self) -> bool:
        if self.beats[self.sent] is None:
            return bool(int(self.dut.clear_ready.value))
        return bool(int(self.ready_h.value))

    def took(self, op, cycle: int) -> None:
        if op is not None:
            self.accept_cycles.append(cycle)


def unpack_resp(cfg, v: int) -> tuple[int, int]:
    return v & 1, (v >> 1) & ((1 << cfg.id_bits) - 1)


async def drive(dut, cfg, ops, p_valid, p_ready, rnd, max_cycles):
    """Apply ``ops`` with random stalls; return responses [(hit, id)], the cycles of the
    accepted ids and of the taken responses, and the cycle count."""
    source = OpSource(dut, "req", ops, p_valid)
    sink = bench.Sink(dut, "resp", p_ready, unpack=lambda v: unpack_resp(cfg, v),
                      limit=sum(1 for op in ops if op is not None))
    cycles = await bench.run(dut, [source, sink], rnd, max_cycles=max_cycles,
                             until=lambda: sink.done)  # clears after the last id: not needed
    return sink.beats, source.accept_cycles, sink.cycles, cycles


@cocotb.test()
async def random_ops_with_stalls(dut):
    """>= 10k random test-and-sets with clears and random stalls vs the golden filter."""
    cfg, p, rnd, rng = bench.setup()
    n = int(p.get("transactions", 10_000))
    ops = make_ops(cfg, n, rng, float(p.get("p_clear", 0.01)), int(p.get("id_pool", 64)),
                   float(p.get("p_repeat", 0.2)))
    exp = golden(cfg, ops)
    flip = int(p.get("flip_expected", -1))
    if 0 <= flip < len(exp):
        exp[flip] = (1 - exp[flip][0], exp[flip][1])
    await reset(dut)
    depth = int(p.get("depth", 1024))
    got, _, _, cycles = await drive(dut, cfg, ops, float(p.get("p_valid", 0.7)),
                                 float(p.get("p_ready", 0.7)), rnd,
                                 40 * len(ops) + 64 * depth + 1000)
    bench.compare(got, exp, "response")
    hits = sum(h for h, _ in exp)
    clears = sum(1 for op in ops if op is None)
    dut._log.info("%d responses (%d hits, %d clears) matched the golden model in %d cycles",
                  len(exp), hits, clears, cycles)
    assert 0 < hits < len(exp), "stimulus must produce both hits and misses"


@cocotb.test()
async def full_rate_back_to_back(dut):
    """valid/ready always high: one id per cycle, each response ``latency`` (parameter)
    cycles after its id, repeated ids back to back (RAM transparency and stage-2
    forwarding)."""
    cfg = tb_config()
    rng = np.random.default_rng(cocotb.RANDOM_SEED + 1)
    base = rng.integers(0, 1 << cfg.id_bits, size=16)
    ops = [int(base[j]) for j in rng.integers(0, 16, size=400)]
    ops[10:20] = [ops[10]] * 10
    exp = golden(cfg, ops)
    await reset(dut)
    got, accepts, resp_c, _ = await drive(dut, cfg, ops, 1.0, 1.0, random.Random(1), 100_000)
    bench.compare(got, exp, "response")
    assert accepts == list(range(accepts[0], accepts[0] + len(ops))), "not one id per cycle"
    lat = int(tb_params()["latency"])
    assert resp_c == [c + lat for c in accepts], f"response latency is not {lat} cycles"
