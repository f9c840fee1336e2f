"""Round-robin stream arbiter (stream multiplexer with back-pressure, no starvation).

Behaviour is defined cycle by cycle by :class:`proxima.golden.arbiter.RoundRobinArbiterModel`
(the search for the next grant starts right after the last granted index; the output is a
one-entry register that is refilled in the same cycle it is emptied).

Interface
---------
``i``: ``In(stream.Signature(payload_shape)).array(n)`` -- requester k is ``i[k]``
(Verilog ports ``i__<k>__payload``, ``i__<k>__valid``, ``i__<k>__ready``)
``o``: ``Out(stream.Signature(StructLayout({"data": payload_shape, "grant": grant_bits})))``
-- the payload of the granted requester and its index.  In the Verilog the flat payload
is ``{grant, data}`` (``data`` in the least significant bits).

``i[k].ready`` depends combinationally on ``o.ready`` and on the valids (allowed by the
stream rules); ``o.valid`` comes from a register.  Latency one cycle, throughput one
transfer per cycle.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from proxima.config import ProximaConfig
from proxima.golden.arbiter import ArbiterError

__all__ = ["RoundRobinArbiter", "ArbiterError"]


class RoundRobinArbiter(wiring.Component):
    """``n``-requester round-robin arbiter of streams carrying ``payload_shape``."""

    def __init__(self, n: int, payload_shape):
        n = int(n)
        if n < 2:
            raise ArbiterError(f"arbiter needs at least 2 requesters, got {n}")
        try:
            Shape.cast(payload_shape)
        except TypeError as e:
            raise ArbiterError(f"bad payload shape {payload_shape!r}: {e}") from None
        self.n = n
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
    def from_config(cls, cfg: ProximaConfig) -> "RoundRobinArbiter":
        """The engine's instance: the search queues compete for NAND reads of vertex ids."""
        return cls(cfg.engine.queues, unsigned(cfg.id_bits))

    def elaborate(self, platform):
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

        # binary index of the one-hot grant: bit b is the OR of the requesters with bit b set
        grant = Signal(self.grant_bits)
        m.d.comb += grant.eq(Cat(
            _or_reduce([onehot[k] for k in range(n) if (k >> b) & 1], 1)
            for b in range(self.grant_bits)))
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


def _or_reduce(values, width):
    """OR of a list of values (balanced tree), ``width`` bits."""
    values = list(values)
    if not values:
        return Const(0, width)
    while len(values) > 1:
        values = [values[k] | values[k + 1] if k + 1 < len(values) else values[k]
                  for k in range(0, len(values), 2)]
    return values[0]
