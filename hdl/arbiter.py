"""Round-robin stream arbiter (stream multiplexer with back-pressure, no starvation).

Three structures, chosen by the constructor options ``lookahead``, ``group`` and
``flat_max``; each is specified cycle by cycle by a golden model of
:mod:`proxima.golden.arbiter` (:func:`~proxima.golden.arbiter.arbiter_model` returns it):

=====================================  ===========================  =======  =====================
structure                              spec                         latency  built when
=====================================  ===========================  =======  =====================
flat, combinational grant              ``RoundRobinArbiterModel``   1        ``lookahead=False``
flat, registered grant                 ``LookaheadArbiterModel``    2        ``n <= flat_max`` (16)
tree of registered-grant nodes         ``TreeArbiterModel``         2 L      ``n > max(flat_max,
                                                                             group)``
=====================================  ===========================  =======  =====================

(latency: cycles from a request's ``valid`` to its ``o.valid``, everything idle; ``L``: node
levels of the tree, 2 for 17..64 requesters and 3 for 65..512 with ``group = 8``.)  All
three move one transfer per cycle under load.  Resources and clock rates per structure:
``docs/RESOURCES.md``.

Interface
---------
``i``: ``In(stream.Signature(payload_shape)).array(n)`` -- requester k is ``i[k]``
(Verilog ports ``i__<k>__payload``, ``i__<k>__valid``, ``i__<k>__ready``).
``o``: ``Out(stream.Signature(StructLayout({"data": payload_shape, "grant": grant_bits})))``
-- the payload of the granted requester and its index (Verilog: ``{grant, data}``, ``data``
in the low bits).  ``o.valid`` and the payload are registers.  Requesters obey the stream
rule (valid and payload held until the transfer).

``lookahead=False``: ``i[k].ready`` depends combinationally on the valids and ``o.ready``;
valid -> ready 0 cycles, valid -> ``o.valid`` 1 cycle.

``lookahead=True``, ``n <= flat_max``: the grant is a one-hot register ``gnt`` decided one
cycle ahead (:func:`_lookahead_grant`), ``i[k].ready = gnt[k] & (~o.valid | o.ready)``; a new
grant is picked (:func:`proxima.hdl.lib.logic.rr_pick`, the golden ``round_robin_pick``)
whenever none is offered or the offer is consumed, and an offer held by a stalled output
is kept.  Valid -> ready 1 cycle, valid -> ``o.valid`` 2 cycles; a waiting requester is
passed by at most ``n - 1`` grants to others.  A cycle is lost only when the sole waiting
requests were raised in that same cycle, or when an offer held through an output stall has
gone stale (a lone requester re-offered the grant without a new request).

``lookahead=True``, ``n > max(flat_max, group)``: requester ``k`` belongs to leaf ``k //
group`` (``group`` a power of two, default 8; the last leaf may be smaller).  Every node
(:class:`_QueuedNode`, spec :class:`~proxima.golden.arbiter.QueuedArbiterNodeModel`) is the
registered-grant pick (at most ``group`` wide) in front of a
:class:`~proxima.hdl.lib.fifo.SkidBuffer` whose ``ready`` is a register; the leaves' queues
are the requesters of the next level, up to one root whose queue is ``o``.  The output
grant is the leaf-local grant with the upper levels' grants concatenated above it
(``log2(group)`` bits per level).  Every ``ready`` and pick enable is a function of
registers only, so no signal crosses more than one node in a cycle.  Behaviour (the RTL
matches :class:`~proxima.golden.arbiter.TreeArbiterModel` cycle for cycle):

* latency ``2 L``: a lone request raised in ``t`` is on ``o`` in ``t + 2 L``;
* one output per cycle while requests wait and ``o.ready`` stays high; after ``o.ready``
  drops the queues fill (two entries per node) and ``ready`` falls one cycle later;
* round robin inside each node over the inputs that hold a request, not one global round
  robin;
* a requester that keeps ``valid`` high is passed by at most
  :attr:`~proxima.golden.arbiter.TreeArbiterModel.wait_bound` transfers of others.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from proxima.config import ProximaConfig
from proxima.golden.arbiter import (
    DEFAULT_FLAT_MAX, DEFAULT_GROUP, ArbiterError, TreeArbiterModel, tree_groups, uses_tree,
)
from proxima.hdl.lib.fifo import SkidBuffer
from proxima.hdl.lib.logic import onehot_to_binary, or_tree, prefix_or, rr_pick

__all__ = ["RoundRobinArbiter", "ArbiterError", "DEFAULT_GROUP", "DEFAULT_FLAT_MAX"]


class RoundRobinArbiter(wiring.Component):
    """``n``-requester round-robin arbiter of streams carrying ``payload_shape``.

    ``lookahead=True`` (the engine's instance): registered grant, valid -> ready one cycle;
    flat (latency 2) up to ``flat_max`` requesters, above ``max(flat_max, group)`` a tree of
    nodes of ``group`` requesters with two-entry queues (latency ``2 * levels``).
    ``group=None``: never a tree.  ``lookahead=False``: the combinational grant of the
    golden cycle model (latency 1).  Module doc for the cycle behaviour;
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
        self.grant_bits = max(1, ceil_log2(n))
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
        m.d.comb += grant.eq(onehot_to_binary(gnt, self.grant_bits))
        payload = Signal(width)
        m.d.comb += payload.eq(_select(self.i, gnt, width))
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
        lg = exact_log2(G)
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
        m.d.comb += grant.eq(onehot_to_binary(onehot, self.grant_bits))
        # payload: AND-OR of the inputs with the one-hot grant
        payload = Signal(width)
        m.d.comb += payload.eq(_select(self.i, onehot, width))

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
    pv, anyv = prefix_or(m, valid, "pv")
    oh, ab = rr_pick(m, valid, nmask, pv, "rr")
    with m.If(fire):
        m.d.sync += mask.eq(nmask)
    with m.If(fire | ~gnt_any):
        m.d.sync += [gnt.eq(oh), gnt_any.eq(anyv),
                     nmask.eq(Mux(anyv, ab, Mux(fire, nmask, mask)))]
    return gnt


class _QueuedNode(wiring.Component):
    """One node of the tree (spec :class:`proxima.golden.arbiter.QueuedArbiterNodeModel`):
    the registered grant of :func:`_lookahead_grant` in front of a
    :class:`~proxima.hdl.lib.fifo.SkidBuffer` whose ``ready`` is a register.  ``i[k].ready =
    queue.ready & gnt[k]`` and the grant's clock enable depend on registers only;
    ``o.ready`` enters only the queue's own enables.  ``n`` may
    be 1 (the last leaf of a tree); ``o.payload.grant`` has ``grant_bits`` bits (the leaves
    use ``log2(group)`` so that the upper grant can be concatenated above it)."""

    def __init__(self, n: int, payload_shape, *, grant_bits: int | None = None):
        self.n = int(n)
        self.grant_bits = grant_bits or max(1, ceil_log2(self.n))
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
        m.submodules.queue = queue = SkidBuffer(self.out_layout)
        load = Signal()
        m.d.comb += load.eq(queue.i.ready)
        gnt = _lookahead_grant(m, valid, load)
        for k in range(n):
            m.d.comb += self.i[k].ready.eq(load & gnt[k])
        payload = Signal(width)
        m.d.comb += payload.eq(_select(self.i, gnt, width))
        m.d.comb += [queue.i.valid.eq((gnt & valid).any()),
                     queue.i.payload.eq(Cat(payload, onehot_to_binary(gnt, self.grant_bits)))]
        wiring.connect(m, queue.o, wiring.flipped(self.o))
        return m


def _select(ports, onehot, width: int):
    """The payload of the port selected by ``onehot``: an AND-OR of all payloads."""
    return or_tree([Value.cast(p.payload) & onehot[k].replicate(width)
                    for k, p in enumerate(ports)], width)
