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

Pipelining (default: two register levels per network stage)
-----------------------------------------------------------
A compare-exchange element (CE) of slots ``lo < hi`` swaps when ``x > y``, with
``(x, y) = (key[lo], key[hi])`` for an ascending CE and ``(key[hi], key[lo])`` for a
descending one.  With ``register_swap`` (default) a stage takes two cycles:

* level A registers the n keys unchanged plus, per CE, ``swap_copies`` copies of the swap
  decision ``x > y``, computed as ``y < x``: yosys maps ``<`` / ``>=`` on ECP5 to a bare
  carry chain (20 CCU2C for 40 bits) whose carry-out goes straight to the registers,
  whereas ``>`` / ``<=`` put a LUT equality tree behind the chain (that tree was on the
  critical path of the earlier structure);
* level B drives the ``2 key_bits`` swap multiplexers (one LUT4 per bit) and registers
  the keys.  Copy ``r`` of the decision drives the multiplexers of key bits
  ``[r w / copies, (r + 1) w / copies)`` of both outputs, so a decision register fans out
  to ``2 w / swap_copies`` LUTs (20 for the defaults) instead of ``2 w``.

Identical registers would be merged back by yosys (``opt_merge``; a ``keep`` attribute on
the wire does not prevent it), so the copies are made distinct: odd copies hold
``~swap`` (the multiplexer reads them inverted, free in its LUT) and copy ``r`` has the
initial value ``(r >> 1) & 1`` (ECP5 REGSET); hence at most 4 copies.  The initial value
is never observed: a copy is only read together with its vector.

``compare_chunks = c > 1`` cuts the comparison into ``c`` chunks (chunk ``j`` = bits
``[j w / c, (j + 1) w / c)``): per chunk ``g_j = y_j < x_j`` and, for ``j >= 1``,
``ge_j = x_j >= y_j``, each a shorter carry chain, combined by LUTs
``swap = g_{c-1} | ge_{c-1} & (... (g_1 | ge_1 & g_0))`` before the level-A registers.
Default ``c = 1``.

``register_swap=False`` is the earlier structure: compare, swap and register in one cycle
per group (level B only; ``compare_chunks`` is still honoured, ``swap_copies`` unused).

``compare_copy`` (off by default, not yet measured on the FPGA) makes level B register
every key twice: the copy with initial value all ones (so that yosys keeps it apart)
feeds only the next stage's comparators, so the placer can put it next to the carry
chain and move the long route in front of it into level B, which has slack.

``stages_per_reg = g`` cuts the network into groups of ``g`` consecutive stages: level A
follows the comparators of the first stage of a group, level B the multiplexers of its
last stage (the other stages of the group are combinational compare-exchanges between
them).  With ``G = ceil(S / g)`` groups and ``S = p (p + 1) / 2`` stages (``n = 2**p``),
the latency from an accepted input to the output being valid (the output stream comes
straight from the last register level, plus one cycle of output FIFO with the default
``skid``) is

``latency = 2 G + skid`` cycles with ``register_swap`` (default), ``G + skid`` without
(``cfg.sorter_latency`` for the default options).

Default options: N = 16: S = 10, latency 21; N = 32: S = 15, latency 31; N = 64: S = 21,
latency 43.  Cells per CE (40-bit keys): 20 CCU2C and 80 multiplexer LUT4s (plus one
inverter LUT4 with more than 2 copies); pipeline registers: ``2 S n w`` key bits,
``S (n / 2) swap_copies`` decision copies and ``2 S`` valid bits (N = 32: 38,400 + 480 + 30),
plus with ``skid`` the FIFO's ``3 n w``, 4 per enable root, one per leaf, 3 per FIFO
key group and 2 per read-pointer copy.

Back-pressure (default: ``skid``)
---------------------------------
With ``skid`` (default) no enable or select of the wide registers depends on ``o.ready`` or
on any logic in the same cycle: every register level's enable is a *leaf* register, and
the pipeline ends in an output FIFO of ``FIFO_DEPTH`` = 3 entries (``latency`` + 1).

* The pipeline moves in cycle t iff ``E(t)``; ``i.ready = E(t)`` (a leaf of its own), and
  the last level's vector is pushed into the FIFO when it is valid and moves.
