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
* ADT build: one entry per cycle through a pipeline whose stages all share the enable
  ``~adt_out.valid | adt_out.ready``: read the centroid; register the RAM word (no logic
  after the block-RAM output); ``dsub`` differences with the query sub-vector; ``dsub``
  squares (one small multiplier each); the adder tree (``tree_levels`` levels per stage);
  round half up by ``adt_shift`` and saturate into the output register feeding ``adt_out``
  -- the entry is written into the ADT RAM as it enters that register.  The last ADT word
  is on ``adt_out`` ``build_latency = M * ksub + build_stages`` cycles after the query's
  last element when ``adt_out`` never stalls.
* ADT storage: ``M`` RAMs of ``ksub`` entries (``pq.adt_bits`` wide), one per subspace,
  each with one write port and ``P`` synchronous read ports (``P`` copies of each RAM on an
  FPGA: the table is replicated so that ``P * M`` look-ups happen per cycle).
* Distances: fully pipelined, ``P`` codes per cycle: look-up cycle, register of the ``M``
  looked-up entries, then the ``M``-input adder tree cut every ``tree_levels`` levels by a
  register; ``latency = 2 + ceil(log2(M) / tree_levels)`` cycles from an accepted beat to
  its distances (the last tree register is the output register).  All stages share one
  enable ``advance = ~dists.valid | dists.ready``.
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


def _tree_level(values):
    """One level of a balanced adder tree (Amaranth widens each sum: never overflows)."""
    nxt = [values[i] + values[i + 1] for i in range(0, len(values) - 1, 2)]
    if len(values) % 2:
        nxt.append(values[-1])
    return nxt


def _tree_depth(n: int) -> int:
    return max(0, (int(n) - 1).bit_length())


def _pipelined_tree(m, values, levels_per_stage: int, enable, name: str):
    """Adder tree with a register after every ``levels_per_stage`` levels (and after the
    last level).  Returns (sum signal, register stages)."""
    values = list(values)
    stages = 0
    while True:
        for _ in range(levels_per_stage):
            if len(values) > 1:
                values = _tree_level(values)
        regs = [Signal(len(v), name=f"{name}_t{stages}_{i}", reset_less=True)
                for i, v in enumerate(values)]
        with m.If(enable):
            m.d.sync += [r.eq(v) for r, v in zip(regs, values)]
        values = regs
        stages += 1
        if len(values) == 1:
            return values[0], stages


