"""Top-``k`` register list by ``(exact, id)`` with the convergence check's "same as before".

Golden twin: the ranking in :func:`proxima.golden.search.search`: ``sorted((exact, id)
...)[:k]`` over the entries inserted since the last clear, and ``topk == prev_topk`` of the
convergence check.  Tested against a sorted reference in ``tests/hdl/test_topk.py``.

Parameters: ``k`` slots, ``id_bits``, ``dist_bits``.

Interface (all ``In`` act at the next clock edge; at most one of ``clr``, ``ins`` per cycle,
``clr`` wins)
---------------------------------------------------------------------------------------------
``clr``       ``In(1)``: empty the list.
``ins``       ``In(1)`` with ``ins_id``, ``ins_dist``: insert one entry (one per cycle, no
              latency: the list reflects it in the next cycle).  Entries are ordered by
              ``(dist, id)``; an entry beyond the ``k``-th is dropped.
``valid``     ``Out(k)``; ``ids``, ``dists``: ``Out`` per slot: the list, best first, the
              valid slots at the front.
``forget``    ``In(1)``: drop the remembered list (the next ``same`` is 0).
``snap``      ``In(1)``: remember the current ids (the previous check's ``topk``).
``same``      ``Out(1)``, combinational: a list was remembered and the current ids (and
              valid slots) equal it.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["TopK"]


class TopK(wiring.Component):
    """Sorted insertion into ``k`` registers (see the module docstring)."""

    def __init__(self, k: int, id_bits: int, dist_bits: int):
        if int(k) < 1:
            raise ValueError(f"top-k needs k >= 1, got {k}")
        self.k, self.id_bits, self.dist_bits = int(k), int(id_bits), int(dist_bits)
        super().__init__({
            "clr": In(1), "ins": In(1), "ins_id": In(id_bits), "ins_dist": In(dist_bits),
            "valid": Out(self.k),
            "ids": Out(id_bits).array(self.k),
            "dists": Out(dist_bits).array(self.k),
            "forget": In(1), "snap": In(1), "same": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        k, idb, exb = self.k, self.id_bits, self.dist_bits
        # one register per slot: {id, dist, empty}, all ones when empty, so that the order
        # of the registers is the order (dist, id) with empty slots last
        tk_bits = idb + exb + 1
        tk = [Signal(tk_bits, name=f"tk{i}", init=(1 << tk_bits) - 1) for i in range(k)]
        tk_new = Signal(tk_bits)
        m.d.comb += tk_new.eq(Cat(self.ins_id, self.ins_dist, Const(0, 1)))
        with m.If(self.clr):
            m.d.sync += [t.eq((1 << tk_bits) - 1) for t in tk]
        with m.Elif(self.ins):
            # slot x takes the new entry if it lands there, the entry above it if the new
            # one lands higher up, and keeps its own otherwise
            for x in range(k):
                with m.If(tk_new < tk[x]):
                    if x:
                        m.d.sync += tk[x].eq(Mux(tk_new < tk[x - 1], tk[x - 1], tk_new))
                    else:
                        m.d.sync += tk[x].eq(tk_new)
        tk_valid = [~t[-1] for t in tk]
        tk_id = [t[:idb] for t in tk]
        m.d.comb += self.valid.eq(Cat(*tk_valid))
        m.d.comb += [self.ids[x].eq(tk_id[x]) for x in range(k)]
        m.d.comb += [self.dists[x].eq(tk[x][idb:idb + exb]) for x in range(k)]

        prev_valid = [Signal(name=f"pv{i}") for i in range(k)]
        prev_id = [Signal(idb, name=f"pid{i}") for i in range(k)]
        prev_set = Signal()
        m.d.comb += self.same.eq(prev_set & Cat(
            (pv == tv) & (~tv | (pi == ti))
            for pv, tv, pi, ti in zip(prev_valid, tk_valid, prev_id, tk_id)).all())
        with m.If(self.forget):
            m.d.sync += prev_set.eq(0)
        with m.If(self.snap):
            m.d.sync += prev_set.eq(1)
            m.d.sync += [pv.eq(tv) for pv, tv in zip(prev_valid, tk_valid)]
            m.d.sync += [pi.eq(ti) for pi, ti in zip(prev_id, tk_id)]
        return m
