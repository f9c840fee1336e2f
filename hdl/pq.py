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

Latency and throughput
----------------------
Neither pipeline stalls; back-pressure works with credits on their output queues, deep
enough that a consumer that is always ready never slows them: one ADT entry per cycle,
``P`` codes per cycle.  ``latency = 5 + ram_regs + ceil(log2(M) / tree_levels)`` cycles from
an accepted code beat to its distances (11 at ``M = 16``); the last ADT word is on
``adt_out`` ``build_latency = M * ksub + build_stages`` cycles after the query's last
element, ``build_stages = 8 + ram_regs + square_stages + ceil(log2(dsub) / tree_levels)``.
The ``bram`` option (``"generic"`` or ``"ecp5"`` DP16KD, :mod:`proxima.hdl.lib.vendor`)
changes no cycle.  Resources and clock rates per option: ``docs/RESOURCES.md``.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Array, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from proxima.config import ProximaConfig
from proxima.hdl.lib.arith import (abs_diff_stage, pipelined_tree, square_pipeline, square_stages,
                                   tree_depth)
from proxima.hdl.lib.fifo import BUFFERED_QUEUE_LATENCY as FIFO_LATENCY, Queue
from proxima.hdl.lib.logic import reg_chain
from proxima.hdl.lib.vendor import BRAM_IMPLS, BRAM_LATENCY, BlockRAM

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


def _output_queue(m, name: str, shape, depth: int, w_en, w_data, r_ready):
    """The credited output queue of a never-stalling pipeline (a buffered
    :class:`~proxima.hdl.lib.fifo.Queue`, written from the pipeline's last registers without
    looking at its ``ready``).  Returns ``(valid, data, overflow)``."""
    m.submodules[name] = q = Queue(shape, depth, buffered=True, credited=True)
    m.d.comb += [q.i.valid.eq(w_en), q.i.payload.eq(w_data), q.o.ready.eq(r_ready)]
    return q.o.valid, q.o.payload, q.overflow


def _credits(m, name: str, depth: int, take, free):
    """Credit counter of an output FIFO of ``depth`` entries: ``take`` reserves an entry,
    ``free`` releases one.  Returns ``(count, full, error)``: ``full`` (``count ==
    depth``) is a register whose next value comes from ``take``, ``free``, itself and
    ``count == depth - 1`` -- not from the counter's adder -- so the path from ``full``
    through the caller's ``take`` logic back to ``full`` is a few LUTs; ``error`` is a
    sticky simulation check (``full`` disagrees with the count; it drives nothing)."""
    count = Signal(range(depth + 1), name=f"{name}_count")
    full = Signal(name=f"{name}_full")
    error = Signal(name=f"{name}_error")
    m.d.sync += count.eq(count + take - free)
    with m.If(take & ~free):
        m.d.sync += full.eq(count == depth - 1)
    with m.Elif(free & ~take):
        m.d.sync += full.eq(0)
    with m.If(full != (count == depth)):
        m.d.sync += error.eq(1)
    return count, full, error


