"""Merge of the candidate list: the chunk comparators and the sorter-request sequencer.

Golden twin: :meth:`proxima.golden.candidates.CandidateList.insert` as the chunked bitonic
merge of ``hdl/candidates.py`` computes it: sort the batch (``S``), then per chunk ``t`` the
element-wise minima ``X_t`` of the chunk and the reversed carry (the new chunk) and, but for
the last chunk, the maxima ``Y_t`` (the next carry).  Tested in
``tests/hdl/test_candidates_merge.py``: the comparators against ``>``, the
sequencer's requests and its cycle count against :meth:`ProximaConfig.insert_cycles_for`.

:class:`MergeCompare` (``w`` slots of ``ext_bits``, ``halves``)
-------------------------------------------------------------
``a``, ``bn`` (``= ~b``): ``In`` per slot; ``a_ones``: ``In(w)``, bit ``i``: ``a[i]`` reads
as all ones (an empty slot, whatever its storage holds).  ``gt``: ``Out(w)``, bit ``i`` =
``a[i] > b[i]`` or ``a_ones[i]``, registered: correct in every cycle after one in which ``a``, ``bn``, ``a_ones``
held the values.  The owner picks ``min = gt ? b : a`` and ``max = gt ? a : b`` (equal
operands: either).  Each comparison is the carry out of ``Cat(a, a_ones) + Cat(~b, 1)``
(``a + ~b >= 2**k`` exactly when ``a > b``; the top bit adds ``1 + a_ones[i]``), so with ``a``
and ``~b`` from storage no LUT sits in front of the chain and none behind it.  ``halves``:
three registered chains per slot (``a_hi > b_hi``, ``a_hi >= b_hi`` with operands of its
own, ``a_lo > b_lo``) and ``gt_lo ? ge_hi : gt_hi`` behind them (one LUT): shorter chains
for a faster clock.

:class:`MergeControl` (``j`` chunks)
-----------------------------------
``go``           ``In(1)``: a merge starts (the cycle the last INSERT beat of a (sub-)batch
                 is accepted, ``a``); the batch is in the request register from ``a + 3``.
``skip``         ``In(1)``, looked at in cycle ``a + 2`` only: the merge cannot change the
                 list (golden merge plan); nothing is sent to the sorter and ``fin`` is
                 high in cycle ``a + 3`` (``cfg.insert_skip_cycles`` = 4 to the next command).
``req_valid``    ``Out(1)``: offer the request register to the sorter (``S`` from ``a +
                 3``); ``req_ready`` ``In(1)``: the sorter's ``ready``.
``kind``, ``chunk``  ``Out``: the request offered (:class:`Req`) and its chunk.
``merging``      ``Out(1)``: the merge runs (the sorter's response ``ready``);
                 ``resp_valid`` ``In(1)``: a response arrives (in request order).
``rchunk``       ``Out(range(j))``: the chunk of the next response ``X`` (the chunk it
                 replaces).
``rr_c_next``, ``rr_x_next``  ``Out(1)``, combinational: the response taken now is a carry
                 (``S`` or ``Y``) / a new chunk (``X``): the owner stores it at this edge.
``c_fresh``      ``Out(1)``: the carry response was taken two edges ago (the comparisons'
                 registers load at this edge).
``c_cmp``        ``Out(1)``: the comparisons are valid; register the ``X`` selects (the
                 minima) at this edge, ``X`` enters the request register at the next.
``y_due_next``   ``Out(1)``, combinational: ``X`` is accepted; load ``Y`` at this edge.
``fin``          ``Out(1)``: the last ``X`` was taken at the last edge: the merge ends at
                 this edge.

With a sorter of fixed latency ``lat`` that never stalls, ``fin`` is high in cycle ``a +
insert_cycles_for(lat) - 1`` (the next command is accepted a cycle later).  A request is
offered one at a time; ``Y_t`` one cycle after ``X_t`` is accepted, ``X_t`` three cycles
after the carry response is taken.
"""

from __future__ import annotations

from amaranth.hdl import C, Cat, Module, Mux, Signal
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from proxima.hdl.lib.vendor import carry_out

__all__ = ["MergeCompare", "MergeControl", "Req"]


class Req(enum.Enum, shape=2):
    """Kind of a sorter request / response: batch, chunk minima, chunk maxima."""
    S = 0
    X = 1
    Y = 2


class MergeCompare(wiring.Component):
    """Per slot ``a > b`` (or ``a`` all ones) from ``a`` and the inverted ``bn = ~b``,
    registered (module docstring)."""

    def __init__(self, w: int, ext_bits: int, halves: bool = False):
        self.w, self.ext_bits, self.halves = int(w), int(ext_bits), bool(halves)
        super().__init__({
            "a": In(ext_bits).array(self.w), "bn": In(ext_bits).array(self.w),
            "a_ones": In(self.w), "gt": Out(self.w),
        })

    def elaborate(self, platform):
        m = Module()
        half = self.ext_bits // 2
        for i in range(self.w):
            a, bn, z = self.a[i], self.bn[i], self.a_ones[i]
            # a_ones on top of the high operands: (z, 1) adds 1 + z + carry, so the carry
            # out is 1 when z and the comparison's carry otherwise
            if not self.halves:
                gt = Signal(name=f"gt{i}", reset_less=True)
                m.d.sync += gt.eq(carry_out(Cat(a, z), Cat(bn, C(1, 1))))
            else:
                gt_hi = Signal(name=f"gt{i}_hi", reset_less=True)
                ge_hi = Signal(name=f"ge{i}_hi", reset_less=True)
                gt_lo = Signal(name=f"gt{i}_lo", reset_less=True)
                m.d.sync += [
                    gt_hi.eq(carry_out(Cat(a[half:], z), Cat(bn[half:], C(1, 1)))),
                    ge_hi.eq(carry_out(Cat(C(1, 1), a[half:], z),
                                       Cat(C(1, 1), bn[half:], C(1, 1)))),
                    gt_lo.eq(carry_out(a[:half], bn[:half])),
                ]
                gt = Mux(gt_lo, ge_hi, gt_hi)
            m.d.comb += self.gt[i].eq(gt)
        return m


