"""Accelerator: ``queues`` search contexts in flight, sharing the NAND memory path.

Each context is a :class:`proxima.hdl.engine.SearchEngine` (Algorithm 1 for one query, the
bit-exact twin of :func:`proxima.golden.search.search`) with its own Bloom filter, PQ unit,
candidate list, exact unit and gap decoder.  What the contexts share:

* **the sorter** (``shared_sorter=True``, the default with more than one context): every
  context's candidate list merges through one :class:`proxima.hdl.shared_sorter.SharedSorter`
  (round-robin arbiter, tagged responses);
* **memory path**: each context's ``mem_req`` (at most ``reorder_slots`` accesses outstanding)
  -> the round-robin arbiter (:class:`proxima.hdl.arbiter.RoundRobinArbiter`, registered grant)
  -> the NAND controller (:class:`proxima.hdl.nandctl.NandController`: per-core queues, the
  service time ``tR + transfer`` of :mod:`proxima.golden.nand`, one response beat per cycle)
  with its backing store inside the design (the image's bytes, :meth:`Accelerator.store_image`)
  -> the context's :class:`proxima.hdl.reorder.ReorderBuffer` (responses back in request order)
  -> the context's ``mem_resp``.  Requests carry the tag ``{context, slot}``.  The path from
  the controller to the reorder buffers (and the store word) is ``path_bits`` =
  :func:`proxima.golden.nandctl.path_word_bits` wide (``engine.path_bits``, at least a
  context's beat): an access crosses it in ``path_nb`` beats, and each reorder buffer hands
  it to its context in the context's ``nb`` narrower beats.
* **queries in**: a query (``dim`` beats with its host tag) goes to the lowest-numbered free
  context; a context is free again once its query's statistics beat has been taken.
* **results out**: finished contexts are served round robin; a context's result beats (top-k,
  best first) are followed by one statistics beat with its counters.

Because a context's search does not depend on when its memory answers, every query's ids,
distances, counters and NAND access sequence equal :func:`~proxima.golden.search.search`'s
(and :func:`~proxima.golden.layout.reads_for_events` of its events) whatever the interleaving.

Parameters
----------
``Accelerator(cfg, layout, *, image=None, queues=None, codebook=None, beat_bits=None,
reorder_slots=4, ctl_depth=None, counter_bits=32, tag_bits=16, resp_stall_seed=0,
pq_options=None, bloom_options=None, external_store=False, shared_sorter=True,
path_bits=None, pages=None, store_port_latency=1)``:
``cfg``/``codebook``/``beat_bits``/``pq_options``/``bloom_options`` as
:class:`~proxima.hdl.engine.SearchEngine`; ``layout`` gives the reset value of the geometry
registers ``geom`` and, unless ``pages`` is given, the store's capacity; ``pages``: the
store's pages per core (a power of two; default :meth:`store_pages` of ``layout``).
Elaboration constants are capacities only (the configuration's widths, counts and sizes, the
store pages): any image that passes :meth:`check_geometry` runs on the same elaboration once
its registers are written;
``image``: the store contents (:meth:`store_image` of a read image; zeros if None);
``queues``: contexts (default ``engine.queues``); ``path_bits``: the shared path's width
(default :func:`~proxima.golden.nandctl.path_word_bits`; at least a context's beat, at
most an access); ``ctl_depth``: the controller's per-core
queue depth (default ``queues * reorder_slots``: every outstanding access fits, so a busy core
never blocks requests to the others at the arbiter's output); ``resp_stall_seed`` != 0: a 16-bit LFSR with that
seed holds the controller's response ``ready`` low on about half of the cycles (random NAND
latencies, for testbenches); ``external_store``: no store inside, the controller's store
port (``store_addr``, ``store_en``, ``store_data`` of ``path_bits``: see
:mod:`proxima.hdl.nandctl`) is on the interface (a board's block RAM written by the host, or external memory);
``store_port_latency``: that port's read latency (2: it holds the controller's data register
of ``engine.store_latency = 3``, :class:`~proxima.hdl.nandctl.NandController`).

Interface
---------
``query``   ``In(stream{tag, data: elem_bits})``: ``dim`` beats per query; the first beat's tag
            names the query.  ``ready`` is low while no context is free (and for one cycle at
            the start of each query, while a context is chosen).
``geom``    ``In(geometry_layout(cfg))`` (:func:`proxima.hdl.nandctl.geometry_layout`): the
            mounted image's geometry registers, :meth:`proxima.golden.layout.Layout.registers`
            (reset value: ``layout``'s), to every context.  Configuration registers: write
            them (with ``entry``, ``entry_code`` and the store) only while ``idle`` is high;
            the host refuses an image that does not fit with :meth:`check_geometry`.
``entry``   ``In(id_bits)``: the image's entry vertex (hold constant while queries run);
``entry_code`` ``In``: its PQ code (used when ``layout.hot_copies > 1``, see the engine).
            Context ``q`` reads hot frames, and the codes of the copied vertices
            (``code_copy_count``), from copy ``q % layout.hot_copies``.
``cb_wr``   ``In(stream)``: PQ codebook writes, to every context.
``result``  ``Out(stream{tag, id, dist, last})``: a finished query's top-k (``last`` on the final
            beat); one query's beats are contiguous.
``stats``   ``Out(stream{tag, context, error, converged, <counters>})``: one beat per query
            (``context``: the context that ran it), after its
            last result beat.  Counters (``counter_bits`` each): :data:`STAT_COUNTERS` =
            :data:`proxima.hdl.engine.COUNTER_NAMES` and the query's accesses by kind.
            ``error``: a corrupt frame or a list overflow in this query (other queries are not
            affected).
``soft_reset`` ``In(1)``: clears every context, queue, buffer and counter in one cycle (the
            store and the codebook are kept); queries in flight are dropped.
``idle``    ``Out(1)``: no query in a context or being taken.
monitor     ``mon_valid``, ``mon_tag`` (the issuing query's tag), ``mon_core``, ``mon_page``,
            ``mon_offset``, ``mon_kind``: one cycle per access accepted by the controller.
global counters ``g_cycles`` (since reset), ``g_busy`` (cycles with a query in a context),
            ``g_queries`` (statistics beats sent), ``g_sort`` (vectors sent to the sorter:
            with the shared sorter, the cycles its input was busy), ``g_arb_wait`` (cycles in
            which a context's
            request waited at the arbiter), ``core_busy`` (per NAND core, cycles it held an
            access in service).

Latency rules: the engine's (module doc of :mod:`proxima.hdl.engine`) with a memory whose
latency is arbiter (2 cycles) + controller (:mod:`proxima.golden.nandctl`, from accept to
beats) + reorder buffer (module doc of :mod:`proxima.hdl.reorder`).
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from proxima.config import ProximaConfig
from proxima.golden.layout import EVENT_KINDS, Layout
from proxima.golden.nandctl import path_word_bits
from proxima.hdl.arbiter import RoundRobinArbiter
from proxima.hdl.engine import COUNTER_NAMES, EngineError, SearchEngine, nominal_layout
from proxima.hdl.lib.logic import onehot_to_binary, prefix_or, rr_pick
from proxima.hdl.nandctl import NandController, geometry_init
from proxima.hdl.reorder import ReorderBuffer
from proxima.hdl.shared_sorter import SharedSorter

__all__ = ["Accelerator", "AccelError", "STAT_COUNTERS", "READ_COUNTERS"]

#: accesses by kind, per query (the kinds of :data:`proxima.golden.layout.EVENT_KINDS`)
READ_COUNTERS = tuple(f"{k}_reads" for k in EVENT_KINDS)
#: the counters of a statistics beat
STAT_COUNTERS = tuple(COUNTER_NAMES) + READ_COUNTERS


class AccelError(EngineError):
    """A configuration or image the accelerator cannot serve."""


class Accelerator(wiring.Component):
    """Many queries in flight over one NAND memory path (module doc)."""

    def __init__(self, cfg: ProximaConfig, layout: Layout, *, image=None,
                 queues: int | None = None, codebook=None, beat_bits: int | None = None,
                 reorder_slots: int = 4, ctl_depth: int | None = None, counter_bits: int = 32,
                 tag_bits: int = 16, resp_stall_seed: int = 0, pq_options: dict | None = None,
                 bloom_options: dict | None = None, external_store: bool = False,
                 shared_sorter: bool = True, path_bits: int | None = None,
                 pages: int | None = None, store_port_latency: int = 1):
        self.cfg, self.layout = cfg, layout
        self.queues = cfg.engine.queues if queues is None else int(queues)
        if not 1 <= self.queues <= 256:
            raise AccelError(f"queues must be in 1..256, got {self.queues}")
        S = int(reorder_slots)
        if S < 1 or S & (S - 1):
            raise AccelError(f"reorder_slots must be a power of two, got {reorder_slots}")
        self.slots = S
        self.counter_bits, self.tag_bits = int(counter_bits), int(tag_bits)
        self.resp_stall_seed = int(resp_stall_seed) & 0xFFFF
        self.shared_sorter = bool(shared_sorter) and self.queues > 1
        self.contexts = [SearchEngine(cfg, layout, codebook=codebook, beat_bits=beat_bits,
                                      counter_bits=counter_bits, pq_options=pq_options,
                                      bloom_options=bloom_options,
                                      own_sorter=not self.shared_sorter)
                         for _ in range(self.queues)]
        if self.shared_sorter:
            lst = self.contexts[0].cand
            self.sorter = SharedSorter(lst.sort_cfg, lst.n, self.queues)
        e0 = self.contexts[0]
        self.beat_bits, self.nb = e0.beat_bits, e0.nb
        # the shared path: as wide as engine.path_bits, never narrower than a context's beat
        pb = path_word_bits(cfg) if path_bits is None else int(path_bits)
        self.path_bits = max(pb, self.beat_bits)
        if pb & (pb - 1) or self.path_bits > 8 * cfg.nand.access_bytes:
            raise AccelError(f"path_bits must be a power of two of at most one access "
                             f"({8 * cfg.nand.access_bytes}), got {path_bits}")
        self.path_nb = 8 * cfg.nand.access_bytes // self.path_bits  # beats per access
        self.pages = self.store_pages(layout) if pages is None else int(pages)
        if self.pages < 1 or self.pages & (self.pages - 1) \
                or self.pages > cfg.nand.pages_per_core:
            raise AccelError(f"store pages must be a power of two in 1..nand.pages_per_core "
                             f"({cfg.nand.pages_per_core}), got {pages}")
        self.check_geometry(layout)
        # deep enough that no core queue is ever full: a full one would stop the arbiter's
        # output and with it the requests to every other core
        depth = self.queues * S if ctl_depth is None else int(ctl_depth)
        self.ctl = NandController(cfg, depth=max(2, depth), pages=self.pages,
                                  beat_bits=self.path_bits,
                                  tag_bits=max(1, ceil_log2(S)) + max(1, ceil_log2(self.queues)),
                                  image=image, external_store=external_store,
                                  store_port_latency=store_port_latency)
        self.external_store = bool(external_store)
        self.rob = [ReorderBuffer(S, self.nb, self.beat_bits, in_bits=self.path_bits)
                    for _ in range(self.queues)]
        self.req_layout = data.StructLayout({"req": e0.req_layout, "slot": range(S)})
        cb = self.counter_bits
        self.query_layout = data.StructLayout({"tag": self.tag_bits,
                                               "data": cfg.vec.elem_bits})
        self.result_layout = data.StructLayout({"tag": self.tag_bits, "id": cfg.id_bits,
                                                "dist": cfg.exact_dist_bits, "last": 1})
        self.stats_layout = data.StructLayout(
            {"tag": self.tag_bits, "context": range(max(2, self.queues)), "error": 1,
             "converged": 1}
            | {name: cb for name in STAT_COUNTERS})
        C = self.ctl.params.cores
        rl = e0.req_layout
        super().__init__({
            "geom": In(e0.geom.shape(), init=geometry_init(layout)),
            "query": In(stream.Signature(self.query_layout)),
            "entry": In(cfg.id_bits),
            "entry_code": In(8 * cfg.pq_code_bytes),
            "cb_wr": In(stream.Signature(e0.pq.cb_layout)),
            "result": Out(stream.Signature(self.result_layout)),
            "stats": Out(stream.Signature(self.stats_layout)),
            "soft_reset": In(1),
            "idle": Out(1),
            "mon_valid": Out(1), "mon_tag": Out(self.tag_bits),
            "mon_core": Out(rl.members["core"]), "mon_page": Out(rl.members["page"]),
            "mon_offset": Out(rl.members["offset"]), "mon_kind": Out(rl.members["kind"]),
            "g_cycles": Out(cb), "g_busy": Out(cb), "g_queries": Out(cb), "g_arb_wait": Out(cb),
            "g_sort": Out(cb),
            "core_busy": Out(cb).array(C),
        } | ({"store_addr": Out(self.ctl.params.addr_bits), "store_en": Out(1),
               "store_data": In(self.path_bits)} if self.external_store else {}))

    @classmethod
    def from_config(cls, cfg: ProximaConfig, *, n: int | None = None, hot: int | None = None,
                    gap_width: int | None = None, **options) -> "Accelerator":
        """An accelerator whose geometry registers reset to a nominal image
        (:func:`proxima.hdl.engine.nominal_layout`; ``n`` defaults to 4096 vertices or fewer),
        which also sizes the store unless ``pages`` is given, with the store port outside
        (``external_store=True`` unless given): capacities only, any image that passes
        :meth:`check_geometry` runs on it once ``geom`` is written.  Verilog export,
        resource reports, the C++ harness."""
        n = min(cfg.engine.max_vertices, 4096) if n is None else n
        options.setdefault("external_store", True)
        return cls(cfg, nominal_layout(cfg, n=n, hot=hot, gap_width=gap_width), **options)

    def check_geometry(self, layout: Layout) -> None:
        """Raise :class:`AccelError` (one line) unless this elaboration serves an image of
        ``layout``: the engine's rules (:meth:`~proxima.hdl.engine.SearchEngine.check_geometry`)
        and the store's pages per core."""
        try:
            self.contexts[0].check_geometry(layout)
        except EngineError as e:
            raise AccelError(str(e)) from None
        need = max(layout.index_pages_per_core, layout.raw_pages_per_core)
        if need > self.pages:
            raise AccelError(f"the image needs {need} pages per core, the store holds "
                             f"{self.pages}")

    # ---- the store ------------------------------------------------------------------------
    @staticmethod
    def store_pages(layout: Layout) -> int:
        """Pages per core the on-chip store holds: the image's, rounded up to a power of two."""
        used = max(1, layout.index_pages_per_core, layout.raw_pages_per_core)
        return 1 << (used - 1).bit_length()

    @classmethod
    def store_image(cls, img, pages: int | None = None) -> np.ndarray:
        """The store contents for ``image=``: a read image's index cores, then its raw-vector
        cores, each padded with zeros to ``pages`` pages (default :meth:`store_pages`)."""
        lay = img.layout
        P = lay.cfg.nand.page_bytes
        per_core = (cls.store_pages(lay) if pages is None else int(pages)) * P
        if per_core < max(lay.index_core_bytes, lay.raw_core_bytes):
            raise AccelError(f"the image needs more than {per_core // P} pages per core")
        cores = list(img.frames) + list(img.raw)
        out = np.zeros((len(cores), per_core), dtype=np.uint8)
        for c, arr in enumerate(cores):
            out[c, :len(arr)] = arr
        return out

    # ---- the design -----------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        Q, S, dim = self.queues, self.slots, self.cfg.vec.dim
        ctx, rob, ctl = self.contexts, self.rob, self.ctl
        for q in range(Q):
            m.submodules[f"ctx{q}"] = ctx[q]
            m.submodules[f"rob{q}"] = rob[q]
        m.submodules.ctl = ctl
        if self.shared_sorter:
            m.submodules.sorter = srt = self.sorter
            for q in range(Q):
                wiring.connect(m, ctx[q].sort_req, srt.i[q])
                wiring.connect(m, srt.o[q], ctx[q].sort_resp)
        if self.external_store:
            m.d.comb += [self.store_addr.eq(ctl.store_addr), self.store_en.eq(ctl.store_en),
                         ctl.store_data.eq(self.store_data)]
        tags = Array(Signal(self.tag_bits, name=f"tag{q}") for q in range(Q))

        # ---- configuration inputs --------------------------------------------------------
        cb_ready = Cat(c.cb_wr.ready for c in ctx).all()
        m.d.comb += self.cb_wr.ready.eq(cb_ready)
        X = self.layout.hot_copies
        for q, c in enumerate(ctx):
            m.d.comb += [c.geom.eq(self.geom),
                         c.entry.eq(self.entry), c.entry_code.eq(self.entry_code),
                         c.copy.eq(q % X),
                         c.cb_wr.payload.eq(self.cb_wr.payload),
                         c.cb_wr.valid.eq(self.cb_wr.valid & cb_ready)]

        # ---- queries in: dispatch to the lowest free context ----------------------------
        free = Signal(Q, init=(1 << Q) - 1)
        free_set, free_clr = Signal(Q), Signal(Q)
        m.d.sync += free.eq((free & ~free_clr) | free_set)
        feeding, cur = Signal(), Signal(range(max(2, Q)))
        qi = Signal(range(max(2, dim)))
        qb = max(1, ceil_log2(Q))
        below_free, any_free = prefix_or(m, free, "disp")
        pick_oh = Signal(Q)
        m.d.comb += pick_oh.eq(free & ~below_free)  # the lowest free context
        pick = onehot_to_binary(pick_oh, qb)
        with m.If(~feeding & self.query.valid & any_free):
            m.d.sync += [feeding.eq(1), cur.eq(pick), tags[pick].eq(self.query.payload.tag)]
            m.d.comb += free_clr.eq(pick_oh)
        q_ready = Array(c.query.ready for c in ctx)
        m.d.comb += self.query.ready.eq(feeding & q_ready[cur])
        for q, c in enumerate(ctx):
            m.d.comb += [c.query.payload.eq(self.query.payload.data),
                         c.query.valid.eq(feeding & (cur == q) & self.query.valid)]
        q_first = Signal()  # the first element of a query is taken in this cycle
        with m.If(self.query.valid & self.query.ready):
            m.d.sync += qi.eq(qi + 1)
            m.d.comb += q_first.eq(qi == 0)
            with m.If(qi == dim - 1):
                m.d.sync += [qi.eq(0), feeding.eq(0)]

        # ---- memory path: contexts -> arbiter -> controller -> reorder buffers ------------
        req = ctl.req.payload
        sb = max(1, ceil_log2(S))
        if Q > 1:
            m.submodules.arb = arb = RoundRobinArbiter(Q, self.req_layout)
            a_in, a_out = arb.i, arb.o
            a_valid, a_pay, a_grant = a_out.valid, a_out.payload.data, a_out.payload.grant
            m.d.comb += a_out.ready.eq(ctl.req.ready)
        else:
            a_in = [stream.Signature(self.req_layout).flip().create()]
            a_valid, a_pay, a_grant = a_in[0].valid, a_in[0].payload, Const(0, 1)
            m.d.comb += a_in[0].ready.eq(ctl.req.ready)
        wait = Signal(Q)
        for q in range(Q):
            e, r, ai = ctx[q], rob[q], a_in[q]
            m.d.comb += [ai.valid.eq(e.mem_req.valid & r.can_issue),
                         ai.payload.req.eq(e.mem_req.payload), ai.payload.slot.eq(r.slot),
                         e.mem_req.ready.eq(ai.ready & r.can_issue),
                         r.issue.eq(ai.valid & ai.ready),
                         wait[q].eq(ai.valid & ~ai.ready)]
        m.d.comb += [ctl.req.valid.eq(a_valid), req.core.eq(a_pay.req.core),
                     req.page.eq(a_pay.req.page), req.offset.eq(a_pay.req.offset),
                     req.tag.eq(Cat(a_pay.slot[:sb] if S > 1 else 0, a_grant)
                                if Q > 1 else a_pay.slot)]
        accepted = Signal()
        m.d.comb += accepted.eq(ctl.req.valid & ctl.req.ready)
        m.d.comb += [self.mon_valid.eq(accepted), self.mon_tag.eq(tags[a_grant]),
                     self.mon_core.eq(a_pay.req.core), self.mon_page.eq(a_pay.req.page),
                     self.mon_offset.eq(a_pay.req.offset), self.mon_kind.eq(a_pay.req.kind)]

        # responses: demultiplexed by the tag's context field, beats counted per access
        resp = ctl.resp
        if self.resp_stall_seed:
            lfsr = Signal(16, init=self.resp_stall_seed)
            m.d.sync += lfsr.eq(Cat(lfsr[1:], lfsr[0] ^ lfsr[2] ^ lfsr[3] ^ lfsr[5]))
            m.d.comb += resp.ready.eq(lfsr[0])
        else:
            m.d.comb += resp.ready.eq(1)
        wbeat = Signal(range(max(2, self.path_nb)))
        r_tag = resp.payload.tag
        r_ctx = r_tag[sb:] if Q > 1 else Const(0, 1)
        with m.If(resp.valid & resp.ready):
            m.d.sync += wbeat.eq(Mux(resp.payload.last, 0, wbeat + 1))
        for q in range(Q):
            r = rob[q]
            m.d.comb += [r.w_en.eq(resp.valid & resp.ready & (r_ctx == q)),
                         r.w_slot.eq(r_tag[:sb]), r.w_beat.eq(wbeat),
                         r.w_data.eq(resp.payload.data), r.w_last.eq(resp.payload.last)]
            wiring.connect(m, r.out, ctx[q].mem_resp)

        # accesses by kind, per context (cleared at its query's first element)
        reads = [[Signal(self.counter_bits, name=f"reads{q}_{k}") for k in EVENT_KINDS]
                 for q in range(Q)]
        for q in range(Q):
            with m.If(q_first & (cur == q)):
                m.d.sync += [x.eq(0) for x in reads[q]]
            with m.Elif(accepted & (a_grant == q)):
                for ki, x in enumerate(reads[q]):
                    with m.If(a_pay.req.kind == ki):
                        m.d.sync += x.eq(x + 1)

        # ---- results and statistics out: finished contexts, round robin ------------------
        res_valid = Cat(c.result.valid for c in ctx)
        owner = Signal(range(max(2, Q)))
        above = Signal(Q)  # contexts after the last owner
        pv, any_done = prefix_or(m, res_valid, "out_pv")
        pick_oh, pick_above = rr_pick(m, res_valid, above, pv, "out")
        st = data.View(self.stats_layout, Signal(self.stats_layout.size))
        m.d.comb += self.stats.payload.eq(st)
        res = Array(c.result.payload for c in ctx)[owner]
        with m.FSM(name="out"):
            with m.State("PICK"):
                with m.If(any_done):
                    m.d.sync += [owner.eq(onehot_to_binary(pick_oh, qb)), above.eq(pick_above)]
                    m.next = "RESULTS"
            with m.State("RESULTS"):
                m.d.comb += [self.result.valid.eq(Array(c.result.valid for c in ctx)[owner]),
                             self.result.payload.tag.eq(tags[owner]),
                             self.result.payload.id.eq(res.id),
                             self.result.payload.dist.eq(res.dist),
                             self.result.payload.last.eq(res.last)]
                for q, c in enumerate(ctx):
                    m.d.comb += c.result.ready.eq(self.result.ready & (owner == q))
                with m.If(self.result.valid & self.result.ready & res.last):
                    m.next = "CAPTURE"
            with m.State("CAPTURE"):  # the context's counters belong to the finished query
                m.d.sync += [st.tag.eq(tags[owner]), st.context.eq(owner),
                             st.error.eq(Array(c.error for c in ctx)[owner]),
                             st.converged.eq(Array(c.converged for c in ctx)[owner])]
                for n in COUNTER_NAMES:
                    m.d.sync += getattr(st, n).eq(Array(getattr(c, n) for c in ctx)[owner])
                for ki, n in enumerate(READ_COUNTERS):
                    m.d.sync += getattr(st, n).eq(Array(r[ki] for r in reads)[owner])
                m.next = "STATS"
            with m.State("STATS"):
                m.d.comb += self.stats.valid.eq(1)
                with m.If(self.stats.ready):
                    m.d.comb += free_set.eq(Cat(owner == q for q in range(Q)))
                    m.d.sync += self.g_queries.eq(self.g_queries + 1)
                    m.next = "PICK"

        # ---- global counters ------------------------------------------------------------
        all_free = free == (1 << Q) - 1
        m.d.comb += self.idle.eq(all_free & ~feeding)
        m.d.sync += self.g_cycles.eq(self.g_cycles + 1)
        with m.If(~all_free):
            m.d.sync += self.g_busy.eq(self.g_busy + 1)
        with m.If(wait.any()):
            m.d.sync += self.g_arb_wait.eq(self.g_arb_wait + 1)
        # a vector to the sorter; with private sorters several can go in one cycle
        sorts = [c.sort_req.valid & c.sort_req.ready for c in ctx] if self.shared_sorter else \
            [c.cand.list.sort_req.valid & c.cand.list.sort_req.ready for c in ctx]
        m.d.sync += self.g_sort.eq(self.g_sort + sum(sorts[1:], sorts[0]))
        for c in range(len(self.core_busy)):
            with m.If(ctl.core_busy[c]):
                m.d.sync += self.core_busy[c].eq(self.core_busy[c] + 1)
        return ResetInserter(self.soft_reset)(m)
