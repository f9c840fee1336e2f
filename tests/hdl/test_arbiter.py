"""Round-robin arbiter: golden cycle model, Amaranth simulation, cocotb on Verilator."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Fragment, unsigned
from amaranth.sim import Simulator

from proxima.config import preset
from proxima.golden.arbiter import (
    ArbiterError, RoundRobinArbiterModel, round_robin_pick,
)
from proxima.hdl.arbiter import RoundRobinArbiter


# ---- golden model --------------------------------------------------------------------
def test_pick_starts_after_last_and_wraps():
    assert round_robin_pick([1, 1, 1, 1], 3) == 0
    assert round_robin_pick([1, 1, 1, 1], 0) == 1
    assert round_robin_pick([1, 0, 0, 1], 1) == 3
    assert round_robin_pick([1, 0, 0, 0], 0) == 0  # only the last one asks: granted again
    assert round_robin_pick([0, 1, 0, 0], 3) == 1
    assert round_robin_pick([0, 0, 0, 0], 2) is None


def test_model_register_and_backpressure():
    m = RoundRobinArbiterModel(3)
    s = m.step([0, 1, 1], [0, 11, 22], out_ready=False)  # register empty: loads anyway
    assert s.grant == 1 and s.output is None and m.out_valid
    s = m.step([0, 0, 1], [0, 0, 22], out_ready=False)  # full and not taken: stall
    assert s.grant is None and s.output is None and m.ready([0, 0, 1], False) == [0, 0, 0]
    s = m.step([0, 0, 1], [0, 0, 22], out_ready=True)  # taken and refilled
    assert s.output == (1, 11) and s.grant == 2
    s = m.step([0, 0, 0], [0, 0, 0], out_ready=True)
    assert s.output == (2, 22) and s.grant is None and not m.out_valid


def test_model_no_starvation_random():
    rnd = random.Random(5)
    n = 7
    m = RoundRobinArbiterModel(n)
    valid, waited = [False] * n, [0] * n
    for _ in range(20_000):
        for k in range(n):
            valid[k] = valid[k] or rnd.random() < 0.6
        s = m.step(valid, list(range(n)), rnd.random() < 0.7)
        if s.grant is not None:
            for k in range(n):
                waited[k] = 0 if k == s.grant else waited[k] + valid[k]
                assert waited[k] <= n - 1
            valid[s.grant] = False


def test_bad_arguments():
    with pytest.raises(ArbiterError):
        RoundRobinArbiterModel(0)
    with pytest.raises(ArbiterError, match="valid flags"):
        RoundRobinArbiterModel(3).step([1, 0], [0, 0, 0], True)
    with pytest.raises(ArbiterError, match="at least 2"):
        RoundRobinArbiter(1, unsigned(8))
    with pytest.raises(ArbiterError, match="payload shape"):
        RoundRobinArbiter(4, "eight bits")


# ---- Amaranth simulation -------------------------------------------------------------
def _amaranth_vs_model(n, data_bits, cycles, seed):
    dut = RoundRobinArbiter(n, unsigned(data_bits))
    model = RoundRobinArbiterModel(n)
    rnd = random.Random(seed)
    stats = {"out": 0}

    async def bench(ctx):
        valid, payload = [False] * n, [0] * n
        for cycle in range(cycles):
            phase = (cycle // 200) % 3
            pv = (1.0, 0.4, 0.1)[phase]
            pr = (1.0, 0.5, 0.9)[phase]
            for k in range(n):
                if not valid[k] and rnd.random() < pv:
                    valid[k], payload[k] = True, rnd.getrandbits(data_bits)
                ctx.set(dut.i[k].valid, valid[k])
                ctx.set(dut.i[k].payload, payload[k])
            o_ready = rnd.random() < pr
            ctx.set(dut.o.ready, o_ready)
            assert ctx.get(dut.o.valid) == model.out_valid
            out = (ctx.get(dut.o.payload.grant), ctx.get(dut.o.payload.data))
            step = model.step(valid, payload, o_ready)
            assert [ctx.get(dut.i[k].ready) for k in range(n)] == \
                [int(k == step.grant) for k in range(n)], f"cycle {cycle}"
            if step.output is not None:
                assert out == step.output, f"cycle {cycle}"
                stats["out"] += 1
            if step.grant is not None:
                valid[step.grant] = False
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return stats["out"]


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8])
def test_amaranth_matches_model(n):
    assert _amaranth_vs_model(n, 12, 1500, seed=n) > 500


def test_amaranth_default_config_instance():
    cfg = preset("default")
    dut = RoundRobinArbiter.from_config(cfg)
    Fragment.get(dut, None)
    assert dut.n == cfg.engine.queues and dut.grant_bits == 2
    assert _amaranth_vs_model(cfg.engine.queues, cfg.id_bits, 1200, seed=11) > 400


# ---- cocotb on the generated Verilog ---------------------------------------------------
@pytest.mark.rtl
def test_cocotb_arbiter_verilator():
    from proxima.sim.runner import run_cocotb
    cfg = preset("tiny").with_(engine={"queues": 5})  # non power of two: wrap-around edge
    res = run_cocotb(lambda: RoundRobinArbiter.from_config(cfg), "proxima_arbiter",
                     "proxima.sim.tb.tb_arbiter", cfg=cfg, build_name="arbiter_q5",
                     parameters={"n": cfg.engine.queues, "data_bits": cfg.id_bits,
                                 "transactions": 10_000})
    assert res.tests == 2 and res.failed == 0
