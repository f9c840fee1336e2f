"""SELECT pipeline of the candidate list: the first unexpanded slot below ``T``.

Golden twin: :meth:`proxima.golden.candidates.CandidateList.select` (which slot it picks:
the lowest position ``i < min(T, len)`` whose entry is not expanded; empty slots carry the
flag and never qualify).  Tested against it in ``tests/hdl/test_candidates_select.py``.

Parameters: ``L`` slots, ``t_bits`` (width of ``T``).

Interface
---------
``go``          ``In(1)`` with ``T``: a SELECT is accepted (cycle ``a``); ``T`` is registered
                as the mask ``i < T``.
``unexpanded``  ``In(L)``: per slot, not expanded (read in cycle ``a + 1``).
``s2``, ``s3``, ``s5``  ``Out(1)``: the pipeline's stage strobes, high in cycles ``a + 2``,
                ``a + 3``, ``a + 5``.
``first``       ``Out(L)``: one-hot of the chosen slot (all zero when none), valid from
                ``a + 3`` on (the owner sets that slot's flag in ``a + 3``).
``found``, ``pos``  ``Out``: whether a slot was chosen, and its position (0 when none), valid
                from ``a + 4`` on.

Stages: (``a``) register the mask; (1) per group of ``GROUP`` slots, the lowest candidate
(one-hot) and whether any; (2) keep that of the lowest group with any; (3) encode the
position (OR trees).  A SELECT may be accepted every cycle; the list accepts one per
response.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from proxima.hdl.lib.logic import or_tree

__all__ = ["ListSelect", "GROUP"]

#: slots per group of stage 1
GROUP = 8


class ListSelect(wiring.Component):
    """The lowest unexpanded slot below ``T`` in three registered stages (module docstring)."""

    def __init__(self, L: int, t_bits: int):
        self.L = int(L)
        super().__init__({
            "go": In(1), "T": In(t_bits), "unexpanded": In(self.L),
            "s2": Out(1), "s3": Out(1), "s5": Out(1),
            "first": Out(self.L), "found": Out(1), "pos": Out(range(self.L)),
        })

    def elaborate(self, platform):
        m = Module()
        L, G = self.L, GROUP
        ng = -(-L // G)
        s1, s2, s3, s4, s5 = Signal(), Signal(), Signal(), Signal(), Signal()
        sel_mask = Signal(L, reset_less=True)
        loc = Signal(L, reset_less=True)
        gany = Signal(ng, reset_less=True)
        first = Signal(L, reset_less=True)
        sel_pos = Signal(range(L), reset_less=True)
        sel_found = Signal(reset_less=True)
        m.d.comb += [self.s2.eq(s2), self.s3.eq(s3), self.s5.eq(s5), self.first.eq(first),
                     self.found.eq(sel_found), self.pos.eq(sel_pos)]
        m.d.sync += [s1.eq(self.go), s2.eq(s1), s3.eq(s2), s4.eq(s3), s5.eq(s4)]
        with m.If(self.go):
            m.d.sync += sel_mask.eq(Cat(self.T > i for i in range(L)))
        cand = Signal(L)
        m.d.comb += cand.eq(self.unexpanded & sel_mask)
        with m.If(s1):
            for g in range(ng):
                c = cand[g * G:min(L, (g + 1) * G)]
                m.d.sync += [loc[g * G:min(L, (g + 1) * G)].eq(c & (~c + 1)[:len(c)]),
                             gany[g].eq(c.any())]
        with m.If(s2):
            gfirst = Signal(ng)
            m.d.comb += gfirst.eq(gany & (~gany + 1)[:ng])
            m.d.sync += first.eq(Cat(loc[i] & gfirst[i // G] for i in range(L)))
        sel_pos_new = Signal(range(L))
        m.d.comb += sel_pos_new.eq(or_tree([Mux(first[i], i, 0) for i in range(L)])
                                   if L > 1 else 0)
        with m.If(s3):
            m.d.sync += [sel_found.eq(first.any()), sel_pos.eq(sel_pos_new)]
        return m
