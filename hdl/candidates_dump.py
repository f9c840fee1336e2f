"""DUMP path of the candidate list: slot counter, read-port enables and the ``dbg`` FIFO.

Golden twin: a dump is the list's slots in order (:attr:`proxima.golden.candidates.
CandidateList.keys` padded with empty keys to ``L``, each with its expanded flag), which
is what ``dbg`` streams.  Tested in ``tests/hdl/test_candidates_dump.py`` with a model of
the list's read port.

Parameters: ``L`` slots, ``groups`` (read-port groups of ``group`` slots), ``ext_bits``
(``(key << 1) | expanded``), ``dbg_layout`` (``{pos, key, expanded, last}``).

Interface
---------
``start``    ``In(1)``: a DUMP command is accepted (cycle ``a``).
``go``       ``Out(1)``: the dump starts (cycle ``a + 1``): the owner sets its one-hot read
             select to slot 0.
``s3``       ``In(1)``: a SELECT's stage 3 (it loads read level 1 too).
``shift``    ``Out(groups)``, ``load`` ``Out(groups)``: per read group, registers: shift
             the group's slice of the one-hot select up one slot, load the group's level-1
             register (level 1 = the OR of the selected slots of the group, loaded at the
             edge ending the cycle).  The owner's level 2 (the OR of the groups) is
             ``rd_key``, ``In(ext_bits)``.
``length``   ``In``: the list's length (slots past it are reported empty: key all ones,
             unexpanded, whatever ``rd_key`` holds).
``dbg``      ``Out(stream(dbg_layout))``: slots ``0 .. L-1``, one per cycle while ``ready``
             is high, the first valid in cycle ``a + 4``; a two-entry FIFO whose ``ready``
             moves only its pointers.
``done``     ``Out(1)``, combinational: the last beat was taken in this cycle.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["DumpReader", "dump_layout"]


def dump_layout(L: int, key_bits: int) -> data.StructLayout:
    """The ``dbg`` beat: ``{pos, key, expanded, last}``."""
    return data.StructLayout({"pos": range(L), "key": key_bits, "expanded": 1, "last": 1})


class DumpReader(wiring.Component):
    """Dump sequencing and the ``dbg`` FIFO (see the module docstring)."""

    def __init__(self, L: int, groups: int, ext_bits: int, dbg_layout):
        self.L, self.groups, self.dbg_layout = int(L), int(groups), dbg_layout
        super().__init__({
            "start": In(1), "go": Out(1), "s3": In(1),
            "shift": Out(self.groups), "load": Out(self.groups),
            "rd_key": In(ext_bits), "length": In(range(self.L + 1)),
            "dbg": Out(stream.Signature(dbg_layout)), "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        L = self.L
        dumping = Signal()
        dcnt = Signal(range(L + 1))
        rd_pos = Signal(range(L), reset_less=True)
        rd_v = Signal()                        # level 1 holds a dump slot
        # rd_adv: the read pipeline moves on; a register (~full of the FIFO), so that no
        # enable of the read port depends on dbg.ready
        full = Signal()
        full_nx = Signal()                     # its next state (comb)
        rd_adv = Signal()
        m.d.comb += rd_adv.eq(~full)
        m.d.sync += full.eq(full_nx)
        # a DUMP starts a cycle after it is accepted (no enable depends on the command)
        dump_go = Signal()
        m.d.sync += dump_go.eq(self.start)
        m.d.comb += self.go.eq(dump_go)
        # per group, registers computed a cycle early from the next states of the group's
        # dump flag and of ``full``: the level-1 load (s3 | act & rd_adv) and the shift
        for g in range(self.groups):
            q = Signal(name=f"rd_act{g}")               # dumping & (dcnt != L), per group
            act_nx = Signal(name=f"rd_act{g}_nx")
            m.d.comb += act_nx.eq(dump_go | q & ~(rd_adv & (dcnt == L - 1)))
            sh, en = Signal(name=f"rd_sh{g}"), Signal(name=f"rd_en{g}")
            m.d.sync += [q.eq(act_nx), sh.eq(act_nx & ~full_nx),
                         en.eq(self.s3 | act_nx & ~full_nx)]
            m.d.comb += [self.shift[g].eq(sh), self.load[g].eq(en)]

        # the dbg FIFO: a beat is written into the entry at wptr; the payload is the entry
        # at rptr; an entry loads the beat in every cycle while it is free
        beat = Signal(self.dbg_layout)
        inl = Signal()                         # the slot holds an entry
        m.d.comb += [inl.eq(rd_pos < self.length), beat.pos.eq(rd_pos),
                     beat.key.eq(self.rd_key[1:] | (~inl).replicate(len(beat.key))),
                     beat.expanded.eq(self.rd_key[0] & inl),
                     beat.last.eq(rd_pos == L - 1)]
        ent = [Signal(self.dbg_layout, name=f"dbg_ent{k}", reset_less=True) for k in range(2)]
        wptr, rptr = Signal(), Signal()
        nonempty = Signal()
        count = Signal(range(3))
        count_nx = Signal(range(3))
        write, read = Signal(), Signal()
        m.d.comb += [
            self.dbg.valid.eq(nonempty),
            self.dbg.payload.eq(Mux(rptr, ent[1], ent[0])),
            write.eq(dumping & rd_adv & rd_v),
            read.eq(nonempty & self.dbg.ready),
            count_nx.eq(count + write - read),
            full_nx.eq(count_nx == 2),
        ]
        m.d.sync += [count.eq(count_nx), nonempty.eq(count_nx != 0), rptr.eq(rptr ^ read),
                     wptr.eq(wptr ^ write)]
        free = [Signal(name=f"dbg_free{k}", init=1) for k in range(2)]
        for k in range(2):
            m.d.sync += free[k].eq(free[k] & ~(write & (wptr == k)) | read & (rptr == k))
            with m.If(free[k]):
                m.d.sync += ent[k].eq(beat)
        with m.If(dumping & rd_adv):
            m.d.sync += [
                rd_v.eq(dcnt != L),
                rd_pos.eq(dcnt),
                dcnt.eq(dcnt + (dcnt != L)),
            ]
        # the dump ends when the last beat is taken (nothing in flight, the FIFO empty
        # after this cycle); the next command is accepted in the following cycle
        with m.If(dumping & (dcnt == L) & ~rd_v & (count_nx == 0)):
            m.d.sync += dumping.eq(0)
            m.d.comb += self.done.eq(1)
        with m.If(dump_go):
            m.d.sync += [dcnt.eq(0), dumping.eq(1), rd_v.eq(0)]
        return m
