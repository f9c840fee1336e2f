"""Search engine top: Algorithm 1 for one query at a time, built from the verified blocks.

Bit-exact twin of :func:`proxima.golden.search.search` (the spec; read its docstring): the
same results, the same counters and, through :func:`proxima.golden.layout.reads_for_events`,
the same NAND reads in the same order.  Blocks it instantiates: ``bloom``
(:class:`proxima.hdl.bloom.BloomFilter`, the visited set), ``pq``
(:class:`proxima.hdl.pq.PQUnit`, ADT and PQ distances), ``cand``
(:class:`proxima.hdl.candidates.CandidateListWithSorter`, the list ``C``), ``exact``
(:class:`proxima.hdl.exact.ExactDistanceUnit`), ``gapdec``
(:class:`proxima.hdl.gapdec.GapDecoder`, frames -> neighbour ids and a hot frame's codes);
its own pieces, each tested against its golden twin: ``reader``
(:class:`proxima.hdl.engine_mem.MemReader`, reads, gap-decoder feed, capture, neighbour
code reads), ``ecache`` (:class:`proxima.hdl.exact_cache.ExactCache`), ``topk``
(:class:`proxima.hdl.topk.TopK`).  This module is Algorithm 1's state machine over their
ports (its states are described where it is written).

Parameters
----------
``SearchEngine(cfg, layout, *, codebook=None, beat_bits=None, counter_bits=32,
pq_options=None, bloom_options=None, own_sorter=True)``: ``cfg`` gives every width, size and count; ``layout``
(:class:`proxima.golden.layout.Layout`) gives only the reset value of the geometry registers
``geom`` (any image of the configuration that passes :meth:`SearchEngine.check_geometry` runs
on the same elaboration);
``codebook``: the PQ unit's initial codebook (also writable through ``cb_wr``);
``beat_bits``: the memory data width (default :func:`proxima.hdl.gapdec.default_word_bits`);
``pq_options`` go to the PQ unit, ``bloom_options`` to the Bloom filter (e.g.
``{"ram": "block"}`` on an FPGA: cycle-identical, the banks in block RAM); ``own_sorter=False``: the candidate list's sorter
ports ``sort_req`` / ``sort_resp`` are on the interface (a sorter shared between engines,
:class:`proxima.hdl.shared_sorter.SharedSorter`) instead of a private sorter.  :meth:`SearchEngine.from_config` elaborates a nominal
geometry for Verilog export and resource reports.

Interfaces
----------
``query``     ``In(stream(unsigned(elem_bits)))``: one query, ``dim`` elements in order.  It
              is accepted only while the engine is idle; the last element starts the search.
``geom``      ``In(geometry_layout(cfg))`` (:func:`proxima.hdl.nandctl.geometry_layout`): the
              image's geometry registers, :meth:`proxima.golden.layout.Layout.registers`
              (``n``, ``hot``, ``gap_width``, hot accesses, code offset, stride, frames per
              page and its reciprocal, ...; reset value: ``layout``'s).  Configuration
              registers: write them only while ``busy`` is low, before the query's first
              element; the host checks them with :meth:`check_geometry`.  No cycle depends
              on them beyond the accesses they count (the address arithmetic is
              combinational, as with constants).
``entry``     ``In(id_bits)``: the image's entry vertex (a configuration register; hold it
              constant while a search runs).
``entry_code`` ``In(8 C)``: the entry's PQ code, a configuration register used instead of a
              code read when ``layout.hot_copies > 1`` (the rule of
              :func:`proxima.golden.layout.reads_for_events`); ignored otherwise.
``copy``      ``In``: the copy this engine reads hot frames and the copied vertices' codes
              from (``layout.hot_copies > 1``; golden: ``reads_for_events(..., copy)``);
              ignored with one copy.
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
``error``     ``Out(1)``: the gap decoder reported a corrupt frame, or the candidate list a
              batch overflow, in this query (neither happens on a valid image); sticky until
              the next query's first element is taken.

Reads
-----
The accesses of each event are issued back to back on ``mem_req`` (``reader``); frame,
entry-code and raw reads run one at a time, the code reads of an expansion's passed
neighbours back to back without waiting for the responses.  The request order is the event
order: ``('frame', u)`` reads the hot frame (``u < H``: its codes come from the gap decoder
and no code reads follow) or the normal frame's neighbour part; ``('code', v)`` the accesses
holding ``v``'s code; ``('raw', v)`` the raw vector.  Every frame starts on a beat boundary
(checked at elaboration).

Cycle behaviour
---------------
One step at a time, except inside a read and in NB: a read costs ``accesses * nb`` beats
plus the memory's latency; in NB the neighbours' code reads follow each other at one beat per
cycle (plus one cycle per code handed to the PQ unit), the PQ latency and the INSERT beats
overlap them; an exact distance costs the raw read, ``ceil(dim / exact_lanes)`` beats and
the exact unit's ``latency``; a SELECT ``select_latency`` plus 2; an insert
``merge_cycles`` per merge (``cfg.insert_skip_cycles`` for a merge the list skips); a DUMP ``L`` plus 4; the ADT build ``pq.build_latency`` (overlapped with
the exact query load, the Bloom clear and the entry's code read).  ``cycles`` counts each
query from the cycle after its first element to its last result beat.  Measured cycles per
query and the synthesis figures: ``docs/RESOURCES.md`` (``engine``).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out, connect

from proxima.config import ProximaConfig
from proxima.golden.layout import Layout
from proxima.hdl.bloom import BloomFilter
from proxima.hdl.candidates import CandidateListRTL, CandidateListWithSorter, Op
from proxima.hdl.exact import ExactDistanceUnit
from proxima.golden.nandctl import default_word_bits
from proxima.hdl.gapdec import GapDecoder
from proxima.hdl.engine_mem import KIND_CODES, MemReader
from proxima.hdl.nandctl import geometry_init
from proxima.hdl.exact_cache import ExactCache
from proxima.hdl.pq import PQUnit
from proxima.hdl.topk import TopK

__all__ = ["SearchEngine", "EngineError", "COUNTER_NAMES", "KIND_CODES", "nominal_layout"]

#: the engine's registered counters (golden COUNTERS without ``bloom_fp``, plus ``cycles``)
COUNTER_NAMES = ("hops", "pq_dists", "exact_dists", "checks", "inserted", "final_T",
                 "final_reranked", "cycles")
KIND_FRAME, KIND_CODE, KIND_RAW = (KIND_CODES[x] for x in ("frame", "code", "raw"))


class EngineError(ValueError):
    """An image geometry or configuration the engine cannot serve."""


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


class SearchEngine(wiring.Component):
    """Algorithm 1 for one query at a time (see the module docstring)."""

    def __init__(self, cfg: ProximaConfig, layout: Layout, *, codebook=None,
                 beat_bits: int | None = None, counter_bits: int = 32,
                 pq_options: dict | None = None, bloom_options: dict | None = None,
                 own_sorter: bool = True):
        if layout.cfg.to_dict() != cfg.to_dict():
            raise EngineError("the layout was made for another configuration")
        self.cfg, self.layout = cfg, layout
        A = cfg.nand.access_bytes
        bb_bits = default_word_bits(cfg) if beat_bits is None else int(beat_bits)
        if not _is_pow2(bb_bits) or bb_bits < 8 or (8 * A) % bb_bits:
            raise EngineError(f"beat_bits must be a power of two in 8..{8 * A}, got {bb_bits}")
        self.beat_bits, self.bb = bb_bits, bb_bits // 8
        self.nb = 8 * A // bb_bits  # beats per access
        self.check_geometry(layout)
        self.counter_bits = int(counter_bits)
        self.bloom = BloomFilter(cfg, **(bloom_options or {}))
        self.pq = PQUnit(cfg, codebook=codebook, **(pq_options or {}))
        self.own_sorter = bool(own_sorter)
        self.cand = CandidateListWithSorter(cfg) if own_sorter else CandidateListRTL(cfg)
        self.exact = ExactDistanceUnit(cfg)
        self.gapdec = GapDecoder(cfg, word_bits=bb_bits)
        self.reader = MemReader(cfg, layout, bb_bits)
        self.ecache = ExactCache(cfg.search.L, cfg.id_bits, cfg.pq_dist_bits,
                                 cfg.exact_dist_bits)
        self.topk = TopK(cfg.search.k, cfg.id_bits, cfg.exact_dist_bits)
        self.req_layout, self.resp_layout = self.reader.req_layout, self.reader.resp_layout
        self.result_layout = data.StructLayout({"id": cfg.id_bits,
                                                "dist": cfg.exact_dist_bits, "last": 1})
        ports = {
            "geom": In(self.reader.geom_layout, init=geometry_init(layout)),
            "query": In(stream.Signature(unsigned(cfg.vec.elem_bits))),
            "entry": In(cfg.id_bits),
            "entry_code": In(8 * cfg.pq_code_bytes),
            "copy": In(range(max(2, layout.hot_copies))),
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
        if not own_sorter:
            ports |= {"sort_req": self.cand.signature.members["sort_req"],
                      "sort_resp": self.cand.signature.members["sort_resp"]}
        super().__init__(ports)

    @classmethod
    def from_config(cls, cfg: ProximaConfig, *, n: int | None = None, hot: int | None = None,
                    gap_width: int | None = None, **options) -> "SearchEngine":
        """An engine whose geometry registers reset to a nominal image (Verilog export,
        resource reports; any image that fits runs on it once ``geom`` is written):
        ``n`` vertices (default ``engine.max_vertices``, fewer if the NAND does not hold
        them), ``hot`` of them hot (default ``layout.hot_fraction * n``) and slot width
        ``gap_width`` (default ``id_bits``, the widest frame)."""
        return cls(cfg, nominal_layout(cfg, n=n, hot=hot, gap_width=gap_width), **options)

    def check_geometry(self, layout: Layout) -> None:
        """Raise :class:`EngineError` (one line) unless this elaboration serves an image of
        ``layout``: the same configuration, and every structure the engine reads (frames,
        raw vectors) starts on a beat boundary."""
        if layout.cfg.to_dict() != self.cfg.to_dict():
            raise EngineError("the layout was made for another configuration")
        A = self.cfg.nand.access_bytes
        for name, stride in (("frame", layout.stride), ("raw vector", layout.raw_stride)):
            if stride % self.bb and stride < A:
                raise EngineError(f"the {name} stride ({stride} B) is not a multiple of the "
                                  f"beat ({self.bb} B)")

    # -------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        cfg, lay = self.cfg, self.layout
        s = cfg.search
        L, R, k, idb = s.L, cfg.graph.R, s.k, cfg.id_bits
        dim, eb = cfg.vec.dim, cfg.vec.elem_bits
        pqb = cfg.pq_dist_bits

        m.submodules.bloom = bloom = self.bloom
        m.submodules.pq = pq = self.pq
        m.submodules.cand = cand = self.cand
        m.submodules.exact = ex = self.exact
        m.submodules.gapdec = gd = self.gapdec
        m.submodules.reader = rd = self.reader
        m.submodules.ecache = ec = self.ecache
        m.submodules.topk = tk = self.topk

        connect(m, wiring.flipped(self.cb_wr), pq.cb_wr)
        if not self.own_sorter:
            connect(m, cand.sort_req, wiring.flipped(self.sort_req))
            connect(m, wiring.flipped(self.sort_resp), cand.sort_resp)
        connect(m, rd.mem_req, wiring.flipped(self.mem_req))
        connect(m, wiring.flipped(self.mem_resp), rd.mem_resp)
        connect(m, rd.frame, gd.i)
        m.d.comb += [rd.copy.eq(self.copy), rd.geom.eq(self.geom)]
        held_entry = lay.hot_copies > 1  # the entry's code is a register, not read
        m.d.comb += [pq.adt_out.ready.eq(1), gd.gap_width.eq(self.geom.gap_width)]

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

        # ---- reads ------------------------------------------------------------------------
        rd_hot = rd.hot
        cap_code = rd.code
        cap_vec = [rd.cap[8 * b:8 * (b + 1)] for b in range(dim)]

        def start_read(kind, v):
            m.d.comb += [rd.start.eq(1), rd.kind.eq(kind), rd.vertex.eq(v)]

        # ---- passed neighbours and hot codes of the current frame ----------------------
        pass_layout = data.StructLayout({"id": idb, "j": range(R)})
        m.submodules.passed = passed = Memory(shape=pass_layout, depth=R, init=[])
        pw = passed.write_port()
        p_q = passed.read_port(domain="comb")  # next code request
        p_r = passed.read_port(domain="comb")  # code read being received
        p_c = passed.read_port(domain="comb")  # next code to the PQ unit
        code_layout = data.ArrayLayout(unsigned(8), cfg.pq_code_bytes)
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
        m.d.comb += frame_done.eq(~rd.busy & ids_done & codes_done & (n_resp == n_ids))

        # ---- exact cache (slot i of the last dump) and top-k -------------------------------
        i = Signal(range(L + 1))  # list position of the check / rerank loops
        c_i = ec.entry
        m.d.comb += ec.addr.eq(i)
        tk_valid = [tk.valid[x] for x in range(k)]

        def tk_insert(dist, v):
            m.d.comb += [tk.ins.eq(1), tk.ins_dist.eq(dist), tk.ins_id.eq(v)]

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
        # the reader requests and captures the code reads (normal frame); ci: codes to the
        # PQ unit, ii: INSERT beats
        nb_run = Signal()
        ci, ii = (Signal(range(R + 1), name=x) for x in ("ci", "ii"))
        m.d.comb += [rd.nb_run.eq(nb_run), rd.nb_count.eq(n_pass),
                     p_q.addr.eq(rd.nb_req_idx), rd.nb_req_id.eq(p_q.data.id),
                     p_r.addr.eq(rd.nb_rx_idx), rd.nb_rx_id.eq(p_r.data.id),
                     p_c.addr.eq(ci)]

        def send_beats(port, nxt):
            """Offer the exact unit's ``ex.beats`` beats on ``port``, then state ``nxt``."""
            m.d.comb += port.valid.eq(1)
            with m.If(port.ready):
                m.d.sync += ex_beat.eq(ex_beat + 1)
                with m.If(ex_beat == ex.beats - 1):
                    m.d.sync += ex_beat.eq(0)
                    m.next = nxt

        def rank_slot():
            """Slot i into the top-k: its cached exact distance, else its raw vector read
            (then EX_SEND, EX_WAIT insert it and come back)."""
            with m.If(c_i.has):
                tk_insert(c_i.ex, c_i.id)
                m.d.sync += i.eq(i + 1)
            with m.Else():
                start_read(KIND_RAW, c_i.id)
                m.next = "EX_READ"

        # ---- Algorithm 1: the states --------------------------------------------------
        # IDLE       accept query elements (to the PQ unit, which builds the ADT, and to a query
        #            register); counters cleared at the first element.
        # QEX        send the query to the exact unit (``ceil(dim / exact_lanes)`` beats).
        # CLEAR      clear the Bloom filter (``clear`` / ``clear_ready``).
        # ENTRY      ``test_and_set(entry)``, wait for the response (ignored, as in the spec); read
        #            the entry's code, wait for the ADT, PQ distance, candidate RESET with its key.
        # SELECT     candidate SELECT(T); wait for the response.  Found: ``hops += 1`` -> FRAME. Not
        #            found: a check -> DUMP.
        # FRAME      read the frame of ``u`` into the gap decoder; every id goes to the Bloom filter
        #            in row order; ids that were not visited are appended to the *passed* buffer
        #            (with their row position, which pairs them with a hot frame's codes).  Done
        #            when the read, the decoder's last id and last code beats and every Bloom
        #            response are in.
        # NB         the passed neighbours ``v``, in row order, through three overlapped steps:
        #            their codes (from the hot-code buffer, or by code reads: requests for all of
        #            them back to back, each response's beats captured; a captured code waits until
        #            the PQ unit takes it, holding ``mem_resp.ready`` low), the PQ unit (lane 0 of
        #            each beat), and each distance straight into an INSERT beat ``(pq << id_bits) |
        #            v`` with ``last`` on the final one (``pq_dists``, ``inserted`` count); then
        #            SELECT again.  No passed neighbour: no INSERT (an empty batch is not sent).
        # DUMP       ``checks += 1``; DUMP the list and rebuild the *exact cache*: two banks of
        #            ``L`` entries ``(id, pq, exact, has)`` (LUT RAM, one write and two asynchronous
        #            read ports each), the current one position-aligned with the previous dump.
        #            Each dumped slot ``p`` is written to the other bank; its exact distance is
        #            carried over when its key equals that of old entry ``o`` (then ``o += 1``):
        #            inserts keep the order of the entries they keep and drop only the list's tail,
        #            so the surviving old entries arrive in their old order and every other slot is
        #            new.  A vertex that left ``C`` drops out (it never returns).  Then the banks
        #            swap.
        # CHECK      for ``i < min(T, len)`` in list order: an exact distance unless cached (raw
        #            read, exact unit, ``exact_dists += 1``), inserted into the top-``k`` register
        #            list ordered by ``(exact, id)``; then ``stable = stable + 1`` if the ``k`` ids
        #            equal the previous check's else 0; ``stable >= r_eff``: FINAL (converged); else ``T
        #            += T_step``, ``T > L``: FINAL (list_end), else SELECT.
        # FINAL      ``Tf = min(T, len)``, ``pT = pq_{Tf-1}``; for every slot ``i < len`` in order
        #            with ``i < Tf`` or ``pq_i << beta_frac_bits < beta_fx * pT``: exact distance
        #            (cached or computed), into a fresh top-``k``.
        # OUT        the top-``k`` on ``result``; ``done``.
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.query.ready.eq(pq.query.ready),
                             pq.query.valid.eq(self.query.valid),
                             pq.query.payload.eq(self.query.payload)]
                with m.If(self.query.valid & self.query.ready):
                    m.d.sync += [qbuf[q_idx].eq(self.query.payload), q_idx.eq(q_idx + 1)]
                    with m.If(q_idx == 0):
                        m.d.sync += [done.eq(0), busy.eq(1), converged.eq(0), error.eq(0)]
                        m.d.sync += [cnt[n].eq(0) for n in COUNTER_NAMES]
                    with m.If(q_idx == dim - 1):
                        m.d.sync += [q_idx.eq(0), ex_beat.eq(0)]
                        m.next = "QEX"
            with m.State("QEX"):
                send_beats(ex.query, "CLEAR")
            with m.State("CLEAR"):
                m.d.comb += bloom.clear.eq(1)
                with m.If(bloom.clear_ready):
                    m.d.sync += [entry_id.eq(self.entry), cur.eq(self.entry), T.eq(s.T0),
                                 stable.eq(0)]
                    m.d.comb += [tk.forget.eq(1), ec.flush.eq(1)]
                    m.next = "E_BLOOM"
            with m.State("E_BLOOM"):
                m.d.comb += bloom_req_entry.eq(1)
                with m.If(bloom.req.ready):
                    m.next = "E_BWAIT"
            with m.State("E_BWAIT"):
                with m.If(bloom.resp.valid):
                    if not held_entry:
                        start_read(KIND_CODE, cur)
                    m.next = "E_READ"
            with m.State("E_READ"):
                with m.If(~rd.busy & pq.adt_valid):
                    m.next = "E_PQ"
            with m.State("E_PQ"):
                m.d.comb += [pq.codes.valid.eq(1), lane0.used.eq(1), lane0.id.eq(cur),
                             lane0.code.eq(self.entry_code if held_entry else cap_code)]
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
                    m.d.sync += [in_frame.eq(0), ci.eq(0), ii.eq(0)]
                    m.d.comb += rd.nb_clear.eq(1)
                    with m.If(n_pass == 0):
                        m.next = "SELECT"  # an empty batch is not sent
                    with m.Else():
                        m.next = "NB"
            with m.State("NB"):
                m.d.comb += nb_run.eq(1)
                # codes to the PQ unit: the hot frame's, or the captured code reads
                m.d.comb += [lane0.used.eq(1),
                             lane0.id.eq(Mux(rd_hot, p_c.data.id, rd.nb_code.payload)),
                             lane0.code.eq(Mux(rd_hot, hr.data, cap_code)),
                             pq.codes.valid.eq(Mux(rd_hot, ci < n_pass, rd.nb_code.valid)),
                             rd.nb_code.ready.eq(pq.codes.ready)]
                with m.If(pq.codes.valid & pq.codes.ready):
                    m.d.sync += ci.eq(ci + 1)
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
                    m.d.sync += length.eq(cand.length)
                    m.d.comb += ec.rebuild.eq(1)
                    m.next = "DUMP_RX"
            with m.State("DUMP_RX"):
                d = cand.dbg.payload
                m.d.comb += [cand.dbg.ready.eq(1), ec.dump_valid.eq(cand.dbg.valid),
                             ec.dump_pos.eq(d.pos), ec.dump_key.eq(d.key)]
                with m.If(cand.dbg.valid):
                    with m.If(d.last):
                        m.next = "DUMP_SWAP"
            with m.State("DUMP_SWAP"):
                m.d.comb += [ec.swap.eq(1), ec.length.eq(length), tk.clr.eq(1)]
                m.d.sync += [ntop.eq(Mux(T < length, T, length)), i.eq(0), in_final.eq(0)]
                m.next = "CHECK"
            with m.State("CHECK"):
                with m.If(i == ntop):
                    m.next = "CK_DONE"
                with m.Else():
                    rank_slot()
            with m.State("CK_DONE"):
                nstable = Mux(tk.same, stable + 1, 0)
                m.d.sync += stable.eq(nstable)
                m.d.comb += tk.snap.eq(1)
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
                with m.If(~rd.busy):
                    m.d.sync += ex_beat.eq(0)
                    m.next = "EX_SEND"
            with m.State("EX_SEND"):
                send_beats(ex.vecs, "EX_WAIT")
            with m.State("EX_WAIT"):
                m.d.comb += ex.dists.ready.eq(1)
                with m.If(ex.dists.valid):
                    m.d.sync += cnt["exact_dists"].eq(cnt["exact_dists"] + 1)
                    m.d.comb += [ec.put.eq(1), ec.exact.eq(ex.dists.payload.dist)]
                    tk_insert(ex.dists.payload.dist, c_i.id)
                    m.d.sync += i.eq(i + 1)
                    with m.If(in_final):
                        m.next = "FINAL_LOOP"
                    with m.Else():
                        m.next = "CHECK"

            with m.State("FINAL"):
                tfv = Mux(T < length, T, length)
                m.d.sync += [tf.eq(tfv), i.eq(tfv - 1), in_final.eq(1), cnt["final_T"].eq(tfv)]
                m.d.comb += tk.clr.eq(1)
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
                    rank_slot()
            with m.State("OUT"):
                tv = Array(tk_valid)
                nxt_valid = Array(tk_valid + [Const(0, 1)])
                m.d.comb += [self.result.valid.eq(tv[out_i]),
                             self.result.payload.id.eq(Array(tk.ids)[out_i]),
                             self.result.payload.dist.eq(Array(tk.dists)[out_i]),
                             self.result.payload.last.eq(~nxt_valid[out_i + 1])]
                with m.If(self.result.ready):
                    m.d.sync += out_i.eq(out_i + 1)
                    with m.If(~nxt_valid[out_i + 1]):
                        m.d.sync += [done.eq(1), busy.eq(0)]
                        m.next = "IDLE"
        return m


def nominal_layout(cfg: ProximaConfig, *, n: int | None = None, hot: int | None = None,
                   gap_width: int | None = None) -> Layout:
    """The image geometry of :meth:`SearchEngine.from_config`: ``n`` vertices (default
    ``engine.max_vertices``, halved until the NAND holds them), ``hot`` of them hot (default
    ``layout.hot_fraction * n``), slot width ``gap_width`` (default ``id_bits``)."""
    from proxima.golden.layout import LayoutError
    W = cfg.id_bits if gap_width is None else int(gap_width)
    n = cfg.engine.max_vertices if n is None else int(n)
    while True:
        h = int(cfg.layout.hot_fraction * n) if hot is None else int(hot)
        try:
            return Layout(cfg, n, min(h, n), W)
        except LayoutError as e:
            if n <= 1:
                raise EngineError(f"no image geometry fits: {e}") from None
            n //= 2
