"""Shared sorter: one bitonic sorter serving the candidate lists of several search contexts.

Every candidate list (:class:`proxima.hdl.candidates.CandidateListRTL`) talks to its sorter
only through ``sort_req`` / ``sort_resp`` and takes responses "with any latency and any
gaps", in request order.  This block puts ``clients`` such lists in front of one
:class:`proxima.hdl.sorter.BitonicSorter`: a round-robin arbiter
(:class:`proxima.hdl.arbiter.RoundRobinArbiter`, registered grant) picks the next vector, its
client number enters a tag queue (:class:`proxima.hdl.lib.fifo.Queue`) as the vector enters
the sorter, and each sorted vector goes back to the client at the head of the tag queue (the
sorter keeps the order of its vectors).

Golden twin: :func:`proxima.golden.sorter.sort_keys` per vector (the sorter's), so every list
merges exactly as with a private sorter; only the timing changes.

Parameters
----------
``SharedSorter(sort_cfg, n, clients, **sorter_options)``: ``sort_cfg`` and ``n`` as the
lists' (``CandidateListRTL.sort_cfg`` / ``.n``), ``clients >= 2``; ``sorter_options`` go to
the sorter.

Interface
---------
``i``  ``In(stream(vector)).array(clients)``: client ``c``'s ``sort_req``.
``o``  ``Out(stream(vector)).array(clients)``: client ``c``'s ``sort_resp``.

Cycle behaviour
---------------
The sorter's latency (``latency``) plus the arbiter's two cycles from a request to the
sorter; one vector per cycle in and out under load, shared by all clients in round robin.
The tag queue holds ``latency + FIFO_DEPTH + 2`` tags, more than the sorter can hold, so it
never stops the input.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out, connect
from amaranth.lib import stream

from proxima.hdl.arbiter import RoundRobinArbiter
from proxima.hdl.lib.fifo import Queue
from proxima.hdl.sorter import BitonicSorter

__all__ = ["SharedSorter"]


class SharedSorter(wiring.Component):
    """One sorter, ``clients`` candidate lists (module doc)."""

    def __init__(self, sort_cfg, n: int, clients: int, **sorter_options):
        self.clients = int(clients)
        if self.clients < 2:
            raise ValueError(f"a shared sorter needs at least 2 clients, got {clients}")
        self.sorter = BitonicSorter(sort_cfg, n=n, **sorter_options)
        self.latency = self.sorter.latency + 2
        layout = self.sorter.vector_layout
        super().__init__({
            "i": In(stream.Signature(layout)).array(self.clients),
            "o": Out(stream.Signature(layout)).array(self.clients),
        })

    def elaborate(self, platform):
        m = Module()
        Q = self.clients
        m.submodules.sorter = srt = self.sorter
        m.submodules.arb = arb = RoundRobinArbiter(Q, self.sorter.vector_layout)
        m.submodules.tags = tags = Queue(range(Q), self.sorter.latency
                                         + BitonicSorter.FIFO_DEPTH + 2)
        for c in range(Q):
            connect(m, wiring.flipped(self.i[c]), arb.i[c])
        # in: a vector and its client's tag enter together
        m.d.comb += [srt.i.payload.eq(arb.o.payload.data),
                     srt.i.valid.eq(arb.o.valid & tags.i.ready),
                     tags.i.payload.eq(arb.o.payload.grant),
                     tags.i.valid.eq(arb.o.valid & srt.i.ready),
                     arb.o.ready.eq(srt.i.ready & tags.i.ready)]
        # out: to the client at the head of the tag queue
        head = tags.o.payload
        o_ready = Array(o.ready for o in self.o)
        for c, o in enumerate(self.o):
            m.d.comb += [o.payload.eq(srt.o.payload),
                         o.valid.eq(srt.o.valid & tags.o.valid & (head == c))]
        m.d.comb += [srt.o.ready.eq(tags.o.valid & o_ready[head]),
                     tags.o.ready.eq(srt.o.valid & o_ready[head])]
        return m
