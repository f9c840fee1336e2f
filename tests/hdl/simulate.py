"""Amaranth-simulator helper shared by the block tests."""

from __future__ import annotations

from amaranth.sim import Simulator


def simulate(dut, *benches, clock: bool = True, period: float = 1e-8):
    """Run ``benches`` (async testbench functions) on ``dut`` with a ``sync`` clock of
    ``period`` seconds (none with ``clock=False``: combinational designs)."""
    sim = Simulator(dut)
    if clock:
        sim.add_clock(period)
    for bench in benches:
        sim.add_testbench(bench)
    sim.run()
