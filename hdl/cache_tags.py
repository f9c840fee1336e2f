"""Tag look-up of one page-cache set: hit, victim and the set's next LRU row.

Golden twin: one set of :class:`proxima.golden.field.trace.PageCacheModel`, an
:class:`~proxima.golden.field.policy.LRUCache` of budget ``ways``: a demand access is a
``get`` (hit, clearing the prefetched flag) or a ``put`` of the line (miss); a prefetch
target is nothing when resident, else a ``put`` with the prefetched flag.  Tested against
it in ``tests/hdl/test_cache_tags.py``.

Parameters: ``row_layout`` (``ways`` entries ``{valid, pf, tag}``, entry 0 the least
recently used, invalid entries at the bottom), ``set_bits``, ``split`` (the two-cycle tag
read's pipeline: the compare registered in pieces of ``TAG_CHUNK`` bits and a stage C1b of
way reductions over groups of ``WAY_GROUP`` ways).

Interface (every register is free running; the inputs must hold from C1 to C2)
-------------------------------------------------------------------------------
``row``, ``ntag`` (the line's tag complemented), ``tag``, ``set_idx``, ``demand``: ``In``,
              the operation, from its C1 cycle on (the cycle after ``row`` is loaded).
``hit_now``   ``Out(1)``, combinational in C2: the line is in the row.
In C3 (registers loaded at the end of C2): ``hit``, ``pf_hit`` (the line's entry was a
prefetch), ``ev_valid`` / ``ev_pf`` / ``ev_line`` (the victim of a fill: entry 0 on a miss,
its line ``tag:set``), ``need_fetch`` (demand miss), ``need_pf`` (target not resident),
``write_row`` (the row changes: all but a resident target) and ``new_row``: on a hit the
entries above the line move down one and the line goes on top, on a miss the whole row moves
down and the line goes on top; the top entry's ``pf`` is ``~demand``.

Latency: C1 to C3 is two cycles (three with ``split``).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["TagLookup", "TAG_CHUNK", "WAY_GROUP"]

TAG_CHUNK = 8
"""Bits per registered piece of the tag compare (C1) with ``split``."""
WAY_GROUP = 4
"""Ways per group of the registered way reductions (C1b) with ``split``."""


class TagLookup(wiring.Component):
    """Compare, LRU rotation / fill and victim of one row (see the module docstring)."""

    def __init__(self, row_layout, set_bits: int, split: bool = False):
        self.row_layout, self.set_bits, self.split = row_layout, int(set_bits), bool(split)
        self.ways = row_layout.length
        self.tag_bits = row_layout.elem_shape.size - 2
        T = self.tag_bits
        super().__init__({
            "row": In(row_layout), "ntag": In(T), "tag": In(T),
            "set_idx": In(self.set_bits), "demand": In(1),
            "hit_now": Out(1), "hit": Out(1), "pf_hit": Out(1),
            "ev_valid": Out(1), "ev_pf": Out(1), "ev_line": Out(self.set_bits + T),
            "need_fetch": Out(1), "need_pf": Out(1), "write_row": Out(1),
            "new_row": Out(row_layout),
        })

    def elaborate(self, platform):
        m = Module()
        W, row, ntag, demand = self.ways, self.row, self.ntag, self.demand
        # C1: tag compare of every way, registered
        match = Signal(W, name="c_match")
        if not self.split:
            m.d.sync += match.eq(Cat(*[row[j].valid & (row[j].tag == ~ntag)
                                       for j in range(W)]))
        else:
            # in pieces of TAG_CHUNK bits; ``match`` (the valid bit and the AND of the
            # pieces) is the first logic level of C1b
            T = self.tag_bits
            teq_all = []
            for j in range(W):
                teq = Signal(-(-T // TAG_CHUNK), name=f"c_teq{j}")
                m.d.sync += [teq[c].eq(row[j].tag[k:k + TAG_CHUNK]
                                       == ~ntag[k:k + TAG_CHUNK])
                             for c, k in enumerate(range(0, T, TAG_CHUNK))]
                m.d.comb += match[j].eq(row[j].valid & teq.all())
                teq_all.append(teq.all())
            vpf = Signal(W, name="c_vpf")           # each way's ``valid & pf``
            m.d.sync += vpf.eq(Cat(*[row[j].valid & row[j].pf for j in range(W)]))
        # C2: hit, LRU rotation / fill, victim
        if not self.split:
            hit_c = match.any()
            pf_c = Cat(*[match[j] & row[j].pf for j in range(W)]).any()
            shifts = [~match[j + 1:].any() for j in range(W - 1)]
        else:
            # C1b: per group of WAY_GROUP ways whether a way hits, whether a prefetched
            # way hits, and per entry whether no way above it in its group matches; C2
            # combines the groups
            groups = [list(range(g, min(g + WAY_GROUP, W))) for g in range(0, W, WAY_GROUP)]
            hit_g = Signal(len(groups), name="c_hit_grp")
            pf_g = Signal(len(groups), name="c_pf_grp")
            shift_g = Signal(W, name="c_shift_grp")
            for g, ways in enumerate(groups):
                m.d.sync += [hit_g[g].eq(Cat(*[match[j] for j in ways]).any()),
                             pf_g[g].eq(Cat(*[vpf[j] & teq_all[j] for j in ways]).any())]
                m.d.sync += [shift_g[j].eq(~Cat(*[match[k] for k in ways if k > j]).any())
                             for j in ways]
            hit_c, pf_c = hit_g.any(), pf_g.any()
            shifts = [shift_g[j] & ~hit_g[j // WAY_GROUP + 1:].any() for j in range(W - 1)]
        m.d.comb += self.hit_now.eq(hit_c)
        hit = Signal(name="c_hit")
        pf_flag = Signal(name="c_pf_flag")
        ev_valid = Signal(name="c_ev_valid")
        ev_pf = Signal(name="c_ev_pf")
        ev_line = Signal(len(self.ev_line), name="c_ev_line")
        m.d.sync += [
            hit.eq(hit_c),
            pf_flag.eq(pf_c),
            ev_valid.eq(~hit_c & row[0].valid),
            ev_pf.eq(~hit_c & row[0].valid & row[0].pf),
            # (the victim's line whether or not there is one: users zero it unless
            # ``ev_valid``, so its registers need no reset term)
            ev_line.eq(Cat(self.set_idx, row[0].tag)),
        ]
        need_fetch = Signal(name="c_need_fetch")   # demand miss: push a fetch
        need_pf = Signal(name="c_need_pf")         # target not resident: push a prefetch
        write_row = Signal(name="c_write_row")     # the row changes
        m.d.sync += [need_fetch.eq(demand & ~hit_c), need_pf.eq(~demand & ~hit_c),
                     write_row.eq(demand | ~hit_c)]
        # entry j takes entry j+1 iff the line sits at or below j (hit) or on a fill; a
        # line is in a row at most once, so that is "no match above j"
        new_row = Signal(self.row_layout, name="c_new_row")
        for j in range(W - 1):
            m.d.sync += new_row[j].eq(Mux(shifts[j], row[j + 1], row[j]))
        m.d.sync += [new_row[W - 1].valid.eq(1), new_row[W - 1].pf.eq(~demand),
                     new_row[W - 1].tag.eq(self.tag)]
        m.d.comb += [self.hit.eq(hit), self.pf_hit.eq(pf_flag), self.ev_valid.eq(ev_valid),
                     self.ev_pf.eq(ev_pf), self.ev_line.eq(ev_line),
                     self.need_fetch.eq(need_fetch), self.need_pf.eq(need_pf),
                     self.write_row.eq(write_row), self.new_row.eq(new_row)]
        return m
