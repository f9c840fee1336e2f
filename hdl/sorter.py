"""Fully pipelined bitonic sorter (one N-key vector per cycle).

The network is elaborated from :func:`proxima.golden.sorter.bitonic_network`, the one
definition shared with the golden model; the key contract (``(distance << id_bits) | id``,
ascending, all-ones padding) is documented in :mod:`proxima.golden.sorter`.

Interface
---------
``i``: ``In(stream.Signature(ArrayLayout(unsigned(key_bits), n)))``  -- a vector of n keys
``o``: ``Out(stream.Signature(ArrayLayout(unsigned(key_bits), n)))`` -- the vector sorted,
element 0 the smallest.  In the generated Verilog a payload is the flat vector
``{key[n-1], ..., key[1], key[0]}`` (element 0 in the least significant bits).

Pipelining and back-pressure
----------------------------
The ``S = p (p + 1) / 2`` stages (``n = 2**p``) are cut into groups of ``stages_per_reg``
consecutive stages; each group is followed by one register level.  With
``register_compare`` every stage also gets a register level between its comparators and
its swap multiplexers.  The latency, from an accepted input to the output being valid (the
output stream comes straight from the last register level), is
``latency = ceil(S / stages_per_reg) + (S if register_compare else 0)`` cycles.

All register levels share one enable, ``advance = ~o.valid | o.ready``: when the output
holds a vector that is not taken the whole pipeline stalls (bubbles included) and
``i.ready`` is low; otherwise every level moves one step and ``i.ready`` is high.  So the
sorter accepts one vector per cycle while the consumer keeps ``o.ready`` high, never drops
or reorders vectors, and ``i.ready`` depends combinationally on ``o.ready`` (allowed by
the stream rules; ``o.valid`` never depends on ``o.ready``).
"""

from __future__ import annotations

import math

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from proxima.config import ProximaConfig
from proxima.golden.sorter import SorterError, bitonic_network

__all__ = ["BitonicSorter", "SorterError"]


class BitonicSorter(wiring.Component):
    """Pipelined bitonic sorter of ``n`` keys of ``key_bits`` bits.

    Parameters
    ----------
    cfg : ProximaConfig
        ``n`` defaults to ``cfg.engine.sorter_n`` and the key width is
        ``cfg.sort_key_bits``.
    n : int, optional
        Override the number of inputs (power of two, 2..1024) -- used by tests.
    stages_per_reg : int
        Network stages between two register levels (>= 1).
    register_compare : bool
        Also register the keys and the compare results between the comparators and the
        swap multiplexers of every stage: one more cycle per stage and about twice the
        flip-flops.  On an ECP5 this did not raise Fmax (N = 16: 133.5 MHz against 137.3
        MHz without, the 40-bit comparator alone being the critical path; see
        docs/RESOURCES.md), so it is off by default.

    Attributes
    ----------
    n, key_bits, stages_per_reg, depth (network stages), latency (cycles)
    """

    def __init__(self, cfg: ProximaConfig, *, n: int | None = None, stages_per_reg: int = 1,
                 register_compare: bool = False):
        n = cfg.engine.sorter_n if n is None else int(n)
        if n < 2 or n & (n - 1) or n > 1024:
            raise SorterError(f"sorter n must be a power of two in 2..1024, got {n}")
        if int(stages_per_reg) < 1:
            raise SorterError(f"stages_per_reg must be >= 1, got {stages_per_reg}")
        self.cfg = cfg
        self.n = n
        self.key_bits = cfg.sort_key_bits
        self.stages_per_reg = int(stages_per_reg)
        self.network = bitonic_network(n)
        self.depth = len(self.network)
        self.register_compare = bool(register_compare)
        self.latency = math.ceil(self.depth / self.stages_per_reg) + \
            (self.depth if self.register_compare else 0)
        layout = data.ArrayLayout(unsigned(self.key_bits), n)
        self.vector_layout = layout
        super().__init__({
            "i": In(stream.Signature(layout)),
            "o": Out(stream.Signature(layout)),
        })

    def elaborate(self, platform):
        m = Module()
        n, w = self.n, self.key_bits

        advance = Signal()
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance),
        ]

        keys = [self.i.payload[k] for k in range(n)]
        valid = self.i.valid
        level = 0

        def register(values, widths, v):
            nonlocal level
            regs = [Signal(wd, name=f"l{level}_{j}", reset_less=True)
                    for j, wd in enumerate(widths)]
            vreg = Signal(name=f"l{level}_valid")
            with m.If(advance):
                m.d.sync += [r.eq(x) for r, x in zip(regs, values)]
                m.d.sync += vreg.eq(v)
            level += 1
            return regs, vreg

        for s, stage in enumerate(self.network):
            swaps = []
            for (lo, hi, ascending) in stage:
                a, b = keys[lo], keys[hi]
                # ascending: min to slot lo, so swap when a > b; descending: when a < b
                swaps.append(a > b if ascending else a < b)
            if self.register_compare:
                regs, valid = register(keys + swaps, [w] * n + [1] * len(swaps), valid)
                keys, swaps = regs[:n], regs[n:]
            nxt = list(keys)
            for (lo, hi, _), swap in zip(stage, swaps):
                a, b = keys[lo], keys[hi]
                nxt[lo] = Mux(swap, b, a)
                nxt[hi] = Mux(swap, a, b)
            keys = nxt
            last = s == self.depth - 1
            if (s + 1) % self.stages_per_reg == 0 or last:
                keys, valid = register(keys, [w] * n, valid)
        assert level == self.latency
        m.d.comb += self.o.valid.eq(valid)
        m.d.comb += [self.o.payload[k].eq(keys[k]) for k in range(n)]
        return m