class PQUnit(wiring.Component):
    """ADT builder + ``P``-codes-per-cycle PQ distance pipeline.

    Parameters
    ----------
    cfg : ProximaConfig
    codebook : numpy array ``(M, ksub, dsub)``, optional
        Initial codebook RAM contents (the host can still overwrite it through ``cb_wr``).
    tree_levels : int
        Adder-tree levels between two pipeline registers (>= 1; fewer = higher clock).

    Attributes
    ----------
    M, ksub, dsub, lanes (``P``), entries (``M * ksub``), latency (distance pipeline),
    build_stages, build_latency (cycles from the last query element until the last ADT
    word is on ``adt_out`` without stalls),
    cb_layout, code_lane, dist_lane, adt_layout.
    """

    def __init__(self, cfg: ProximaConfig, *, codebook: np.ndarray | None = None,
                 tree_levels: int = 2):
        if int(tree_levels) < 1:
            raise PQError(f"tree_levels must be >= 1, got {tree_levels}")
        self.tree_levels = int(tree_levels)
        self.cfg = cfg
        self.M, self.ksub, self.dsub = cfg.pq.M, cfg.pq.ksub, cfg.dsub
        self.eb = cfg.vec.elem_bits
        self.lanes = cfg.engine.pq_codes_per_cycle
        self.entries = self.M * self.ksub
        dist_tree_stages = max(1, -(-_tree_depth(self.M) // self.tree_levels))
        self.latency = 2 + dist_tree_stages
        # register stages after the read is issued: the RAM's own output, RAM word,
        # differences, squares, adder-tree stages, output register
        sq_tree_stages = max(1, -(-_tree_depth(self.dsub) // self.tree_levels))
        self.build_stages = 5 + sq_tree_stages
        self.build_latency = self.entries + self.build_stages
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

    def elaborate(self, platform):
        m = Module()
        cfg, M, ksub, dsub, eb, P = self.cfg, self.M, self.ksub, self.dsub, self.eb, self.lanes
        lg_k = ksub.bit_length() - 1

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
        qreg = Signal(data.ArrayLayout(data.ArrayLayout(unsigned(eb), dsub), M), reset_less=True)
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
        do_issue = Signal()
        m.d.comb += [
            b_adv.eq(~self.adt_out.valid | self.adt_out.ready),
            do_issue.eq(building & (issue != self.entries) & b_adv),
            cb_rp.en.eq(b_adv),
            cb_rp.addr.eq(issue),
        ]
        with m.If(do_issue):
            m.d.sync += issue.eq(issue + 1)

        # valid/index shift register alongside the data stages
        n_st = self.build_stages  # v[0]: RAM output of the read, ..., v[n_st-1]: output
        v = [Signal(name=f"b{j}_valid") for j in range(1, n_st + 1)]
        ix = [Signal(range(self.entries), name=f"b{j}_idx", reset_less=True)
              for j in range(1, n_st + 1)]
        with m.If(b_adv):
            m.d.sync += [v[0].eq(do_issue), ix[0].eq(issue)]
            m.d.sync += [v[j].eq(v[j - 1]) for j in range(1, n_st)]
            m.d.sync += [ix[j].eq(ix[j - 1]) for j in range(1, n_st)]
        # stage 1 (v[0]): RAM word arrives -> register it
        word = Signal(dsub * eb, reset_less=True)
        with m.If(b_adv):
            m.d.sync += word.eq(cb_rp.data)
        # stage 2 (v[1]): differences with the query sub-vector of subspace m
        idx2 = ix[1]
        m2 = idx2[lg_k:] if M > 1 else Const(0, 1)
        qsub = qreg[m2] if M > 1 else qreg[0]
        diffs = [Signal(signed(eb + 1), name=f"b_diff{d}", reset_less=True) for d in range(dsub)]
        with m.If(b_adv):
            m.d.sync += [diffs[d].eq(qsub[d] - word[d * eb:(d + 1) * eb]) for d in range(dsub)]
        # stage 3 (v[2]): squares
        sqs = [Signal(2 * eb, name=f"b_sq{d}", reset_less=True) for d in range(dsub)]
        with m.If(b_adv):
            m.d.sync += [sqs[d].eq((diffs[d] * diffs[d]).as_unsigned()) for d in range(dsub)]
        # stages 4..: adder tree (registered), then round + saturate into the output register
        raw, n_sq_tree = _pipelined_tree(m, sqs, self.tree_levels, b_adv, "b")
        assert n_st == 5 + n_sq_tree
        s = cfg.adt_shift
        rounded = Signal(cfg.adt_raw_bits + 1)
        m.d.comb += rounded.eq((raw + (1 << (s - 1))) >> s if s else raw)
        value = Signal(cfg.pq.adt_bits)
        m.d.comb += value.eq(Mux(rounded > cfg.adt_max, cfg.adt_max, rounded))

        pre_valid, pre_idx = v[n_st - 2], ix[n_st - 2]   # entry whose value is ready
        out_valid, out_idx = v[n_st - 1], ix[n_st - 1]
        out_val = Signal(cfg.pq.adt_bits, reset_less=True)
        with m.If(b_adv):
            m.d.sync += out_val.eq(value)
        m.d.comb += [
            self.adt_out.valid.eq(out_valid),
            self.adt_out.payload.m.eq(out_idx[lg_k:] if M > 1 else 0),
            self.adt_out.payload.c.eq(out_idx[:lg_k]),
            self.adt_out.payload.value.eq(out_val),
        ]
        wr_m = pre_idx[lg_k:] if M > 1 else Const(0, 1)
        wr_c = pre_idx[:lg_k]
        wr_en = b_adv & pre_valid
        with m.If(wr_en & (pre_idx == self.entries - 1)):
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
            m.d.comb += [wp.en.eq(wr_en & (wr_m == mm)), wp.addr.eq(wr_c), wp.data.eq(value)]
            for p in range(P):
                rp = adt.read_port()
                m.d.comb += [rp.en.eq(d_adv), rp.addr.eq(self.codes.payload[p].code[mm])]
                reg = Signal(cfg.pq.adt_bits, name=f"d_ent{p}_{mm}", reset_less=True)
                with m.If(d_adv):
                    m.d.sync += reg.eq(rp.data)
                looked[p][mm] = reg

        sums = [_pipelined_tree(m, looked[p], self.tree_levels, d_adv, f"d{p}") for p in range(P)]
        n_tree = sums[0][1]
        assert self.latency == 2 + n_tree
        # lane bookkeeping: accepted beat -> (read) -> (entry regs) -> tree stages
        depth = 1 + 1 + n_tree
        dv = [Signal(name=f"d{j}_valid") for j in range(depth)]
        used = [Signal(P, name=f"d{j}_used", reset_less=True) for j in range(depth)]
        ids = [[Signal(cfg.id_bits, name=f"d{j}_id{p}", reset_less=True) for p in range(P)]
               for j in range(depth)]
        with m.If(d_adv):
            m.d.sync += dv[0].eq(accept)
            m.d.sync += [dv[j].eq(dv[j - 1]) for j in range(1, depth)]
            for p in range(P):
                m.d.sync += [used[0][p].eq(self.codes.payload[p].used),
                             ids[0][p].eq(self.codes.payload[p].id)]
                m.d.sync += [used[j][p].eq(used[j - 1][p]) for j in range(1, depth)]
                m.d.sync += [ids[j][p].eq(ids[j - 1][p]) for j in range(1, depth)]
        m.d.comb += self.dists.valid.eq(dv[-1])
        for p in range(P):
            m.d.comb += [
                self.dists.payload[p].used.eq(used[-1][p]),
                self.dists.payload[p].id.eq(ids[-1][p]),
                self.dists.payload[p].dist.eq(sums[p][0]),
            ]
        return m
