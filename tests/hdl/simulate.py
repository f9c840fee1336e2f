"""Amaranth-simulator helpers shared by the block tests."""

from __future__ import annotations

import gc
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator


def refused(exc, match: str, make) -> None:
    """``make()`` raises ``exc`` matching ``match``; the half-built component (an
    elaboratable from the moment it exists) is never elaborated, so its UnusedElaboratable
    warning is silenced and the object collected here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(exc, match=match):
            make()
        gc.collect()


def simulate(dut, *benches, clock: bool = True, period: float = 1e-8):
    """Run ``benches`` (async testbench functions) on ``dut`` with a ``sync`` clock of
    ``period`` seconds (none with ``clock=False``: combinational designs)."""
    sim = Simulator(dut)
    if clock:
        sim.add_clock(period)
    for bench in benches:
        sim.add_testbench(bench)
    sim.run()
