"""Candidate list of one query (Algorithm 1's ``C``): RTL twin of golden.candidates.

Bit-exact twin of :class:`proxima.golden.candidates.CandidateList` (the spec): at most
``L = cfg.search.L`` entries ``(key, expanded)`` in ascending key order, ``key = (pq_dist <<
id_bits) | id`` (``cfg.sort_key_bits`` wide, the all-ones key marks an empty slot).

Interface
---------
``cmd``     ``In(stream{op: 2, key, T, last})``, one command per beat (``insert`` takes one
            beat per key):

            ========  ==  =================================================================
            op        #   meaning
            ========  ==  =================================================================
            RESET     0   ``C = [(key, False)]``
            INSERT    1   one new key of a batch; the beat with ``last = 1`` ends the batch
                          and starts the merge (golden ``insert(batch)``).  At most
                          ``R = graph.R`` keys per batch: further keys are dropped and
                          ``error`` is set (the golden model raises).  An empty batch is a
                          no-op and is simply not sent.
            SELECT    2   golden ``select(T)``: answers on ``resp`` and sets the flag
            DUMP      3   stream all ``L`` slots on ``dbg`` (debug / verification)
            ========  ==  =================================================================

            ``cmd.ready`` is low while a merge or a dump runs and while a ``resp`` beat
            waits, so commands take effect strictly in order.  The INSERT beats of one
            batch must not be interleaved with other commands (a RESET drops a partial
            batch).
``resp``    ``Out(stream{found, pos, id, key})``: one beat per SELECT (registered).
            ``found = 0`` (with ``pos = id = key = 0``) when no entry among the first
            ``min(T, len)`` is unexpanded.
``dbg``     ``Out(stream{pos, key, expanded, last})``: slots ``0 .. L-1`` after a DUMP
            (empty slots: ``key`` all ones, ``expanded = 0``), ``last`` on slot ``L-1``.
``length``  ``Out``: entries in the list.  ``error``: ``Out(1)``, sticky batch overflow.

Storage and merge (``n = engine.sorter_n >= max(L, R)``, checked by the configuration)
------------------------------------------------------------------------------------
The list lives in ``L`` registers of ``sort_key_bits + 1`` bits: the *extended key*
``(key << 1) | expanded`` (empty slot: all ones).  Extended keys order exactly like keys
(ids are unique in a list, so two entries never share a key) and carry the flag through
the sorter.  One :class:`proxima.hdl.sorter.BitonicSorter` of ``n`` extended keys is
instantiated (built from ``cfg`` with ``engine.id_bits + 1``, which is how its key grows
by the flag bit; this needs ``id_bits <= 31``).

INSERT beats shift the new keys (flag 0) into an ``n``-slot buffer pre-filled with all
ones.  After the last one:

1. pass 1 sorts the buffer: ``s`` ascending (``s[0..L-1]`` are the ``L`` smallest new keys);
2. pass 2 sorts ``c[i] = min(list[i], s[L-1-i])`` for ``i < L`` (all ones above ``L``).
   For two ascending sequences of length ``L``, these ``L`` element-wise minima of one
   with the reverse of the other are exactly the ``L`` smallest of their union (the first
   half-cleaner of a bitonic merge), so sorting them gives ``first L of sort(list + new)``;
   the first ``L`` outputs become the new list.  ``len = min(L, len + batch)``.

Cycles: one per INSERT beat, then ``2 * latency + 3`` (``latency`` = the sorter's pipeline
depth ``ceil(p(p+1)/2 / stages_per_reg)`` for ``n = 2**p``: 21 for ``default``, 10 for
``tiny`` with the default ``stages_per_reg = 1``) until the next command is accepted.  SELECT: one cycle to accept, response valid in the next cycle
(priority encoder over the ``L`` flags masked by ``i < T``).  DUMP: ``L`` beats, one per
cycle when ``dbg.ready`` stays high.

Area (measured, ``default``: ``n = 64``, 41-bit extended keys; yosys ``synth_ecp5`` through
``python -m proxima.fpga.resources candidates``, 2026-11-22): 86.6k LUT4 + 14.8k CCU2C and
60.7k FF -- more than an ECP5-85F holds.  Almost all of it is the private fully pipelined
64-input sorter (21 register levels x 64 x 41 bits = 55k FF, 672 41-bit compare-exchanges);
the list itself is ``3 * n * 41`` FF plus ``L`` comparators.  ``stages_per_reg`` (passed to
the sorter) cuts the register levels; on the FPGA the engine should share one sorter between
the queues (as the paper does) or use a smaller ``engine.sorter_n``.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from proxima.config import ConfigError, ProximaConfig
from proxima.golden.layout import bitlen
from proxima.golden.sorter import pad_key
from proxima.hdl.sorter import BitonicSorter

__all__ = ["CandidateListRTL", "CandidateListError", "Op"]


class CandidateListError(ValueError):
    """Impossible parameters for the candidate-list block."""


def _or_tree(values):
    """Bitwise OR of ``values`` as a balanced tree."""
    while len(values) > 1:
        values = [values[k] | values[k + 1] if k + 1 < len(values) else values[k]
                  for k in range(0, len(values), 2)]
    return values[0]


class Op(enum.Enum, shape=2):
    RESET = 0
    INSERT = 1
    SELECT = 2
    DUMP = 3


class CandidateListRTL(wiring.Component):
    """Per-query sorted candidate list with select / insert / dump commands."""

    def __init__(self, cfg: ProximaConfig, *, stages_per_reg: int = 1):
        self.cfg = cfg
        if int(stages_per_reg) < 1:
            raise CandidateListError(f"stages_per_reg must be >= 1, got {stages_per_reg}")
        self.stages_per_reg = int(stages_per_reg)
        self.L, self.R, self.n = cfg.search.L, cfg.graph.R, cfg.engine.sorter_n
        if self.L > self.n or self.R > self.n:
            raise CandidateListError(f"L ({self.L}) and R ({self.R}) must fit the sorter "
                                     f"(sorter_n = {self.n})")
        try:
            self.sort_cfg = cfg.with_(engine={"id_bits": cfg.id_bits + 1})
        except ConfigError as e:
            raise CandidateListError(
                f"the expanded flag widens the sorter key by one bit: {e}") from None
        self.key_bits = cfg.sort_key_bits
        self.ext_bits = self.key_bits + 1
        assert self.sort_cfg.sort_key_bits == self.ext_bits
        self.id_bits = cfg.id_bits
        self.t_bits = bitlen(self.L)
        depth = (self.n.bit_length() - 1) * self.n.bit_length() // 2
        #: sorter pipeline latency in cycles (an insert costs 2 * sorter_latency + 3 after
        #: its last key)
        self.sorter_latency = -(-depth // self.stages_per_reg)
        self.cmd_layout = data.StructLayout({"op": Op, "key": self.key_bits,
                                             "T": self.t_bits, "last": 1})
        self.resp_layout = data.StructLayout({"found": 1, "pos": range(self.L),
                                              "id": self.id_bits, "key": self.key_bits})
        self.dbg_layout = data.StructLayout({"pos": range(self.L), "key": self.key_bits,
                                             "expanded": 1, "last": 1})
        super().__init__({
            "cmd": In(stream.Signature(self.cmd_layout)),
            "resp": Out(stream.Signature(self.resp_layout)),
            "dbg": Out(stream.Signature(self.dbg_layout)),
            "length": Out(range(self.L + 1)),
            "error": Out(1),
        })

    @classmethod
    def from_config(cls, cfg: ProximaConfig) -> "CandidateListRTL":
        return cls(cfg)

    def elaborate(self, platform):
        m = Module()
        L, R, n, EB, KB = self.L, self.R, self.n, self.ext_bits, self.key_bits
        m.submodules.sorter = sorter = BitonicSorter(self.sort_cfg, n=n,
                                                     stages_per_reg=self.stages_per_reg)
        assert sorter.latency == self.sorter_latency
        ones = (1 << EB) - 1
        pad = pad_key(self.cfg)

        lst = [Signal(EB, name=f"lst{i}", init=ones) for i in range(L)]
        nbuf = [Signal(EB, name=f"nbuf{i}", init=ones) for i in range(n)]
        length = Signal(range(L + 1))
        ncount = Signal(range(R + 1))
        error = Signal()
        m.d.comb += [self.length.eq(length), self.error.eq(error)]

        cmd = self.cmd.payload
        accept = Signal()
        m.d.comb += accept.eq(self.cmd.valid & self.cmd.ready)

        # ---- select: first unexpanded among the first T ------------------------------
        # cand: unexpanded and i < T (empty slots carry flag 1, so they never qualify);
        # first = lowest set bit of cand, isolated as cand & (~cand + 1) (a carry chain);
        # pos / key = OR over the one-hot `first` (balanced trees, no priority mux chain)
        cand = Signal(L)
        m.d.comb += cand.eq(Cat(~lst[i][0] & (cmd.T > i) for i in range(L)))
        first = Signal(L)
        m.d.comb += first.eq(cand & (~cand + 1)[:L])
        found = Signal()
        sel_pos = Signal(range(L))
        sel_key = Signal(KB)
        m.d.comb += [
            found.eq(cand.any()),
            sel_pos.eq(_or_tree([Mux(first[i], i, 0) for i in range(L)])),
            sel_key.eq(_or_tree([Mux(first[i], lst[i][1:], 0) for i in range(L)])),
        ]

        resp_valid = Signal()
        m.d.comb += self.resp.valid.eq(resp_valid)
        with m.If(self.resp.valid & self.resp.ready):
            m.d.sync += resp_valid.eq(0)

        # ---- dump ---------------------------------------------------------------------
        dcnt = Signal(range(L))
        dent = Signal(EB)
        m.d.comb += dent.eq(Array(lst)[dcnt])
        dkey = dent[1:]
        m.d.comb += [
            self.dbg.payload.pos.eq(dcnt),
            self.dbg.payload.key.eq(dkey),
            self.dbg.payload.expanded.eq(dent[0] & (dkey != pad)),
            self.dbg.payload.last.eq(dcnt == L - 1),
        ]

        # ---- sorter input vectors -------------------------------------------------------
        merged_in = [Signal(EB, name=f"c{i}") for i in range(L)]
        for i in range(L):
            a, b = lst[i], nbuf[L - 1 - i]
            m.d.comb += merged_in[i].eq(Mux(a < b, a, b))
        sin = sorter.i.payload

        with m.FSM(init="IDLE"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(~resp_valid)
                with m.If(accept):
                    with m.Switch(cmd.op):
                        with m.Case(Op.RESET):
                            m.d.sync += lst[0].eq(cmd.key << 1)
                            m.d.sync += [lst[i].eq(ones) for i in range(1, L)]
                            m.d.sync += [b.eq(ones) for b in nbuf]
                            m.d.sync += [length.eq(1), ncount.eq(0)]
                        with m.Case(Op.INSERT):
                            with m.If(ncount < R):
                                m.d.sync += [nbuf[k].eq(nbuf[k + 1]) for k in range(n - 1)]
                                m.d.sync += [nbuf[n - 1].eq(cmd.key << 1),
                                             ncount.eq(ncount + 1)]
                            with m.Else():
                                m.d.sync += error.eq(1)
                            with m.If(cmd.last):
                                m.next = "SORT1"
                        with m.Case(Op.SELECT):
                            m.d.sync += [
                                resp_valid.eq(1),
                                self.resp.payload.found.eq(found),
                                self.resp.payload.pos.eq(Mux(found, sel_pos, 0)),
                                self.resp.payload.key.eq(Mux(found, sel_key, 0)),
                                self.resp.payload.id.eq(
                                    Mux(found, sel_key[:self.id_bits], 0)),
                            ]
                            for i in range(L):
                                with m.If(first[i]):
                                    m.d.sync += lst[i][0].eq(1)
                        with m.Case(Op.DUMP):
                            m.d.sync += dcnt.eq(0)
                            m.next = "DUMP"
            with m.State("SORT1"):
                m.d.comb += sorter.i.valid.eq(1)
                m.d.comb += [sin[k].eq(nbuf[k]) for k in range(n)]
                with m.If(sorter.i.ready):
                    m.next = "WAIT1"
            with m.State("WAIT1"):
                m.d.comb += sorter.o.ready.eq(1)
                with m.If(sorter.o.valid):
                    m.d.sync += [nbuf[k].eq(sorter.o.payload[k]) for k in range(n)]
                    m.next = "SORT2"
            with m.State("SORT2"):
                m.d.comb += sorter.i.valid.eq(1)
                m.d.comb += [sin[k].eq(merged_in[k]) for k in range(L)]
                m.d.comb += [sin[k].eq(ones) for k in range(L, n)]
                with m.If(sorter.i.ready):
                    m.next = "WAIT2"
            with m.State("WAIT2"):
                m.d.comb += sorter.o.ready.eq(1)
                with m.If(sorter.o.valid):
                    m.d.sync += [lst[i].eq(sorter.o.payload[i]) for i in range(L)]
                    m.d.sync += [b.eq(ones) for b in nbuf]
                    total = length + ncount
                    m.d.sync += [length.eq(Mux(total > L, L, total)), ncount.eq(0)]
                    m.next = "IDLE"
            with m.State("DUMP"):
                m.d.comb += self.dbg.valid.eq(1)
                with m.If(self.dbg.ready):
                    m.d.sync += dcnt.eq(dcnt + 1)
                    with m.If(dcnt == L - 1):
                        m.next = "IDLE"
        return m
