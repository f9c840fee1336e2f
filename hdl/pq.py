"""PQ unit: ADT build from the query and the codebook, then PQ distances of code streams.

Bit-exact twin of :func:`proxima.golden.pq.build_adt` and :func:`proxima.golden.pq.pq_distances`
(the spec, documented there): ``ADT[m][c] = min(adt_max, (raw + half) >> adt_shift)`` with
``raw = sum_d (q[m*dsub + d] - C[m][c][d])**2`` and ``half = 1 << (adt_shift - 1)`` (0 when
the shift is 0); the PQ distance of a code ``c`` is ``sum_m ADT[m][c[m]]``, ``pq_dist_bits``
wide.  All widths come from the configuration (``vec.elem_bits``, ``cfg.dsub``, ``pq.M``,
``pq.ksub``, ``pq.adt_bits``, ``cfg.adt_raw_bits``, ``cfg.adt_shift``, ``cfg.adt_max``,
``cfg.pq_dist_bits``, ``cfg.id_bits``, ``engine.pq_codes_per_cycle``).

Interface
---------
``cb_wr``    ``In(stream{addr, centroid})``: codebook write port; ``addr = m * ksub + c``,
             ``centroid`` = ``dsub`` elements (element 0 in the low bits).  Not ready while
             an ADT build runs.  The codebook may also be given at elaboration
             (``codebook=`` array of shape ``(M, ksub, dsub)``): it is then the RAM's initial
             contents.
``query``    ``In(stream(unsigned(elem_bits)))``: the query, ``dim`` elements in order.  The
             ADT build starts when the last element is accepted; ``query`` and ``cb_wr``
             are not ready while it runs.
``adt_out``  ``Out(stream{m, c, value})``: every ADT entry as it is written, ``m``-major,
             ``c``-minor (``M * ksub`` beats per query).  It back-pressures the build; tie
             ``ready`` high when unused.
``adt_valid`` ``Out(1)``: the ADT of the last query is complete (codes are accepted).
``codes``    ``In(stream(ArrayLayout({used, id, code[M]}, P)))``: ``P =
             engine.pq_codes_per_cycle`` lanes per beat; a lane with ``used = 0`` is a hole
             (e.g. the tail of a neighbour list) and comes out with ``used = 0``.
``dists``    ``Out(stream(ArrayLayout({used, id, dist}, P)))``: one beat per input beat, lanes
             in place, ``dist = sum_m ADT[m][code[m]]``.

Micro-architecture
------------------
* Codebook: one RAM of ``M * ksub`` words of ``dsub * elem_bits`` bits (one centroid per
  word), a write port for ``cb_wr`` and a synchronous read port for the build.
* ADT build: one entry per cycle in a 3-stage pipeline (address -> centroid word ->
  ``dsub`` squared differences, adder tree, round-half-up shift, saturation -> register
  feeding ``adt_out``); the entry is written into the ADT RAM as it enters the output
  register.  ``M * ksub`` cycles per query plus 2 when ``adt_out`` never stalls.
* ADT storage: ``M`` RAMs of ``ksub`` entries (``pq.adt_bits`` wide), one per subspace,
  each with one write port and ``P`` synchronous read ports (``P`` copies of each RAM on an
  FPGA: the table is replicated so that ``P * M`` look-ups happen per cycle).
* Distances: fully pipelined, ``P`` codes per cycle, latency 2 (look-up cycle, then the
  ``M``-input adder tree into the output register).  All stages share one enable
  ``advance = ~dists.valid | dists.ready``.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from proxima.config import ProximaConfig

__all__ = ["PQError", "PQUnit", "pack_codebook"]


class PQError(ValueError):
    """Bad parameters or a codebook that does not fit the configuration."""


def pack_codebook(cfg: ProximaConfig, codebook: np.ndarray) -> list[int]:
    """Codebook ``(M, ksub, dsub)`` -> RAM words (``addr = m * ksub + c``, element 0 low)."""
    M, ksub, dsub, eb = cfg.pq.M, cfg.pq.ksub, cfg.dsub, cfg.vec.elem_bits
    cb = np.asarray(codebook)
    if cb.shape != (M, ksub, dsub):
        raise PQError(f"codebook must have shape (M, ksub, dsub) = {(M, ksub, dsub)}, "
                      f"got {cb.shape}")
    if not np.issubdtype(cb.dtype, np.integer):
        raise PQError(f"codebook must hold integers, got dtype {cb.dtype}")
    if cb.size and (cb.min() < 0 or cb.max() > cfg.vec.elem_max):
        raise PQError(f"codebook elements must be in 0..{cfg.vec.elem_max}")
    words = []
    for row in cb.reshape(M * ksub, dsub).astype(np.int64):
        w = 0
        for d, v in enumerate(row):
            w |= int(v) << (d * eb)
        words.append(w)
    return words


def _tree_sum(values):
    """Balanced adder tree (Amaranth widens each sum by one bit: never overflows)."""
    values = list(values)
    while len(values) > 1:
        nxt = [values[i] + values[i + 1] for i in range(0, len(values) - 1, 2)]
        if len(values) % 2:
            nxt.append(values[-1])
        values = nxt
    return values[0]


class PQUnit(wiring.Component):
    """ADT builder + ``P``-codes-per-cycle PQ distance pipeline.

    Parameters
    ----------
    cfg : ProximaConfig
    codebook : numpy array ``(M, ksub, dsub)``, optional
        Initial codebook RAM contents (the host can still overwrite it through ``cb_wr``).

    Attributes
    ----------
    M, ksub, dsub, lanes (``P``), entries (``M * ksub``), latency (distance pipeline, 2),
    build_latency (cycles from the last query element to ``adt_valid`` without stalls),
    cb_layout, code_lane, dist_lane, adt_layout.
    """

    def __init__(self, cfg: ProximaConfig, *, codebook: np.ndarray | None = None):
        self.cfg = cfg
        self.M, self.ksub, self.dsub = cfg.pq.M, cfg.pq.ksub, cfg.dsub
        self.eb = cfg.vec.elem_bits
        self.lanes = cfg.engine.pq_codes_per_cycle
        self.entries = self.M * self.ksub
        self.latency = 2
        self.build_latency = self.entries + 2
        self.init_words = pack_codebook(cfg, codebook) if codebook is not None else []
        self.cb_layout = data.StructLayout({
            "addr": unsigned(max(1, (self.entries - 1).bit_length())),
            "centroid": data.ArrayLayout(unsigned(self.eb), self.dsub),
        })
        self.code_lane = data.StructLayout({
            "used": unsigned(1),
            "id": unsigned(cfg.id_bits),
            "code": data.ArrayLayout(unsigned(cfg.pq.code_bits), self.M),
        })
        self.dist_lane = data.StructLayout({
            "used": unsigned(1),
            "id": unsigned(cfg.id_bits),
            "dist": unsigned(cfg.pq_dist_bits),
        })
        self.adt_layout = data.StructLayout({
            "m": unsigned(max(1, (self.M - 1).bit_length())),
            "c": unsigned(cfg.pq.code_bits),
            "value": unsigned(cfg.pq.adt_bits),
        })
        super().__init__({
            "cb_wr": In(stream.Signature(self.cb_layout)),
            "query": In(stream.Signature(unsigned(self.eb))),
            "adt_out": Out(stream.Signature(self.adt_layout)),
            "adt_valid": Out(1),
            "codes": In(stream.Signature(data.ArrayLayout(self.code_lane, self.lanes))),
            "dists": Out(stream.Signature(data.ArrayLayout(self.dist_lane, self.lanes))),
        })

    @classmethod
    def from_config(cls, cfg: ProximaConfig) -> "PQUnit":
        return cls(cfg)

    def _entry(self, m, qsub, cword):
        """Golden ADT arithmetic on one (query sub-vector, centroid word) pair."""
        cfg, eb = self.cfg, self.eb
        sq = []
        for d in range(self.dsub):
            diff = Signal(signed(eb + 1), name=f"diff{d}")
            m.d.comb += diff.eq(qsub[d] - cword[d * eb:(d + 1) * eb])
            sq.append((diff * diff).as_unsigned())
        raw = Signal(cfg.adt_raw_bits)
        m.d.comb += raw.eq(_tree_sum(sq))
        s = cfg.adt_shift
        rounded = Signal(cfg.adt_raw_bits + 1)
        m.d.comb += rounded.eq((raw + (1 << (s - 1))) >> s if s else raw)
        value = Signal(cfg.pq.adt_bits)
        m.d.comb += value.eq(Mux(rounded > cfg.adt_max, cfg.adt_max, rounded))
        return value

    def elaborate(self, platform):
        m = Module()
        cfg, M, ksub, dsub, eb, P = self.cfg, self.M, self.ksub, self.dsub, self.eb, self.lanes

        # ---- codebook RAM -----------------------------------------------------------------
        cb = Memory(shape=unsigned(dsub * eb), depth=self.entries, init=self.init_words)
        m.submodules.codebook = cb
        cb_wp = cb.write_port()
        cb_rp = cb.read_port()

        building = Signal()
        adt_valid = Signal()
        m.d.comb += self.adt_valid.eq(adt_valid)

        m.d.comb += [
            self.cb_wr.ready.eq(~building),
            cb_wp.en.eq(self.cb_wr.valid & self.cb_wr.ready),
            cb_wp.addr.eq(self.cb_wr.payload.addr),
            cb_wp.data.eq(self.cb_wr.payload.centroid),
        ]

        # ---- query register (shift in, element 0 ends in the low bits) ---------------------
        qreg = Signal(data.ArrayLayout(data.ArrayLayout(unsigned(eb), dsub), M))
        qcnt = Signal(range(cfg.vec.dim))
        m.d.comb += self.query.ready.eq(~building)
        with m.If(self.query.valid & self.query.ready):
            m.d.sync += qreg.eq(Cat(qreg.as_value()[eb:], self.query.payload))
            with m.If(qcnt == cfg.vec.dim - 1):
                m.d.sync += [qcnt.eq(0), building.eq(1), adt_valid.eq(0)]
            with m.Else():
                m.d.sync += qcnt.eq(qcnt + 1)

        # ---- ADT build pipeline -----------------------------------------------------------
        issue = Signal(range(self.entries + 1))
        b_adv = Signal()
        m.d.comb += b_adv.eq(~self.adt_out.valid | self.adt_out.ready)
        do_issue = Signal()
        m.d.comb += [
            do_issue.eq(building & (issue != self.entries) & b_adv),
            cb_rp.en.eq(b_adv),
            cb_rp.addr.eq(issue),
        ]
        b1_valid = Signal()
        b1_idx = Signal(range(self.entries))
        with m.If(b_adv):
            m.d.sync += [b1_valid.eq(do_issue), b1_idx.eq(issue)]
        with m.If(do_issue):
            m.d.sync += issue.eq(issue + 1)

        lg_k = ksub.bit_length() - 1
        b1_m = b1_idx[lg_k:] if M > 1 else Const(0, 1)
        b1_c = b1_idx[:lg_k]
        value = self._entry(m, qreg[b1_m], cb_rp.data)

        b2 = Signal(self.adt_layout)
        b2_valid = Signal()
        with m.If(b_adv):
            m.d.sync += [b2_valid.eq(b1_valid), b2.m.eq(b1_m), b2.c.eq(b1_c),
                         b2.value.eq(value)]
        m.d.comb += [self.adt_out.valid.eq(b2_valid), self.adt_out.payload.eq(b2)]
        last_write = b_adv & b1_valid & (b1_idx == self.entries - 1)
        with m.If(last_write):
            m.d.sync += [building.eq(0), adt_valid.eq(1), issue.eq(0)]

        # ---- ADT RAMs and the distance pipeline -------------------------------------------
        d_adv = Signal()
        accept = Signal()
        m.d.comb += [
            d_adv.eq(~self.dists.valid | self.dists.ready),
            self.codes.ready.eq(d_adv & adt_valid & ~building),
            accept.eq(self.codes.valid & self.codes.ready),
        ]
        looked = [[None] * M for _ in range(P)]
        for mm in range(M):
            adt = Memory(shape=unsigned(cfg.pq.adt_bits), depth=ksub, init=[])
            m.submodules[f"adt{mm}"] = adt
            wp = adt.write_port()
            m.d.comb += [
                wp.en.eq(b_adv & b1_valid & (b1_m == mm)),
                wp.addr.eq(b1_c),
                wp.data.eq(value),
            ]
            for p in range(P):
                rp = adt.read_port()
                m.d.comb += [rp.en.eq(d_adv), rp.addr.eq(self.codes.payload[p].code[mm])]
                looked[p][mm] = rp.data

        s1_valid = Signal()
        s1_used = Signal(P)
        s1_id = [Signal(cfg.id_bits, name=f"s1_id{p}") for p in range(P)]
        out_valid = Signal()
        out = Signal(data.ArrayLayout(self.dist_lane, P))
        with m.If(d_adv):
            m.d.sync += [s1_valid.eq(accept), out_valid.eq(s1_valid)]
            for p in range(P):
                m.d.sync += [
                    s1_used[p].eq(self.codes.payload[p].used),
                    s1_id[p].eq(self.codes.payload[p].id),
                    out[p].used.eq(s1_used[p]),
                    out[p].id.eq(s1_id[p]),
                    out[p].dist.eq(_tree_sum(looked[p])),
                ]
        m.d.comb += [self.dists.valid.eq(out_valid), self.dists.payload.eq(out)]
        return m
