"""Exact-distance cache of the search engine, position-aligned with the candidate list.

Golden twin: the ``exact`` dictionary of :func:`proxima.golden.search.search` (an exact
distance is computed at most once per vertex; a vertex that left the list never returns, so
no eviction is needed).  Tested against a dictionary in ``tests/hdl/test_exact_cache.py``.

Parameters: ``L`` slots (the list's length), ``id_bits``, ``pq_bits``, ``ex_bits``.

State: two banks of ``L`` entries ``{id, pq, ex, has}`` (LUT RAM, one write and two
asynchronous read ports each).  The *current* bank holds list slot ``p`` at address ``p`` as
of the last dump; a dump rebuilds it into the other bank, which then becomes current.  A
dumped slot takes the old entry ``o``'s exact distance when its key equals that entry's
(then ``o += 1``): an insert keeps the order of the entries it keeps and drops only the
list's tail, so the surviving old entries arrive in their old order and every other slot
is new.

Interface (every ``In`` strobe acts at the next clock edge)
-----------------------------------------------------------
``addr``       ``In``: a list position; ``entry`` ``Out(ent_layout)``: the current bank's
               entry there (combinational, no latency).
``put``        ``In(1)`` with ``exact``: store the exact distance of the entry at ``addr``
               (``has = 1``).
``flush``      ``In(1)``: no valid old entries (a new query).
``rebuild``    ``In(1)``: a dump starts (the old-entry pointer to 0).
``dump_valid`` ``In(1)`` with ``dump_pos``, ``dump_key`` (``(pq << id_bits) | id``): one
               dumped slot, in slot order, at most one per cycle.
``swap``       ``In(1)`` with ``length``: the dump is complete, the rebuilt bank (``length``
               valid entries) becomes current.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["ExactCache"]


class ExactCache(wiring.Component):
    """Two position-aligned banks of ``(id, pq, exact, has)`` (see the module docstring)."""

    def __init__(self, L: int, id_bits: int, pq_bits: int, ex_bits: int):
        self.L, self.id_bits, self.pq_bits, self.ex_bits = int(L), id_bits, pq_bits, ex_bits
        self.ent_layout = data.StructLayout({"id": id_bits, "pq": pq_bits, "ex": ex_bits,
                                             "has": 1})
        super().__init__({
            "addr": In(range(self.L + 1)), "entry": Out(self.ent_layout),
            "put": In(1), "exact": In(ex_bits),
            "flush": In(1), "rebuild": In(1),
            "dump_valid": In(1), "dump_pos": In(range(self.L)),
            "dump_key": In(id_bits + pq_bits),
            "swap": In(1), "length": In(range(self.L + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        L, idb = self.L, self.id_bits
        ent_layout = self.ent_layout
        banks = []
        for b in range(2):
            mem = Memory(shape=ent_layout, depth=L, init=[])
            m.submodules[f"cache{b}"] = mem
            banks.append((mem.write_port(), mem.read_port(domain="comb"),
                          mem.read_port(domain="comb")))
        cur_bank = Signal()
        old_len = Signal(range(L + 1))     # valid entries in the current bank
        o = Signal(range(L + 1))           # the rebuild's pointer into the current bank
        c_i = Signal(ent_layout)           # current bank, address ``addr``
        c_o = Signal(ent_layout)           # current bank, address o
        wr_dump, wr_ex = Signal(), Signal()  # rebuild write (other bank) / exact (current)
        wr_addr = Signal(range(L))
        wr_data = Signal(ent_layout)
        for b, (wp, rp_i, rp_o) in enumerate(banks):
            is_cur = cur_bank == b
            m.d.comb += [rp_i.addr.eq(self.addr), rp_o.addr.eq(o), wp.addr.eq(wr_addr),
                         wp.data.eq(wr_data), wp.en.eq(Mux(is_cur, wr_ex, wr_dump))]
            with m.If(is_cur):
                m.d.comb += [c_i.eq(rp_i.data), c_o.eq(rp_o.data)]
        m.d.comb += self.entry.eq(c_i)

        match = Signal()
        m.d.comb += match.eq((o < old_len) & (Cat(c_o.id, c_o.pq) == self.dump_key))
        with m.If(self.put):
            m.d.comb += [wr_ex.eq(1), wr_addr.eq(self.addr), wr_data.id.eq(c_i.id),
                         wr_data.pq.eq(c_i.pq), wr_data.ex.eq(self.exact),
                         wr_data.has.eq(1)]
        with m.Else():
            m.d.comb += [wr_dump.eq(self.dump_valid), wr_addr.eq(self.dump_pos),
                         wr_data.id.eq(self.dump_key[:idb]),
                         wr_data.pq.eq(self.dump_key[idb:]),
                         wr_data.ex.eq(c_o.ex), wr_data.has.eq(match & c_o.has)]
        with m.If(self.rebuild):
            m.d.sync += o.eq(0)
        with m.If(self.dump_valid & match):
            m.d.sync += o.eq(o + 1)
        with m.If(self.flush):
            m.d.sync += old_len.eq(0)
        with m.If(self.swap):
            m.d.sync += [cur_bank.eq(~cur_bank), old_len.eq(self.length)]
        return m
