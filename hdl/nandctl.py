"""NAND controller: per-core request FIFOs, service counters, done slots, a round-robin
output engine and a backing-store read port.

Cycle-exact twin of :class:`proxima.golden.nandctl.NandControllerModel`: the module doc of
:mod:`proxima.golden.nandctl` states the rules (accept, pop, service, completion, grant, beat
cycles) and the parameters (:class:`~proxima.golden.nandctl.CtlParams`: cores ``C``, FIFO
depth ``D``, ``service = tR_cycles + transfer_cycles`` from
:class:`proxima.golden.nand.TimingParams`, access / page size, store pages, beat width, tag
width); this block implements exactly those rules.

Interface
---------
``req``    ``In(stream.Signature(req_layout))``: ``tag`` (``tag_bits``), ``core``
           (``clog2(C)``), ``page`` (``clog2(nand.pages_per_core)``), ``offset`` (bytes,
           ``clog2(nand.page_bytes)``).  ``req.ready`` = the request is bad (it is then
           dropped) or its core's FIFO holds fewer than ``D`` entries; it depends
           combinationally on ``req.payload.core`` (never on any output ``ready``).
``resp``   ``Out(stream.Signature(resp_layout))``: ``tag``, ``data`` (``beat_bits``),
           ``last`` -- the ``nb = 8A / beat_bits`` beats of one access, in order, beat ``i``
           = store word ``word_address + i``.  ``resp.valid`` and the payload are registers.
``error``  ``Out(1)``: sticky; set when a bad request (core ``>= C``, page ``>= pages``, or an
           offset that is not a multiple of ``A``) was accepted and dropped.

Backing store port
------------------
With ``external_store=False`` (simulation) the store is an
:class:`amaranth.lib.memory.Memory` of ``C * pages * P / bb`` words of ``beat_bits`` bits,
initialised from ``image`` (bytes in the order of
:func:`proxima.golden.nandctl.store_words`: core 0 first; zeros if ``image`` is None), with one
synchronous read port.  With ``external_store=True`` there is no memory; the same read port
appears on the interface for an FPGA top to connect to external memory (SDRAM / HyperRAM
behind a cache, or a host-loaded BRAM image):

``store_addr``  ``Out(addr_bits)``  word address ``((core * pages + page) * P + offset) / bb``
``store_en``    ``Out(1)``          read enable
``store_data``  ``In(beat_bits)``   must present the word addressed in the previous cycle in
                                    which ``store_en`` was high, and hold it while
                                    ``store_en`` is low (a synchronous read port with enable;
                                    a slower memory needs a wrapper that stalls the cycle)

The address is the concatenation ``{core, page, word-in-page}`` (``pages`` and ``P / bb``
are powers of two).

Structure
---------
Per core: an :class:`amaranth.lib.fifo.SyncFIFO` of ``D`` entries ``{tag, page, word}``
(its level is the ``ready`` condition), a service register (``busy``, ``rem`` counting
``service .. 1``, the entry) and a done slot (``full`` + entry).  The engine grants the next
non-empty done slot after the last granted core (two priority encoders: slots above
``last``, then all slots -- :func:`proxima.golden.arbiter.round_robin_pick`), reads the
access's words one per cycle into the output: ``store_en = advance = ~resp.valid |
resp.ready`` and ``resp.data`` is the read port's data, so the memory's output register is
the output register.  Cost: ``C`` FIFOs of ``D * (tag + page + word)`` bits, ``C`` counters
of ``clog2(service + 1)`` bits, ``O(C)`` arbitration logic.

Not here: the vertex-id -> (core, page, offset) mapping (:mod:`proxima.golden.layout`; the
requester computes it, :func:`proxima.golden.nandctl.requests_from_reads`).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from proxima.config import ProximaConfig
from proxima.golden.nandctl import CtlParams, NandCtlError, store_words

__all__ = ["NandController", "NandCtlError"]


def _bits(n: int) -> int:
    """Bits to hold 0..n."""
    return max(1, int(n).bit_length())


class NandController(wiring.Component):
    """NAND controller (module doc).  Keyword overrides as in
    :meth:`proxima.golden.nandctl.CtlParams.from_cfg`; ``image``: initial store contents."""

    def __init__(self, cfg: ProximaConfig, *, cores: int | None = None,
                 depth: int | None = None, tR_cycles: int | None = None,
                 transfer_cycles: int | None = None, pages: int | None = None,
                 beat_bits: int | None = None, tag_bits: int | None = None, image=None,
                 external_store: bool = False, params: CtlParams | None = None):
        p = params or CtlParams.from_cfg(cfg, cores=cores, depth=depth, tR_cycles=tR_cycles,
                                         transfer_cycles=transfer_cycles, pages=pages,
                                         beat_bits=beat_bits, tag_bits=tag_bits)
        self.cfg, self.params, self.external_store = cfg, p, bool(external_store)
        if self.external_store and image is not None:
            raise NandCtlError("an external store gets no image at elaboration")
        self._init = None if self.external_store else \
            (store_words(p, image) if image is not None else [])
        self.word_bits = _log2(p.words_per_page)
        self.page_sel_bits = _log2(p.pages)
        self.req_layout = data.StructLayout({"tag": p.tag_bits, "core": p.core_bits,
                                             "page": p.page_bits, "offset": p.offset_bits})
        self.resp_layout = data.StructLayout({"tag": p.tag_bits, "data": p.beat_bits,
                                              "last": 1})
        self.entry_layout = data.StructLayout({"tag": p.tag_bits, "page": self.page_sel_bits,
                                               "word": self.word_bits})
        ports = {"req": In(stream.Signature(self.req_layout)),
                 "resp": Out(stream.Signature(self.resp_layout)),
                 "error": Out(1)}
        if self.external_store:
            ports |= {"store_addr": Out(p.addr_bits), "store_en": Out(1),
                      "store_data": In(p.beat_bits)}
        super().__init__(ports)

    @classmethod
    def from_config(cls, cfg: ProximaConfig) -> "NandController":
        """All defaults from ``cfg``; the full NAND capacity is far beyond on-chip memory, so
        the store is the external port."""
        return cls(cfg, external_store=True)

    def elaborate(self, platform):
        m = Module()
        p = self.params
        C, S, nb = p.cores, p.service, p.beats
        lw = self.word_bits  # word-in-page bits
        lp = self.page_sel_bits
        lb = _log2(p.beat_bytes)
        la = _log2(p.access_bytes)

        # ---- backing store read port -------------------------------------------------
        if self.external_store:
            rd_addr, rd_en, rd_data = self.store_addr, self.store_en, self.store_data
        else:
            m.submodules.store = mem = Memory(shape=p.beat_bits, depth=p.store_words,
                                              init=self._init)
            rp = mem.read_port()
            rd_addr, rd_en, rd_data = rp.addr, rp.en, rp.data

        # ---- input decode ------------------------------------------------------------
        req = self.req.payload
        bad = Signal()
        conds = []
        if C < 1 << p.core_bits:
            conds.append(req.core >= C)
        if p.pages < 1 << p.page_bits:
            conds.append(req.page >= p.pages)
        if la:
            conds.append(req.offset[:la] != 0)
        if conds:
            m.d.comb += bad.eq(Cat(*conds).any())
        entry = data.View(self.entry_layout, Signal(self.entry_layout.size))
        m.d.comb += entry.tag.eq(req.tag)
        if lp:
            m.d.comb += entry.page.eq(req.page[:lp])
        if lw:
            m.d.comb += entry.word.eq(req.offset[lb:lb + lw])
        w_rdy = Signal(C)
        with m.If(self.req.valid & self.req.ready & bad):
            m.d.sync += self.error.eq(1)

        # ---- per-core FIFOs, service registers, done slots ---------------------------
        slot_full = Signal(C)
        slot_data = [data.View(self.entry_layout, Signal(self.entry_layout.size,
                                                         name=f"slot{c}")) for c in range(C)]
        take = Signal(C)  # engine empties slot c in this cycle
        for c in range(C):
            fifo = SyncFIFO(width=self.entry_layout.size, depth=p.depth)
            m.submodules[f"fifo{c}"] = fifo
            m.d.comb += [fifo.w_data.eq(entry.as_value()), w_rdy[c].eq(fifo.w_rdy),
                         fifo.w_en.eq(self.req.valid & ~bad & (req.core == c)
                                      if C > 1 else self.req.valid & ~bad)]
            busy = Signal(name=f"busy{c}")
            rem = Signal(_bits(S), name=f"rem{c}")
            cur = Signal(self.entry_layout.size, name=f"cur{c}")
            complete = Signal(name=f"complete{c}")
            m.d.comb += complete.eq(busy & (rem == 1) & ~slot_full[c])
            m.d.comb += fifo.r_en.eq(~busy | complete)
            with m.If(complete):
                m.d.sync += [slot_full[c].eq(1), slot_data[c].as_value().eq(cur)]
            with m.Elif(take[c]):
                m.d.sync += slot_full[c].eq(0)
            with m.If((~busy | complete) & fifo.r_rdy):
                m.d.sync += [busy.eq(1), rem.eq(S), cur.eq(fifo.r_data)]
            with m.Elif(complete):
                m.d.sync += busy.eq(0)
            with m.Elif(busy & (rem > 1)):
                m.d.sync += rem.eq(rem - 1)
        m.d.comb += self.req.ready.eq(bad | (w_rdy.bit_select(req.core, 1) if C > 1
                                             else w_rdy[0]))

        # ---- round-robin grant over the done slots -----------------------------------
        last = Signal(range(C), init=C - 1)
        above = Signal(C)
        for c in range(C):
            m.d.comb += above[c].eq(Const(c, range(C + 1)) > last)
        hi = Signal(C)
        m.d.comb += hi.eq(slot_full & above)
        grant = Signal(range(C))
        for c in reversed(range(C)):  # lowest set index wins: slots after last, then all
            with m.If(slot_full[c]):
                m.d.comb += grant.eq(c)
        for c in reversed(range(C)):
            with m.If(hi[c]):
                m.d.comb += grant.eq(c)

        # ---- output engine -----------------------------------------------------------
        resp = self.resp
        advance = Signal()
        m.d.comb += advance.eq(~resp.valid | resp.ready)
        m.d.comb += [rd_en.eq(advance), resp.payload.data.eq(rd_data)]
        active = Signal()
        idx = Signal(range(max(2, nb)))
        base = Signal(p.addr_bits)
        eng_tag = Signal(p.tag_bits)
        g_raw = Signal(self.entry_layout.size)
        m.d.comb += g_raw.eq(Array([s.as_value() for s in slot_data])[grant])
        g = data.View(self.entry_layout, g_raw)
        g_addr = Signal(p.addr_bits)
        parts = ([g.word] if lw else []) + ([g.page] if lp else []) + ([grant] if C > 1 else [])
        m.d.comb += g_addr.eq(Cat(*parts) if parts else 0)
        with m.If(advance):
            with m.If(active):
                m.d.comb += rd_addr.eq(base + idx)
                m.d.sync += [resp.valid.eq(1), resp.payload.tag.eq(eng_tag),
                             resp.payload.last.eq(idx == nb - 1), idx.eq(idx + 1)]
                with m.If(idx == nb - 1):
                    m.d.sync += active.eq(0)
            with m.Elif(slot_full.any()):
                m.d.comb += [rd_addr.eq(g_addr), take.eq(Const(1, C) << grant)]
                m.d.sync += [resp.valid.eq(1), resp.payload.tag.eq(g.tag),
                             resp.payload.last.eq(nb == 1), last.eq(grant)]
                if nb > 1:
                    m.d.sync += [active.eq(1), idx.eq(1), base.eq(g_addr),
                                 eng_tag.eq(g.tag)]
            with m.Else():
                m.d.sync += resp.valid.eq(0)
        return m


def _clog2(n: int) -> int:
    return max(1, (int(n) - 1).bit_length())


def _log2(n: int) -> int:
    """Exact log2 of a power of two (0 for 1)."""
    return int(n).bit_length() - 1