* ``E`` is decided two cycles ahead by ``roots`` registers ``adv`` (holding E(t + 1)) and
  ``adv1`` (E(t)), each root with its own copy of the FIFO occupancy ``occ``:
  ``E(t + 2) = [occ(t) - pop(t) + E(t) + E(t + 1) <= 2]``, i.e. even if the consumer stops
  now, the at most two vectors pushed before the decision takes effect find room; with
  ``o.ready`` high ``occ`` stays 1 and the pipeline moves every cycle (one vector per cycle).
* A leaf loads the AND of two roots' ``adv`` (all equal in value): one leaf per register
  level and per ``enable_keys`` keys (default 8), one for ``i.ready`` and one per key group
  for the FIFO's write enables, which are registers computed a cycle early (the 2-bit read
  pointer is copied per ``read_keys`` keys, default 2).  R roots give R (R - 1) / 2 distinct pairs (``self.roots``:
  17 at N = 32, 69 at N = 256).
* yosys' ``opt_merge`` merges registers with identical inputs (a ``keep`` attribute on the
  wire does not prevent it): the roots are distinct because each one's next state reads its
  own registers, the leaves because each reads a different pair of roots (a leaf fed by a
  single root would merge with that root's ``adv1``).  A synthesis test checks that every
  copy survives.

So a leaf drives only the clock enables of its own ``n key_bits / enable_keys`` key bits in
its level, a root drives about R leaves, and the roots' inputs (``o.ready``, the last
level's valid bit) reach R + groups registers.  The earlier scheme, one register per copy
updated from shared ``push``/``pop`` logic, reached 108.2 MHz at N = 32: ``push``/``pop``
fanned out from logic to the next-state LUTs of ~125 copies (8.2 ns of routing).

``skid=False``: all register levels share one combinational enable ``advance = ~o.valid |
o.ready``: when the output holds a vector that is not taken the whole pipeline stalls
(bubbles included); ``i.ready`` depends combinationally on ``o.ready`` (allowed by the stream
rules; ``o.valid`` never depends on ``o.ready``).

Timing (ECP5-85F, 40-bit keys, 150 MHz target; figures in docs/RESOURCES.md)
--------------------------------------------------------------------------
The single-cycle structure (now ``register_swap=False``; it also had ``a > b``, i.e. a
40-bit chain plus a LUT equality tree) reached 159.3 MHz at N = 8 and 137.3 MHz at
N = 16; its critical path was one compare-exchange (chain, equality tree, the swap
decision fanning out to 80 multiplexers).  Registering the ``a > b`` result before the
multiplexers (the former ``register_compare`` option) gave 133.5 MHz at N = 16, the
chain plus equality tree being the path.

This structure with 4 copies (copies 2, 3 through an inverter LUT) gave 137.9 MHz at
N = 16 (10,323 LUT4 incl. 1,600 CCU2C, 15,066 FF): about 300 endpoints failed, by at
most 0.59 ns, and the critical path was level A: key register -> 2.37 ns route -> 21
CCU2C (2.31 ns) -> 1.10 ns route -> inverter LUT -> 0.99 ns route -> copy register
(7.25 ns).  Hence the default of 2 copies, both the
bare carry-out ``y >= x``: no LUT and no LUT-to-register route after the chain.
"""

from __future__ import annotations

import math

from amaranth.hdl import C, Cat, Module, Mux, Signal, unsigned
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
        Network stages per group (>= 1); see the module docstring.
    register_swap : bool
        Register the swap decisions between the comparators and the multiplexers
        (level A; default).  ``False``: one cycle per group, the earlier structure.
    compare_chunks : int
        Chunks of the comparison (1..key_bits; with ``register_swap``).
    swap_copies : int
        Registered copies of each swap decision (1..4; with ``register_swap``).
    compare_copy : bool
        Level B also registers a copy of every key for the next stage's comparators
        (``n key_bits`` more registers per stage; see the module docstring).
    skid : bool
        Make every pipeline enable a leaf register of a two-level register tree instead of
        ``~o.valid | o.ready``, and end the pipeline in a three-entry FIFO with registered
        write/read pointers: no enable or select of the wide registers depends on
        ``o.ready`` (with the plain enable, N = 16 reached 133.2 MHz, the path being
        ``o.ready`` through one LUT to all ~20k pipeline registers).  Default ``True``;
        latency + 1 (see "Back-pressure").  With a single enable register N = 16 reached
        156.7 MHz, its critical path being that register fanning out to every pipeline
        register (5.9 ns of routing): hence the copies.
    enable_keys : int
        With ``skid``: keys per leaf copy of the enable (>= 1; default 8).
    read_keys : int
        With ``skid``: keys per copy of the output FIFO's read pointer (>= 1; default 2).  A
        copy selects the 3:1 read multiplexers of its keys: its high bit drives two LUT4s
        and its low bit one PFUMX per key bit (at 8 keys per copy: 643 and 331 loads).

    Attributes
    ----------
    n, key_bits, stages_per_reg, register_swap, compare_chunks, swap_copies,
    depth (network stages), latency (cycles), roots (``skid`` enable roots)
    """

    MAX_SWAP_COPIES = 4
    #: entries of the ``skid`` output FIFO: the enable takes effect two cycles after it is
    #: decided, so two vectors may arrive after a stall is decided, plus the one shown on ``o``
    FIFO_DEPTH = 3

    def __init__(self, cfg: ProximaConfig, *, n: int | None = None, stages_per_reg: int = 1,
                 register_swap: bool = True, compare_chunks: int = 1, swap_copies: int = 2,
                 compare_copy: bool = False, skid: bool = True, enable_keys: int = 8,
                 read_keys: int = 2):
        n = cfg.engine.sorter_n if n is None else int(n)
        if n < 2 or n & (n - 1) or n > 1024:
            raise SorterError(f"sorter n must be a power of two in 2..1024, got {n}")
        if int(stages_per_reg) < 1:
            raise SorterError(f"stages_per_reg must be >= 1, got {stages_per_reg}")
        self.key_bits = cfg.sort_key_bits
        if not 1 <= int(compare_chunks) <= self.key_bits:
            raise SorterError(f"compare_chunks must be in 1..{self.key_bits} (the key bits), "
                              f"got {compare_chunks}")
        if not 1 <= int(swap_copies) <= min(self.MAX_SWAP_COPIES, self.key_bits):
            raise SorterError(f"swap_copies must be in "
                              f"1..{min(self.MAX_SWAP_COPIES, self.key_bits)}, got {swap_copies}")
        self.cfg = cfg
        self.n = n
        self.stages_per_reg = int(stages_per_reg)
        self.register_swap = bool(register_swap)
        self.compare_chunks = int(compare_chunks)
        self.swap_copies = int(swap_copies)
        self.compare_copy = bool(compare_copy)
        self.skid = bool(skid)
        if int(enable_keys) < 1:
            raise SorterError(f"enable_keys must be >= 1, got {enable_keys}")
        self.enable_keys = min(int(enable_keys), n)
        if int(read_keys) < 1:
            raise SorterError(f"read_keys must be >= 1, got {read_keys}")
        self.read_keys = min(int(read_keys), n)
        self.network = bitonic_network(n)
        self.depth = len(self.network)
        groups = math.ceil(self.depth / self.stages_per_reg)
        self.latency = groups * (2 if self.register_swap else 1) + (1 if self.skid else 0)
        # skid: enable leaves = one per register level and key group, i.ready and the FIFO's
        # write-enable groups; ``roots`` R give R (R - 1) / 2 distinct leaf sources (pairs)
        leaves = (self.latency - 1) * -(-n // self.enable_keys) + 1 + -(-n // self.enable_keys)
        self.roots = next(r for r in range(2, leaves + 2) if r * (r - 1) // 2 >= leaves) \
            if self.skid else 0
        layout = data.ArrayLayout(unsigned(self.key_bits), n)
        self.vector_layout = layout
        super().__init__({
            "i": In(stream.Signature(layout)),
            "o": Out(stream.Signature(layout)),
        })

    def elaborate(self, platform):
        m = Module()
        n, w, c = self.n, self.key_bits, self.compare_chunks
        copies = self.swap_copies if self.register_swap else 1
        cb = [j * w // c for j in range(c + 1)]             # chunk j: bits cb[j]:cb[j+1]
        kb = [r * w // copies for r in range(copies + 1)]   # copy r: key bits kb[r]:kb[r+1]

        ek = self.enable_keys
        egroups = -(-n // ek)                                # enable copies per level
        leaves = iter(())

        if self.skid:
            # the enable E(t) of every register is a *leaf* register two cycles behind the
            # decision: ``roots`` decide (each with its own copy of the state, so yosys cannot
            # merge them), a leaf is one root or the AND of two (all equal in value, distinct
            # in structure); no leaf's inputs come from logic (see "Back-pressure")
            depth_f = self.FIFO_DEPTH
            roots = []
            for r in range(self.roots):
                occ = Signal(range(depth_f + 1), name=f"ctl{r}_occ")
                a = Signal(init=1, name=f"ctl{r}_adv")        # E(t + 1)
                a1 = Signal(init=1, name=f"ctl{r}_adv1")      # E(t)
                push_r = Signal(name=f"ctl{r}_push")
                pop_r = Signal(name=f"ctl{r}_pop")
                roots.append((occ, a, a1, push_r, pop_r))
            # a leaf fed by one root would be merged with that root's ``adv1`` (same input)
            sources = [(r, q) for q in range(self.roots) for r in range(q)]

            def leaf_value(src):
                v = roots[src[0]][1]
                for r in src[1:]:
                    v = v & roots[r][1]
                return v

            leaves = iter(sources)

            def enable_leaf(name):
                """A register holding E(t): loads the decision the roots hold now (E(t+1))."""
                en = Signal(init=1, name=name)
                m.d.sync += en.eq(leaf_value(next(leaves)))
                return en

            advance = enable_leaf("in_en")
        else:
            advance = Signal()
            m.d.comb += advance.eq(~self.o.valid | self.o.ready)
        m.d.comb += self.i.ready.eq(advance)

        keys = [self.i.payload[k] for k in range(n)]
        cmp_keys = keys          # what the comparators read (compare_copy: a copy of keys)
        valid = self.i.valid
        level = 0

        loads_valid = None

        def register(values, v, extra=()):
            """One register level: the keys, then ``extra`` = (name, value, init, key): a
            register written with the enable leaf of key ``key``."""
            nonlocal level, loads_valid
            loads_valid = v  # what the newest level's valid register loads
            regs = [Signal(len(x), name=f"l{level}_k{k}", reset_less=True)
                    for k, x in enumerate(values)]
            xregs = [Signal(len(x), name=f"l{level}_{nm}", init=init, reset_less=True)
                     for nm, x, init, _ in extra]
            vreg = Signal(name=f"l{level}_valid")
            if self.skid:
                ens = [enable_leaf(f"l{level}_e{g}_en") for g in range(egroups)]
            else:
                ens = [advance] * egroups
            for g in range(egroups):
                with m.If(ens[g]):
                    m.d.sync += [r.eq(x) for k, (r, x) in enumerate(zip(regs, values))
                                 if k // ek == g]
                    m.d.sync += [r.eq(x) for r, (_, x, _, k) in zip(xregs, extra)
                                 if k // ek == g]
                    if g == 0:
                        m.d.sync += vreg.eq(v)
            level += 1
            return regs, xregs, vreg

        def swap_condition(lo, hi, ascending):
            """(swap, no_swap) of a CE on the current keys; swap = x > y with
            (x, y) = (key[lo], key[hi]) ascending, (key[hi], key[lo]) descending."""
            x, y = (cmp_keys[lo], cmp_keys[hi]) if ascending else (cmp_keys[hi], cmp_keys[lo])
            if c == 1:
                # written with < and >= : in yosys' ECP5 mapping these are a bare carry
                # chain, while > and <= add a LUT equality tree after the chain
                return y < x, y >= x
            sw = None
            for j in range(c):
                xj, yj = x[cb[j]:cb[j + 1]], y[cb[j]:cb[j + 1]]
                g = yj < xj
                if sw is None:
                    sw = g
                else:
                    # x_j >= y_j; the constant top bit keeps yosys' alumacc from sharing
                    # the subtraction of y_j < x_j (which would add an equality tree)
                    ge = Cat(xj, C(1, 1)) >= Cat(yj, C(1, 1))
                    sw = g | (ge & sw)
            return sw, ~sw

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

        for s, stage in enumerate(self.network):
            first = s % self.stages_per_reg == 0
            last = (s + 1) % self.stages_per_reg == 0 or s == self.depth - 1
            if self.register_swap and first:
                # level A: the keys unchanged plus swap_copies registered copies of every
                # swap decision.  Identical registers would be merged by yosys, so copy r
                # starts at init r & 1 (irrelevant to the function: a copy is only read
                # with its vector) and copies 0, 1 hold ~swap = y >= x, the bare carry-out
                # of the comparator chain, while copies 2, 3 hold swap (one LUT inverter)
                extra = []
                for e, (lo, hi, asc) in enumerate(stage):
                    sw, nsw = swap_condition(lo, hi, asc)
                    for r in range(copies):
                        inverted = r < 2
                        extra.append((f"ce{e}_swap{r}" + ("_n" if inverted else ""),
                                      nsw if inverted else sw, r & 1, lo))
                keys, xregs, valid = register(keys, valid, extra)
                cmp_keys = keys

                def swap_of(e, r, xregs=xregs):
                    q = xregs[e * copies + r]
                    return ~q if r < 2 else q
            else:
                conds = [swap_condition(lo, hi, asc)[0] for (lo, hi, asc) in stage]

                def swap_of(e, r, conds=conds):
                    return conds[e]
            keys = exchange(stage, swap_of)
            cmp_keys = keys
            if last:
                if self.compare_copy and s != self.depth - 1:
                    ones = (1 << w) - 1
                    keys, cmp_keys, valid = register(
                        keys, valid, [(f"c{k}", x, ones, k) for k, x in enumerate(keys)])
                else:
                    keys, _, valid = register(keys, valid)
                    cmp_keys = keys
        if not self.skid:
            assert level == self.latency
            m.d.comb += self.o.valid.eq(valid)
            m.d.comb += [self.o.payload[k].eq(keys[k]) for k in range(n)]
            return m
        # output stage: a FIFO of FIFO_DEPTH (3) entries with registered pointers and write
        # enables.  The last level's vector is pushed when it holds one and moves (E(t));
        # ``o`` shows the entry at the read pointer.  Each root keeps the exact occupancy
        # ``occ`` and decides E(t + 2) = [occ(t) - pop(t) + E(t) + E(t + 1) <= depth - 1]:
        # however the consumer stalls, the vectors pushed before that decision takes effect
        # find room, and with o.ready high the pipeline moves every cycle (occ stays 1).
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
        ent = [[Signal(w, name=f"e{e}_k{k}", reset_less=True) for k in range(n)]
               for e in range(depth_f)]

        def inc(x, by):
            return Mux(by, Mux(x == depth_f - 1, 0, x + 1), x)

        wp = Signal(range(depth_f), name="wp")
        wp_next = Signal(range(depth_f))
        m.d.comb += wp_next.eq(inc(wp, push))
        m.d.sync += wp.eq(wp_next)
        # write enables computed a cycle early, one set per ``enable_keys`` keys, each from
        # its own leaf source: the last level holds a valid vector in the next cycle iff it
        # does now and does not move, or the level before moves in; it moves iff E(t + 1),
        # which the roots hold now
        valid_next = Signal()
        m.d.comb += valid_next.eq(Mux(e_now, loads_valid, valid))
        for g in range(egroups):
            moves = leaf_value(next(leaves))
            we = [Signal(name=f"o_e{g}_we{e}") for e in range(depth_f)]
            for e in range(depth_f):
                m.d.sync += we[e].eq(valid_next & moves & (wp_next == e))
                with m.If(we[e]):
                    m.d.sync += [ent[e][k].eq(keys[k])
                                 for k in range(g * ek, min(n, (g + 1) * ek))]
        # the read pointer, copied per ``read_keys`` keys (each copy advances itself on pop)
        rk = self.read_keys
        for h in range(-(-n // rk)):
            rp = Signal(range(depth_f), name=f"o_r{h}_rp")
            m.d.sync += rp.eq(inc(rp, pop))
            for k in range(h * rk, min(n, (h + 1) * rk)):
                with m.Switch(rp):
                    for e in range(depth_f):
                        with m.Case(e):
                            m.d.comb += self.o.payload[k].eq(ent[e][k])
        return m
