"""NAND controller page cache: set-associative true-LRU lines plus a stride prefetcher.

Golden twin: :class:`proxima.golden.field.trace.PageCacheModel` (built on ``LRUCache`` and
``StridePrefetcher`` of :mod:`proxima.golden.field.policy`).  For every accepted address the
block produces exactly the model's ``AccessResult`` (hit, prefetch hit, demand fill and its
victim, the prefetches in issue order with their victims, stream entry and action) and keeps
its ``TraceStats`` in counters.  Pieces, each tested against its golden twin: the prefetcher
:class:`proxima.hdl.prefetch.StridePrefetcher` (golden ``StridePrefetcher``) and the tag
look-up :class:`proxima.hdl.cache_tags.TagLookup` (one ``LRUCache`` set).

Parameters: ``cfg.cache`` (``line_bytes``, ``sets`` S, ``ways`` W, ``prefetch_depth`` D,
``prefetch_streams`` N; ``window`` defaults to ``sets * ways`` as in the model); the address
width is the NAND capacity unless ``addr_bits`` is given; a line is ``addr >>
log2(line_bytes)``, ``line_bits`` wide.  See :class:`PageCache` for the options.

Interface
---------
``req``       ``In(stream(unsigned(addr_bits)))``: byte addresses, one access each.
``resp``      ``Out(stream(resp_layout))``, one per access in order: ``line``, ``hit``,
              ``prefetch_hit``, ``evicted_valid`` / ``evicted`` / ``evicted_prefetched``
              (the demand fill's victim), ``prefetches`` (issued by this access, 0..D),
              ``stream`` and ``action`` (0 repeat, 1 confirm, 2 train, 3 alloc).
``fetch``     ``Out(stream(unsigned(line_bits)))``: demand fetches, one per miss, in order.
``prefetch``  ``Out(stream(pf_layout))``: prefetches in issue order: ``line``,
              ``evicted_valid``, ``evicted``.
``accesses``, ``hits``, ``misses``, ``prefetch_issued``, ``prefetch_used``,
``prefetch_wasted``  ``Out(counter_bits)``: the model's ``TraceStats`` (modulo
              ``2**counter_bits``), final from the cycle after the last response is valid.
``busy``      ``Out(1)``: the post-reset tag clear runs (``req.ready`` low, S cycles).

Every output is a two-entry register buffer: ``valid`` and ``payload`` never depend on
``ready``; ``req.ready`` never depends on any output's ``ready``.

State
-----
Tags: S rows of W entries ``{valid, pf, tag}`` in LRU order (entry 0 least recently used,
invalid entries at the bottom) in LUT RAM with an asynchronous read at a registered address
(one RAM, or with ``read_stages = 2`` banks of ``bank_rows`` rows whose outputs are
registered, zero unless addressed, then ORed).  A hit rotates the row above the line and
puts it on top with ``pf`` cleared; a fill shifts the row down (entry 0 is the victim) and
puts the new line on top with ``pf`` = "brought in by a prefetch": ``LRUCache`` with budget
W.  A row written in the cycle it is read is forwarded.  The tag RAM has no reset: after
every reset a clear pass writes each set (``busy``).

Pipeline, latency and throughput
--------------------------------
Two decoupled pipelines joined by a ``QUEUE_DEPTH``-entry job queue.  The prefetcher
(P0 accept, P1..P3 decide, P4 push and table update; P1b with a two-cycle tag read) takes
one request per ``request_cycles`` (4, or 5).  An access is then a sequence of cache
operations: the demand look-up, then on ``confirm`` the targets ``line + stride * k``, ``k
= 1..D`` in order, ending at the first one out of ``0 .. 2**line_bits - 1``.  Each
operation takes ``op_cycles`` (3, or 5 with a two-cycle read): C0 read, (C0b), C1 tag
compare, (C1b way reductions), C2 hit / victim / new row, C3 write back, push, count and
issue the next operation (its C0); C3 holds while an output it pushes has no room.

With ``T`` the targets an access examines (resident ones count), an access costs
``op_cycles * (1 + T)`` cycles of cache operations; with ``req.valid`` and every ``ready``
high every acceptance and response cycle is :func:`full_rate_schedule`.  A request into
an idle block has its response valid ``response_latency + op_cycles * T`` cycles after
acceptance (10 + 3T, or 13 + 5T), its demand fetch after ``response_latency`` and its
``k``-th prefetch after ``response_latency + op_cycles * k``.

Note on the spec: ``PageCacheModel`` drops only targets below 0; the RTL cannot name a
line past ``2**line_bits - 1`` and drops it too.  Traces whose lines stay below
``2**line_bits - window * D`` never differ.

Resources and Fmax per preset: ``docs/RESOURCES.md`` (``pagecache``).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, exact_log2

from proxima.config import ProximaConfig
from proxima.hdl.cache_tags import TagLookup
from proxima.hdl.prefetch import ACTION_CODES, StridePrefetcher

__all__ = ["PageCacheError", "PageCache", "ACTION_CODES", "STATS", "STATS_BITS",
           "QUEUE_DEPTH", "REQUEST_CYCLES", "OP_CYCLES", "RESPONSE_LATENCY",
           "SPLIT_READ_SETS", "BANK_ROWS",
           "full_rate_schedule", "nand_addr_bits"]


#: Names of the statistics counters (the fields of ``TraceStats``), in port order.
STATS = ("accesses", "hits", "misses", "prefetch_issued", "prefetch_used", "prefetch_wasted")

#: Default width of the statistics counters (they wrap modulo ``2**STATS_BITS``).
STATS_BITS = 32

#: Entries of the job queue between the prefetcher pipeline and the cache operations.
QUEUE_DEPTH = 2

#: Cycles from one accepted request to the next at the earliest (prefetcher pipeline),
#: with a one-cycle tag read (one more with a two-cycle one: ``PageCache.request_cycles``).
REQUEST_CYCLES = 4

#: Cycles per cache operation (the demand look-up, or one prefetch target) with a
#: one-cycle tag read; a block with ``read_stages == 2`` takes two more
#: (``PageCache.op_cycles``).
OP_CYCLES = 3

#: Cycles from accepting a request (into an idle block) to its response being valid,
#: when it examines no prefetch target, with a one-cycle tag read (3 more with a
#: two-cycle one: ``PageCache.response_latency``); each examined target adds the
#: operation's cycles.
RESPONSE_LATENCY = 10

#: Above this many sets the tag read takes two cycles by default (``read_stages``).
SPLIT_READ_SETS = 16

#: Rows per LUT-RAM bank of a two-cycle tag read: one ``DPR16X4`` deep, so the first
#: read stage is the RAM cell alone.
BANK_ROWS = 16


def full_rate_schedule(examined, op_cycles: int = OP_CYCLES,
                       request_cycles: int = REQUEST_CYCLES) -> tuple[list[int], list[int]]:
    """Exact cycles of a run with ``req.valid`` and every ``ready`` always high.

    ``examined[i]`` is ``T_i``, the number of prefetch targets access ``i`` examines (see
    the module docstring); ``op_cycles`` and ``request_cycles`` are the block's
    (``OP_CYCLES`` and ``REQUEST_CYCLES`` with a one-cycle tag read).  Cycle 0 is the
    first cycle with ``busy`` low.  Returns the cycle in which each request is accepted
    and the cycle in which each response is valid (and taken).  With ``a``: accept, ``q``:
    push into the job queue (P4), ``s``: start of the demand look-up (C0), ``r``:
    response::

        a_0 = 0,  a_i = q_{i-1}
        q_i = max(a_i + request_cycles, s_{i - QUEUE_DEPTH} + 1)   (queue full before)
        s_0 = q_0 + 2,  s_i = max(s_{i-1} + op_cycles * (1 + T_{i-1}), q_i + 2)
        r_i = s_i + op_cycles * (1 + T_i) + 1
    """
    a, q, s, r = [], [], [], []
    for i, t in enumerate(examined):
        a.append(q[i - 1] if i else 0)
        qi = a[i] + request_cycles
        if i >= QUEUE_DEPTH:
            qi = max(qi, s[i - QUEUE_DEPTH] + 1)
        q.append(qi)
        si = qi + 2
        if i:
            si = max(si, s[i - 1] + op_cycles * (1 + examined[i - 1]))
        s.append(si)
        r.append(si + op_cycles * (1 + int(t)) + 1)
    return a, r


class PageCacheError(ValueError):
    """Impossible parameters for the page cache block."""


def nand_addr_bits(cfg: ProximaConfig) -> int:
    """Byte-address width of the whole NAND array (the default ``req`` width)."""
    n = cfg.nand
    return bits_for(n.cores * n.pages_per_core * n.page_bytes - 1)


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
    read_stages : int, optional
        Cycles of the tag-row read: 1 (one asynchronous read into the row register) or 2
        (the LUT RAM split into banks of ``bank_rows`` rows, each bank's output
        registered, zero unless addressed, then their OR).  Default: 2 when ``sets >
        SPLIT_READ_SETS``.
        Every cache operation then takes 2 more cycles (C0b and C1b), and the prefetcher
        one more per request (P1b).
    bank_rows : int
        Rows per bank when ``read_stages == 2`` (a power of two; capped at ``sets``).

    Attributes
    ----------
    sets, ways, depth, streams, window, line_bytes, offset_bits, addr_bits, line_bits,
    set_bits, tag_bits, stride_bits, resp_layout, pf_layout, entry_layout, row_layout,
    read_stages, bank_rows, banks, op_cycles (``OP_CYCLES + 2 * (read_stages - 1)``),
    prefetch_split (``read_stages == 2``: the prefetcher's stage P1b), request_cycles
    (``REQUEST_CYCLES + prefetch_split``), response_latency (``RESPONSE_LATENCY + 3 *
    (read_stages - 1)``).
    """

    def __init__(self, cfg: ProximaConfig, *, window: int | None = None,
                 addr_bits: int | None = None, counter_bits: int = STATS_BITS,
                 read_stages: int | None = None, bank_rows: int = BANK_ROWS):
        c = cfg.cache
        c.validate()
        self.cfg = cfg
        if read_stages is None:
            read_stages = 2 if c.sets > SPLIT_READ_SETS else 1
        if read_stages not in (1, 2):
            raise PageCacheError(f"read_stages must be 1 or 2, got {read_stages}")
        bank_rows = int(bank_rows)
        if bank_rows < 1 or bank_rows & (bank_rows - 1):
            raise PageCacheError(f"bank_rows must be a power of two, got {bank_rows}")
        self.read_stages = read_stages
        self.bank_rows = min(bank_rows, c.sets) if read_stages == 2 else c.sets
        self.banks = c.sets // self.bank_rows
        #: cycles per cache operation and from an accepted request to its response
        self.op_cycles = OP_CYCLES + 2 * (read_stages - 1)
        #: with a two-cycle read the prefetcher has a stage more (P1b): a request
        #: every 5 cycles, as fast as the cache operations go
        self.prefetch_split = read_stages == 2
        self.request_cycles = REQUEST_CYCLES + int(self.prefetch_split)
        self.response_latency = RESPONSE_LATENCY + 3 * (read_stages - 1)
        self.sets, self.ways = c.sets, c.ways
        self.depth, self.streams = c.prefetch_depth, c.prefetch_streams
        self.line_bytes = c.line_bytes
        if window is None:
            window = getattr(c, "prefetch_window", None) or c.lines
        if int(window) < 1:
            raise PageCacheError(f"prefetch window must be >= 1, got {window}")
        self.window = int(window)
        self.offset_bits = exact_log2(c.line_bytes)
        self.set_bits = exact_log2(c.sets)
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
        self.stride_bits = bits_for(min(self.window, (1 << self.line_bits) - 1)) + 1

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
            "prefetches": unsigned(bits_for(self.depth)),
            "stream": unsigned(bits_for(self.streams - 1)),
            "action": unsigned(2),
        })
        job_fields = {"line": unsigned(L), "stream": unsigned(bits_for(self.streams - 1)),
                      "action": unsigned(2), "stride": signed(self.stride_bits)}
        if read_stages == 2:
            # the line's bank, decoded (bit b: the line's set is not in bank b)
            job_fields["bank_clr"] = unsigned(self.banks)
        self.job_layout = data.StructLayout(job_fields)
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

    def tag_row(self, set_index: int):
        """The tag-RAM row of one set (a simulation value; after elaboration)."""
        return self._mems[set_index // self.bank_rows].data[set_index % self.bank_rows]

    # ---- top -----------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        S, D, L = self.sets, self.depth, self.line_bits
        sb = self.set_bits

        # the tag store: one LUT RAM, or ``banks`` of ``bank_rows`` rows each (two-cycle
        # read); each has one asynchronous read port and one write port
        bb = exact_log2(self.bank_rows)
        mems = []
        for b in range(self.banks):
            mem = Memory(shape=self.row_layout, depth=self.bank_rows, init=[])
            m.submodules[f"tags{b}" if self.banks > 1 else "tags"] = mem
            mems.append((mem, mem.write_port(), mem.read_port(domain="comb")))
        self._mems = [mem for mem, _, _ in mems]  # for white-box tests (final tag state)

        # -- output buffers: two entries each, so that "room" is a register (the second
        #    entry is empty) and never depends on the port's ready in the same cycle.
        #    The entries are a ring: a push writes the entry at the write pointer, a pop
        #    moves the read pointer, and the payload is the entry at the read pointer, so
        #    ``ready`` reaches only the pointer and the two fill flags, not the entries
        outs = {}
        for name in ("resp", "fetch", "prefetch"):
            port = getattr(self, name)
            shape = port.payload.shape()
            v0, v1 = Signal(name=f"{name}_v0"), Signal(name=f"{name}_v1")  # >= 1, 2 entries
            ents = [Signal(shape, name=f"{name}_e{k}") for k in range(2)]
            rd, wr = Signal(name=f"{name}_rd"), Signal(name=f"{name}_wr")
            din = Signal(shape, name=f"{name}_din")
            push = Signal(name=f"{name}_push")
            room = Signal(name=f"{name}_room")   # room in the next cycle
            pop = Signal(name=f"{name}_pop")
            v1_next = Signal(name=f"{name}_v1_next")
            m.d.comb += [port.valid.eq(v0), port.payload.eq(Mux(rd, ents[1], ents[0])),
                         pop.eq(v0 & port.ready),
                         v1_next.eq(Mux(pop, v1 & push, v1 | (push & v0))),
                         room.eq(~v1_next)]
            for k, e in enumerate(ents):
                with m.If(push & (wr == k)):
                    m.d.sync += e.eq(din)
            with m.If(push):
                m.d.sync += wr.eq(~wr)
            with m.If(pop):
                m.d.sync += rd.eq(~rd)
            m.d.sync += [v0.eq(Mux(pop, v1 | push, v0 | push)), v1.eq(v1_next)]
            outs[name] = (din, push, room)

        counters = {name: Signal(self.counter_bits, name=f"cnt_{name}") for name in STATS}
        for name, sig in counters.items():
            m.d.comb += getattr(self, name).eq(sig)

        init_done = Signal()
        clr_ptr = Signal(range(S))

        # -- request side and prefetcher: P0 accept, P1..P3 decide, P4 push + update
        m.submodules.prefetch = pf = StridePrefetcher(
            streams=self.streams, line_bits=L, window=self.window,
            stride_bits=self.stride_bits, split=self.prefetch_split)
        # the stream table, for white-box tests
        self._st = ([pf.valid[i] for i in range(self.streams)], pf.last, pf.table_stride,
                    pf.rank)
        p1, p2, p3, p4 = (Signal(name=f"p_stage{k}") for k in range(1, 5))
        # the stages before P3 (P1b only with ``prefetch_split``)
        early = [p1, Signal(name="p_stage1b"), p2] if self.prefetch_split else [p1, p2]
        accept = Signal()
        # the job queue: QUEUE_DEPTH = 2 entries in registers, the head first, so the head
        # is a flip-flop output and "not full" and "not empty" are registers; a push is
        # accepted only while the second entry is empty (also in a popping cycle), and an
        # entry pushed is the head from the next cycle on
        assert QUEUE_DEPTH == 2
        q_head = Signal(self.job_layout, name="q_head")
        q_next = Signal(self.job_layout, name="q_next")
        q_any, q_full = Signal(name="q_any"), Signal(name="q_full")
        q_pop = Signal()                        # the head's job starts (``start``)
        job_in = Signal(self.job_layout)
        # ``push`` (P4 with room in the queue: ``p4 & ~q_full``) and ``req.ready`` are
        # registers, computed a cycle ahead from the next state of the stage bits and of
        # the queue (below); ``push_n`` is the complement copy that enables the table
        pf_push = Signal(name="p_push")
        push_n = Signal(init=1, name="p_push_n")
        ready = Signal(name="p_ready")
        with m.If(q_pop):
            with m.If(pf_push):                 # (the second entry is empty)
                m.d.sync += q_head.eq(job_in)
            with m.Else():
                m.d.sync += [q_head.eq(q_next), q_any.eq(q_full), q_full.eq(0)]
        with m.Elif(pf_push):
            with m.If(q_any):
                m.d.sync += q_full.eq(1)
            with m.Else():
                m.d.sync += [q_head.eq(job_in), q_any.eq(1)]
        # (the second entry is loaded by every push: it is read only while full)
        with m.If(pf_push):
            m.d.sync += q_next.eq(job_in)
        # The next cycle's ``push`` and ``ready``.  The stages hold one request at a time
        # (P1..P4 one-hot or idle), P4 waits while the queue is full, and the queue is
        # full in the next cycle iff it is full now and the head does not start (a P4
        # that finds the queue full does not push).  Hence:
        #   push'  = p4' & ~q_full' = p3 & (q_pop | ~q_full) | p4 & q_full & q_pop
        #   ready' = init_done' & ~p1' & ~p2' & ~p3' & ~(p4' & q_full')
        #          = init_done' & ~accept & ~p1 & ~p2 & ~((p3 | p4) & q_full & ~q_pop)
        # (and ~p1b with ``prefetch_split``)
        # (``ready`` is high when the prefetcher is idle or pushes; ``init_soon`` is the
        # next cycle's ``init_done``)
        init_soon = Signal(init=int(S == 1), name="p_init_soon")
        if S > 1:
            with m.If(clr_ptr == S - 2):
                m.d.sync += init_soon.eq(1)
        p34 = Signal(name="p_stage34")          # p3 | p4
        push_d = (p3 & (q_pop | ~q_full)) | (p4 & q_full & q_pop)
        m.d.sync += [
            pf_push.eq(push_d), push_n.eq(~push_d),
            ready.eq(init_soon & ~accept & ~Cat(*early).any()
                     & ~(p34 & q_full & ~q_pop)),
            p1.eq(accept), p3.eq(p2), p4.eq(p3 | (p4 & q_full)),
            p34.eq(p2 | p3 | (p4 & q_full)),
        ]
        m.d.sync += [b.eq(a) for a, b in zip(early, early[1:])]
        m.d.comb += [self.req.ready.eq(ready), accept.eq(self.req.valid & ready)]
        table_push = ~push_n
        # (loaded whenever ``req.ready``, not only on acceptance: a line loaded without a
        # request reaches no stage, and from an acceptance to its push ``ready`` is low
        # but in the push cycle, whose edge ends the request's use of ``key``)
        m.d.comb += [pf.line.eq(self.req.payload[self.offset_bits:]), pf.load.eq(ready),
                     pf.push.eq(table_push)]
        key1 = pf.key
        m.d.comb += [job_in.line.eq(key1), job_in.stream.eq(pf.stream),
                     job_in.action.eq(pf.action), job_in.stride.eq(pf.stride)]
        if self.read_stages == 2:
            # the job's bank decoded from ``key1`` (constant from P2 to the push)
            key_clr = Signal(self.banks, name="p_key_bank_clr")
            m.d.sync += [key_clr[b].eq(key1[bb:sb] != b) for b in range(self.banks)]
            m.d.comb += job_in.bank_clr.eq(key_clr)
        head = q_head

        # -- cache operations: C0 read (row registered at its end), C1 tag compare,
        #    C2 hit / victim / new row, C3 write back + outputs (= the next C0)
        active = Signal()                       # an operation is in progress
        c1, c2, c3 = (Signal(name=f"c_stage{k}") for k in range(1, 4))
        op_line = Signal(L)                     # line of the current operation
        op_demand = Signal()                    # current operation is the demand look-up
        pf_left = Signal(range(D + 1))          # targets still to examine after this one
        op_stride = Signal(signed(self.stride_bits))
        # response fields gathered so far (loaded at the start of every access, so
        # without the domain reset: the start alone drives the flip-flops' reset)
        acc = Signal(self.resp_layout, reset_less=True)
        tag = op_line[sb:]
        set_idx = op_line[:sb]
        # the complement of ``tag``, loaded with ``op_line``: the tag compare's own copy
        # (``op_line`` fans out to the outputs, the forwarding compare and the new row; a
        # plain copy would be merged back into it by yosys)
        ntag = Signal(self.tag_bits, init=(1 << self.tag_bits) - 1, name="c_ntag")
        nxt_shape = signed(max(L, self.stride_bits) + 2)
        nxt = Signal(nxt_shape, name="c_nxt")   # op_line + op_stride, loaded with op_line
        nxt2 = Signal(nxt_shape, name="c_nxt2")  # nxt + op_stride
        head_nxt = Signal(nxt_shape, name="c_head_nxt")  # queue head: line + stride
        m.d.sync += [nxt2.eq(nxt + op_stride), head_nxt.eq(head.line + head.stride)]

        complete = Signal(name="c_complete")    # a register, see C2
        start = Signal()                        # the queue head's demand read is issued
        issue_next = Signal()                   # the next target's read is issued
        issue = Signal()
        head_stable = Signal()                  # the head was already there last cycle
        m.d.sync += head_stable.eq(q_any & ~q_pop)

        # C0: asynchronous read at the registered address; the row written in this same
        # cycle (by the completing operation) is forwarded.  With a two-cycle read, C0
        # registers every bank's output (zero unless addressed: one-hot select), the
        # forward decision and the forwarded row (all free running), and the next cycle
        # (C0b) ORs the banks.
        row = Signal(self.row_layout, name="c_row")
        rd_addr = Signal(range(S), name="c_rd_addr")
        # the row written back and whether it changes (all but resident targets): from C2
        new_row = Signal(self.row_layout)
        write_row = Signal()
        fwd = Signal()
        m.d.comb += fwd.eq(complete & write_row & (set_idx == rd_addr))
        # RAM write request of this cycle (the completing operation, or the clear pass)
        wr_en = Signal(name="c_wr_en")
        wr_set = Signal(range(S), name="c_wr_set")
        wr_row = Signal(self.row_layout, name="c_wr_row")
        m.d.comb += [wr_en.eq(~init_done | (complete & write_row)),
                     wr_set.eq(Mux(init_done, set_idx, clr_ptr)),
                     wr_row.eq(Mux(init_done, new_row, 0))]
        for _, _, rp in mems:
            m.d.comb += rp.addr.eq(rd_addr[:bb])
        row_load = Signal(name="c_row_load")    # the cycle that loads ``row``
        if self.read_stages == 1:
            m.d.comb += row_load.eq(issue)
            with m.If(issue):
                m.d.sync += row.eq(Mux(fwd, new_row, mems[0][2].data))
        else:
            # (loaded every cycle, so without the domain reset: the select alone is the
            # flip-flops' reset)
            bank_q = [Signal(self.row_layout, name=f"c_bank{b}", reset_less=True)
                      for b in range(self.banks)]
            # one-hot bank select, registered with the read address: a bank not selected
            # registers zero (the flip-flops' synchronous reset), so the bank select is
            # an OR of the bank registers, with no select net fanning out to every bit.
            # It is kept inverted (``c_bank_clr[b]``: bank b is not addressed), so the
            # register itself is the reset of the bank's flip-flops, with no inverter LUT
            bank_clr = Signal(self.banks, init=(1 << self.banks) - 1, name="c_bank_clr")
            fwd_q = Signal(name="c_fwd")
            fwd_row = Signal(self.row_layout, name="c_fwd_row")
            # the write is registered too (per-bank enables, set, row) and happens a
            # cycle after the request: a read in that cycle is forwarded from it as well
            wq_en = Signal(self.banks, name="c_wq_en")
            wq_any = Signal(name="c_wq_any")
            wq_set = Signal(range(S), name="c_wq_set")
            wq_row = Signal(self.row_layout, name="c_wq_row")
            # the per-bank enables from decoded registers: the operation's bank (decoded
            # from ``op_line`` a cycle after it loads; an operation completes at least
            # 3 cycles after) and the clear pass's (a one-hot that advances with
            # ``clr_ptr``'s bank bits)
            op_bank = Signal(self.banks, name="c_op_bank")
            clr_bank = Signal(self.banks, init=1, name="c_clr_bank")
            m.d.sync += [op_bank[b].eq(set_idx[bb:] == b) for b in range(self.banks)]
            if self.banks > 1:
                with m.If(~init_done & (clr_ptr[:bb] == self.bank_rows - 1)):
                    m.d.sync += clr_bank.eq(clr_bank.rotate_left(1))
            m.d.sync += wq_en.eq(Mux(init_done, op_bank & (complete & write_row)
                                     .replicate(self.banks), clr_bank))
            m.d.sync += [wq_any.eq(wr_en), wq_set.eq(wr_set), wq_row.eq(wr_row)]
            for b, (_, wp, _) in enumerate(mems):
                m.d.comb += [wp.en.eq(wq_en[b]), wp.addr.eq(wq_set[:bb]), wp.data.eq(wq_row)]
            for b, (q, (_, _, rp)) in enumerate(zip(bank_q, mems)):
                with m.If(bank_clr[b]):
                    m.d.sync += q.eq(0)
                with m.Else():
                    m.d.sync += q.eq(rp.data)
            # The set compare of the forward decision is registered a cycle early, with
            # the read address: ``same_*`` is whether ``set_idx`` equals the set that
            # the read address loads (the pending target's or the queue head's).  It
            # serves both cases: in a cycle with a completing write, ``op_line`` was not
            # loaded in the cycle before (operations are at least 3 cycles apart), and a
            # pending write is the previous cycle's completing one, at the previous
            # cycle's ``set_idx`` (the clear pass ends before any read is issued).
            same_nxt = Signal(name="c_same_nxt")
            same_head = Signal(name="c_same_head")
            rd_is_nxt = Signal(name="c_rd_is_nxt")
            same = Mux(rd_is_nxt, same_nxt, same_head)
            # the forward decision in two copies (a different reset value each), each
            # the select of half the row
            fwd_q2 = Signal(init=1, name="c_fwd2")
            fwd_d = same & ((complete & write_row) | wq_any)
            m.d.sync += [fwd_q.eq(fwd_d), fwd_q2.eq(fwd_d),
                         # a completing write never meets a pending one: writes are
                         # op_cycles apart, and the clear pass ends before any read is
                         # issued; so the forwarded row is a register too
                         fwd_row.eq(Mux(wq_any, wq_row, new_row)),
                         row_load.eq(issue)]
            with m.If(row_load):
                any_bank = Const(0, self.row_layout.size)
                for q in bank_q:
                    any_bank = any_bank | q.as_value()
                h = self.row_layout.size // 2
                m.d.sync += [row.as_value()[:h].eq(Mux(fwd_q, fwd_row.as_value()[:h],
                                                       any_bank[:h])),
                             row.as_value()[h:].eq(Mux(fwd_q2, fwd_row.as_value()[h:],
                                                       any_bank[h:]))]
        # C1, C2 (C1b): tag compare, hit, victim, the new LRU row; is there a next target
        m.submodules.lookup = tl = TagLookup(self.row_layout, sb, split=self.read_stages == 2)
        m.d.comb += [tl.row.eq(row), tl.ntag.eq(ntag), tl.tag.eq(tag), tl.set_idx.eq(set_idx),
                     tl.demand.eq(op_demand)]
        hit_c = tl.hit_now
        hit, pf_flag, ev_valid, ev_pf, ev_line = (tl.hit, tl.pf_hit, tl.ev_valid, tl.ev_pf,
                                                  tl.ev_line)
        need_fetch, need_pf = tl.need_fetch, tl.need_pf
        has_next = Signal(name="c_has_next")
        has_next_d = (pf_left != 0) & (nxt >= 0) & (nxt < (1 << L))
        m.d.sync += has_next.eq(has_next_d)
        # ``start`` = ``head_stable & (~active | complete & ~has_next)`` from two registers
        # computed a cycle ahead: ``start_idle`` = ``head_stable & ~active`` and
        # ``start_last`` = ``head_stable & ~has_next``, so ``start`` = ``start_idle |
        # complete & start_last`` (``complete`` implies ``active``).  ``start_last`` is
        # read only with ``complete``, never in the cycle after a start (an operation
        # takes at least 3 cycles), and then ``head_stable`` is the previous ``q_any``
        start_idle = Signal(name="c_start_idle")
        start_last = Signal(name="c_start_last")
        m.d.sync += [start_idle.eq(q_any & ~head_stable & (~active | (complete & ~has_next))),
                     start_last.eq(q_any & ~has_next_d)]
        # The read address register holds the set of whatever would be issued next (the
        # next target while one is pending, else the queue head).
        rd_next = Mux(active & has_next, nxt[:sb], head.line[:sb])
        m.d.sync += rd_addr.eq(rd_next)
        if self.read_stages == 2:
            # the bank select of ``rd_next``, from decoded registers: the queue head's
            # (loaded with it) and the next target's (decoded from ``nxt`` a cycle after
            # it loads: ``nxt`` is read here only from the cycle after ``has_next`` sees
            # it, and the next issue is ``op_cycles`` after it loads)
            nxt_clr = Signal(self.banks, name="c_nxt_bank_clr")
            m.d.sync += [nxt_clr[b].eq(nxt[bb:sb] != b) for b in range(self.banks)]
            m.d.sync += bank_clr.eq(Mux(active & has_next, nxt_clr, head.bank_clr))
            m.d.sync += [same_nxt.eq(set_idx == nxt[:sb]),
                         same_head.eq(set_idx == head.line[:sb]),
                         rd_is_nxt.eq(active & has_next)]

        # C3: complete when the outputs it pushes have room.  ``complete`` is a register,
        # computed in the cycle before from the C2 results and the buffers' next state.
        resp_p, resp_push, resp_room = outs["resp"]
        fetch_p, fetch_push, fetch_room = outs["fetch"]
        pf_p, pfo_push, pfo_room = outs["prefetch"]
        last_done = Signal()
        m.d.comb += [
            last_done.eq(complete & ~has_next),
            # (head_stable implies init_done and a non-empty queue)
            start.eq(start_idle | (complete & start_last)),
            issue_next.eq(complete & has_next),
            issue.eq(start | issue_next),
            q_pop.eq(start),
            self.busy.eq(~init_done),
        ]
        c3_next = Signal()
        m.d.comb += c3_next.eq(c2 | (c3 & ~complete))
        if self.read_stages == 1:
            m.d.sync += c2.eq(c1)
        else:
            c1b = Signal(name="c_stage1b")
            m.d.sync += [c1b.eq(c1), c2.eq(c1b)]
        m.d.sync += [c1.eq(row_load), c3.eq(c3_next),
                     complete.eq(c3_next & (hit_c | op_demand | pfo_room)
                                 & (hit_c | ~op_demand | fetch_room)
                                 & (has_next | resp_room))]

        # response as it stands after this operation
        cur = Signal(self.resp_layout)
        m.d.comb += cur.eq(acc)
        with m.If(op_demand):
            m.d.comb += [cur.hit.eq(hit), cur.prefetch_hit.eq(hit & pf_flag),
                         cur.evicted_valid.eq(ev_valid), cur.evicted_prefetched.eq(ev_pf),
                         cur.evicted.eq(Mux(ev_valid, ev_line, 0))]
        with m.Else():
            m.d.comb += cur.prefetches.eq(acc.prefetches + need_pf)

        m.d.comb += [new_row.eq(tl.new_row), write_row.eq(tl.write_row)]

        # -- RAM write port (address and data never depend on this cycle's handshakes)
        with m.If(~init_done):
            m.d.sync += clr_ptr.eq(clr_ptr + 1)
            with m.If(clr_ptr == S - 1):
                m.d.sync += init_done.eq(1)
        if self.read_stages == 1:
            m.d.comb += [mems[0][1].en.eq(wr_en), mems[0][1].addr.eq(wr_set),
                         mems[0][1].data.eq(wr_row)]

        # -- sequencing
        with m.If(complete):
            m.d.sync += acc.eq(cur)
            with m.If(has_next):
                m.d.sync += [op_line.eq(nxt), ntag.eq(~nxt[sb:L]), nxt.eq(nxt2),
                             op_demand.eq(0),
                             pf_left.eq(pf_left - 1)]
            with m.Else():
                m.d.sync += active.eq(0)
        # counting: what the completing operation counts is registered, and each counter
        # adds its flag in the next cycle (the flag register is the counter's enable)
        incs = {
            "accesses": op_demand, "hits": op_demand & hit, "misses": op_demand & ~hit,
            "prefetch_used": op_demand & hit & pf_flag,
            "prefetch_issued": ~op_demand & need_pf, "prefetch_wasted": ev_pf,
        }
        assert set(incs) == set(STATS)
        for name, cond in incs.items():
            inc = Signal(name=f"cnt_inc_{name}")
            m.d.sync += inc.eq(complete & cond)
            with m.If(inc):
                m.d.sync += counters[name].eq(counters[name] + 1)
        m.d.comb += [
            fetch_push.eq(complete & need_fetch),
            pfo_push.eq(complete & need_pf),
            resp_push.eq(last_done),
        ]
        m.d.comb += [fetch_p.eq(op_line), pf_p.line.eq(op_line),
                     pf_p.evicted_valid.eq(ev_valid), pf_p.evicted.eq(Mux(ev_valid, ev_line, 0)),
                     resp_p.eq(cur)]

        with m.If(start):
            m.d.sync += [
                active.eq(1), op_line.eq(head.line), ntag.eq(~head.line[sb:]),
                nxt.eq(head_nxt), op_demand.eq(1),
                pf_left.eq(Mux(head.action == ACTION_CODES["confirm"], D, 0)),
                op_stride.eq(head.stride),
                acc.eq(0), acc.line.eq(head.line), acc.stream.eq(head.stream),
                acc.action.eq(head.action),
            ]
        return m