class MergeControl(wiring.Component):
    """Sequence of sorter requests and responses of one merge (module docstring)."""

    def __init__(self, j: int):
        self.j = int(j)
        super().__init__({
            "go": In(1), "skip": In(1), "req_valid": Out(1), "req_ready": In(1),
            "kind": Out(Req), "chunk": Out(range(self.j)),
            "merging": Out(1), "resp_valid": In(1), "rchunk": Out(range(self.j)),
            "rr_c_next": Out(1), "rr_x_next": Out(1),
            "c_fresh": Out(1), "c_cmp": Out(1), "y_due_next": Out(1), "fin": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        j = self.j
        merging = Signal()
        req_valid = Signal()
        qkind = Signal(Req)
        rkind = Signal(Req)
        tq = Signal(range(j))                 # chunk of the request side
        rt = Signal(range(j))                 # chunk of the response side
        c_fresh = Signal()                    # carry loaded: compare stage 1 next cycle
        c_cmp = Signal()                      # stage 1 valid: lt is valid in the next cycle
        x_due = Signal()                      # lt valid: load X into the request register
        y_due = Signal()                      # X accepted: load Y into the request register
        start = Signal()                      # last key accepted a cycle ago
        start_d = Signal()                    # last key shifted: offer S
        # yarm: req_valid & (qkind == X) & (tq != j - 1), one register
        yarm = Signal()
        rr_x = Signal()                       # X_rt was taken at the last edge
        rr_c = Signal()                       # S or Y was taken at the last edge
        fin = Signal()                        # the last X was taken: the merge ends
        y_due_next = Signal()
        m.d.comb += [self.req_valid.eq(req_valid), self.merging.eq(merging),
                     self.kind.eq(qkind), self.chunk.eq(tq), self.rchunk.eq(rt),
                     self.c_fresh.eq(c_fresh),
                     self.c_cmp.eq(c_cmp), self.y_due_next.eq(y_due_next),
                     self.fin.eq(fin), y_due_next.eq(self.req_ready & yarm)]
        m.d.sync += [x_due.eq(c_cmp), c_cmp.eq(c_fresh), c_fresh.eq(0), y_due.eq(0),
                     start.eq(0), start_d.eq(start)]
        # request handshake (yarm follows req_valid and qkind statement for statement; tq
        # changes only while qkind = Y or req_valid = 0)
        with m.If((start_d & ~self.skip) | x_due | y_due):
            m.d.sync += req_valid.eq(1)
        with m.If(start_d):
            m.d.sync += [qkind.eq(Req.S), yarm.eq(0)]
        with m.If(x_due):
            m.d.sync += [qkind.eq(Req.X), yarm.eq(tq != j - 1)]
        with m.If(y_due):
            m.d.sync += [qkind.eq(Req.Y), yarm.eq(0)]
        with m.If(req_valid & self.req_ready):
            m.d.sync += [req_valid.eq(0), yarm.eq(0)]
            with m.If(y_due_next):
                m.d.sync += y_due.eq(1)
            with m.If(qkind == Req.Y):
                m.d.sync += tq.eq(tq + 1)
        # response side
        m.d.sync += [rr_x.eq(0), rr_c.eq(0), fin.eq(0)]
        resp_acc = self.resp_valid & merging
        with m.If(resp_acc):
            with m.Switch(rkind):
                with m.Case(Req.S, Req.Y):
                    m.d.sync += [rr_c.eq(1), rkind.eq(Req.X)]
                    with m.If(rkind == Req.Y):
                        m.d.sync += rt.eq(rt + 1)
                with m.Case(Req.X):
                    m.d.sync += rr_x.eq(1)
                    with m.If(rt == j - 1):
                        m.d.sync += fin.eq(1)
                    with m.Else():
                        m.d.sync += rkind.eq(Req.Y)
        m.d.comb += [
            self.rr_c_next.eq(resp_acc & ((rkind == Req.S) | (rkind == Req.Y))),
            self.rr_x_next.eq(resp_acc & (rkind == Req.X)),
        ]
        with m.If(start_d & self.skip):
            m.d.sync += fin.eq(1)
        with m.If(rr_c):
            m.d.sync += c_fresh.eq(1)
        with m.If(fin):
            m.d.sync += merging.eq(0)
        with m.If(self.go):
            m.d.sync += [start.eq(1), rkind.eq(Req.S), tq.eq(0), rt.eq(0), merging.eq(1)]
        return m
