"""Exact-distance unit: squared L2 between the loaded query and a stream of raw vectors.

Bit-exact twin of :func:`proxima.golden.distance.exact_distances` (the spec):
``dist = sum_d (x[d] - q[d])**2`` over ``vec.dim`` unsigned ``vec.elem_bits``-bit elements,
``cfg.exact_dist_bits`` wide (never overflows).  ``L = engine.exact_lanes`` elements are
consumed per cycle (``L`` multipliers and an ``L``-input adder tree feeding one accumulator).

Interface
---------
``query``        ``In(stream(ArrayLayout(unsigned(elem_bits), L)))``: the query as
                 ``beats = ceil(dim / L)`` beats, element ``b * L + l`` in lane ``l`` of beat
                 ``b``; lanes past ``dim`` in the last beat are ignored.  Loading a query is
                 only possible between vectors (``query.ready`` is low while a vector is
                 half received).
``query_valid``  ``Out(1)``: a complete query is loaded (vectors are accepted).
``vecs``         ``In(stream({elems: ArrayLayout(unsigned(elem_bits), L), id}))``: raw
                 vectors, ``beats`` beats each, same element order as the query; ``id`` is
                 taken from the first beat of each vector.
``dists``        ``Out(stream({dist, id}))``: one beat per vector, in order.

Pipeline (all stages share the enable ``~dists.valid | dists.ready``): stage A registers
the ``L`` differences ``x - q`` of an accepted beat (the query beat comes from a small RAM
with an asynchronous read port -- LUT RAM / registers -- addressed by the beat index);
stage B registers the ``L`` squares (lanes past ``dim`` in a last beat masked to 0; one
``MULT18X18D``-class multiplier per lane between registers); stage C adds the ``L`` squares
to the accumulator (restarting at a vector's first beat) and, on the vector's last beat,
loads the output register.  One beat per cycle; a vector's distance is valid ``latency =
3`` cycles after its last beat is accepted.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from proxima.config import ProximaConfig

__all__ = ["ExactDistanceUnit"]


def _tree_sum(values):
    values = list(values)
    while len(values) > 1:
        nxt = [values[i] + values[i + 1] for i in range(0, len(values) - 1, 2)]
        if len(values) % 2:
            nxt.append(values[-1])
        values = nxt
    return values[0]


class ExactDistanceUnit(wiring.Component):
    """Squared-L2 unit with ``engine.exact_lanes`` lanes.

    Attributes
    ----------
    lanes, beats (per vector), latency (3: last beat accepted -> distance valid),
    beat_layout, vec_layout, dist_layout.
    """

    def __init__(self, cfg: ProximaConfig):
        self.cfg = cfg
        self.eb = cfg.vec.elem_bits
        self.dim = cfg.vec.dim
        self.lanes = cfg.engine.exact_lanes
        self.beats = -(-self.dim // self.lanes)
        self.latency = 3
        self.beat_layout = data.ArrayLayout(unsigned(self.eb), self.lanes)
        self.vec_layout = data.StructLayout({"elems": self.beat_layout,
                                             "id": unsigned(cfg.id_bits)})
        self.dist_layout = data.StructLayout({"dist": unsigned(cfg.exact_dist_bits),
                                              "id": unsigned(cfg.id_bits)})
        super().__init__({
            "query": In(stream.Signature(self.beat_layout)),
            "query_valid": Out(1),
            "vecs": In(stream.Signature(self.vec_layout)),
            "dists": Out(stream.Signature(self.dist_layout)),
        })

    @classmethod
    def from_config(cls, cfg: ProximaConfig) -> "ExactDistanceUnit":
        return cls(cfg)

    def elaborate(self, platform):
        m = Module()
        cfg, eb, L, beats = self.cfg, self.eb, self.lanes, self.beats
        last_lanes = self.dim - (beats - 1) * L  # lanes used in the last beat (1..L)

        qmem = Memory(shape=unsigned(L * eb), depth=beats, init=[])
        m.submodules.query_ram = qmem
        qwp = qmem.write_port()
        qrp = qmem.read_port(domain="comb")

        qcnt = Signal(range(beats))
        vcnt = Signal(range(beats))
        qvalid = Signal()
        m.d.comb += self.query_valid.eq(qvalid)

        # ---- query load --------------------------------------------------------------------
        q_acc = Signal()
        m.d.comb += [
            self.query.ready.eq(vcnt == 0),
            q_acc.eq(self.query.valid & self.query.ready),
            qwp.en.eq(q_acc),
            qwp.addr.eq(qcnt),
            qwp.data.eq(self.query.payload),
        ]
        with m.If(q_acc):
            with m.If(qcnt == beats - 1):
                m.d.sync += [qcnt.eq(0), qvalid.eq(1)]
            with m.Else():
                m.d.sync += [qcnt.eq(qcnt + 1), qvalid.eq(0)]

        # ---- vectors ---------------------------------------------------------------------
        advance = Signal()
        accept = Signal()
        m.d.comb += [
            advance.eq(~self.dists.valid | self.dists.ready),
            self.vecs.ready.eq(advance & qvalid & (qcnt == 0)),
            accept.eq(self.vecs.valid & self.vecs.ready),
            qrp.addr.eq(vcnt),
        ]
        first = vcnt == 0
        last = vcnt == beats - 1
        with m.If(accept):
            m.d.sync += vcnt.eq(Mux(last, 0, vcnt + 1))

        id_reg = Signal(cfg.id_bits)
        with m.If(accept & first):
            m.d.sync += id_reg.eq(self.vecs.payload.id)

        # stage A: differences
        a_valid, a_first, a_last = Signal(), Signal(), Signal()
        a_id = Signal(cfg.id_bits, reset_less=True)
        a_diff = [Signal(signed(eb + 1), name=f"a_diff{lane}", reset_less=True)
                  for lane in range(L)]
        # stage B: squares
        b_valid, b_first, b_last = Signal(), Signal(), Signal()
        b_id = Signal(cfg.id_bits, reset_less=True)
        b_sq = [Signal(2 * eb, name=f"b_sq{lane}", reset_less=True) for lane in range(L)]
        # stage C: accumulator and output
        acc = Signal(cfg.exact_dist_bits)
        out = Signal(self.dist_layout)
        out_valid = Signal()
        acc_next = Signal(cfg.exact_dist_bits)
        m.d.comb += acc_next.eq(Mux(b_first, 0, acc) + _tree_sum(b_sq))
        with m.If(advance):
            m.d.sync += [
                a_valid.eq(accept), a_first.eq(first), a_last.eq(last),
                a_id.eq(Mux(first, self.vecs.payload.id, id_reg)),
                b_valid.eq(a_valid), b_first.eq(a_first), b_last.eq(a_last), b_id.eq(a_id),
                out_valid.eq(b_valid & b_last),
            ]
            for lane in range(L):
                sq = (a_diff[lane] * a_diff[lane]).as_unsigned()
                if lane >= last_lanes:  # only in the last beat can a lane lie past dim
                    sq = Mux(a_last, 0, sq)
                m.d.sync += [
                    a_diff[lane].eq(self.vecs.payload.elems[lane]
                                    - qrp.data[lane * eb:(lane + 1) * eb]),
                    b_sq[lane].eq(sq),
                ]
            with m.If(b_valid):
                m.d.sync += acc.eq(acc_next)
                with m.If(b_last):
                    m.d.sync += [out.dist.eq(acc_next), out.id.eq(b_id)]
        m.d.comb += [self.dists.valid.eq(out_valid), self.dists.payload.eq(out)]
        return m
