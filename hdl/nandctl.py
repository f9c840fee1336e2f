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
``core_busy`` ``Out(C)``: bit ``c`` is core ``c``'s service register ``busy`` (the core holds
           an access in service, stalled completions included): utilisation counters.

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
                                    (meaningful only with ``store_en``; it does not depend
                                    on ``resp.ready``)
``store_en``    ``Out(1)``          read enable
``store_data``  ``In(beat_bits)``   must present the word addressed in the previous cycle in
                                    which ``store_en`` was high, and hold it while
                                    ``store_en`` is low (a synchronous read port with
                                    enable), whatever ``read_latency``: the controller adds
                                    its ``L - 1`` registers itself (address, then data:
                                    "Store read latency" below).  With
                                    ``store_port_latency=2`` (only with ``L = 3``) the
                                    port itself holds the data register: ``store_data``
                                    presents the word one ``store_en`` edge later (the
                                    latency-1 port followed by a register loaded with
                                    ``store_en``, e.g. a block RAM's output register) and
                                    the controller omits its own; same cycles.
                                    The port has no wait signal: a memory with a longer or
                                    variable latency (SDRAM) needs an on-chip buffer in front

The address is the concatenation ``{core, page, word-in-page}`` (``pages`` and ``P / bb``
are powers of two).

Store read latency ``L`` (``read_latency``, ``engine.store_latency``; the read pipeline of
:mod:`proxima.golden.nandctl`, rule 2), the same for the internal and the external store:
``L = 1``: the engine's address goes straight to the read port and its data is
``resp.data`` (the memory's output register is the output register); ``L = 2``: the
address is a register (``store_addr`` comes from a flip-flop: the grant's AND-OR over the
done slots no longer meets the routing to many block RAMs in the same cycle); ``L = 3``:
also the read port's data goes through a register into ``resp.data``.  Every such
register is enabled by ``store_en``; ``resp.valid``, ``tag`` and ``last`` travel through
``L`` registers beside the read, all of them moving together in the cycles with
``store_en``.

Structure
---------
Per core: a FIFO of ``D`` entries ``{tag, page, word}`` (:class:`proxima.hdl.lib.fifo.Queue`,
i.e. :class:`amaranth.lib.fifo.SyncFIFO`; its ``ready`` is the accept condition), a service
register (``busy``, ``rem`` counting ``service .. 1`` with a registered ``rem <= 1`` flag,
the entry) and a done slot (``full`` + entry).  The engine grants the next non-empty done
slot after the last granted core (:func:`proxima.golden.arbiter.round_robin_pick`, as
:func:`proxima.hdl.lib.logic.rr_pick`), reads the access's words one per cycle into the
output: ``store_en = advance = ~resp.valid | resp.ready`` and ``resp.data`` is the read
pipeline's data (``L`` stages, the last the output register).  Cost: ``C`` FIFOs of
``D * (tag + page + word)`` bits (distributed RAM, ``TRELLIS_DPR16X4``), ``C`` counters of
``clog2(service + 1)`` bits, ``O(C)`` arbitration logic.

Resources and clock rate: ``docs/RESOURCES.md``.

Address mapper
--------------
:class:`NandAddressMapper` turns tagged search events ``(tag, kind, v)`` into the controller's
requests with the core round-robin mapping of :mod:`proxima.golden.layout` for the image
geometry in its ``geom`` registers (:meth:`proxima.golden.layout.Layout.registers`; the
elaborated :class:`~proxima.golden.layout.Layout` gives only their reset value): its output
stream can be connected straight to ``NandController.req``.  Spec:
:func:`proxima.golden.nandctl.requests_for_events`.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, exact_log2

from proxima.config import ProximaConfig
from proxima.golden.layout import (EVENT_KINDS, GEOMETRY_FIELDS, Geometry, Layout,
                                   geometry_bounds, recip_shift, slot_bits)
from proxima.golden.nandctl import CtlParams, NandCtlError, store_words
from proxima.hdl.lib.arith import divmod_const
from proxima.hdl.lib.fifo import Queue
from proxima.hdl.lib.logic import onehot_to_binary, or_tree, prefix_or, rr_pick

#: ``kind`` field code of each event kind of :mod:`proxima.golden.layout` (its index)
EVENT_CODES = {k: i for i, k in enumerate(EVENT_KINDS)}

__all__ = ["NandController", "NandAddressMapper", "NandCtlError", "EVENT_CODES",
           "frame_location", "code_location", "hot_chunk_location", "raw_location",
           "geometry_layout",
           "geometry_init", "geometry_word"]


class NandController(wiring.Component):
    """NAND controller (module doc).  Keyword overrides as in
    :meth:`proxima.golden.nandctl.CtlParams.from_cfg`; ``image``: initial store contents."""

    def __init__(self, cfg: ProximaConfig, *, cores: int | None = None,
                 depth: int | None = None, tR_cycles: int | None = None,
                 transfer_cycles: int | None = None, pages: int | None = None,
                 beat_bits: int | None = None, tag_bits: int | None = None, image=None,
                 external_store: bool = False, params: CtlParams | None = None,
                 read_latency: int | None = None, store_port_latency: int = 1):
        p = params or CtlParams.from_cfg(cfg, cores=cores, depth=depth, tR_cycles=tR_cycles,
                                         transfer_cycles=transfer_cycles, pages=pages,
                                         beat_bits=beat_bits, tag_bits=tag_bits,
                                         read_latency=read_latency)
        self.cfg, self.params, self.external_store = cfg, p, bool(external_store)
        self.store_port_latency = int(store_port_latency)
        if self.store_port_latency not in (1, 2) or (self.store_port_latency == 2 and not (
                self.external_store and p.read_latency == 3)):
            raise NandCtlError(f"store_port_latency must be 1, or 2 with an external store "
                               f"and read latency 3 (got {store_port_latency}, read latency "
                               f"{p.read_latency})")
        if self.external_store and image is not None:
            raise NandCtlError("an external store gets no image at elaboration")
        self._init = None if self.external_store else \
            (store_words(p, image) if image is not None else [])
        self.word_bits = exact_log2(p.words_per_page)
        self.page_sel_bits = exact_log2(p.pages)
        self.req_layout = data.StructLayout({"tag": p.tag_bits, "core": p.core_bits,
                                             "page": p.page_bits, "offset": p.offset_bits})
        self.resp_layout = data.StructLayout({"tag": p.tag_bits, "data": p.beat_bits,
                                              "last": 1})
        self.entry_layout = data.StructLayout({"tag": p.tag_bits, "page": self.page_sel_bits,
                                               "word": self.word_bits})
        ports = {"req": In(stream.Signature(self.req_layout)),
                 "resp": Out(stream.Signature(self.resp_layout)),
                 "error": Out(1), "core_busy": Out(p.cores)}
        if self.external_store:
            ports |= {"store_addr": Out(p.addr_bits), "store_en": Out(1),
                      "store_data": In(p.beat_bits)}
        super().__init__(ports)

    @classmethod
    def from_config(cls, cfg: ProximaConfig, **kw) -> "NandController":
        """All defaults from ``cfg``; the full NAND capacity is far beyond on-chip memory, so
        the store is the external port unless ``external_store=False`` is given (then give a
        small ``pages``).  ``kw``: the constructor's keyword overrides."""
        kw.setdefault("external_store", True)
        return cls(cfg, **kw)

    def elaborate(self, platform):
        """Structure (the contract is the module docstring).

        Timing (cycle-exact, no change of the golden cycle rules)
        ---------------------------------------------------------
        Everything below moves logic across registers without changing any cycle of the golden
        model (the tests compare every accept and beat cycle):

        * The round-robin pick is a *register* holding the pick of the current cycle's state,
          loaded in the previous cycle.  Its input is the register ``soon = slot_full | (busy &
          rem <= 1)`` (the done slots after this cycle's completions; a completing slot is empty),
          itself loaded from the next-state expressions, and ``last`` kept as a thermometer mask
          (bits above ``last``).  A grant empties a slot and moves ``last``; with ``nb > 1`` beats
          the engine is active in the cycle after a grant, so the pick is never used in a cycle that
          follows a grant and the take need not enter its input (with ``nb == 1`` it does:
          ``soon & ~take`` and the mask after the take).  The pick is parallel prefix ORs (no carry
          chain, no compare against ``last``).
        * ``complete`` (``busy & rem <= 1 & ~slot_full``) and the FIFO pop condition (``~busy |
          complete``) are registers loaded from the next-state expressions; ``rem <= 1`` is a
          registered flag, not a compare.
        * The granted slot's entry is an AND-OR of the done slots with the registered one-hot pick;
          the burst address is ``base | idx`` (accesses are aligned, no adder) and does not depend
          on ``resp.ready``.
        """
        m = Module()
        p = self.params
        C, S, nb = p.cores, p.service, p.beats
        lw = self.word_bits  # word-in-page bits
        lp = self.page_sel_bits
        lb = exact_log2(p.beat_bytes)
        la = exact_log2(p.access_bytes)

        # ---- backing store read port -------------------------------------------------
        if self.external_store:
            rd_addr, rd_en, rd_data = self.store_addr, self.store_en, self.store_data
        else:
            m.submodules.store = mem = Memory(shape=p.beat_bits, depth=p.store_words,
                                              init=self._init)
            rp = mem.read_port()
            rd_addr, rd_en, rd_data = rp.addr, rp.en, rp.data
        # the read pipeline's extra stages (module doc, "Store read latency"): with L >= 2
        # the store's address is a register (loaded with advance), with L = 3 its data too
        eng_addr = Signal(p.addr_bits)  # the address the engine reads in this cycle
        if p.read_latency >= 2:
            addr_q = Signal(p.addr_bits, name="store_addr_q")
            with m.If(rd_en):
                m.d.sync += addr_q.eq(eng_addr)
            m.d.comb += rd_addr.eq(addr_q)
        else:
            m.d.comb += rd_addr.eq(eng_addr)
        # registers after the read port (a port of latency 2 holds the data register)
        for i in range(p.read_latency - 1 - self.store_port_latency):
            q = Signal(p.beat_bits, name=f"store_q{i}")
            with m.If(rd_en):
                m.d.sync += q.eq(rd_data)
            rd_data = q

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
        complete = Signal(C)  # core c moves its request to its done slot in this cycle
        soon = Signal(C)  # register: slot_full | (busy & rem <= 1) = full after completions
        for c in range(C):
            fifo = Queue(self.entry_layout.size, p.depth)
            m.submodules[f"fifo{c}"] = fifo
            m.d.comb += [fifo.i.payload.eq(entry.as_value()), w_rdy[c].eq(fifo.i.ready),
                         fifo.i.valid.eq(self.req.valid & ~bad & (req.core == c)
                                         if C > 1 else self.req.valid & ~bad)]
            busy = Signal(name=f"busy{c}")
            m.d.comb += self.core_busy[c].eq(busy)
            rem = Signal(bits_for(S), name=f"rem{c}")
            rem_one = Signal(name=f"rem_one{c}")  # rem <= 1: the service ends in this cycle
            cur = Signal(self.entry_layout.size, name=f"cur{c}")
            # registers holding complete = busy & rem <= 1 & ~slot_full and the pop condition
            # ~busy | complete of this cycle (computed from the next-state expressions)
            cpl = Signal(name=f"cpl{c}")
            pop = Signal(init=1, name=f"pop{c}")
            m.d.comb += [complete[c].eq(cpl), fifo.o.ready.eq(pop)]
            # next state as expressions: soon[c] (below) is computed from them
            start = Signal(name=f"start{c}")
            busy_n = Signal(name=f"busy_n{c}")
            rem_one_n = Signal(name=f"rem_one_n{c}")
            full_n = Signal(name=f"full_n{c}")
            m.d.comb += [start.eq(pop & fifo.o.valid),
                         busy_n.eq(start | (busy & ~complete[c])),
                         rem_one_n.eq(Mux(start, S <= 1,
                                          Mux(busy & ~rem_one, rem == 2, rem_one))),
                         full_n.eq(complete[c] | (slot_full[c] & ~take[c]))]
            m.d.sync += [slot_full[c].eq(full_n), busy.eq(busy_n), rem_one.eq(rem_one_n),
                         soon[c].eq(full_n | (busy_n & rem_one_n)),
                         cpl.eq(busy_n & rem_one_n & ~full_n),
                         pop.eq(~busy_n | (rem_one_n & ~full_n))]
            with m.If(complete[c]):
                m.d.sync += slot_data[c].as_value().eq(cur)
            with m.If(start):
                m.d.sync += [rem.eq(S), cur.eq(fifo.o.payload)]
            with m.Elif(busy & ~rem_one):
                m.d.sync += rem.eq(rem - 1)
        m.d.comb += self.req.ready.eq(bad | (w_rdy.bit_select(req.core, 1) if C > 1
                                             else w_rdy[0]))

        # ---- round-robin grant over the done slots, computed one cycle ahead ---------
        # pick (one-hot) = round_robin_pick(slot_full, last) of the *current* cycle; it is a
        # register loaded with the pick of the next cycle's state (module doc, "Timing")
        mask = Signal(C)  # bits strictly above last (last = C - 1 at reset: none)
        pick = Signal(C)
        pick_above = Signal(C)  # bits strictly above the pick
        any_full = Signal()  # slot_full != 0
        advance = Signal()
        grab = Signal()  # the engine grants in this cycle
        resp = self.resp
        active = Signal()
        m.d.comb += [advance.eq(~resp.valid | resp.ready),
                     grab.eq(advance & ~active & any_full),
                     take.eq(pick & grab.replicate(C))]
        full_n = Signal(C)
        mask_n = Signal(C)
        if nb > 1:  # a grant is always followed by >= 1 active cycle: no take before a use
            m.d.comb += [full_n.eq(soon), mask_n.eq(mask)]
        else:
            m.d.comb += [full_n.eq(soon & ~take), mask_n.eq(Mux(grab, pick_above, mask))]
        pf, anyf = prefix_or(m, full_n, "rr_pf")
        oh, ab = rr_pick(m, full_n, mask_n, pf, "rr")
        m.d.sync += [pick.eq(oh), pick_above.eq(ab), any_full.eq(anyf)]
        with m.If(grab):
            m.d.sync += mask.eq(pick_above)

        # ---- output engine -----------------------------------------------------------
        m.d.comb += [rd_en.eq(advance), resp.payload.data.eq(rd_data)]
        # the read pipeline's valid / tag / last: stage 0 is loaded by the engine, the last
        # stage is the output register; all stages move with advance (= the store's enable)
        L = p.read_latency
        st_valid = [Signal(name=f"st{i}_valid") for i in range(L - 1)] + [resp.valid]
        st_tag = [Signal(p.tag_bits, name=f"st{i}_tag") for i in range(L - 1)] \
            + [resp.payload.tag]
        st_last = [Signal(name=f"st{i}_last") for i in range(L - 1)] + [resp.payload.last]
        with m.If(advance):
            for i in range(1, L):
                m.d.sync += [st_valid[i].eq(st_valid[i - 1]), st_tag[i].eq(st_tag[i - 1]),
                             st_last[i].eq(st_last[i - 1])]
        idx = Signal(range(max(2, nb)))
        base = Signal(p.addr_bits)
        eng_tag = Signal(p.tag_bits)
        g_raw = Signal(self.entry_layout.size)
        m.d.comb += g_raw.eq(or_tree([s.as_value() & pick[c].replicate(len(g_raw))
                                         for c, s in enumerate(slot_data)], len(g_raw)))
        g = data.View(self.entry_layout, g_raw)
        grant = Signal(range(C))
        m.d.comb += grant.eq(onehot_to_binary(pick, len(grant)))
        g_addr = Signal(p.addr_bits)
        parts = ([g.word] if lw else []) + ([g.page] if lp else []) + ([grant] if C > 1 else [])
        m.d.comb += g_addr.eq(Cat(*parts) if parts else 0)
        # accesses are aligned: the low log2(nb) bits of base are zero, base + idx = base | idx;
        # the address matters only with rd_en (= advance), so it does not depend on it
        # (store_addr, with L >= 2 its register, is loaded only with advance)
        m.d.comb += eng_addr.eq(Mux(active, base | idx, g_addr))
        with m.If(advance):
            with m.If(active):
                m.d.sync += [st_valid[0].eq(1), st_tag[0].eq(eng_tag),
                             st_last[0].eq(idx == nb - 1), idx.eq(idx + 1)]
                with m.If(idx == nb - 1):
                    m.d.sync += active.eq(0)
            with m.Elif(any_full):
                m.d.sync += [st_valid[0].eq(1), st_tag[0].eq(g.tag),
                             st_last[0].eq(nb == 1)]
                if nb > 1:
                    m.d.sync += [active.eq(1), idx.eq(1), base.eq(g_addr),
                                 eng_tag.eq(g.tag)]
            with m.Else():
                m.d.sync += st_valid[0].eq(0)
        return m


# ---- the round-robin placement, as expressions --------------------------------------------
# RTL twins of Layout.frame_address / code_address / hot_chunk_address / raw_address
# (golden/layout.py):
# the NAND address mapper below and the engine (hdl/engine.py) both use them.  ``g`` is the
# image geometry: a :class:`~proxima.golden.layout.Layout` (or a
# :class:`~proxima.golden.layout.Geometry` of integers: constants, constant dividers) or a
# View of :func:`geometry_layout` (run-time registers: multipliers, and the normal region's
# ``j // fpp`` by the host-computed reciprocal of :func:`proxima.golden.layout.div_by_reciprocal`).
def geometry_layout(cfg: ProximaConfig) -> data.StructLayout:
    """The run-time geometry registers (:data:`proxima.golden.layout.GEOMETRY_FIELDS`), each
    as wide as its largest value over the configuration's images
    (:func:`proxima.golden.layout.geometry_bounds`)."""
    b = geometry_bounds(cfg)
    return data.StructLayout({f: range(getattr(b, f) + 1) for f in GEOMETRY_FIELDS})


def geometry_init(g: Layout | Geometry) -> dict:
    """Register values of an image geometry (``Layout.registers()``), as a dict for the
    ``init`` of a :func:`geometry_layout` port or ``View.eq``."""
    regs = g.registers() if isinstance(g, Layout) else g
    return regs._asdict()


def geometry_word(cfg: ProximaConfig, g: Layout | Geometry) -> int:
    """The :func:`geometry_layout` port's bits as one integer (a Verilog top's ``geom``
    input; field order and widths as the layout)."""
    return geometry_layout(cfg).const(geometry_init(g)).as_value().value


def _div_fpp(cfg: ProximaConfig, j, g):
    """``(j // fpp, j % fpp)``: constant division, or the reciprocal rule for a register."""
    fpp = g.frames_per_page
    if isinstance(fpp, int):
        return divmod_const(j, fpp)
    q = ((j * g.fpp_recip) >> recip_shift(cfg))[:slot_bits(cfg)]
    return q, (j - q * fpp)[:bits_for(cfg.nand.page_bytes)]


def frame_location(cfg: ProximaConfig, g, v):
    """``(core, page, byte offset)`` of the normal frame of vertex ``v`` (an expression).

    With a frames-per-page register the offset ``(j - q fpp) stride`` is computed as ``j
    stride - q (fpp stride)`` (equal: ``q = j // fpp``, so both are ``(j mod fpp) stride <
    P``): two multiplications in series (``j * fpp_recip`` or ``fpp * stride``, then ``q *
    (fpp * stride)``) instead of three, the reader's address path on the FPGA
    (``docs/RESOURCES.md``, "Boards")."""
    j, core = divmod_const(v, cfg.nand.cores)
    if isinstance(g.frames_per_page, int):
        pg, slot = _div_fpp(cfg, j, g)
        return core, g.hot_pages + pg, slot * g.stride
    q = _div_fpp(cfg, j, g)[0]
    width = bits_for(cfg.nand.page_bytes) + len(Value.cast(g.stride))  # of slot * stride
    off = (j * g.stride - q * (g.frames_per_page * g.stride))[:width]
    return core, g.hot_pages + q, off


def code_location(cfg: ProximaConfig, g, v, copy=0, frame=None):
    """``(core, page, byte offset)`` of the PQ code of vertex ``v`` in copy ``copy`` of its
    normal frame (an expression; RTL twin of ``Layout.code_address``): the normal frame's
    ``code_offset`` byte for copy 0 or ``v >= code_copy_count``, else the code-copy region's
    copy ``copy`` (``layout.hot_copies > 1``): core rotated by ``copy * (Ci // X)``, page moved
    by ``code_copy_page - hot_pages + (copy - 1) * code_copy_pages``, the same byte offset (a
    copy's code sits where copy 0's does inside its access: same access count, same beats).
    ``frame``: ``frame_location(cfg, g, v)`` if already computed (its logic is shared)."""
    core, page, off = frame if frame is not None else frame_location(cfg, g, v)
    off = off + g.code_offset
    cores, X = cfg.nand.cores, cfg.layout.hot_copies
    if X == 1 or (isinstance(copy, int) and copy == 0):
        return core, page, off
    use = (v < g.code_copy_count) & (copy != 0)
    rot = divmod_const(core + copy * (cores // X), cores)[1]
    delta = g.code_copy_page - g.hot_pages + (copy - 1) * g.code_copy_pages
    return Mux(use, rot, core), page + Mux(use, delta, 0), off


def hot_chunk_location(cfg: ProximaConfig, g, v, a, copy=0):
    """``(core, page, byte offset)`` of access chunk ``a`` of hot copy ``copy`` of the hot
    frame of ``v`` (copy 0: the original mapping; ``layout.hot_copies`` in golden/layout.py)."""
    cores, X = cfg.nand.cores, cfg.layout.hot_copies
    local, core = divmod_const(v * g.hot_accesses + a, cores)
    pg, acc = divmod_const(local, cfg.nand.accesses_per_page)
    if X > 1 and not (isinstance(copy, int) and copy == 0):
        core = divmod_const(core + copy * (cores // X), cores)[1]
        pg = pg + copy * g.hot_copy_pages
    return core, pg, acc * cfg.nand.access_bytes


def raw_location(cfg: ProximaConfig, v):
    """``(global core, page, byte offset)`` of the raw vector of ``v`` (the raw-vector
    geometry is the configuration's: no register)."""
    lay = Layout(cfg, 1, 0, 0)
    j, core = divmod_const(v, cfg.nand.raw_vector_cores)
    pg, slot = divmod_const(j, lay.raw_per_page)
    return cfg.nand.cores + core, pg, slot * lay.raw_stride


class NandAddressMapper(wiring.Component):
    """Search events -> controller requests (core round-robin mapping of the image geometry).

    ``geom``   ``In(geometry_layout(cfg))``: the image's geometry registers
               (:meth:`proxima.golden.layout.Layout.registers`; reset value: ``layout``'s);
               change them only while no event is held.
    ``ev``     ``In(stream{tag, kind: 2, v: id_bits})``: ``kind`` is :data:`EVENT_CODES`
               (0 ``frame``, 1 ``code``, 2 ``raw``).
    ``req``    ``Out(stream(NandController.req_layout))``: the event's accesses in the order
               of :func:`proxima.golden.layout.reads_for_events`, each with the event's tag.
    ``error``  ``Out(1)``: sticky; an event with ``v >= N`` or ``kind = 3`` was dropped.

    An event is held while its ``count`` accesses go out, one per cycle with ``req.ready``
    (``req.valid`` and the payload come from registers and a fixed function of them);
    ``ev.ready = ~held | (req.ready & last access)``, so back-to-back events stream at one
    access per cycle.  Events with no access (a ``code`` event after a hot frame) or bad ones
    are taken in one cycle.  The divisions by ``nand.cores``, ``raw_vector_cores``, vectors
    per page are bit slices for powers of two and constant dividers otherwise; frames per
    page is a register (the reciprocal rule of :mod:`proxima.golden.layout`).
    """

    def __init__(self, layout: Layout, params: CtlParams | None = None):
        cfg = layout.cfg
        self.layout = layout
        self.params = p = params or CtlParams.from_cfg(cfg)
        if p.cores != layout.total_cores or p.access_bytes != layout.access \
                or p.page_bytes != cfg.nand.page_bytes:
            raise NandCtlError(f"controller parameters ({p.cores} cores, {p.access_bytes} B "
                               f"accesses) do not match the layout ({layout.total_cores} cores,"
                               f" {layout.access} B)")
        if layout.index_pages_per_core > 1 << p.page_bits \
                or layout.raw_pages_per_core > 1 << p.page_bits:
            raise NandCtlError("the layout needs more pages than the page field holds")
        self.ev_layout = data.StructLayout({"tag": p.tag_bits, "kind": 2, "v": cfg.id_bits})
        self.req_layout = data.StructLayout({"tag": p.tag_bits, "core": p.core_bits,
                                             "page": p.page_bits, "offset": p.offset_bits})
        self.geom_layout = geometry_layout(cfg)
        super().__init__({"geom": In(self.geom_layout, init=geometry_init(layout)),
                          "ev": In(stream.Signature(self.ev_layout)),
                          "req": Out(stream.Signature(self.req_layout)),
                          "error": Out(1), "core_busy": Out(p.cores)})

    @classmethod
    def from_config(cls, cfg: ProximaConfig) -> "NandAddressMapper":
        """Largest image of the configuration: ``N = max_vertices``, hot share
        ``layout.hot_fraction``, slot width ``id_bits`` (the reset value of ``geom``)."""
        n = cfg.engine.max_vertices
        return cls(Layout(cfg, n, int(n * cfg.layout.hot_fraction), cfg.id_bits))

    def elaborate(self, platform):
        m = Module()
        lay, p, g = self.layout, self.params, self.geom
        cfg = lay.cfg
        bounds = geometry_bounds(cfg)
        la = exact_log2(lay.access)
        raw_count = lay.raw_access_count
        cmax = max(bounds.frame_accesses, bounds.code_accesses, bounds.hot_accesses,
                   raw_count)

        held = Signal()
        tag = Signal(p.tag_bits)
        kind = Signal(2)
        v = Signal(cfg.id_bits)
        hot = Signal()  # held frame event is a hot frame
        a = Signal(range(cmax + 1))
        cnt = Signal(range(cmax + 1))
        after_hot = Signal()

        # ---- address of access `a` of the held event ---------------------------------
        core = Signal(p.core_bits)
        page = Signal(p.page_bits)
        off = Signal(p.offset_bits)
        core_f, pg_f, off_f = frame_location(cfg, g, v)
        core_r, pg_r, off_r = raw_location(cfg, v)
        core_h, pg_h, off_h = hot_chunk_location(cfg, g, v, a)
        with m.Switch(kind):
            with m.Case(EVENT_CODES["frame"]):
                with m.If(hot):
                    m.d.comb += [core.eq(core_h), page.eq(pg_h), off.eq(off_h)]
                with m.Else():
                    m.d.comb += [core.eq(core_f), page.eq(pg_f),
                                 off.eq(((off_f >> la) + a) << la)]
            with m.Case(EVENT_CODES["code"]):
                m.d.comb += [core.eq(core_f), page.eq(pg_f),
                             off.eq((((off_f + g.code_offset) >> la) + a) << la)]
            with m.Default():
                m.d.comb += [core.eq(core_r), page.eq(pg_r),
                             off.eq(((off_r >> la) + a) << la)]
        m.d.comb += [self.req.valid.eq(held), self.req.payload.tag.eq(tag),
                     self.req.payload.core.eq(core), self.req.payload.page.eq(page),
                     self.req.payload.offset.eq(off)]

        # ---- event intake ------------------------------------------------------------
        ev = self.ev.payload
        done = Signal()
        m.d.comb += done.eq(self.req.ready & (a == cnt - 1))
        m.d.comb += self.ev.ready.eq(~held | done)
        with m.If(held & self.req.ready):
            m.d.sync += a.eq(a + 1)
            with m.If(done):
                m.d.sync += held.eq(0)
        with m.If(self.ev.valid & self.ev.ready):
            e_hot = Signal()
            n_acc = Signal(range(cmax + 1))
            bad = Signal()
            m.d.comb += [e_hot.eq(ev.v < g.hot), bad.eq((ev.v >= g.n) | (ev.kind == 3))]
            with m.Switch(ev.kind):
                with m.Case(EVENT_CODES["frame"]):
                    m.d.comb += n_acc.eq(Mux(e_hot, g.hot_accesses, g.frame_accesses))
                with m.Case(EVENT_CODES["code"]):
                    m.d.comb += n_acc.eq(Mux(after_hot, 0, g.code_accesses))
                with m.Case(EVENT_CODES["raw"]):
                    m.d.comb += n_acc.eq(raw_count)
            with m.If(bad):
                m.d.sync += self.error.eq(1)
            with m.Else():
                with m.If(ev.kind == EVENT_CODES["frame"]):
                    m.d.sync += after_hot.eq(e_hot)
                m.d.sync += [held.eq(n_acc != 0), tag.eq(ev.tag), kind.eq(ev.kind),
                             v.eq(ev.v), hot.eq((ev.kind == EVENT_CODES["frame"]) & e_hot),
                             a.eq(0), cnt.eq(n_acc)]
        return m
