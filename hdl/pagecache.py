"""NAND controller page cache: set-associative true-LRU lines plus a stride prefetcher.

Bit-exact twin of :class:`proxima.golden.field.trace.PageCacheModel` (the spec, built on
:class:`~proxima.golden.field.policy.LRUCache` and
:class:`~proxima.golden.field.policy.StridePrefetcher`): for every accepted address the
block produces exactly the model's :class:`~proxima.golden.field.trace.AccessResult`
(hit, prefetch hit, demand fill and its victim, the prefetches in issue order with their
victims, stream entry and action) and keeps the model's :class:`TraceStats` in counters.

Parameters come from ``cfg.cache``: ``line_bytes``, ``sets`` (S), ``ways`` (W),
``prefetch_depth`` (D), ``prefetch_streams`` (N); ``window`` defaults to ``sets * ways``
exactly as the model does.  The address width is the NAND capacity
(``nand.cores * nand.pages_per_core * nand.page_bytes`` bytes) unless ``addr_bits`` is
given; a line number is ``addr >> log2(line_bytes)``, ``line_bits`` wide.

Interface
---------
``req``       ``In(stream.Signature(unsigned(addr_bits)))``: byte addresses, one access each.
``resp``      ``Out(stream.Signature(resp_layout))``: one per access, in order:
              ``line``, ``hit``, ``prefetch_hit``, ``evicted_valid`` / ``evicted`` /
              ``evicted_prefetched`` (victim of the demand fill, whether it was an unused
              prefetch), ``prefetches`` (number issued by this access, 0..D), ``stream``
              (table entry used) and ``action`` (0 repeat, 1 confirm, 2 train, 3 alloc: the
              codes of :meth:`StridePrefetcher.observe_raw`).
``fetch``     ``Out(stream.Signature(unsigned(line_bits)))``: demand fetches to the backing
              store, one per miss, in access order (the model's ``fill``).
``prefetch``  ``Out(stream.Signature(pf_layout))``: prefetch line fetches in issue order:
              ``line``, ``evicted_valid``, ``evicted`` (the model's ``prefetches`` and
              ``prefetch_evicted``, flattened over the accesses).
``accesses``, ``hits``, ``misses``, ``prefetch_issued``, ``prefetch_used``,
``prefetch_wasted``  ``Out(counter_bits)``: the model's ``TraceStats`` (modulo
              ``2**counter_bits``), final once every response has been taken.
``busy``      ``Out(1)``: the post-reset tag clear is running (``req.ready`` is low).

State
-----
Tags live in one :class:`~amaranth.lib.memory.Memory` of ``S`` rows; a row is the whole set:
``W`` entries ``{valid, pf, tag}`` kept in LRU order -- entry 0 least, entry ``W-1`` most
recently used, invalid entries always at the bottom.  A hit at entry ``j`` rotates entries
``j..W-1`` down by one and puts the line at the top with ``pf`` cleared; a fill shifts the
whole row down (entry 0, the LRU line, is the victim when valid) and puts the new line at
the top with ``pf`` = "brought in by a prefetch".  This is exactly ``LRUCache`` with budget
``W`` and size 1 per line.  The row RAM has one synchronous read port that is transparent
for its one write port, so a read issued in the cycle of a write to the same set sees the
new row.

The stream table is ``N`` registers ``{valid, last, stride}`` and an LRU *rank* per entry
(0 = least recently used; after reset entry ``i`` has rank ``i``, the model's initial order).
All four rules of ``StridePrefetcher.observe`` are evaluated in parallel from the accepted
line (repeat / confirm: lowest index; train: smallest ``|line - last| <= window``, ties to
the lowest index; alloc: lowest invalid entry, else rank 0); the highest-priority one is
applied and its entry gets the top rank.  ``stride`` is ``stride_bits`` signed
(``|stride| <= window``).

Reset: the stream table, counters, queue and output buffers reset with the domain; the tag
RAM does not, so after every reset a clear pass writes an empty row to each of the ``S``
sets (``S`` cycles, ``busy`` high, ``req.ready`` low).  A reset in the middle of operation
therefore starts again from the model's empty state.

Operation and cycles per access
-------------------------------
A request is accepted whenever the ``QUEUE_DEPTH``-entry request queue has room
(``req.ready`` is the queue's registered fill level: it never depends combinationally on
``resp`` / ``fetch`` / ``prefetch`` ``ready``).  In the accepting cycle the stream table
decides and updates (the prefetcher never looks at the cache, so deciding ahead of the
cache operations changes nothing); the queue stores ``{line, stream, action, stride}``.

An access is then a short sequence of *operations*: the demand look-up, then on
``confirm`` the targets ``line + stride*k``, ``k = 1..D`` in order.  Targets below 0 end the
sequence (the model drops them, and all later ones are below 0 too); targets
``>= 2**line_bits`` end it as well -- the model has no upper bound, see the note below.
The demand read of the queue head is issued when the block is idle or in the cycle of the
current access's last operation.  Each operation takes one cycle: the row of its set was
read in the previous cycle; it computes hit / victim, writes the row back (a resident
target is left untouched, as ``resident()`` does not reorder), pushes its output and issues
the read of the next operation's set in the same cycle.

Without back-pressure an access therefore occupies ``1 + T`` cycles, where ``T`` is the
number of in-range targets examined (0 unless the action is ``confirm``, then at most D;
resident targets count too): with ``req.valid`` and every ``ready`` high, response ``i + 1``
follows response ``i`` by ``1 + T_{i+1}`` cycles, and a request meeting an empty block is
answered ``3 + T`` cycles after it was accepted (queue, demand read, operations, response
register; its demand fetch is valid after 3 cycles, its ``k``-th prefetch after
``3 + k``).  An operation waits (holding its RAM read data) while an output it must push is
full: ``fetch`` on a demand miss, ``prefetch`` on an issued prefetch, ``resp`` on the last
operation.  Every output is a one-entry register buffer that can be refilled in the cycle
its entry is taken, so ``valid`` never depends on ``ready``.

Note on the spec: ``PageCacheModel`` drops only targets below 0; a target past the end of
the address space would be "fetched" by the model.  The RTL cannot name such a line and
drops it.  Traces whose lines stay below ``2**line_bits - window * D`` never differ.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from proxima.config import ProximaConfig

__all__ = ["PageCacheError", "PageCache", "ACTION_CODES", "STATS", "STATS_BITS",
           "QUEUE_DEPTH", "nand_addr_bits"]

#: Action codes on ``resp.action`` (those of ``StridePrefetcher.observe_raw``).
ACTION_CODES = {"repeat": 0, "confirm": 1, "train": 2, "alloc": 3}

#: Names of the statistics counters (the fields of ``TraceStats``), in port order.
STATS = ("accesses", "hits", "misses", "prefetch_issued", "prefetch_used", "prefetch_wasted")

#: Default width of the statistics counters (they wrap modulo ``2**STATS_BITS``).
STATS_BITS = 32

#: Entries of the request queue: two sustain one request per cycle with ``req.ready``
#: taken from a register (the queue's fill level), never from an output's ``ready``.
QUEUE_DEPTH = 2


class PageCacheError(ValueError):
    """Impossible parameters for the page cache block."""


def _log2(x: int) -> int:
    return int(x).bit_length() - 1


def _bits(n: int) -> int:
    """Unsigned bits to hold ``0..n`` (at least 1)."""
    return max(1, int(n).bit_length())


def nand_addr_bits(cfg: ProximaConfig) -> int:
    """Byte-address width of the whole NAND array (the default ``req`` width)."""
    n = cfg.nand
    return _bits(n.cores * n.pages_per_core * n.page_bytes - 1)


class PageCache(wiring.Component):
    """Set-associative true-LRU page cache with a stride prefetcher (see module docstring).

    Parameters
    ----------
    cfg : ProximaConfig
        ``cfg.cache`` gives the geometry and prefetcher; ``cfg.nand`` the default
        address width.
    window : int, optional
        Largest ``|line - last|`` that trains a stream (``>= 1``); default as the model:
        ``cache.prefetch_window`` if such a field exists, else ``sets * ways``.
    addr_bits : int, optional
        Width of the byte addresses on ``req``.
    counter_bits : int
        Width of the statistics counters.

    Attributes
    ----------
    sets, ways, depth, streams, window, line_bytes, offset_bits, addr_bits, line_bits,
    set_bits, tag_bits, stride_bits, resp_layout, pf_layout, entry_layout, row_layout.
    """

    def __init__(self, cfg: ProximaConfig, *, window: int | None = None,
                 addr_bits: int | None = None, counter_bits: int = STATS_BITS):
        c = cfg.cache
        c.validate()
        self.cfg = cfg
        self.sets, self.ways = c.sets, c.ways
        self.depth, self.streams = c.prefetch_depth, c.prefetch_streams
        self.line_bytes = c.line_bytes
        if window is None:
            window = getattr(c, "prefetch_window", None) or c.lines
        if int(window) < 1:
            raise PageCacheError(f"prefetch window must be >= 1, got {window}")
        self.window = int(window)
        self.offset_bits = _log2(c.line_bytes)
        self.set_bits = _log2(c.sets)
        self.addr_bits = nand_addr_bits(cfg) if addr_bits is None else int(addr_bits)
        self.line_bits = self.addr_bits - self.offset_bits
        if self.line_bits <= self.set_bits:
            raise PageCacheError(
                f"addr_bits ({self.addr_bits}) must exceed log2(line_bytes * sets) "
                f"({self.offset_bits + self.set_bits}): the address space is not larger "
                f"than one line per set")
        if int(counter_bits) < 1:
            raise PageCacheError(f"counter_bits must be >= 1, got {counter_bits}")
        self.counter_bits = int(counter_bits)
        self.tag_bits = self.line_bits - self.set_bits
        # |stride| <= min(window, 2**line_bits - 1), plus a sign bit
        self.stride_bits = _bits(min(self.window, (1 << self.line_bits) - 1)) + 1

        L = self.line_bits
        self.entry_layout = data.StructLayout({
            "valid": unsigned(1), "pf": unsigned(1), "tag": unsigned(self.tag_bits)})
        self.row_layout = data.ArrayLayout(self.entry_layout, self.ways)
        self.resp_layout = data.StructLayout({
            "line": unsigned(L),
            "hit": unsigned(1),
            "prefetch_hit": unsigned(1),
            "evicted_valid": unsigned(1),
            "evicted_prefetched": unsigned(1),
            "evicted": unsigned(L),
            "prefetches": unsigned(_bits(self.depth)),
            "stream": unsigned(_bits(self.streams - 1)),
            "action": unsigned(2),
        })
        self.job_layout = data.StructLayout({
            "line": unsigned(L), "stream": unsigned(_bits(self.streams - 1)),
            "action": unsigned(2), "stride": signed(self.stride_bits)})
        self.pf_layout = data.StructLayout({
            "line": unsigned(L), "evicted_valid": unsigned(1), "evicted": unsigned(L)})
        ports = {
            "req": In(stream.Signature(unsigned(self.addr_bits))),
            "resp": Out(stream.Signature(self.resp_layout)),
            "fetch": Out(stream.Signature(unsigned(L))),
            "prefetch": Out(stream.Signature(self.pf_layout)),
            "busy": Out(1),
        }
        for name in STATS:
            ports[name] = Out(self.counter_bits)
        super().__init__(ports)

    @classmethod
    def from_config(cls, cfg: ProximaConfig) -> "PageCache":
        return cls(cfg)

    # ---- stride prefetcher ---------------------------------------------------------------
    def _prefetcher(self, m: Module, key, update):
        """Stream table; returns (entry, action code, stride for the targets) for ``key``,
        all combinational; the table is updated at the clock edge when ``update``.

        Built for a short combinational path: every rule's per-entry condition and all
        pairwise distance comparisons are evaluated in parallel, the chosen entry is a
        one-hot vector and each entry updates itself from it."""
        N, L = self.streams, self.line_bits
        valid = [Signal(name=f"st_valid{i}") for i in range(N)]
        last = [Signal(L, name=f"st_last{i}") for i in range(N)]
        stride = [Signal(signed(self.stride_bits), name=f"st_stride{i}") for i in range(N)]
        rank_w = _bits(N - 1)
        rank = [Signal(rank_w, init=i, name=f"st_rank{i}") for i in range(N)]
        win = min(self.window, (1 << L) - 1)

        rep, conf, inwin, dist, diff = [], [], [], [], []
        for i in range(N):
            up = Signal(L + 1, name=f"st_up{i}")      # key - last (borrow in the top bit)
            down = Signal(L + 1, name=f"st_down{i}")  # last - key
            d = Signal(L, name=f"st_dist{i}")
            m.d.comb += [up.eq(key - last[i]), down.eq(last[i] - key)]
            neg = up[L]
            m.d.comb += d.eq(Mux(neg, down[:L], up[:L]))
            r, cf, w = Signal(name=f"st_rep{i}"), Signal(name=f"st_conf{i}"), \
                Signal(name=f"st_win{i}")
            m.d.comb += [
                r.eq(valid[i] & (last[i] == key)),
                cf.eq(valid[i] & (stride[i] != 0) & ((last[i] + stride[i]) == key)),
                w.eq(valid[i] & Mux(neg, down[:L] <= win, up[:L] <= win)),
            ]
            rep.append(r), conf.append(cf), inwin.append(w), dist.append(d)
            diff.append(up.as_signed())

        def first(flags, tag):
            """One-hot of the lowest set flag, and whether any is set."""
            oh = Signal(N, name=f"st_{tag}_oh")
            for i in range(N):
                m.d.comb += oh[i].eq(flags[i] & ~Cat(*flags[:i]).any() if i else flags[i])
            return oh, Cat(*flags).any()

        rep_oh, rep_any = first(rep, "rep")
        conf_oh, conf_any = first(conf, "conf")
        inval_oh, inval_any = first([~v for v in valid], "inval")
        lru_oh = Cat(*[r == 0 for r in rank])
        # train: entry i wins iff it is in the window and no other in-window entry is
        # closer (entries below i must be strictly farther, entries above at least as far)
        less = {}
        for i in range(N):
            for j in range(i + 1, N):
                lt, eq = Signal(name=f"st_lt{i}_{j}"), Signal(name=f"st_eq{i}_{j}")
                m.d.comb += [lt.eq(dist[i] < dist[j]), eq.eq(dist[i] == dist[j])]
                less[i, j], less[j, i] = lt, ~lt & ~eq
        best_oh = Signal(N, name="st_best_oh")
        for i in range(N):
            beats = [~inwin[j] | (less[i, j] if j < i else ~less[j, i])
                     for j in range(N) if j != i]
            m.d.comb += best_oh[i].eq(inwin[i] & Cat(*beats).all() if beats else inwin[i])
        best_any = Cat(*inwin).any()

        sel_oh = Signal(N)
        code = Signal(2)
        with m.If(rep_any):
            m.d.comb += [sel_oh.eq(rep_oh), code.eq(ACTION_CODES["repeat"])]
        with m.Elif(conf_any):
            m.d.comb += [sel_oh.eq(conf_oh), code.eq(ACTION_CODES["confirm"])]
        with m.Elif(best_any):
            m.d.comb += [sel_oh.eq(best_oh), code.eq(ACTION_CODES["train"])]
        with m.Else():
            m.d.comb += [sel_oh.eq(Mux(inval_any, inval_oh, lru_oh)),
                         code.eq(ACTION_CODES["alloc"])]
        sel = Signal(range(max(N, 2)))
        m.d.comb += sel.eq(Cat(*[Cat(*[sel_oh[i] for i in range(N) if (i >> b) & 1]).any()
                                 for b in range(len(sel))]))
        # targets are only issued on confirm, whose stride is the confirming entry's
        tgt_stride = Signal(signed(self.stride_bits))
        acc = Const(0, self.stride_bits)
        for i in range(N):
            acc = acc | Mux(conf_oh[i], stride[i].as_unsigned(), 0)
        m.d.comb += tgt_stride.eq(acc)

        sel_rank = Signal(rank_w)
        racc = Const(0, rank_w)
        for i in range(N):
            racc = racc | Mux(sel_oh[i], rank[i], 0)
        m.d.comb += sel_rank.eq(racc)
        is_train = code == ACTION_CODES["train"]
        is_alloc = code == ACTION_CODES["alloc"]
        with m.If(update):
            for i in range(N):
                with m.If(sel_oh[i]):
                    m.d.sync += [valid[i].eq(1), last[i].eq(key), rank[i].eq(N - 1)]
                    with m.If(is_train):
                        m.d.sync += stride[i].eq(diff[i])
                    with m.Elif(is_alloc):
                        m.d.sync += stride[i].eq(0)
                with m.Elif(rank[i] > sel_rank):
                    m.d.sync += rank[i].eq(rank[i] - 1)
        self._st = (valid, last, stride, rank)  # for white-box tests
        return sel, code, tgt_stride

    # ---- top -----------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        S, W, D, L = self.sets, self.ways, self.depth, self.line_bits
        sb = self.set_bits

        mem = Memory(shape=self.row_layout, depth=S, init=[])
        m.submodules.tags = mem
        self._mem = mem  # for white-box tests (final tag state)
        wp = mem.write_port()
        rp = mem.read_port(transparent_for=(wp,))

        # -- control state
        init_done = Signal()
        clr_ptr = Signal(range(S))
        active = Signal()                       # an operation is in progress
        op_line = Signal(L)                     # line of the current operation
        op_demand = Signal()                    # current operation is the demand look-up
        pf_left = Signal(range(D + 1))          # targets still to examine after this one
        op_stride = Signal(signed(self.stride_bits))
        acc = Signal(self.resp_layout)          # response fields gathered so far

        # -- output buffers (one entry, refillable in the cycle they are taken)
        outs = {}
        for name in ("resp", "fetch", "prefetch"):
            port = getattr(self, name)
            v = Signal(name=f"{name}_v")
            p = Signal(port.payload.shape(), name=f"{name}_p")
            push = Signal(name=f"{name}_push")
            free = Signal(name=f"{name}_free")
            m.d.comb += [port.valid.eq(v), port.payload.eq(p), free.eq(~v | port.ready)]
            with m.If(push):
                m.d.sync += v.eq(1)
            with m.Elif(port.ready):
                m.d.sync += v.eq(0)
            outs[name] = (p, push, free)

        counters = {name: Signal(self.counter_bits, name=f"cnt_{name}") for name in STATS}
        for name, sig in counters.items():
            m.d.comb += getattr(self, name).eq(sig)

        # -- request side and prefetcher
        accept = Signal()
        req_line = Signal(L)
        m.d.comb += req_line.eq(self.req.payload[self.offset_bits:])
        pf_sel, pf_code, pf_stride = self._prefetcher(m, req_line, accept)
        m.submodules.queue = queue = SyncFIFO(width=self.job_layout.size, depth=QUEUE_DEPTH)
        job_in = Signal(self.job_layout)
        m.d.comb += [job_in.line.eq(req_line), job_in.stream.eq(pf_sel),
                     job_in.action.eq(pf_code), job_in.stride.eq(pf_stride),
                     queue.w_data.eq(job_in), queue.w_en.eq(accept)]
        head = self.job_layout(queue.r_data)

        # -- current operation: row look-up on the RAM output
        row = rp.data
        tag = op_line[sb:]
        set_idx = op_line[:sb]
        match = Signal(W)
        m.d.comb += match.eq(Cat(*[row[j].valid & (row[j].tag == tag) for j in range(W)]))
        hit = Signal()
        hit_way = Signal(range(max(W, 2)))
        pf_flag = Signal()
        m.d.comb += hit.eq(match.any())
        for j in reversed(range(W)):
            with m.If(match[j]):
                m.d.comb += hit_way.eq(j)
        m.d.comb += pf_flag.eq(Cat(*[match[j] & row[j].pf for j in range(W)]).any())
        shift_from = Signal(range(max(W, 2)))
        m.d.comb += shift_from.eq(Mux(hit, hit_way, 0))
        new_row = Signal(self.row_layout)
        for j in range(W - 1):
            m.d.comb += new_row[j].eq(Mux(j >= shift_from, row[j + 1], row[j]))
        m.d.comb += [new_row[W - 1].valid.eq(1), new_row[W - 1].pf.eq(~op_demand),
                     new_row[W - 1].tag.eq(tag)]
        ev_valid = Signal()
        ev_line = Signal(L)
        m.d.comb += [ev_valid.eq(~hit & row[0].valid), ev_line.eq(Cat(set_idx, row[0].tag))]

        nxt = Signal(signed(max(L, self.stride_bits) + 2))
        m.d.comb += nxt.eq(op_line + op_stride)
        has_next = Signal()
        m.d.comb += has_next.eq((pf_left != 0) & (nxt >= 0) & (nxt < (1 << L)))

        resp_p, resp_push, resp_free = outs["resp"]
        fetch_p, fetch_push, fetch_free = outs["fetch"]
        pf_p, pf_push, pf_free = outs["prefetch"]
        need_fetch = Signal()
        need_pf = Signal()
        complete = Signal()
        last_done = Signal()
        start = Signal()                        # the queue head's demand read is issued
        m.d.comb += [
            need_fetch.eq(op_demand & ~hit),
            need_pf.eq(~op_demand & ~hit),
            complete.eq(active & (~need_fetch | fetch_free) & (~need_pf | pf_free)
                        & (has_next | resp_free)),
            last_done.eq(complete & ~has_next),
            self.req.ready.eq(init_done & queue.w_rdy),
            accept.eq(self.req.valid & self.req.ready),
            start.eq(queue.r_rdy & (~active | last_done)),
            queue.r_en.eq(start),
            self.busy.eq(~init_done),
        ]

        # response as it stands after this operation
        cur = Signal(self.resp_layout)
        m.d.comb += cur.eq(acc)
        with m.If(op_demand):
            m.d.comb += [cur.hit.eq(hit), cur.prefetch_hit.eq(hit & pf_flag),
                         cur.evicted_valid.eq(ev_valid),
                         cur.evicted_prefetched.eq(ev_valid & row[0].pf),
                         cur.evicted.eq(Mux(ev_valid, ev_line, 0))]
        with m.Else():
            m.d.comb += cur.prefetches.eq(acc.prefetches + need_pf)

        # -- RAM ports
        with m.If(~init_done):
            m.d.comb += [wp.en.eq(1), wp.addr.eq(clr_ptr), wp.data.eq(0)]
            m.d.sync += clr_ptr.eq(clr_ptr + 1)
            with m.If(clr_ptr == S - 1):
                m.d.sync += init_done.eq(1)
        with m.Elif(complete & (op_demand | ~hit)):
            m.d.comb += [wp.en.eq(1), wp.addr.eq(set_idx), wp.data.eq(new_row)]
        # (the port's en resets to 1: it must be low to hold the row while an output stalls)
        m.d.comb += [rp.en.eq((complete & has_next) | start),
                     rp.addr.eq(Mux(active & has_next, nxt[:sb], head.line[:sb]))]

        # -- sequencing
        with m.If(complete):
            m.d.sync += acc.eq(cur)
            with m.If(has_next):
                m.d.sync += [op_line.eq(nxt), op_demand.eq(0), pf_left.eq(pf_left - 1)]
            with m.Else():
                m.d.sync += active.eq(0)
            with m.If(op_demand):
                m.d.sync += [counters["accesses"].eq(counters["accesses"] + 1),
                             counters["prefetch_used"].eq(
                                 counters["prefetch_used"] + (hit & pf_flag))]
                with m.If(hit):
                    m.d.sync += counters["hits"].eq(counters["hits"] + 1)
                with m.Else():
                    m.d.sync += counters["misses"].eq(counters["misses"] + 1)
            with m.Else():
                m.d.sync += counters["prefetch_issued"].eq(
                    counters["prefetch_issued"] + need_pf)
            m.d.sync += counters["prefetch_wasted"].eq(
                counters["prefetch_wasted"] + (ev_valid & row[0].pf))
        m.d.comb += [
            fetch_push.eq(complete & need_fetch),
            pf_push.eq(complete & need_pf),
            resp_push.eq(last_done),
        ]
        m.d.sync += fetch_p.eq(Mux(fetch_push, op_line, fetch_p))
        with m.If(pf_push):
            m.d.sync += [pf_p.line.eq(op_line), pf_p.evicted_valid.eq(ev_valid),
                         pf_p.evicted.eq(Mux(ev_valid, ev_line, 0))]
        with m.If(resp_push):
            m.d.sync += resp_p.eq(cur)

        with m.If(start):
            m.d.sync += [
                active.eq(1), op_line.eq(head.line), op_demand.eq(1),
                pf_left.eq(Mux(head.action == ACTION_CODES["confirm"], D, 0)),
                op_stride.eq(head.stride),
                acc.eq(0), acc.line.eq(head.line), acc.stream.eq(head.stream),
                acc.action.eq(head.action),
            ]
        return m
