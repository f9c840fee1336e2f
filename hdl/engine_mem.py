"""Memory reader of the search engine: NAND reads of one event, the gap-decoder feed and the
capture buffer, and the pipelined code reads of an expansion's neighbours.

Golden twin: :func:`proxima.golden.layout.reads_for_events` (the accesses of each event, in
order) over the events of :func:`proxima.golden.search.search`; the captured bytes are the
image's (:mod:`proxima.golden.image`).  Tested against both in ``tests/hdl/test_engine_mem.py``.

Parameters: ``cfg``, ``layout`` (:class:`proxima.golden.layout.Layout`: only the reset
value of ``geom``; every width and count is the configuration's), ``beat_bits`` (memory data
width ``8 bb``; ``nb = 8 A / beat_bits`` beats per access of ``A = nand.access_bytes``).

Interface
---------
``geom``     ``In(geometry_layout(cfg))``: the image's geometry registers
             (:meth:`proxima.golden.layout.Layout.registers`: hot count, hot accesses, code
             offset, stride, frames per page and its reciprocal, access counts, ...); change
             them only while ``busy`` is low and no neighbour code read runs.  Every frame
             must start on a beat boundary (``stride`` a multiple of ``bb`` or of ``A``:
             checked by the host, :meth:`proxima.hdl.engine.SearchEngine.check_geometry`).
``start``    ``In(1)`` with ``kind`` (:data:`KIND_CODES`) and ``vertex``: start a read (only
             while ``busy`` is low): ``('frame', v)``: the hot frame's ``hot_accesses`` chunks
             (``hot`` set) or the normal frame's accesses; ``('code', v)``, ``('raw', v)``.
             ``busy`` ``Out(1)`` rises in the next cycle and falls after the last beat.
``hot``      ``Out(1)``: the last frame read was a hot frame (holds until the next start).
``mem_req``  ``Out(stream{core, page, offset, kind})``, ``mem_resp`` ``In(stream{data,
             last})``: the engine's memory port (see :mod:`proxima.hdl.engine`).  Requests
             are issued back to back while the beats are taken.
``frame``    ``Out(stream{data, last, hot})``: a frame's beats from its first byte on (the
             gap decoder's input); ``mem_resp.ready`` follows its ``ready``.
``code``     ``Out(8 C)``: the code captured by the last code read (bytes at the shift
             ``code_offset % bb``); ``cap`` ``Out(cap_words * beat_bits)``: every
             captured byte (a raw vector from byte 0 on).
Neighbour code reads (while ``nb_run``, after a normal frame):
``nb_count`` ``In``: neighbours to read; ``nb_req_idx`` ``Out``: the neighbour whose next
             access' location is loaded into the request register (one access ahead of
             the requests), ``nb_req_id`` ``In``: its id (combinational of ``nb_req_idx``);
             ``nb_rx_idx`` ``Out``: the neighbour whose beats come in, ``nb_rx_id``
             ``In``: its id (only captured: its beats to skip were stored when its first
             access was loaded).
``nb_code``  ``Out(stream{id})`` with ``code``: a captured neighbour code, held (and
             ``mem_resp.ready`` low) until taken.
``nb_clear`` ``In(1)``: reset the neighbour pointers (before ``nb_run``).
``copy``     ``In``: the hot copy hot frames and copied vertices' codes are read from
             (``layout.hot_copies > 1``; a run-time constant per search context; ignored with
             one copy).

Timing: every request comes from a register (``mem_req``'s payload and ``valid``), loaded
with a location computed from registers only (the read's vertex and access index, or the
neighbour's index into the engine's memory of ids), while the register is empty or its
request is taken: the first request of a read is valid ``request_latency`` = 2 cycles after
``start`` (the golden twin: ``block_latencies(cfg)["read"]`` in
:mod:`proxima.golden.engine_timing`); the first ``nb_run`` cycle loads the first neighbour
code request, valid in the next cycle; then one access per cycle, one beat per cycle, no
other latency; the last beat's cycle is the last ``busy`` one.
"""

from __future__ import annotations

from functools import partial

from amaranth.hdl import Array, Cat, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from proxima.config import ProximaConfig
from proxima.golden.layout import EVENT_KINDS, Layout, geometry_bounds
from proxima.hdl.lib.arith import divmod_const as _divmod
from proxima.hdl.nandctl import (code_location, frame_location, geometry_init,
                                 geometry_layout, hot_chunk_location, raw_location)

