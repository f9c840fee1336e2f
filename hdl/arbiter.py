"""Round-robin stream arbiter (stream multiplexer with back-pressure, no starvation).

Two variants (constructor option ``lookahead``), both specified by
:class:`proxima.golden.arbiter.RoundRobinArbiterModel` (the search for the next grant starts
right after the last granted index; the output is a one-entry register that is refilled in
the same cycle it is emptied).

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
---------------------------------------------------------------------------------
``i[k].ready`` depends combinationally on the valids and ``o.ready``; the path from the
valids through the round-robin mask, two lowest-set-bit carry chains and the one-hot
payload select to the output register limits the clock: ECP5-85F 194.5 MHz at ``n = 4``,
95.1 MHz at ``n = 16``.  Latency valid -> ready 0 cycles, valid -> ``o.valid`` 1 cycle;
throughput one transfer per cycle.

``lookahead=True`` (default, the engine's instance): registered grant
--------------------------------------------------------------------
The grant is a one-hot register computed one cycle ahead: ``i[k].ready = gnt[k] & (~o.valid
| o.ready)``.  In each cycle the next grant is the round-robin pick
(:func:`proxima.golden.arbiter.round_robin_pick`, as parallel prefix ORs, no carry chain) over
the requests valid in this cycle minus the one transferring in it, with ``last`` advanced to
the transferring requester; if no other request is valid, the requester that transfers in
this cycle is offered the grant again (so a lone requester streams at one transfer per cycle;
``ready`` may then be high for one cycle on a requester that has dropped ``valid``, which is
allowed).  Both outcomes (grant taken or not) are computed in parallel and selected by
``o.ready``.  The payload select is an AND-OR with the registered one-hot grant.

Spec: :class:`proxima.sim.tb.tb_arbiter.LookaheadArbiterModel` -- the golden model,
unchanged, driven with the *visible* requests (valid in the previous cycle and not
transferred then; else the previous transfer's requester if it is valid again).  Order of
service = the golden round-robin order over the visible requests; ``last``, the output
register and the bound "a waiting requester is passed by at most ``n - 1`` grants to others"
are unchanged.  Cost in time: a request raised in cycle ``t`` is granted at the earliest in
``t + 1`` (valid -> ready 1 cycle, valid -> ``o.valid`` 2 cycles); throughput stays one
transfer per cycle when requests are waiting (saturation, a lone streaming requester); a
cycle is lost only when the sole waiting requests were all raised in that same cycle.
The search queues of the engine issue one read and wait tens of cycles for it, so the extra
cycle of request latency is noise against the NAND service time.

Measured (ECP5-85F, ``python -m proxima.fpga.resources arbiter --preset default
[--set engine.queues=16]``): see the module's report in docs/RESOURCES.md.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from proxima.config import ProximaConfig
from proxima.golden.arbiter import ArbiterError

__all__ = ["RoundRobinArbiter", "ArbiterError"]


class RoundRobinArbiter(wiring.Component):
    """``n``-requester round-robin arbiter of streams carrying ``payload_shape``.

    ``lookahead=True`` (the engine's instance): registered grant, valid -> ready one cycle
    (module doc).  ``lookahead=False``: the combinational grant of the golden cycle model."""

    def __init__(self, n: int, payload_shape, *, lookahead: bool = True):
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
        #: cycles from a request's valid to its ``o.valid`` at the earliest
        self.latency = 2 if lookahead else 1
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
        ``kw``: constructor options (``lookahead``)."""
        return cls(cfg.engine.queues, unsigned(cfg.id_bits), **kw)

    def elaborate(self, platform):
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

        gnt = Signal(n)        # one-hot grant offered in this cycle (0: none)
        gnt_any = Signal()     # gnt != 0
        gnt_above = Signal(n)  # bits strictly above the one in gnt
        mask = Signal(n)       # bits strictly above the last granted requester

        load = Signal()
        fire = Signal()  # the offered grant is consumed in this cycle
        m.d.comb += [load.eq(~self.o.valid | self.o.ready), fire.eq(load & gnt_any)]
        for k in range(n):
            m.d.comb += self.i[k].ready.eq(load & gnt[k])
        xfer = Signal(n)
        m.d.comb += xfer.eq(gnt & valid)

        # next grant, for both outcomes of this cycle (fire or not), selected at the end.
        # No fire: pick over the valids with the mask.  Fire: pick over the valids minus the
        # granted one with the mask "above the granted one"; as that mask excludes the
        # granted bit, only the final term needs the exclusion, and both share the prefix
        # OR of the valids (see _rr_pick).
        pv = _prefix_or(m, valid, "pv")
        oh0, ab0, any0 = _rr_pick(m, valid, valid, mask, pv, "nf")
        oh1, ab1, any1 = _rr_pick(m, valid, valid & ~gnt, gnt_above, pv, "f")
        with m.If(fire):
            m.d.sync += mask.eq(gnt_above)
            with m.If(any1):
                m.d.sync += [gnt.eq(oh1), gnt_above.eq(ab1), gnt_any.eq(1)]
            with m.Else():  # nobody else is eligible: offer the same requester again
                m.d.sync += [gnt.eq(xfer), gnt_any.eq(xfer.any())]
        with m.Else():
            m.d.sync += [gnt.eq(oh0), gnt_above.eq(ab0), gnt_any.eq(any0)]

        grant = Signal(self.grant_bits)
        m.d.comb += grant.eq(_onehot_to_binary(gnt, self.grant_bits))
        payload = Signal(width)
        m.d.comb += payload.eq(_or_reduce(
            [Value.cast(self.i[k].payload) & gnt[k].replicate(width) for k in range(n)],
            width))
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(load & xfer.any()):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.data.eq(payload),
                         self.o.payload.grant.eq(grant)]
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
        m.d.comb += payload.eq(_or_reduce(
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


def _prefix_or(m, x, name):
    """``p[k]`` = some bit of ``x`` below ``k`` (``p[0] = 0``)."""
    n = len(x)
    p = Signal(n, name=name)
    m.d.comb += p.eq(Cat(Const(0, 1), *(x[:k].any() for k in range(1, n))))
    return p


def _rr_pick(m, v, e, above_last, pv, name):
    """Round-robin pick over the eligible bits ``e`` with the thermometer ``above_last``
    (bits strictly above the last grant): returns (one-hot pick, bits strictly above the
    pick, any eligible).  The pick is the lowest eligible bit above ``last`` if there is
    one, else the lowest eligible bit -- :func:`proxima.golden.arbiter.round_robin_pick`.

    ``e`` is ``v`` or ``v`` minus the bit of ``last`` itself; ``pv`` is the prefix OR of
    ``v``.  As prefix ORs (no carry chain): pick[k] = e[k] & (above_last[k] ? no eligible bit
    above last below k : no eligible bit below k and none above last).  With ``e = v`` minus
    the bit of ``last``, "no eligible bit below k" for ``k`` not above ``last`` (the only
    case where it matters) equals ``~pv[k]``: the excluded bit is not below such a ``k``."""
    n = len(v)
    a = Signal(n, name=f"{name}_a")
    m.d.comb += a.eq(v & above_last)  # = e & above_last: above_last excludes last
    any_a = Signal(name=f"{name}_any_a")
    m.d.comb += any_a.eq(a.any())
    pa = _prefix_or(m, a, f"{name}_pa")
    oh = Signal(n, name=f"{name}_oh")
    ab = Signal(n, name=f"{name}_above")
    m.d.comb += [
        oh.eq(e & ((above_last & ~pa) | (~above_last & ~pv & ~any_a.replicate(n)))),
        ab.eq(Mux(any_a, pa, pv)),
    ]
    return oh, ab, e.any()


def _onehot_to_binary(onehot, bits):
    """Binary index of a one-hot value: bit b is the OR of the positions with bit b set."""
    return Cat(_or_reduce([onehot[k] for k in range(len(onehot)) if (k >> b) & 1], 1)
               for b in range(bits))


def _or_reduce(values, width):
    """OR of a list of values (balanced tree), ``width`` bits."""
    values = list(values)
    if not values:
        return Const(0, width)
    while len(values) > 1:
        values = [values[k] | values[k + 1] if k + 1 < len(values) else values[k]
                  for k in range(0, len(values), 2)]
    return values[0]
