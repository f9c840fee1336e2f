"""Stream queues.

:class:`Queue`
    A stream FIFO on :mod:`amaranth.lib.fifo`.  ``buffered=False``: :class:`SyncFIFO`
    (storage with an asynchronous read, LUT RAM on ECP5), ``o.valid`` one cycle after a
    push into an empty queue (:attr:`Queue.latency` 1).  ``buffered=True``:
    :class:`SyncFIFOBuffered` (``o.payload`` is a register), latency 2.  Both: one push and
    one pop per cycle, never more than ``depth`` entries; ``i.ready`` never depends on
    ``i.valid`` or ``o.ready`` (a pop does not make room for a push in the same cycle):
    unbuffered it is "fewer than ``depth`` entries at the start of the cycle", buffered
    "room in the ``depth - 1`` entries behind the output register".  ``level``: entries
    held.  ``credited=True`` is for a
    producer that never looks at ``i.ready`` (it holds credits for the free entries):
    ``overflow`` is then a sticky flag of a beat offered while full (a broken credit
    count; it drives nothing, so synthesis removes it).

:class:`SkidBuffer`
    A two-entry queue whose head is the output register and whose ``i.ready`` is a
    register (``~side_valid``): cycle for cycle the behaviour of ``Queue(depth=2)`` with
    ``o.payload`` from a register instead of a RAM read, so that neither ``o.ready`` nor
    the read multiplexer reaches the producer.

:class:`RegisterRing`
    A FIFO of wide entries (``lanes`` lanes) in flip-flops, where one write enable or one
    read pointer driving every bit would be a net of thousands of loads: the write enables
    are registers computed a cycle ahead, one set per ``write_lanes`` lanes, and the read
    pointer is copied per ``read_lanes`` lanes.  It keeps no occupancy: the caller
    (which must keep one anyway to decide its stalls) never pushes into a full ring and
    never pops an empty one.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

__all__ = ["Queue", "SkidBuffer", "RegisterRing", "QUEUE_LATENCY", "BUFFERED_QUEUE_LATENCY"]

#: cycles from a push into an empty :class:`Queue` to ``o.valid`` (``buffered=False``)
QUEUE_LATENCY = 1
#: the same with ``buffered=True`` (:class:`~amaranth.lib.fifo.SyncFIFOBuffered`)
BUFFERED_QUEUE_LATENCY = 2


class Queue(wiring.Component):
    """Stream FIFO of ``depth`` entries of ``shape`` (module doc).

    Interface: ``i`` ``In(stream.Signature(shape))``, ``o`` ``Out(stream.Signature(shape))``,
    ``level`` ``Out(range(depth + 1))``, ``overflow`` ``Out(1)`` (``credited`` only;
    constant 0 otherwise).  Attributes: ``depth``, ``buffered``, ``latency`` (cycles from a
    push into an empty queue to ``o.valid``)."""

    def __init__(self, shape, depth: int, *, buffered: bool = False, credited: bool = False):
        depth = int(depth)
        if depth < 1:
            raise ValueError(f"queue depth must be >= 1, got {depth}")
        if buffered and depth < 2:
            raise ValueError("a buffered queue needs depth >= 2 (output register + storage)")
        self.shape, self.depth = shape, depth
        self.width = Shape.cast(shape).width
        self.buffered, self.credited = bool(buffered), bool(credited)
        self.latency = BUFFERED_QUEUE_LATENCY if self.buffered else QUEUE_LATENCY
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
            "level": Out(range(depth + 1)),
            "overflow": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cls = SyncFIFOBuffered if self.buffered else SyncFIFO
        m.submodules.fifo = fifo = cls(width=self.width, depth=self.depth)
        m.d.comb += [
            fifo.w_data.eq(self.i.payload), fifo.w_en.eq(self.i.valid),
            self.i.ready.eq(fifo.w_rdy),
            self.o.payload.eq(fifo.r_data), self.o.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.o.ready),
            self.level.eq(fifo.level),
        ]
        if self.credited:
            with m.If(self.i.valid & ~fifo.w_rdy):
                m.d.sync += self.overflow.eq(1)
        return m


class SkidBuffer(wiring.Component):
    """Two-entry queue with registered ``i.ready``, ``o.valid`` and ``o.payload`` (module
    doc).  Latency 1 (a push into an empty buffer is on ``o`` in the next cycle), one
    transfer per cycle while ``o.ready`` stays high; after ``o.ready`` drops with the head
    held, one more beat is taken and ``i.ready`` falls in the next cycle."""

    def __init__(self, shape):
        self.shape = shape
        self.width = Shape.cast(shape).width
        self.latency = 1
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        side = Signal(self.width)
        side_valid = Signal()
        push = Signal()
        pop = Signal()
        m.d.comb += [self.i.ready.eq(~side_valid), push.eq(self.i.valid & ~side_valid),
                     pop.eq(self.o.valid & self.o.ready)]
        with m.If(~side_valid):
            m.d.sync += side.eq(self.i.payload)
        with m.If(~self.o.valid | self.o.ready):
            m.d.sync += [self.o.payload.eq(Mux(side_valid, side, self.i.payload)),
                         self.o.valid.eq(side_valid | push)]
        m.d.sync += side_valid.eq(~pop & (side_valid | (push & self.o.valid)))
        return m


class RegisterRing(wiring.Component):
    """``depth`` entries of ``lanes`` x ``lane_width`` bits in registers (module doc).

    Interface
    ---------
    ``push``       ``In(1)``: an entry is pushed in this cycle (advances the write pointer).
    ``push_next``  ``In(ceil(lanes / write_lanes))``: per write group, "an entry is pushed
                   in the next cycle" -- must equal the next cycle's ``push`` (each group's
                   copy may come from its own register, all equal in value).
    ``w_data``     ``In(ArrayLayout(unsigned(lane_width), lanes))``: the entry pushed in
                   this cycle.
    ``pop``        ``In(1)``: the head leaves in this cycle.
    ``r_data``     ``Out(ArrayLayout(...))``: the head (the oldest entry), valid while the
                   ring is not empty; a pushed entry is the head one cycle later at the
                   earliest (the behaviour of :class:`amaranth.lib.fifo.SyncFIFO`).

    Registers (names prefixed with ``name``): ``{name}_wp`` (write pointer),
    ``{name}_e{g}_we{e}`` (write enable of entry ``e`` in write group ``g``),
    ``{name}_r{h}_rp`` (read pointer copy of read group ``h``), ``{name}_e{e}_k{k}``
    (entries; reset-less)."""

    def __init__(self, lane_width: int, lanes: int, depth: int, *, write_lanes: int = 1,
                 read_lanes: int = 1, name: str = "ring"):
        self.lane_width, self.lanes, self.depth = int(lane_width), int(lanes), int(depth)
        if self.depth < 2:
            raise ValueError(f"a register ring needs depth >= 2, got {depth}")
        if int(write_lanes) < 1 or int(read_lanes) < 1:
            raise ValueError("write_lanes and read_lanes must be >= 1")
        self.write_lanes = min(int(write_lanes), self.lanes)
        self.read_lanes = min(int(read_lanes), self.lanes)
        self.write_groups = -(-self.lanes // self.write_lanes)
        self.read_groups = -(-self.lanes // self.read_lanes)
        self.name = name
        layout = data.ArrayLayout(unsigned(self.lane_width), self.lanes)
        super().__init__({
            "push": In(1), "push_next": In(self.write_groups), "w_data": In(layout),
            "pop": In(1), "r_data": Out(layout),
        })

    def elaborate(self, platform):
        m = Module()
        d, nm, n = self.depth, self.name, self.lanes
        ent = [[Signal(self.lane_width, name=f"{nm}_e{e}_k{k}", reset_less=True)
                for k in range(n)] for e in range(d)]

        def inc(x, by):
            return Mux(by, Mux(x == d - 1, 0, x + 1), x)

        wp = Signal(range(d), name=f"{nm}_wp")
        wp_next = Signal(range(d), name=f"{nm}_wp_next")
        m.d.comb += wp_next.eq(inc(wp, self.push))
        m.d.sync += wp.eq(wp_next)
        wl = self.write_lanes
        for g in range(self.write_groups):
            lanes = range(g * wl, min(n, (g + 1) * wl))
            for e in range(d):
                we = Signal(name=f"{nm}_e{g}_we{e}")
                m.d.sync += we.eq(self.push_next[g] & (wp_next == e))
                with m.If(we):
                    m.d.sync += [ent[e][k].eq(self.w_data[k]) for k in lanes]
        rl = self.read_lanes
        for h in range(self.read_groups):
            rp = Signal(range(d), name=f"{nm}_r{h}_rp")
            m.d.sync += rp.eq(inc(rp, self.pop))
            for k in range(h * rl, min(n, (h + 1) * rl)):
                with m.Switch(rp):
                    for e in range(d):
                        with m.Case(e):
                            m.d.comb += self.r_data[k].eq(ent[e][k])
        return m
