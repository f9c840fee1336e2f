"""Reorder buffer: one search context's NAND responses, handed out in request order.

The NAND controller (:mod:`proxima.hdl.nandctl`) completes accesses in the order their cores
finish, not in the order a context issued them; a context (:class:`proxima.hdl.engine.SearchEngine`)
takes the beats of its accesses in request order.  Each outstanding access owns one of
``slots`` buffer slots, named by the request's tag, so the buffer never refuses a beat.

Parameters
----------
``ReorderBuffer(slots, nb, beat_bits, in_bits=None)``: ``slots`` accesses outstanding at most
(a power of two), ``nb`` beats per access out (a power of two), ``beat_bits`` per beat out;
``in_bits`` (default ``beat_bits``): the width of a written beat, a power-of-two multiple
``lanes`` of ``beat_bits`` dividing the access (the shared memory path is wider than a
context's beat): an access is written as ``nb_in = nb / lanes`` beats, output beat ``j``
is lane ``j % lanes`` (bits ``[lane * beat_bits, (lane + 1) * beat_bits)``) of written beat
``j // lanes``.

Interface
---------
``can_issue`` ``Out(1)``: fewer than ``slots`` accesses are outstanding (a register).
``slot``      ``Out(range(slots))``: the slot of the next access issued (put it in the tag).
``issue``     ``In(1)``: an access is issued in this cycle (only while ``can_issue``).
``w_en``, ``w_slot``, ``w_beat`` (``range(nb_in)``), ``w_data`` (``in_bits``), ``w_last``:
              ``In``: written beat ``w_beat`` of the
              access in slot ``w_slot`` (``w_last`` on its final beat; beats of one access in
              order, accesses in any order).
``out``       ``Out(stream{data, last})``: the beats of the issued accesses in issue order,
              ``last`` on each access's final beat.

Cycle behaviour
---------------
Store and forward: a slot is *full* from the cycle after its last beat is written; its first
beat is offered on ``out`` one cycle later (a synchronous block-RAM read), then one beat per
cycle while ``out.ready``.  A slot is free again (and ``can_issue`` rises) in the cycle after
its last beat was read from the memory.  Storage: one memory of ``slots * nb_in`` words of
``in_bits``; the lane of the word read is selected by a register beside the memory's.

Golden twin: none of its own -- it restores the order the search (:func:`proxima.golden.search.search`)
assumes; the cycle rules above are part of :mod:`proxima.golden.engine_timing`'s model.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

__all__ = ["ReorderBuffer"]


class ReorderBuffer(wiring.Component):
    """Per-context response buffer (module doc)."""

    def __init__(self, slots: int, nb: int, beat_bits: int, in_bits: int | None = None):
        self.slots, self.nb, self.beat_bits = int(slots), int(nb), int(beat_bits)
        self.in_bits = self.beat_bits if in_bits is None else int(in_bits)
        for name, v in (("slots", self.slots), ("nb", self.nb)):
            if v < 1 or v & (v - 1):
                raise ValueError(f"reorder buffer: {name} must be a power of two, got {v}")
        lanes = self.in_bits // self.beat_bits
        if (self.in_bits % self.beat_bits or lanes & (lanes - 1) or lanes > self.nb):
            raise ValueError(f"reorder buffer: in_bits ({self.in_bits}) must be a power-of-two "
                             f"multiple of beat_bits ({self.beat_bits}), at most one access")
        self.lanes, self.nb_in = lanes, self.nb // lanes
        self.out_layout = data.StructLayout({"data": self.beat_bits, "last": 1})
        super().__init__({
            "can_issue": Out(1), "slot": Out(range(self.slots)), "issue": In(1),
            "w_en": In(1), "w_slot": In(range(self.slots)),
            "w_beat": In(range(max(2, self.nb_in))), "w_data": In(self.in_bits), "w_last": In(1),
            "out": Out(stream.Signature(self.out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        S, nb, lanes = self.slots, self.nb, self.lanes
        sb, bbits, lbits = exact_log2(S), exact_log2(self.nb_in), exact_log2(lanes)

        def addr(slot, beat):  # beat: a written beat's index
            parts = ([beat[:bbits]] if bbits else []) + ([slot[:sb]] if sb else [])
            return Cat(*parts) if parts else 0

        m.submodules.mem = mem = Memory(shape=self.in_bits, depth=S * self.nb_in, init=[])
        wp = mem.write_port()
        rp = mem.read_port()
        m.d.comb += [wp.en.eq(self.w_en), wp.addr.eq(addr(self.w_slot, self.w_beat)),
                     wp.data.eq(self.w_data)]

        full = Signal(S)
        outstanding = Signal(range(S + 1))
        wseq = Signal(range(S))
        rseq = Signal(range(S))
        rbeat = Signal(range(max(2, nb)))
        ov = Signal()  # the out register holds a beat
        olast = Signal()
        lane = Signal(max(1, lbits))  # the lane of the word the memory presents
        m.d.comb += [self.slot.eq(wseq), self.can_issue.eq(outstanding != S),
                     self.out.valid.eq(ov),
                     self.out.payload.data.eq(rp.data.word_select(lane, self.beat_bits)
                                              if lanes > 1 else rp.data),
                     self.out.payload.last.eq(olast)]
        with m.If(self.issue):
            m.d.sync += wseq.eq(wseq + 1)

        advance = ~ov | self.out.ready
        load = Signal()
        freed = Signal()
        m.d.comb += [load.eq(advance & full.bit_select(rseq, 1)),
                     rp.en.eq(advance), rp.addr.eq(addr(rseq, rbeat[lbits:]))]
        m.d.comb += freed.eq(load & (rbeat == nb - 1))
        with m.If(load):
            m.d.sync += [ov.eq(1), olast.eq(rbeat == nb - 1), rbeat.eq(rbeat + 1)]
            if lanes > 1:
                m.d.sync += lane.eq(rbeat[:lbits])
            with m.If(rbeat == nb - 1):
                m.d.sync += [rbeat.eq(0), rseq.eq(rseq + 1)]
        with m.Elif(self.out.ready):
            m.d.sync += ov.eq(0)

        set_bits, clr_bits = Signal(S), Signal(S)
        for s in range(S):
            m.d.comb += [set_bits[s].eq(self.w_en & self.w_last & (self.w_slot == s)),
                         clr_bits[s].eq(freed & (rseq == s))]
        m.d.sync += full.eq((full & ~clr_bits) | set_bits)
        m.d.sync += outstanding.eq(outstanding + self.issue - freed)
        return m
