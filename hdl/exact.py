"""Exact-distance unit: squared L2 between the loaded query and a stream of raw vectors.

Bit-exact twin of :func:`proxima.golden.distance.exact_distances` (the spec):
``dist = sum_d (x[d] - q[d])**2`` over ``vec.dim`` unsigned ``vec.elem_bits``-bit elements,
``cfg.exact_dist_bits`` wide (never overflows).  ``L = engine.exact_lanes`` elements are
consumed per cycle (``L`` squarers and an ``L``-input adder tree feeding one accumulator).

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

Pipeline
--------
The arithmetic pipeline never stalls (no clock enables: nothing but registers between the
stages); back-pressure is handled with credits.  A vector reserves one entry of the output
FIFO (``fifo_depth`` entries, LUT RAM + output register) when its first beat is accepted,
and the entry is freed when its distance leaves on ``dists``; ``vecs.ready`` is low at a
first beat while all entries are reserved.  ``fifo_depth`` is chosen so that a consumer
that is always ready never sees ``vecs.ready`` drop: one beat per cycle, one vector per
``beats`` cycles.  Stages of an accepted beat:

1. ``A0``: the ``L`` vector elements and the query beat (read from a small RAM with an
   asynchronous read port -- LUT RAM -- at the beat index) are registered; lanes past
   ``dim`` in a last beat are forced to 0 in both;
2. ``A1``: ``|x - q|`` per lane (both differences computed, the non-negative one kept);
3. ``square_stages`` stages: the square of each ``|x - q|`` in LUT logic
   (:func:`proxima.hdl.lib.arith.square_pipeline`: ``a = h * 2**k + l`` with ``k = elem_bits // 2``;
   ``a**2 = (h**2 << 2k | l**2) + (h * l << (k + 1))``, the small squares as truth tables,
   ``h * l`` as a pipelined shift-and-add, one carry chain per stage) -- no DSP block: the
   ``MULT18X18D`` has no input/output registers when inferred by yosys 0.70 (its
   ``synth_ecp5`` maps ``$mul`` through ``dsp_map_18x18.v`` with every ``REG_*`` at
   ``NONE`` and has no register-packing pass for ECP5), and its 3.9 ns combinational delay
   plus routing does not fit the target clock cycle;
4. ``tree_stages = ceil(log2(L))`` stages: the ``L``-input adder tree, one adder level
   (one carry chain) per stage;
5. accumulator (restarting at a vector's first beat); on a vector's last beat the output
   register is loaded, and it is written into the output FIFO the next cycle;
6. the output queue (:class:`proxima.hdl.lib.fifo.Queue`, ``buffered``): 2 cycles from
   write to ``dists.valid`` when it is empty.

A vector's distance is valid ``latency = 5 + square_stages + tree_stages`` cycles after its
last beat is accepted (10 at ``elem_bits = 8``, ``L = 4``).

Resources and clock rate: ``docs/RESOURCES.md``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from proxima.config import ProximaConfig
from proxima.hdl.lib.arith import (abs_diff_stage, pipelined_tree, square_pipeline, square_stages,
                                   tree_depth)
from proxima.hdl.lib.fifo import BUFFERED_QUEUE_LATENCY, Queue
from proxima.hdl.lib.logic import pipe_reg

__all__ = ["ExactDistanceUnit"]


class ExactDistanceUnit(wiring.Component):
    """Squared-L2 unit with ``engine.exact_lanes`` lanes.

    Attributes
    ----------
    lanes, beats (per vector), square_stages, tree_stages, latency (last beat accepted ->
    distance valid, no stalls), fifo_depth (output FIFO entries = vectors in flight),
    beat_layout, vec_layout, dist_layout.
    """

    def __init__(self, cfg: ProximaConfig):
        self.cfg = cfg
        self.eb = cfg.vec.elem_bits
        self.dim = cfg.vec.dim
        self.lanes = cfg.engine.exact_lanes
        self.beats = -(-self.dim // self.lanes)
        self.square_stages = square_stages(self.eb)
        self.tree_stages = tree_depth(self.lanes)
        # A0, A1, squares, tree, accumulator/output register, FIFO write, FIFO output
        self.latency = (2 + self.square_stages + self.tree_stages + 1
                        + BUFFERED_QUEUE_LATENCY)
        # a vector holds its entry from its first beat to its distance leaving: at full
        # rate ceil((beats - 1 + latency + 1) / beats) vectors; one spare entry
        self.fifo_depth = -(-(self.beats + self.latency) // self.beats) + 1
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

        # ---- output FIFO and credits ---------------------------------------------------------
        fifo = m.submodules.out_fifo = Queue(self.dist_layout, self.fifo_depth, buffered=True,
                                             credited=True)
        wiring.connect(m, fifo.o, wiring.flipped(self.dists))
        reserved = Signal(range(self.fifo_depth + 1))
        pop = Signal()
        m.d.comb += pop.eq(self.dists.valid & self.dists.ready)

        # ---- vectors ---------------------------------------------------------------------
        accept = Signal()
        first = vcnt == 0
        last = vcnt == beats - 1
        m.d.comb += [
            self.vecs.ready.eq(qvalid & (qcnt == 0) & (~first | (reserved != self.fifo_depth))),
            accept.eq(self.vecs.valid & self.vecs.ready),
            qrp.addr.eq(vcnt),
        ]
        m.d.sync += reserved.eq(reserved + (accept & first) - pop)
        with m.If(accept):
            m.d.sync += vcnt.eq(Mux(last, 0, vcnt + 1))

        id_reg = Signal(cfg.id_bits)
        with m.If(accept & first):
            m.d.sync += id_reg.eq(self.vecs.payload.id)

        # valid/first/last/id travel alongside the data, index j = after stage j + 1
        depth = 2 + self.square_stages + self.tree_stages
        sv = [Signal(name=f"s{j}_valid") for j in range(depth)]
        sf = [Signal(name=f"s{j}_first", reset_less=True) for j in range(depth)]
        sl = [Signal(name=f"s{j}_last", reset_less=True) for j in range(depth)]
        sid = [Signal(cfg.id_bits, name=f"s{j}_id", reset_less=True) for j in range(depth)]
        m.d.sync += [
            sv[0].eq(accept), sf[0].eq(first), sl[0].eq(last),
            sid[0].eq(Mux(first, self.vecs.payload.id, id_reg)),
        ]
        for j in range(1, depth):
            m.d.sync += [sv[j].eq(sv[j - 1]), sf[j].eq(sf[j - 1]), sl[j].eq(sl[j - 1]),
                         sid[j].eq(sid[j - 1])]

        # stage A0: register the beat and the query beat (lanes past dim forced to 0)
        sqs = []
        for lane in range(L):
            x = self.vecs.payload.elems[lane]
            q = qrp.data[lane * eb:(lane + 1) * eb]
            if lane >= last_lanes:  # only in the last beat can a lane lie past dim
                x, q = Mux(last, 0, x), Mux(last, 0, q)
            xr = pipe_reg(m, x, eb, f"a0_x{lane}")
            qr = pipe_reg(m, q, eb, f"a0_q{lane}")
            # stage A1: |x - q|; then the square
            a = abs_diff_stage(m, xr, qr, eb, f"a1_d{lane}")
            sqs.append(square_pipeline(m, a, eb, f"sq{lane}"))
        # adder tree, one level per stage
        tree_out, n_tree = pipelined_tree(m, sqs, "t")
        assert n_tree == self.tree_stages

        # accumulator and output register
        acc = Signal(cfg.exact_dist_bits, reset_less=True)
        out = Signal(self.dist_layout, reset_less=True)
        out_valid = Signal()
        acc_next = Signal(cfg.exact_dist_bits)
        c_valid, c_first, c_last, c_id = sv[-1], sf[-1], sl[-1], sid[-1]
        m.d.comb += acc_next.eq(Mux(c_first, 0, acc) + tree_out)
        m.d.sync += out_valid.eq(c_valid & c_last)
        with m.If(c_valid):
            m.d.sync += acc.eq(acc_next)
            with m.If(c_last):
                m.d.sync += [out.dist.eq(acc_next), out.id.eq(c_id)]
        m.d.comb += [fifo.i.valid.eq(out_valid), fifo.i.payload.eq(out)]
        return m