__all__ = ["MemReader", "KIND_CODES"]

#: ``mem_req.kind`` of each event kind
KIND_CODES = {k: i for i, k in enumerate(EVENT_KINDS)}


class MemReader(wiring.Component):
    """One read at a time, or the neighbours' code reads back to back (module docstring)."""

    #: ``start`` -> the read's first request (module docstring, "Timing")
    request_latency = 2

    def __init__(self, cfg: ProximaConfig, layout: Layout, beat_bits: int):
        self.cfg, self.layout = cfg, layout
        self.beat_bits, self.bb = beat_bits, beat_bits // 8
        self.nb = 8 * cfg.nand.access_bytes // beat_bits
        C = cfg.pq_code_bytes
        # capture buffer: a code (at a shift below bb inside its first beat) or a raw vector
        bounds = geometry_bounds(cfg)
        self.max_code_accesses = bounds.code_accesses
        self.cap_words = max(-(-(self.bb - 1 + C) // self.bb),
                             -(-layout.vector_bytes // self.bb))
        self.total_cores = cfg.nand.cores + cfg.nand.raw_vector_cores
        self.max_accesses = max(bounds.hot_accesses, bounds.frame_accesses,
                                bounds.code_accesses, layout.raw_access_count)
        self.geom_layout = geometry_layout(cfg)
        self.req_layout = data.StructLayout({
            "core": range(self.total_cores),
            "page": range(cfg.nand.pages_per_core),
            "offset": range(cfg.nand.page_bytes),
            "kind": range(len(EVENT_KINDS)),
        })
        self.resp_layout = data.StructLayout({"data": beat_bits, "last": 1})
        self.frame_layout = data.StructLayout({"data": beat_bits, "last": 1, "hot": 1})
        R, idb = cfg.graph.R, cfg.id_bits
        super().__init__({
            "geom": In(self.geom_layout, init=geometry_init(layout)),
            "start": In(1), "kind": In(range(len(EVENT_KINDS))), "vertex": In(idb),
            "busy": Out(1), "hot": Out(1),
            "mem_req": Out(stream.Signature(self.req_layout)),
            "mem_resp": In(stream.Signature(self.resp_layout)),
            "frame": Out(stream.Signature(self.frame_layout)),
            "code": Out(8 * C), "cap": Out(self.cap_words * beat_bits),
            "nb_run": In(1), "nb_clear": In(1), "nb_count": In(range(R + 1)),
            "nb_req_idx": Out(range(R + 1)), "nb_req_id": In(idb),
            "nb_rx_idx": Out(range(R + 1)), "nb_rx_id": In(idb),
            "nb_code": Out(stream.Signature(unsigned(idb))),
            "copy": In(range(max(2, layout.hot_copies))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, lay = self.cfg, self.layout
        A, P = cfg.nand.access_bytes, cfg.nand.page_bytes
        nb, bb, C = self.nb, self.bb, cfg.pq_code_bytes
        idb, R = cfg.id_bits, cfg.graph.R
        g = self.geom
        H, K = g.hot, g.hot_accesses
        req, resp = self.mem_req, self.mem_resp

        frame_loc = partial(frame_location, cfg, g)
        # the context's own copy (of hot frames and of copied vertices' codes)
        copy = self.copy[:max(1, (lay.hot_copies - 1).bit_length())] \
            if lay.hot_copies > 1 else 0

        def code_loc(v, frame=None):
            """``(core, page, first byte)`` of the code of ``v`` in the context's copy: the
            one place a code read's location is computed (the single read's and the
            neighbours'); ``frame``: ``v``'s normal frame location if already computed."""
            return code_location(cfg, g, v, copy=copy, frame=frame)

        def first_access(first_off):
            """``(access index in its page, beats to skip)`` of a structure at byte
            ``first_off`` of its page."""
            acc, in_acc = _divmod(first_off, A)
            return acc, _divmod(in_acc, bb)[0]

        KIND_FRAME, KIND_CODE = KIND_CODES["frame"], KIND_CODES["code"]
        rd_busy = Signal()
        rd_kind = Signal(range(len(EVENT_KINDS)))
        rd_v = Signal(idb)
        rd_hot = Signal()
        rd_la = Signal(range(self.max_accesses + 1))  # next access whose location is loaded
        rd_beat = Signal(range(self.max_accesses * nb + 1))
        rd_skip = Signal(range(nb))  # beats of the first access before the structure
        m.d.comb += [self.busy.eq(rd_busy), self.hot.eq(rd_hot)]

        # the request register (one access): its location is computed from registers
        # (rd_v, rd_la) and loaded while the register is empty or its access is taken
        q_valid = Signal()
        q_core = Signal(range(self.total_cores))
        q_page = Signal(range(cfg.nand.pages_per_core))
        q_off = Signal(range(P))
        q_kind = Signal(range(len(EVENT_KINDS)))
        m.d.comb += [
            req.valid.eq(q_valid),
            req.payload.core.eq(q_core),
            req.payload.page.eq(q_page),
            req.payload.offset.eq(q_off),
            req.payload.kind.eq(q_kind),
        ]
        taken = Signal()
        m.d.comb += taken.eq(q_valid & req.ready)
        q_free = Signal()  # the request register may load in this cycle
        m.d.comb += q_free.eq(~q_valid | req.ready)
        with m.If(taken):
            m.d.sync += q_valid.eq(0)

        with m.If(self.start):
            m.d.sync += [rd_busy.eq(1), rd_kind.eq(self.kind), rd_v.eq(self.vertex),
                         rd_hot.eq((self.kind == KIND_FRAME) & (self.vertex < H)),
                         rd_la.eq(0), rd_beat.eq(0)]

        # ---- one read: the location of access rd_la of rd_v's structure
        f_core, f_page, f_off = frame_loc(rd_v)          # normal frame of rd_v
        c_core, c_page, c_off = code_loc(rd_v, frame=(f_core, f_page, f_off))  # its code
        r_core, r_page, r_off = raw_location(cfg, rd_v)  # raw vector (global core)
        # hot chunk rd_la of the context's own copy
        h_core, h_page, h_off = hot_chunk_location(cfg, g, rd_v, rd_la, copy)

        rd_n = Signal(range(self.max_accesses + 1))
        first_off = Signal(range(P + A))
        core = Signal(range(self.total_cores))
        page = Signal(range(cfg.nand.pages_per_core))
        off = Signal(range(P + A * (self.max_accesses + 1)))
        skip = Signal(range(nb))
        with m.Switch(rd_kind):
            with m.Case(KIND_FRAME):
                with m.If(rd_hot):
                    m.d.comb += [rd_n.eq(K), core.eq(h_core), page.eq(h_page)]
                with m.Else():
                    m.d.comb += [rd_n.eq(g.frame_accesses), first_off.eq(f_off),
                                 core.eq(f_core), page.eq(f_page)]
            with m.Case(KIND_CODE):
                m.d.comb += [rd_n.eq(g.code_accesses), first_off.eq(c_off),
                             core.eq(c_core), page.eq(c_page)]
            with m.Default():
                m.d.comb += [rd_n.eq(lay.raw_access_count), first_off.eq(r_off),
                             core.eq(r_core), page.eq(r_page)]
        acc_first, skip_first = first_access(first_off)
        with m.If(rd_hot):
            m.d.comb += off.eq(h_off)
        with m.Else():
            m.d.comb += [off.eq((acc_first + rd_la) * A), skip.eq(skip_first)]
        with m.If(rd_busy & (rd_la < rd_n) & q_free):
            m.d.sync += [q_valid.eq(1), q_core.eq(core), q_page.eq(page), q_off.eq(off),
                         q_kind.eq(rd_kind), rd_la.eq(rd_la + 1)]
            with m.If(rd_la == 0):
                m.d.sync += rd_skip.eq(skip)

        rd_total = Signal.like(rd_beat)
        m.d.comb += rd_total.eq(rd_n * nb)
        rd_lead = Signal()  # a beat before the structure's first byte
        m.d.comb += rd_lead.eq(rd_beat < rd_skip)
        to_gd = Signal()
        m.d.comb += to_gd.eq(rd_kind == KIND_FRAME)
        m.d.comb += [
            self.frame.valid.eq(rd_busy & to_gd & resp.valid & ~rd_lead),
            self.frame.payload.data.eq(resp.payload.data),
            self.frame.payload.last.eq(rd_beat == rd_total - 1),
            self.frame.payload.hot.eq(rd_hot),
        ]
        rd_ready = Signal()
        m.d.comb += rd_ready.eq(rd_busy & (~to_gd | rd_lead | self.frame.ready))
        cap = Array(Signal(self.beat_bits, name=f"cap{i}") for i in range(self.cap_words))
        cap_we = Signal()
        cap_idx = Signal(range(self.max_accesses * nb + 1))
        with m.If(cap_we):
            for t in range(self.cap_words):
                with m.If(cap_idx == t):
                    m.d.sync += cap[t].eq(resp.payload.data)
        with m.If(rd_busy & resp.valid & rd_ready):
            m.d.sync += rd_beat.eq(rd_beat + 1)
            with m.If(rd_beat == rd_total - 1):
                m.d.sync += rd_busy.eq(0)
            with m.If(~to_gd & ~rd_lead):
                m.d.comb += [cap_we.eq(1), cap_idx.eq(rd_beat - rd_skip)]
        cap_bytes = Cat(*cap)
        code_shift = g.code_offset[:(bb - 1).bit_length()] if bb > 1 else 0
        m.d.comb += [self.code.eq(cap_bytes.bit_select(code_shift * 8, 8 * C)
                                  if bb > 1 else cap_bytes[:8 * C]),
                     self.cap.eq(cap_bytes)]

        # ---- neighbour code reads: the location of neighbour nq's access nqa loaded into
        # the request register (nq, nqa run one access ahead of the requests), the
        # responses (neighbour nr, beat nbeat) captured; a captured code waits in ``cap``
        # (code_pend) until taken.  Each neighbour's skip is written at its first access'
        # load and read back by nr (nb_skip), not recomputed from nb_rx_id.
        nb_pipe = Signal()  # nb_run on a normal frame: codes come from code reads
        m.d.comb += nb_pipe.eq(self.nb_run & ~rd_hot)
        code_total = Signal(range(self.max_code_accesses * nb + 1))
        m.d.comb += code_total.eq(g.code_accesses * nb)
        nq, nr = Signal(range(R + 1), name="nq"), Signal(range(R + 1), name="nr")
        nqa = Signal(range(max(2, self.max_code_accesses)))
        nbeat = Signal(range(max(2, self.max_code_accesses * nb)))
        code_pend = Signal()
        code_id = Signal(idb)
        m.d.comb += [self.nb_req_idx.eq(nq), self.nb_rx_idx.eq(nr),
                     self.nb_code.valid.eq(code_pend), self.nb_code.payload.eq(code_id)]
        n_core, n_page, n_foff = code_loc(self.nb_req_id)
        n_acc, n_skip = first_access(n_foff)
        if nb > 1:
            m.submodules.nb_skip = skips = Memory(shape=range(nb), depth=R, init=[])
            sk_w, sk_r = skips.write_port(), skips.read_port(domain="comb")
            m.d.comb += [sk_w.addr.eq(nq), sk_w.data.eq(n_skip), sk_r.addr.eq(nr)]
            r_skip = sk_r.data
        else:
            sk_w, r_skip = None, 0
        with m.If(nb_pipe):
            m.d.comb += resp.ready.eq(~code_pend)
            with m.If((nq < self.nb_count) & q_free):
                m.d.sync += [q_valid.eq(1), q_core.eq(n_core), q_page.eq(n_page),
                             q_off.eq((n_acc + nqa) * A), q_kind.eq(KIND_CODE),
                             nqa.eq(nqa + 1)]
                if sk_w is not None:
                    m.d.comb += sk_w.en.eq(nqa == 0)
                with m.If(nqa == g.code_accesses - 1):
                    m.d.sync += [nqa.eq(0), nq.eq(nq + 1)]
            with m.If(resp.valid & resp.ready):
                m.d.sync += nbeat.eq(nbeat + 1)
                with m.If(nbeat >= r_skip):
                    m.d.comb += [cap_we.eq(1), cap_idx.eq(nbeat - r_skip)]
                with m.If(nbeat == code_total - 1):
                    m.d.sync += [nbeat.eq(0), nr.eq(nr + 1), code_pend.eq(1),
                                 code_id.eq(self.nb_rx_id)]
        with m.Else():
            m.d.comb += resp.ready.eq(rd_ready)
        with m.If(self.nb_code.valid & self.nb_code.ready):
            m.d.sync += code_pend.eq(0)
        with m.If(self.nb_clear):
            m.d.sync += [nq.eq(0), nqa.eq(0), nr.eq(0), nbeat.eq(0), code_pend.eq(0),
                         q_valid.eq(0)]
        return m