class PQUnit(wiring.Component):
    """ADT builder + ``P``-codes-per-cycle PQ distance pipeline.

    Parameters
    ----------
    cfg : ProximaConfig
    codebook : numpy array ``(M, ksub, dsub)``, optional
        Initial codebook RAM contents (the host can still overwrite it through ``cb_wr``).
    tree_levels : int
        Adder-tree levels between two pipeline registers (>= 1; 1, the default, for the
        highest clock).
    ram_regs : int
        Fabric registers in series after every block RAM's output register (>= 0,
        default 2): they carry the RAM words to the adder trees and the ``|q - c|`` stage.
    bram : ``"generic"`` (default) or ``"ecp5"``
        Block-RAM implementation (:class:`proxima.hdl.lib.vendor.BlockRAM`): the portable
        Amaranth ``Memory`` + register (simulation twin), or ``DP16KD`` instances with
        their output register (use it for the ECP5: the generic one misses the target clock).
        Identical cycle behaviour; the ``ecp5`` variant cannot run in the Amaranth
        simulator (simulate its Verilog with :func:`proxima.hdl.lib.vendor.dp16kd_model_verilog`).

    Attributes
    ----------
    M, ksub, dsub, lanes (``P``), entries (``M * ksub``), latency (distance pipeline,
    accepted beat -> distances valid, no stalls), build_stages (read of a centroid ->
    its ADT word valid on ``adt_out``), build_latency (cycles from the last query element
    until the last ADT word is on ``adt_out`` without stalls), ram_regs, bram,
    sel_stages and sel_bits (query sub-vector multiplexer steps), fifo_depth and
    build_fifo_depth (output FIFO entries),
    cb_layout, code_lane, dist_lane, adt_layout.
    """

    def __init__(self, cfg: ProximaConfig, *, codebook: np.ndarray | None = None,
                 tree_levels: int = 1, ram_regs: int = 2, bram: str = "generic"):
        if int(tree_levels) < 1:
            raise PQError(f"tree_levels must be >= 1, got {tree_levels}")
        if int(ram_regs) < 0:
            raise PQError(f"ram_regs must be >= 0, got {ram_regs}")
        if bram not in BRAM_IMPLS:
            raise PQError(f"bram must be one of {BRAM_IMPLS}, got {bram!r}")
        self.tree_levels = int(tree_levels)
        self.ram_regs = int(ram_regs)
        self.bram = bram
        self.cfg = cfg
        self.M, self.ksub, self.dsub = cfg.pq.M, cfg.pq.ksub, cfg.dsub
        self.eb = cfg.vec.elem_bits
        self.lanes = cfg.engine.pq_codes_per_cycle
        self.entries = self.M * self.ksub
        self.dist_tree_stages = -(-tree_depth(self.M) // self.tree_levels)
        # address register, RAM read (RAM + its output register), entry registers, tree,
        # FIFO
        self.latency = 1 + BRAM_LATENCY + self.ram_regs + self.dist_tree_stages + FIFO_LATENCY
        self.fifo_depth = self.latency + 2
        # address register, RAM read (RAM + its output register), RAM word registers,
        # |q - c|, squares, tree, round, saturate, FIFO
        self.square_stages = square_stages(self.eb)
        self.sq_tree_stages = -(-tree_depth(self.dsub) // self.tree_levels)
        self.build_stages = (4 + BRAM_LATENCY + self.ram_regs + self.square_stages
                             + self.sq_tree_stages + FIFO_LATENCY)
        self.build_latency = self.entries + self.build_stages
        # query sub-vector multiplexer: registered steps of sel_bits subspace-index bits
        lg_m = ceil_log2(self.M)
        self.sel_stages = max(1, min(-(-lg_m // 2), BRAM_LATENCY + self.ram_regs))
        self.sel_bits = -(-lg_m // self.sel_stages) if lg_m else 0
        self.build_fifo_depth = self.build_stages + 2
        self.init_words = pack_codebook(cfg, codebook) if codebook is not None else []
        self.cb_layout = data.StructLayout({
            "addr": unsigned(max(1, ceil_log2(self.entries))),
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
            "m": unsigned(max(1, ceil_log2(self.M))),
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
    def from_config(cls, cfg: ProximaConfig, **options) -> "PQUnit":
        return cls(cfg, **options)

    def elaborate(self, platform):
        """Structure (the contract is the module docstring).

        Micro-architecture
        ------------------
        Both pipelines (ADT build and distances) never stall: there is no clock enable anywhere in
        the arithmetic, only registers between the stages.  Back-pressure is handled with credits:
        each pipeline ends in an output queue (:class:`proxima.hdl.lib.fifo.Queue`, ``buffered``,
        ``credited``: 2 cycles from a write into an empty queue to ``valid``); an entry is reserved
        when its work enters the pipeline and freed when it leaves on the output stream, and nothing
        enters while all entries are reserved, so a write always finds room (the simulation tests
        check the queues' sticky ``overflow`` flags, which synthesis removes).  The FIFOs are deep enough
        (``build_fifo_depth``, ``fifo_depth``) that a consumer that is always ready never slows the
        pipeline: one ADT entry per cycle, ``P`` codes per cycle.

        * Block RAMs: every RAM is a :class:`proxima.hdl.lib.vendor.BlockRAM` (``bram=`` option): one
          address shared by the write and the read, read data registered INSIDE the RAM, so a
          read takes 2 cycles (:data:`~proxima.hdl.lib.vendor.BRAM_LATENCY`).  ``bram="generic"``
          (default; the Amaranth simulator's twin) is an Amaranth ``Memory`` plus one register;
          ``bram="ecp5"`` instantiates ``DP16KD`` with ``REGMODE_A = "OUTREG"`` (identical cycle
          behaviour, checked by running the same cocotb testbench on it with a behavioural DP16KD
          model).  Yosys 0.70 maps the generic one to a DP16KD WITHOUT its output register (5.6 ns
          clock-to-output) and a fabric flip-flop that nextpnr places ~20 rows away, so only the
          ``ecp5`` variant meets the target clock on the ECP5 (``docs/RESOURCES.md``).
        * Codebook: one RAM of ``M * ksub`` words of ``dsub * elem_bits`` bits (one centroid per
          word; 16 DP16KD in x4 mode at the default preset) behind a registered address (
          ``cb_wr.addr`` between builds, the build's read index during a build), write enable and
          write data: a ``cb_wr`` beat is written one cycle after it is accepted.
        * ADT build, one entry per cycle, stages counted from the issue of a centroid index:
          the codebook address register; the RAM's read latch and its output register; ``ram_regs`` fabric registers of the RAM
          word in series (they carry it to the arithmetic), the last one (or the RAM's output
          register when ``ram_regs = 0``) next to the registered query sub-vector of subspace
          ``m`` (selected from the query register in ``sel_stages`` registered steps of
          ``sel_bits`` index bits, running alongside the RAM read: two 4:1 steps at ``M = 16``;
          no extra latency); ``|q - c|`` per element; ``square_stages`` stages of LUT squares
          (:func:`proxima.hdl.lib.arith.square_pipeline`; no DSP: yosys 0.70 cannot put the pipeline
          registers into ``MULT18X18D`` on ECP5); the ``dsub``-input adder tree (``tree_levels``
          adder levels per stage); round half up (``+ half``, ``>> adt_shift``); saturate -- that
          register is the ADT RAMs' write data and is written into the build FIFO.  The last ADT
          word is on ``adt_out`` ``build_latency = M * ksub + build_stages`` cycles after the
          query's last element when ``adt_out`` never stalls.
        * ADT storage: ``M * P`` RAMs of ``ksub`` entries (``pq.adt_bits`` wide; one DP16KD in
          x18 mode each at ``adt_bits <= 18``): subspace ``m``, lane ``p``; each has one
          registered address (the write index during a build, lane ``p``'s code ``m`` otherwise);
          the write data is copied into one register per subspace (each drives ``P`` RAMs, not
          ``M * P``).
        * Distances, ``P`` codes per cycle: address registers; RAM read (2 cycles); ``ram_regs``
          fabric registers in series of the ``M`` looked-up entries; the ``M``-input adder tree
          with a register after every ``tree_levels`` levels; the FIFO.
          ``latency = 5 + ram_regs + ceil(log2(M) / tree_levels)`` cycles from an accepted beat
          to its distances (11 at ``M = 16``, ``tree_levels = 1``, ``ram_regs = 2``);
          ``build_stages = 8 + ram_regs + square_stages + ceil(log2(dsub) / tree_levels)`` (16 at
          the default preset: ``build_latency`` 4112).  Throughput is unchanged by ``ram_regs`` and
          ``bram``: one ADT entry and ``P`` codes per cycle.
        * Control: ``building`` (query complete -> last ADT write issued) drives the control
          logic only; a second register with the same next-state logic drives the ``M * P``
          address multiplexers; "last query element", "last ADT entry", "every centroid issued"
          and the two "all FIFO entries reserved" flags (:func:`_credits`) are registers, so that
          issuing a centroid or accepting a code beat is one LUT of registers (the credit
          counters' adders are not in those loops).
        """
        m = Module()
        cfg, M, ksub, dsub, eb, P = self.cfg, self.M, self.ksub, self.dsub, self.eb, self.lanes
        lg_k = exact_log2(ksub)

        def m_of(idx):  # subspace of an entry index (m * ksub + c)
            return idx[lg_k:] if M > 1 else 0

        building = Signal()
        # a copy of `building` for the (high-fanout) ADT address multiplexers, kept apart
        # from the control logic; its reset value differs so that synthesis does not merge
        # the two (it only matters once codes or ADT writes can happen: after a build)
        adt_sel = Signal(init=1)
        adt_valid = Signal()
        m.d.comb += self.adt_valid.eq(adt_valid)

        # ---- codebook RAM: one address for the write and the read port -------------------
        cb = BlockRAM(dsub * eb, self.entries, init=self.init_words, impl=self.bram)
        m.submodules.codebook = cb
        issue = Signal(range(self.entries + 1))
        # address, write enable and write data are registered: the address drives every
        # DP16KD of the codebook (16 at the default preset), a spread-out load that gets
        # a whole cycle; a write lands one cycle after it is accepted
        cb_addr = Signal(range(self.entries), name="cb_addr", reset_less=True)
        cb_we = Signal(name="cb_we")
        cb_wd = Signal(dsub * eb, name="cb_wd", reset_less=True)
        m.d.comb += [
            self.cb_wr.ready.eq(~building),
            cb.addr.eq(cb_addr), cb.w_en.eq(cb_we), cb.w_data.eq(cb_wd),
        ]
        m.d.sync += [
            cb_addr.eq(Mux(building, issue, self.cb_wr.payload.addr)),
            cb_we.eq(self.cb_wr.valid & ~building),
            cb_wd.eq(self.cb_wr.payload.centroid),
        ]

        # ---- query register (shift in, element 0 ends in the low bits) ---------------------
        qreg = Signal(data.ArrayLayout(data.ArrayLayout(unsigned(eb), dsub), M), reset_less=True)
        qcnt = Signal(range(cfg.vec.dim))
        q_last = Signal(init=int(cfg.vec.dim == 1))  # registered qcnt == dim - 1
        m.d.comb += self.query.ready.eq(~building)
        with m.If(self.query.valid & self.query.ready):
            m.d.sync += qreg.eq(Cat(qreg.as_value()[eb:], self.query.payload))
            with m.If(q_last):
                m.d.sync += [qcnt.eq(0), q_last.eq(cfg.vec.dim == 1),
                             building.eq(1), adt_sel.eq(1), adt_valid.eq(0)]
            with m.Else():
                m.d.sync += [qcnt.eq(qcnt + 1), q_last.eq(qcnt + 1 == cfg.vec.dim - 1)]

        # ---- ADT build: credits, issue -------------------------------------------------------
        b_wen = Signal()
        b_wdata = Signal(self.adt_layout)
        b_rvalid, b_rdata, self.adt_fifo_overflow = _output_queue(
            m, "adt_fifo", self.adt_layout, self.build_fifo_depth, b_wen, b_wdata,
            self.adt_out.ready)
        b_pop = Signal()
        do_issue = Signal()
        # registered "issue == entries" (every centroid of this build read)
        issued_all = Signal()
        _, b_full, b_credit_err = _credits(m, "b_credits", self.build_fifo_depth, do_issue,
                                           b_pop)
        m.d.comb += [
            self.adt_out.valid.eq(b_rvalid),
            self.adt_out.payload.eq(b_rdata),
            b_pop.eq(b_rvalid & self.adt_out.ready),
            do_issue.eq(building & ~issued_all & ~b_full),
        ]
        with m.If(do_issue):
            m.d.sync += [issue.eq(issue + 1), issued_all.eq(issue == self.entries - 1)]

        # valid / index shift register alongside the data: v[j], ix[j] describe the entry
        # whose data is in the registers of stage j (0: the codebook address register, 1:
        # the RAM's read latch, 2: the RAM's output register)
        n_st = self.build_stages - FIFO_LATENCY  # 0 .. n_st - 1: address .. saturate
        v = [Signal(name=f"b{j}_valid") for j in range(n_st)]
        ix = [Signal(range(self.entries), name=f"b{j}_idx", reset_less=True)
              for j in range(n_st)]
        lst = [Signal(name=f"b{j}_last", reset_less=True) for j in range(n_st)]  # last entry
        m.d.sync += [v[0].eq(do_issue), ix[0].eq(issue), lst[0].eq(issue == self.entries - 1)]
        m.d.sync += [v[j].eq(v[j - 1]) for j in range(1, n_st)]
        m.d.sync += [ix[j].eq(ix[j - 1]) for j in range(1, n_st)]
        m.d.sync += [lst[j].eq(lst[j - 1]) for j in range(1, n_st)]
        # stages 2 .. 1 + ram_regs: the RAM word carried by fabric registers; alongside the
        # last one (or the RAM's output register) the query sub-vector of the subspace
        word = reg_chain(m, cb.r_data, self.ram_regs, "b_word")
        # the query sub-vector of the entry's subspace, selected from the (constant while
        # building) query register in `sel_stages` registered steps of `sel_bits` index
        # bits each (4:1 multiplexers at M = 16), the last one alongside `word`
        word_stage = BRAM_LATENCY + self.ram_regs
        cands = [qreg[mm].as_value() for mm in range(M)]
        for st in range(self.sel_stages):
            j = word_stage - self.sel_stages + st  # the stage whose entry selects now
            lo = st * self.sel_bits
            sel = m_of(ix[j])[lo:lo + self.sel_bits] if M > 1 else 0
            groups = []
            for g in range(0, len(cands), 1 << self.sel_bits):
                grp = cands[g:g + (1 << self.sel_bits)]
                r = Signal(dsub * eb, name=f"qsel{st}_{g >> self.sel_bits}", reset_less=True)
                m.d.sync += r.eq(Array(grp)[sel] if len(grp) > 1 else grp[0])
                groups.append(r)
            cands = groups
        assert len(cands) == 1
        qsub = cands[0]
        # stage 3: |q - c| per element; then the squares
        sqs = []
        for d in range(dsub):
            a = abs_diff_stage(m, qsub[d * eb:(d + 1) * eb], word[d * eb:(d + 1) * eb], eb,
                               f"b_d{d}")
            sqs.append(square_pipeline(m, a, eb, f"b_sq{d}"))
        # adder tree
        raw, n_tree = pipelined_tree(m, sqs, "b_t", self.tree_levels)
        assert n_tree == self.sq_tree_stages
        assert n_st == 4 + BRAM_LATENCY + self.ram_regs + self.square_stages + n_tree
        # round half up
        s = cfg.adt_shift
        rounded = Signal(cfg.adt_raw_bits + 1 - s, reset_less=True)
        m.d.sync += rounded.eq((raw + (1 << (s - 1))) >> s if s else raw)
        # saturate: the ADT write data; the FIFO is written with it
        value = Signal(cfg.pq.adt_bits, reset_less=True)
        saturated = Mux(rounded > cfg.adt_max, cfg.adt_max, rounded)
        m.d.sync += value.eq(saturated)
        pre_valid, pre_idx = v[n_st - 2], ix[n_st - 2]  # the entry entering `value`
        out_valid, out_idx = v[n_st - 1], ix[n_st - 1]
        adt_word = Signal(self.adt_layout)
        m.d.comb += [
            adt_word.m.eq(m_of(out_idx)),
            adt_word.c.eq(out_idx[:lg_k]),
            adt_word.value.eq(value),
            b_wen.eq(out_valid),
            b_wdata.eq(adt_word),
        ]
        with m.If(pre_valid & lst[n_st - 2]):
            m.d.sync += [building.eq(0), adt_sel.eq(0), adt_valid.eq(1), issue.eq(0),
                         issued_all.eq(0)]

        # ---- distances: credits -------------------------------------------------------------
        d_wen = Signal()
        d_wdata = Signal(P * self.dist_lane.size)
        d_rvalid, d_rdata, self.dist_fifo_overflow = _output_queue(
            m, "dist_fifo", P * self.dist_lane.size, self.fifo_depth, d_wen, d_wdata,
            self.dists.ready)
        pop = Signal()
        accept = Signal()
        _, d_full, d_credit_err = _credits(m, "d_credits", self.fifo_depth, accept, pop)
        m.d.comb += [
            self.dists.valid.eq(d_rvalid),
            self.dists.payload.eq(d_rdata),
            pop.eq(d_rvalid & self.dists.ready),
            # adt_valid is low while building
            self.codes.ready.eq(adt_valid & ~d_full),
            accept.eq(self.codes.valid & self.codes.ready),
        ]
        # sticky simulation check (drives nothing): a credit flag or the "all issued" flag
        # disagrees with its counter
        self.credit_error = Signal()
        with m.If(b_credit_err | d_credit_err | (issued_all != (issue == self.entries))):
            m.d.sync += self.credit_error.eq(1)

        # ---- ADT RAMs: M * P copies, one registered address each ------------------------
        # written from `value` one cycle after it is loaded: the address registers take
        # the write index while building, the codes otherwise
        # per subspace: the write enable, and a copy of the write data (zero unless that
        # subspace is written, so that synthesis keeps the copies apart): one register
        # drives the P RAMs of its subspace instead of one driving all M * P RAMs
        we = [Signal(name=f"adt_we{mm}") for mm in range(M)]
        wd = [Signal(cfg.pq.adt_bits, name=f"adt_wd{mm}", reset_less=True) for mm in range(M)]
        for mm in range(M):
            sel = pre_valid & (m_of(pre_idx) == mm)
            m.d.sync += [we[mm].eq(sel), wd[mm].eq(Mux(sel, saturated, 0))]
        looked = [[None] * M for _ in range(P)]
        for mm in range(M):
            for p in range(P):
                addr = Signal(lg_k, name=f"adt_addr{p}_{mm}", reset_less=True)
                m.d.sync += addr.eq(Mux(adt_sel, pre_idx[:lg_k],
                                        self.codes.payload[p].code[mm]))
                adt = BlockRAM(cfg.pq.adt_bits, ksub, impl=self.bram)
                m.submodules[f"adt{mm}_{p}"] = adt
                m.d.comb += [adt.w_en.eq(we[mm]), adt.addr.eq(addr), adt.w_data.eq(wd[mm])]
                looked[p][mm] = reg_chain(m, adt.r_data, self.ram_regs, f"d_ent{p}_{mm}")

        sums = [pipelined_tree(m, looked[p], f"d{p}_t", self.tree_levels) for p in range(P)]
        n_tree = sums[0][1]
        assert n_tree == self.dist_tree_stages
        # lane bookkeeping: address register, RAM read, entry registers, tree stages
        depth = 1 + BRAM_LATENCY + self.ram_regs + n_tree
        dv = [Signal(name=f"d{j}_valid") for j in range(depth)]
        used = [Signal(P, name=f"d{j}_used", reset_less=True) for j in range(depth)]
        ids = [[Signal(cfg.id_bits, name=f"d{j}_id{p}", reset_less=True) for p in range(P)]
               for j in range(depth)]
        m.d.sync += dv[0].eq(accept)
        m.d.sync += [dv[j].eq(dv[j - 1]) for j in range(1, depth)]
        for p in range(P):
            m.d.sync += [used[0][p].eq(self.codes.payload[p].used),
                         ids[0][p].eq(self.codes.payload[p].id)]
            m.d.sync += [used[j][p].eq(used[j - 1][p]) for j in range(1, depth)]
            m.d.sync += [ids[j][p].eq(ids[j - 1][p]) for j in range(1, depth)]
        out = Signal(data.ArrayLayout(self.dist_lane, P))
        for p in range(P):
            m.d.comb += [
                out[p].used.eq(used[-1][p]),
                out[p].id.eq(ids[-1][p]),
                out[p].dist.eq(sums[p][0]),
            ]
        m.d.comb += [d_wen.eq(dv[-1]), d_wdata.eq(out)]
        return m
