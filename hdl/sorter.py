"""Fully pipelined bitonic sorter (one N-key vector per cycle).

The network is elaborated from :func:`proxima.golden.sorter.bitonic_network`, the one
definition shared with the golden model (the golden twin); the key contract (``(distance <<
id_bits) | id``, ascending, all-ones padding) is documented in :mod:`proxima.golden.sorter`.

Interface
---------
``i``: ``In(stream.Signature(ArrayLayout(unsigned(key_bits), n)))``  -- a vector of n keys
``o``: ``Out(stream.Signature(ArrayLayout(unsigned(key_bits), n)))`` -- the vector sorted,
element 0 the smallest.  In the generated Verilog a payload is the flat vector
``{key[n-1], ..., key[1], key[0]}`` (element 0 in the least significant bits).

Latency and throughput
----------------------
One vector per cycle in and out while ``o.ready`` stays high.  ``latency`` =
:func:`proxima.config.sorter_pipeline_latency` ``(depth, stages_per_reg)`` = ``2 ceil(S /
stages_per_reg) + 1`` cycles from an accepted input to its output being valid (``S = p (p +
1) / 2`` network stages for ``n = 2**p``; ``cfg.sorter_latency`` for the default: 21 at N =
16, 31 at 32, 73 at 256).

Pipeline
--------
A compare-exchange element (CE) of slots ``lo < hi`` swaps when ``x > y``, with ``(x, y) =
(key[lo], key[hi])`` for an ascending CE and ``(key[hi], key[lo])`` for a descending one.
The network is cut into groups of ``stages_per_reg`` consecutive stages (default
``cfg.engine.sorter_stages_per_reg``); a group takes two cycles:

* level A registers the keys unchanged plus, per CE of the group's first stage, two copies of
  ``y >= x`` (``~swap``, the bare carry-out of the comparator chain: yosys maps ``<`` /
  ``>=`` on ECP5 to a carry chain with no LUT behind it);
* level B drives the swap multiplexers of the group's stages and registers the keys.  Copy
  ``r`` of a decision drives the multiplexers of key bits ``[r w / 2, (r + 1) w / 2)`` of both
  outputs.  The copies are :func:`proxima.hdl.lib.logic.register_copies` (initial values 0
  and 1, so that yosys keeps them apart; a copy is only read together with its vector).

Back-pressure
-------------
No enable or select of the wide registers depends on ``o.ready`` or on logic in the same
cycle: every register level's enable is a *leaf* register, and the pipeline ends in a
:class:`proxima.hdl.lib.fifo.RegisterRing` of ``FIFO_DEPTH`` = 3 entries (the + 1 of the
latency).

* The pipeline moves in cycle t iff ``E(t)``; ``i.ready = E(t)`` (a leaf of its own), and the
  last level's vector is pushed into the ring when it is valid and moves.
* ``E`` is decided two cycles ahead by ``roots`` registers ``adv`` (holding E(t + 1)) and
  ``adv1`` (E(t)), each root with its own copy of the ring occupancy ``occ``: ``E(t + 2) =
  [occ(t) - pop(t) + E(t) + E(t + 1) <= 2]``: even if the consumer stops now, the at most two
  vectors pushed before the decision takes effect find room; with ``o.ready`` high ``occ``
  stays 1 and the pipeline moves every cycle.
* A leaf loads the AND of two roots' ``adv`` (all equal in value; each leaf reads a different
  pair, so yosys' ``opt_merge`` keeps every leaf and root apart): one leaf per register
  level and per ``enable_keys`` keys, one for ``i.ready`` and one per ``enable_keys`` keys
  for the ring's write enables (registers computed a cycle early); the ring's read pointer
  is copied per ``read_keys`` keys.  ``R`` roots give ``R (R - 1) / 2`` leaves
  (``self.roots``: 17 at N = 32, 69 at N = 256).

Resources and clock rates: ``docs/RESOURCES.md``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from proxima.config import ProximaConfig, sorter_pipeline_latency
from proxima.golden.sorter import SorterError, bitonic_network
from proxima.hdl.lib.fifo import RegisterRing
from proxima.hdl.lib.logic import register_copies

__all__ = ["BitonicSorter", "SorterError"]


class BitonicSorter(wiring.Component):
    """Pipelined bitonic sorter of ``n`` keys of ``key_bits`` bits (module doc).

    Parameters
    ----------
    cfg : ProximaConfig
        ``n`` defaults to ``cfg.engine.sorter_n``; the key width is ``cfg.sort_key_bits``.
    n : int, optional
        Override the number of inputs (power of two, 2..1024) -- used by tests.
    stages_per_reg : int, optional
        Override the network stages per register group (>= 1; default
        ``cfg.engine.sorter_stages_per_reg``, the figure every cycle model uses).
    enable_keys : int
        Keys per leaf copy of the enable (>= 1; default 8).
    read_keys : int
        Keys per copy of the output ring's read pointer (>= 1; default 2).

    Attributes
    ----------
    n, key_bits, stages_per_reg, depth (network stages), latency (cycles), roots (enable
    roots), network, vector_layout
    """

    #: registered copies of every swap decision (each drives half of the key bits)
    SWAP_COPIES = 2
    #: entries of the output ring: the enable takes effect two cycles after it is decided,
    #: so two vectors may arrive after a stall is decided, plus the one shown on ``o``
    FIFO_DEPTH = 3

    def __init__(self, cfg: ProximaConfig, *, n: int | None = None,
                 stages_per_reg: int | None = None, enable_keys: int = 8, read_keys: int = 2):
        n = cfg.engine.sorter_n if n is None else int(n)
        if stages_per_reg is None:
            stages_per_reg = cfg.engine.sorter_stages_per_reg
        if n < 2 or n & (n - 1) or n > 1024:
            raise SorterError(f"sorter n must be a power of two in 2..1024, got {n}")
        if int(stages_per_reg) < 1:
            raise SorterError(f"stages_per_reg must be >= 1, got {stages_per_reg}")
        if int(enable_keys) < 1:
            raise SorterError(f"enable_keys must be >= 1, got {enable_keys}")
        if int(read_keys) < 1:
            raise SorterError(f"read_keys must be >= 1, got {read_keys}")
        self.cfg = cfg
        self.n = n
        self.key_bits = cfg.sort_key_bits
        self.stages_per_reg = int(stages_per_reg)
        self.enable_keys = min(int(enable_keys), n)
        self.read_keys = min(int(read_keys), n)
        self.network = bitonic_network(n)
        self.depth = len(self.network)
        self.latency = sorter_pipeline_latency(self.depth, self.stages_per_reg)
        # enable leaves: one per register level and key group, i.ready, and the ring's
        # write-enable groups; ``roots`` R give R (R - 1) / 2 distinct leaf sources (pairs)
        egroups = -(-n // self.enable_keys)
        leaves = (self.latency - 1) * egroups + 1 + egroups
        self.roots = next(r for r in range(2, leaves + 2) if r * (r - 1) // 2 >= leaves)
        layout = data.ArrayLayout(unsigned(self.key_bits), n)
        self.vector_layout = layout
        super().__init__({
            "i": In(stream.Signature(layout)),
            "o": Out(stream.Signature(layout)),
        })

    def elaborate(self, platform):
        m = Module()
        n, w = self.n, self.key_bits
        copies = self.SWAP_COPIES
        kb = [r * w // copies for r in range(copies + 1)]   # copy r: key bits kb[r]:kb[r+1]
        ek = self.enable_keys
        egroups = -(-n // ek)                                # enable copies per level
        depth_f = self.FIFO_DEPTH

        # ---- the enable tree (module doc, "Back-pressure") ------------------------------
        roots = []
        for r in range(self.roots):
            occ = Signal(range(depth_f + 1), name=f"ctl{r}_occ")
            a = Signal(init=1, name=f"ctl{r}_adv")        # E(t + 1)
            a1 = Signal(init=1, name=f"ctl{r}_adv1")      # E(t)
            push_r = Signal(name=f"ctl{r}_push")
            pop_r = Signal(name=f"ctl{r}_pop")
            roots.append((occ, a, a1, push_r, pop_r))
        # a leaf fed by one root would be merged with that root's ``adv1`` (same input)
        leaves = iter([(r, q) for q in range(self.roots) for r in range(q)])

        def next_leaf_value():
            """E(t + 1) as the AND of the next unused pair of roots."""
            r, q = next(leaves)
            return roots[r][1] & roots[q][1]

        def enable_leaf(name):
            """A register holding E(t): loads the decision the roots hold now (E(t + 1))."""
            en = Signal(init=1, name=name)
            m.d.sync += en.eq(next_leaf_value())
            return en

        advance = enable_leaf("in_en")
        m.d.comb += self.i.ready.eq(advance)

        keys = [self.i.payload[k] for k in range(n)]
        valid = self.i.valid
        level = 0
        loads_valid = None

        def register(values, v, swaps=()):
            """One register level of the keys and their valid bit; ``swaps`` = (name, value,
            key): :attr:`SWAP_COPIES` copies of a decision, written with the enable leaf of
            key ``key``.  Returns (key registers, decision copies, valid register)."""
            nonlocal level, loads_valid
            loads_valid = v  # what the newest level's valid register loads
            regs = [Signal(len(x), name=f"l{level}_k{k}", reset_less=True)
                    for k, x in enumerate(values)]
            vreg = Signal(name=f"l{level}_valid")
            ens = [enable_leaf(f"l{level}_e{g}_en") for g in range(egroups)]
            for g in range(egroups):
                with m.If(ens[g]):
                    m.d.sync += [r.eq(x) for k, (r, x) in enumerate(zip(regs, values))
                                 if k // ek == g]
                    if g == 0:
                        m.d.sync += vreg.eq(v)
            xregs = [register_copies(m, f"l{level}_{nm}", x, copies, enable=ens[k // ek],
                                     reset_less=True)
                     for nm, x, k in swaps]
            level += 1
            return regs, xregs, vreg

        def exchange(stage, swap_of):
            """Keys after the multiplexers; ``swap_of(e, r)`` is the swap decision of CE
            ``e`` for the key bits of copy ``r``."""
            nxt = list(keys)
            for e, (lo, hi, _) in enumerate(stage):
                a, b = keys[lo], keys[hi]
                parts = [(Mux(swap_of(e, r), b[kb[r]:kb[r + 1]], a[kb[r]:kb[r + 1]]),
                          Mux(swap_of(e, r), a[kb[r]:kb[r + 1]], b[kb[r]:kb[r + 1]]))
                         for r in range(copies)]
                nxt[lo] = Cat(*(p for p, _ in parts))
                nxt[hi] = Cat(*(q for _, q in parts))
            return nxt

        def x_y(lo, hi, ascending):
            return (keys[lo], keys[hi]) if ascending else (keys[hi], keys[lo])

        for s, stage in enumerate(self.network):
            first = s % self.stages_per_reg == 0
            last = (s + 1) % self.stages_per_reg == 0 or s == self.depth - 1
            if first:
                # level A: the keys and the registered copies of ~swap = y >= x (written
                # with >= : a bare carry chain in yosys' ECP5 mapping)
                swaps = []
                for e, (lo, hi, asc) in enumerate(stage):
                    x, y = x_y(lo, hi, asc)
                    swaps.append((f"ce{e}_swap_n", y >= x, lo))
                keys, xregs, valid = register(keys, valid, swaps)

                def swap_of(e, r, xregs=xregs):
                    return ~xregs[e][r]
            else:
                conds = [x_y(lo, hi, asc)[1] < x_y(lo, hi, asc)[0] for (lo, hi, asc) in stage]

                def swap_of(e, r, conds=conds):
                    return conds[e]
            keys = exchange(stage, swap_of)
            if last:
                keys, _, valid = register(keys, valid)
            else:  # named wires between the combinational stages of a group
                wires = [Signal(w, name=f"s{s}_k{k}") for k in range(n)]
                m.d.comb += [x.eq(v) for x, v in zip(wires, keys)]
                keys = wires

        # ---- output ring ---------------------------------------------------------------
        # The last level's vector is pushed when it holds one and moves (E(t)).  Each root
        # keeps the exact occupancy ``occ`` and decides E(t + 2) = [occ(t) - pop(t) + E(t) +
        # E(t + 1) <= depth - 1].
        assert level + 1 == self.latency
        last_valid = valid
        for occ, a, a1, push_r, pop_r in roots:
            m.d.comb += [
                push_r.eq(a1 & last_valid),
                pop_r.eq((occ != 0) & self.o.ready),
            ]
            m.d.sync += [
                occ.eq(occ + push_r - pop_r),
                a.eq(occ - pop_r + a1 + a <= depth_f - 1),
                a1.eq(a),
            ]
        occ0, _, e_now, push, pop = roots[0]
        m.d.comb += self.o.valid.eq(occ0 != 0)
        m.submodules.ring = ring = RegisterRing(w, n, depth_f, write_lanes=ek,
                                                read_lanes=self.read_keys, name="o")
        # the last level holds a valid vector in the next cycle iff it does now and does
        # not move, or the level before moves in; it moves iff E(t + 1), held by the roots
        valid_next = Signal()
        m.d.comb += valid_next.eq(Mux(e_now, loads_valid, valid))
        m.d.comb += [ring.push.eq(push), ring.pop.eq(pop),
                     ring.push_next.eq(Cat(valid_next & next_leaf_value()
                                           for _ in range(egroups))),
                     ring.w_data.eq(Cat(*keys)), self.o.payload.eq(ring.r_data)]
        return m
