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
              ``2**counter_bits``), each counted one cycle after the operation's C3;
              final from the cycle after the last response is valid.
``busy``      ``Out(1)``: the post-reset tag clear is running (``req.ready`` is low).

State
-----
Tags live in one :class:`~amaranth.lib.memory.Memory` of ``S`` rows; a row is the whole set:
``W`` entries ``{valid, pf, tag}`` kept in LRU order -- entry 0 least, entry ``W-1`` most
recently used, invalid entries always at the bottom.  A hit at entry ``j`` rotates entries
``j..W-1`` down by one and puts the line at the top with ``pf`` cleared; a fill shifts the
whole row down (entry 0, the LRU line, is the victim when valid) and puts the new line at
the top with ``pf`` = "brought in by a prefetch".  This is exactly ``LRUCache`` with budget
``W`` and size 1 per line.  The row RAM has one asynchronous read port whose address is
always a register, and one write port; it is therefore built from LUT RAM (``DPR16X4``
on ECP5), not block RAM: yosys maps ECP5 block RAM without its output register, and the
block RAM's clock-to-output alone (5.8 ns in nextpnr's model) leaves no room for the
150 MHz target -- the paper preset with a block-RAM tag store reached 127 MHz on that
path.  A row written in the cycle it is read is forwarded from the write data.

Above ``SPLIT_READ_SETS`` = 16 sets (the paper preset's 256) the read takes two cycles
(``read_stages = 2``): the store is ``S / bank_rows`` LUT RAMs of ``bank_rows`` = 16 rows
(one ``DPR16X4`` deep).  In the first cycle every bank's output row is registered, the
banks not addressed registering zero (a one-hot bank select, registered with the read
address, on the flip-flops' synchronous reset); the second cycle ORs the bank registers
into the row register.  The forwarding decision and the forwarded row are registered in
the first cycle too; its set compare is a register loaded with the read address (whether
the current operation's set equals the pending target's and the queue head's), so the
RAM address register drives only the RAM cells.  The write port is registered as well
(per-bank enables, set, row) and writes a cycle after the completing operation, so a read
issued in that cycle is forwarded from the pending write.  The tag compare is registered in
pieces of ``TAG_CHUNK`` bits per way, and their AND with the W-way reductions gets a
register stage of its own (C1b).  Every cache operation takes two more cycles.

The stream table is ``N`` registers ``{valid, last, stride}`` and an LRU *rank* per entry
(0 = least recently used; after reset entry ``i`` has rank ``i``, the model's initial order),
plus ``pred = last + stride`` modulo ``2**(line_bits + 1)`` (the line that would confirm the
entry; its top bit is set when that is no line).
All four rules of ``StridePrefetcher.observe`` are evaluated in parallel for the accepted
line (repeat / confirm: lowest index; train: smallest ``|line - last| <= window``, ties to
the lowest index; alloc: lowest invalid entry, else rank 0); the highest-priority one is
applied and its entry gets the top rank.  ``stride`` is ``stride_bits`` signed
(``|stride| <= window``).

Reset: the stream table, counters, queue and output buffers reset with the domain; the tag
RAM does not, so after every reset a clear pass writes an empty row to each of the ``S``
sets (``S`` cycles, ``busy`` high, ``req.ready`` low).  A reset in the middle of operation
therefore starts again from the model's empty state.

Pipeline
--------
The block is two decoupled pipelines joined by a ``QUEUE_DEPTH``-entry job queue
(two registers of ``{line, stride, stream, action}``, the head first).  Every stage
ends in registers.

*Prefetcher* (one request at a time; the prefetcher never looks at the cache, so deciding
ahead of the cache operations changes nothing):

====  ==================================================================================
P0    accepting cycle: ``line = addr >> log2(line_bytes)`` is registered.
P1    per entry ``line - last`` and ``last - line`` (both signs in parallel), registered as
      the signed difference, the distance ``|line - last|`` (with a top bit set for an
      invalid entry: farther than any valid one) and its complement; ``line == last``
      and ``line == pred`` in pieces of ``CONF_CHUNK`` bits (half as many with P1b), each
      compare from a copy of the line of its own.
P1b   (two-cycle tag read only: ``prefetch_split``) P1 registered the two differences
      themselves (each with a top bit that is set when it is negative); P1b registers
      the signed difference, the distance and its complement, and ``in window`` (either
      difference ``<= window``, two compares with a constant in parallel, and
      ``valid``), ``confirm`` and ``repeat`` (below) one stage early.
P2    per entry ``in window`` (distance ``<= window``, a compare with a constant) and
      ``confirm`` (the AND of the pieces, and ``valid & stride != 0`` with ``pred`` a
      line: ``line - last == stride``); for every pair ``i < j`` whether entry ``j`` is
      strictly closer than ``i`` (``N (N - 1) / 2`` magnitude comparators, each the carry
      out of one distance plus the other's complement); ``repeat`` (``valid & line ==
      last``: the AND of the pieces; at most one entry repeats, valid entries never share
      ``last``) and whether any does; the entry's next ``pred`` for a train (``line + (line
      - last)``) and otherwise (``line + stride``); all registered.  With P1b, P2
      registers instead of the first three the rule terms that need no distance order:
      the repeat-or-confirm entry and whether there is one, whether an entry is in the
      window, and which of train and alloc applies otherwise.
P3    rule priority: the chosen entry (one-hot) and the action code, registered.  The
      train rule's entry is the in-window one that beats every other by distance (ties
      to the lower index; an entry out of the window is farther than one in it).  The
      alloc entry (lowest invalid, else rank 0), the rank order ``rank[i] > rank[j]``
      and whether an entry can confirm are registers computed from the table alone (it
      only changes at a push; the ranks a cycle after).
P4    the job (line, entry number, action, the chosen entry's stride) is pushed into the
      queue and the table is updated (``last``, ``stride``, ``pred``, ``valid``, ranks) in
      the same cycle; waits here while the queue is full.
====  ==================================================================================

``req.ready`` is high when the prefetcher is empty or in a P4 cycle that pushes (so a new
request's P1 sees the updated table); it never depends on ``resp`` / ``fetch`` /
``prefetch`` ``ready``.  It is a register, and so is the push (P4 with room in the queue):
both are computed a cycle ahead from the next state of the stage bits and of the queue
(which only a push and the head's start change).  Requests are therefore accepted at
most once every ``request_cycles`` = ``REQUEST_CYCLES`` = 4 cycles (5 with P1b).

*Cache operations*: an access is a short sequence of operations: the demand look-up, then
on ``confirm`` the targets ``line + stride*k``, ``k = 1..D`` in order.  Targets below 0 end
the sequence (the model drops them, and all later ones are below 0 too); targets
``>= 2**line_bits`` end it as well -- the model has no upper bound, see the note below.
One operation at a time, each ``op_cycles`` = ``OP_CYCLES`` = 3 cycles (5 with a two-cycle
tag read: C0b and C1b below):

====  ==================================================================================
C0    issue: the read-address register holds the operation's set (it always holds the
      set of whatever would be issued next: the pending target, else the queue head);
      the row is read and registered (forwarded from the write port if the completing
      operation writes that set in this same cycle).
C0b   (two-cycle read only) C0 registered every bank's row (zero but the addressed
      one), whether to forward and the forwarded row; the OR of the banks (or the
      forwarded row) is registered.
C1    tag compare of every way, registered; whether a next target exists (in range and
      ``k <= D``), registered.  The next target's line is precomputed (``line +
      stride`` registered with the operation, and ``+ stride`` again meanwhile).
C1b   (two-cycle read only; C1 registered the tag compare in pieces) the match vector
      and its reductions over groups of ``WAY_GROUP`` ways (hit, prefetched hit, the
      LRU shift of each entry within its group), registered; C2 combines the groups.
C2    hit, prefetched-hit flag, victim (entry 0 on a miss), the rotated / filled row and
      what the operation must push (fetch / prefetch / row write), registered; also
      ``complete`` for the next cycle (the outputs it pushes will have room).
C3    *complete*: write the row back (not for a resident target: ``resident()`` does not
      reorder), push, count (the counters add one cycle later), and issue the next
      operation (this cycle is its C0) -- the next target, else the demand look-up of
      the queue head.  While an output it must push has no room, the operation stays in
      C3 holding all its registers.
====  ==================================================================================

A job can start only if it was already the queue head in the previous cycle (its set is
then in the read-address register), so an idle block starts a job two cycles after its
P4 push.  Operations never overlap, so no hazard exists between them: C0 of an operation
is the write cycle of the previous one, and the write is forwarded.

Throughput and latency (exact, checked by the tests): let ``T`` be the number of prefetch
targets an access examines (0 unless its action is ``confirm``, then at most D: the leading
``k`` with ``0 <= line + stride*k < 2**line_bits``; resident targets count too).  The
cache operations take ``op_cycles * (1 + T)`` = ``3 (1 + T)`` cycles per access, the
prefetcher ``REQUEST_CYCLES`` = 4 per request, and the job queue lets the faster side run
ahead.  With ``req.valid`` and every ``ready`` high the cycle of every acceptance and
every response is given exactly by :func:`full_rate_schedule` (a four-line recurrence).
In particular a request meeting an empty block has its response valid
``response_latency + op_cycles * T`` = ``10 + 3T`` cycles after the accepting cycle (4 to
the push, 2 to the start, 3 per operation, 1 for the response buffer), its demand fetch
(on a miss) after 10 cycles and its ``k``-th prefetch after ``10 + 3k``; a stream of
accesses without targets runs at one per 4 cycles, one of accesses with ``T`` targets
each at one per ``3 (1 + T)`` cycles (when ``3 (1 + T) >= 4``).  With a two-cycle tag
read (C0b and C1b) every 3 above is 5, and P1b adds a cycle to the prefetcher (5 per
request, as many as an operation): the latency is ``13 + 5T`` (fetch after 13, ``k``-th
prefetch after ``13 + 5k``; one access per 5 cycles without targets).  The previous
single-cycle design took ``1 + T`` cycles per access, at 64 MHz (default preset).  A NAND
page read takes microseconds, hundreds of cycles at 150 MHz, so one access per 4-15
cycles is far from limiting.  Every output is a two-entry register buffer (``valid`` and
``payload`` come from registers: a fill flag, and the entry at the read pointer of the
two-entry ring, so they never depend on ``ready``); an output has room while its second
entry is (or, in the cycle before, will be) empty, so no logic but a buffer's own pop
sees a port's ``ready`` combinationally beyond one LUT into the ``complete`` register,
and in the buffer ``ready`` reaches only the read pointer and the fill flags.

Measured on ECP5-85F (``python -m proxima.fpga.resources pagecache --preset P``, yowasp
yosys ``synth_ecp5`` + nextpnr-ecp5 ``--85k --freq 150``, seed 1; LUT4 counts the logic
LUT4s plus two per CCU2C carry cell; the serial-I/O wrapper of the script is included):

=======  =============  =====================  ====  ====  ===  ==========================
preset   S x W, N, D    LUT4 (LUT4 + 2*CCU2C)  FF    BRAM  DSP  Fmax (single-cycle design)
=======  =============  =====================  ====  ====  ===  ==========================
tiny     4 x 2, 4, 2    1915 (1195 + 2*360)    1949  0     0    194.9 MHz (64.7 MHz)
default  16 x 4, 4, 2   2699 (1755 + 2*472)    2582  0     0    179.9 MHz (64.2 MHz)
paper    256 x 8, 8, 4  7611 (4759 + 2*1426)   8840  0     0    166.2 MHz (44.2 MHz)
=======  =============  =====================  ====  ====  ===  ==========================

With a one-cycle tag read the paper preset reached 98.3 MHz: its 256 x 208-bit tag store in
LUT RAM is 832 ``DPR16X4`` cells and a 16:1 read multiplexer per bit, spread over much of the
die, and the read address register, the same-set forwarding compare and the row multiplexer
made one 10.2 ns path (8.5 ns of it routing).  A block-RAM store (6 ``DP16KD``, a synchronous
read) reached 126.8 MHz, limited by the block RAM's 5.8 ns clock-to-output (yosys does not
use the ``OUTREG`` output register).  Hence the two-cycle read above 16 sets (129.0 MHz at
first).  The rest came from keeping every path within three LUT levels, and those that
cross the block within one or two, as each critical path had 4-6 ns of routing: compares
registered in pieces or a cycle early, the handshakes (``req.ready``, the queue push, the
start of a job) as registers computed a cycle ahead, no wide register's enable behind more
than one LUT of registers, copies of the registers with the largest fan-out (the line, the
tag, the forward decision), the job queue in registers, output buffers whose entries never
see ``ready``, and the prefetcher stage P1b.  The paper preset places at 166.2, 165.8 and
153.1 MHz at seeds 1, 2 and 3 (the design before P1b and the registered handshakes: 155.6,
146.8, 136.9).

Note on the spec: ``PageCacheModel`` drops only targets below 0; a target past the end of
the address space would be "fetched" by the model.  The RTL cannot name such a line and
drops it.  Traces whose lines stay below ``2**line_bits - window * D`` never differ.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, exact_log2

from proxima.config import ProximaConfig
from proxima.hdl.lib.vendor import carry_out

__all__ = ["PageCacheError", "PageCache", "ACTION_CODES", "STATS", "STATS_BITS",
           "QUEUE_DEPTH", "REQUEST_CYCLES", "OP_CYCLES", "RESPONSE_LATENCY",
           "SPLIT_READ_SETS", "BANK_ROWS",
           "full_rate_schedule", "nand_addr_bits"]

#: Action codes on ``resp.action`` (those of ``StridePrefetcher.observe_raw``).
ACTION_CODES = {"repeat": 0, "confirm": 1, "train": 2, "alloc": 3}

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
    and the cycle in which each response is valid (and taken).  With ``a``: accept, ``q``: push into the job queue (P4), ``s``: start of
    the demand look-up (C0), ``r``: response::

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


CONF_CHUNK = 8
"""Bits per registered piece of the prefetcher's ``key == last`` and ``key == last +
stride`` compares (P1); half as many with ``prefetch_split``."""
TAG_CHUNK = 8
"""Bits per registered piece of the tag compare (C1) with a two-cycle tag read."""
WAY_GROUP = 4
"""Ways per group of the registered way reductions (C1b) with a two-cycle tag read."""


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
        registered, zero unless addressed, then their OR).  Default: 2 when ``sets > SPLIT_READ_SETS``.
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

    # ---- stride prefetcher ---------------------------------------------------------------
    def _prefetcher(self, m: Module, keys, push):
        """Stream table and its decision pipeline (stages P1..P4, see the module docstring).

        ``key`` is the registered line of the request in flight; the table is updated from
        the P3 registers at the clock edge when ``push``.  Every pipeline register is free
        running: ``key`` and the table are constant from the accepting cycle to the push,
        so each stage holds the right value from its cycle on (also while P4 waits).
        ``keys`` are ``key`` and its copies (see ``elaborate``).  Returns (entry, action
        code, stride for the targets, ``key``) for the P4 push."""
        N, L = self.streams, self.line_bits
        key, nkey, key_p, nkey_p = keys
        # ``key`` registered again: from P2 on it is the same value (``key`` is constant
        # from the acceptance to the push), for the P2 adders, the table and the job
        key1 = Signal(L, name="p_key1")
        m.d.sync += key1.eq(key)
        valid = [Signal(name=f"st_valid{i}") for i in range(N)]
        last = [Signal(L, name=f"st_last{i}") for i in range(N)]
        stride = [Signal(signed(self.stride_bits), name=f"st_stride{i}") for i in range(N)]
        rank_w = bits_for(N - 1)
        rank = [Signal(rank_w, init=i, name=f"st_rank{i}") for i in range(N)]
        # the line that would confirm each entry, ``last + stride``, kept with the table
        # (set at the push; unused after an alloc, where the stride becomes 0) so that
        # confirming is an equality with ``key``.  It is kept modulo ``2**(L + 1)``: as
        # ``|stride| < 2**L``, bit ``L`` is set exactly when ``last + stride`` is below 0
        # or at least ``2**L`` (no line)
        pred = [Signal(L + 1, name=f"st_pred{i}") for i in range(N)]

        # P1: per entry key - last, the distance (``|key - last|``, plus ``2**L`` for an
        # invalid entry: farther than any valid one) and its complement (the other
        # operand of the P2 comparators)
        # (with ``split``, P1 registers the two differences and P1b the rest, and also
        # whether the entry is in the window: the distance against a constant)
        split = self.prefetch_split
        win = min(self.window, (1 << L) - 1)
        dist, ndist, diff = [], [], []
        inwin = [Signal(name=f"p2_win{i}") for i in range(N)]
        dom = m.d.sync if split else m.d.comb
        for i in range(N):
            up = Signal(L + 1, name=f"p1_up{i}")      # key - last (borrow in the top bit)
            # last - key, and in the top bit whether key > last (``2**L`` is added:
            # ``down`` is ``|key - last|`` exactly when it is below ``2**L``)
            down = Signal(L + 1, name=f"p1_down{i}")
            dom += [up.eq(key - last[i]), down.eq(Cat(last[i], 1) + nkey + 1)]
            d = Signal(L + 1, name=f"p1_dist{i}")
            df = Signal(signed(L + 1), name=f"p1_diff{i}")
            nd = Signal(L + 1, name=f"p1_ndist{i}")
            dv = Cat(Mux(up[L], down[:L], up[:L]), ~valid[i])
            m.d.sync += [d.eq(dv), df.eq(up.as_signed())]
            if i:                               # (entry 0 is never the right operand)
                m.d.sync += nd.eq(~dv)
            # in the window: ``valid & |key - last| <= window``: the distance against a
            # constant in P2 (the top bit of an invalid entry's distance puts it out),
            # or with ``split`` in P1b both differences against it, in parallel
            # (``x > window`` as a bare carry chain: the carry out of ``x + ~window``)
            nwin = Const(~win & ((1 << (L + 1)) - 1), L + 1)
            if split:
                m.d.sync += inwin[i].eq(valid[i] & ~(carry_out(up, nwin)
                                                     & carry_out(down, nwin)))
            else:
                m.d.sync += inwin[i].eq(~carry_out(d, nwin))
            dist.append(d), ndist.append(nd), diff.append(df)
        # ... and ``key == last`` (repeat) and ``key == pred`` (confirm) in pieces of
        # CONF_CHUNK bits (two LUT levels each)
        # (with ``split`` in half as many bits: P1b has the time to AND twice as many)
        chunk = CONF_CHUNK // 2 if split else CONF_CHUNK

        def pieces(mine, other, tag):
            e = Signal(-(-L // chunk), name=tag)
            m.d.sync += [e[c].eq(mine[k:k + chunk] == other[k:min(k + chunk, L)])
                         for c, k in enumerate(range(0, L, chunk))]
            return e
        req = [pieces(key_p, last[i], f"p1_req{i}") for i in range(N)]
        peq = [pieces(~nkey_p, pred[i], f"p1_peq{i}") for i in range(N)]

        # table-only terms, free running (the table is constant from one push to the
        # next, at least REQUEST_CYCLES apart): the alloc choice and the rank order
        def first(flags, tag):
            """One-hot of the lowest set flag, and whether any."""
            oh = Signal(N, name=f"p_{tag}_oh")
            for i in range(N):
                m.d.comb += oh[i].eq(flags[i] & ~Cat(*flags[:i]).any() if i else flags[i])
            return oh, Cat(*flags).any()

        # (the alloc choice is a register, read in P3: the lowest invalid entry, else
        # ``rank == 0``; the ranks change a cycle after the push, and P3 comes three
        # cycles after that (four with ``split``))
        inval_oh_c, inval_any_c = first([~v for v in valid], "inval")
        alloc_oh = Signal(N, name="p_alloc_oh")
        m.d.sync += alloc_oh.eq(Mux(inval_any_c, inval_oh_c, Cat(*[r == 0 for r in rank])))
        # an entry can confirm: valid, a stride, ``last + stride`` a line (needed in P2)
        plive = [Signal(name=f"p_plive{i}") for i in range(N)]
        m.d.sync += [plive[i].eq(valid[i] & (stride[i] != 0) & ~pred[i][L])
                     for i in range(N)]
        older = {}                              # older[i, j]: rank[i] > rank[j]
        for i in range(N):
            for j in range(N):
                if i != j:
                    older[i, j] = Signal(name=f"p_older{i}_{j}")
                    m.d.sync += older[i, j].eq(rank[i] > rank[j])

        # P2 (P1b with ``split``: the pieces are registered in P1): in window (above),
        # confirm, repeat (``valid`` is the same as in P1: the table changes only at a
        # push); P2: the pairwise distance order for the train rule
        conf = []
        for i in range(N):
            cf = Signal(name=f"p2_conf{i}")
            m.d.sync += cf.eq(plive[i] & peq[i].all())  # key - last == stride
            conf.append(cf)
        # one magnitude comparator per pair i < j: ``dist[j] < dist[i]`` (j strictly
        # closer; on a tie the lower index wins), a bare carry chain
        closer = {}
        for i in range(N):
            for j in range(i + 1, N):
                closer[i, j] = Signal(name=f"p2_closer{j}_{i}")
                m.d.sync += closer[i, j].eq(carry_out(dist[i], ndist[j]))
        # the entry's next ``pred`` for either outcome of a push that selects it (train:
        # the stride becomes ``key - last``; else it stays), so that P4 only chooses
        pred_train = [Signal(L + 1, name=f"p2_pred_train{i}") for i in range(N)]
        pred_keep = [Signal(L + 1, name=f"p2_pred_keep{i}") for i in range(N)]
        for i in range(N):
            m.d.sync += [pred_train[i].eq(key1 + diff[i][:self.stride_bits].as_signed()),
                         pred_keep[i].eq(key1 + stride[i])]
        # repeat: at most one entry matches, since valid entries hold distinct ``last``
        # (a push gives entry i ``last = line`` only when no valid entry has it, else the
        # rule is repeat on that entry), so the lowest-index priority is the match itself
        rep_c = [valid[i] & req[i].all() for i in range(N)]
        rep_oh = Signal(N, name="p2_rep_oh")
        m.d.sync += rep_oh.eq(Cat(*rep_c))
        if split:                               # (a term of the P2 registers)
            rep_any = rep_oh.any()
        else:
            rep_any = Signal(name="p2_rep_any")
            m.d.sync += rep_any.eq(Cat(*rep_c).any())

        # P3: rule priority -> chosen entry (one-hot) and action code.  Train: entry i
        # wins iff it is in the window and beats every other entry j: j is out of the
        # window, or i is closer (entries below i must be strictly farther, entries
        # above at least as far).  For i in the window, "j is out of it" implies "i is
        # strictly closer" (invalid entries count as farther than any valid one), so
        # beating j is the distance order alone
        def beats(i, j):
            return ~closer[i, j] if i < j else closer[j, i]

        # The terms that do not need the pairwise order: the repeat-or-confirm entry
        # (``rc``), whether any rule of the two applies, whether any entry is in the
        # window, and which of the train and alloc rules applies if neither does
        # (``use_train``, ``use_alloc``).  With ``split`` they are registered in P2 (their
        # inputs are P1b registers), so that P3 is two LUT levels.
        conf_oh, conf_any = first(conf, "p3_conf")
        rc_any_c = rep_any | conf_any
        best_any_c = Cat(*inwin).any()
        terms = {"rc_oh": (N, Mux(rep_any, rep_oh, conf_oh)),
                 "rc_any": (1, rc_any_c),
                 "rc_code": (2, Mux(rep_any, ACTION_CODES["repeat"], ACTION_CODES["confirm"])),
                 "best_any": (1, best_any_c),
                 "use_train": (1, ~rc_any_c & best_any_c),
                 "use_alloc": (1, ~rc_any_c & ~best_any_c)}
        t = {}
        for name, (width, value) in terms.items():
            t[name] = Signal(width, name=f"p2_{name}")
            m.d[("sync" if split else "comb")] += t[name].eq(value)
        best_oh = Signal(N, name="p3_best_oh")
        for i in range(N):
            m.d.comb += best_oh[i].eq(Cat(inwin[i], *[beats(i, j) for j in range(N)
                                                       if j != i]).all())
        sel_oh = Signal(N, name="p3_sel_oh")
        code = Signal(2, name="p3_code")
        # the chosen entry again where its stride is rewritten (train, alloc), else zero
        ts_oh = Signal(N, name="p3_ts_oh")
        ts_c = ((best_oh & t["use_train"].replicate(N))
                | (alloc_oh & t["use_alloc"].replicate(N)))
        m.d.sync += [
            sel_oh.eq((t["rc_oh"] & t["rc_any"].replicate(N)) | ts_c),
            code.eq(Mux(t["rc_any"], t["rc_code"],
                        Mux(t["best_any"], ACTION_CODES["train"], ACTION_CODES["alloc"]))),
            ts_oh.eq(ts_c)]

        # P4: entry number and stride for the job (the stride matters only on confirm,
        # where the chosen entry is the confirming one); table update with the push (each
        # flip-flop's enable is one LUT of registers: ``push`` is ``p4`` and a register)
        sel = Signal(range(max(N, 2)), name="p4_sel")
        m.d.comb += sel.eq(Cat(*[Cat(*[sel_oh[i] for i in range(N) if (i >> b) & 1]).any()
                                 for b in range(len(sel))]))
        # (with ``split`` a P3 register: the repeat-or-confirm entry is a P2 register)
        tgt_stride = Signal(signed(self.stride_bits), name="p4_tgt_stride")
        sacc = Const(0, self.stride_bits)
        for i in range(N):
            sacc = sacc | Mux((t["rc_oh"] if split else sel_oh)[i], stride[i].as_unsigned(), 0)
        m.d[("sync" if split else "comb")] += tgt_stride.eq(sacc)
        is_train = code == ACTION_CODES["train"]
        for i in range(N):
            with m.If(push & sel_oh[i]):
                m.d.sync += [valid[i].eq(1), last[i].eq(key1),
                             pred[i].eq(Mux(is_train, pred_train[i], pred_keep[i]))]
            with m.If(push & ts_oh[i]):
                m.d.sync += stride[i].eq(Mux(is_train, diff[i], 0))
        # the ranks are updated in the cycle after the push: they are read only through
        # the table-only registers (alloc choice, rank order), which the next request
        # reads in its P3, at least three cycles after the push; ``sel_oh`` and the
        # rank order still describe the pushed job then (the pipeline registers see a
        # new key or table two cycles later)
        pushed = Signal(name="p4_pushed")
        m.d.sync += pushed.eq(push)
        with m.If(pushed):
            for i in range(N):
                with m.If(sel_oh[i]):
                    m.d.sync += rank[i].eq(N - 1)
                with m.Elif(Cat(*[sel_oh[j] & older[i, j] for j in range(N) if j != i])
                            .any()):
                    m.d.sync += rank[i].eq(rank[i] - 1)
        self._st = (valid, last, stride, rank)  # for white-box tests
        return sel, code, tgt_stride, key1

    # ---- top -----------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        S, W, D, L = self.sets, self.ways, self.depth, self.line_bits
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
        # the request's line in four registers, each for some of its many loads: the
        # subtractions ``key - last``, ``last - key`` (from the complement), the pieces
        # of ``key == last`` (a copy with another reset value, so yosys keeps it) and
        # those of ``key == pred`` (the complement, with the other reset value); P2 and
        # P4 use a copy registered from ``key`` (``p_key1``)
        key = Signal(L, name="p_key")
        nkey = Signal(L, init=(1 << L) - 1, name="p_nkey")
        key_p = Signal(L, init=(1 << L) - 1, name="p_key_pieces")
        nkey_p = Signal(L, name="p_nkey_pieces")
        keys = (key, nkey, key_p, nkey_p)
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
        with m.If(ready):
            m.d.sync += [key.eq(self.req.payload[self.offset_bits:]),
                         nkey.eq(~self.req.payload[self.offset_bits:]),
                         key_p.eq(self.req.payload[self.offset_bits:]),
                         nkey_p.eq(~self.req.payload[self.offset_bits:])]
        pf_sel, pf_code, pf_stride, key1 = self._prefetcher(m, keys, table_push)
        m.d.comb += [job_in.line.eq(key1), job_in.stream.eq(pf_sel),
                     job_in.action.eq(pf_code), job_in.stride.eq(pf_stride)]
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
        new_row = Signal(self.row_layout, name="c_new_row")
        write_row = Signal(name="c_write_row")  # the row changes (all but resident targets)
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
        # C1: tag compare; is there a next target
        match = Signal(W, name="c_match")
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
        if self.read_stages == 1:
            m.d.sync += match.eq(Cat(*[row[j].valid & (row[j].tag == ~ntag)
                                       for j in range(W)]))
        else:
            # the compare of every way in pieces of TAG_CHUNK bits, registered; ``match``
            # (the valid bit and the AND of the pieces) is the first logic level of C1b
            T = self.tag_bits
            teq_all = []
            for j in range(W):
                teq = Signal(-(-T // TAG_CHUNK), name=f"c_teq{j}")
                m.d.sync += [teq[c].eq(row[j].tag[k:k + TAG_CHUNK]
                                       == ~ntag[k:k + TAG_CHUNK])
                             for c, k in enumerate(range(0, T, TAG_CHUNK))]
                m.d.comb += match[j].eq(row[j].valid & teq.all())
                teq_all.append(teq.all())
            # (and each way's ``valid & pf``, for the prefetched-hit reduction)
            vpf = Signal(W, name="c_vpf")
            m.d.sync += vpf.eq(Cat(*[row[j].valid & row[j].pf for j in range(W)]))
        # C2: hit, LRU rotation / fill, victim
        hit = Signal(name="c_hit")
        pf_flag = Signal(name="c_pf_flag")
        ev_valid = Signal(name="c_ev_valid")
        ev_pf = Signal(name="c_ev_pf")
        ev_line = Signal(L, name="c_ev_line")
        hit_any = match.any()
        pf_any = Cat(*[match[j] & row[j].pf for j in range(W)]).any()
        shift_any = [~match[j + 1:].any() for j in range(W - 1)]
        if self.read_stages == 1:
            hit_c, pf_c, shifts = hit_any, pf_any, shift_any
        else:
            # C1b: the W-way reductions of the match vector are registers of their own,
            # one cycle before C2, reduced over groups of WAY_GROUP ways (two LUT
            # levels: a way's match is one LUT of the C1 registers): per group whether a
            # way hits and whether a prefetched way hits, and per entry whether no way
            # above it in its group matches; C2 ORs the groups and ANDs each entry's
            # shift with "no hit in a later group" (one LUT into its registers)
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
        m.d.sync += [
            hit.eq(hit_c),
            pf_flag.eq(pf_c),
            ev_valid.eq(~hit_c & row[0].valid),
            ev_pf.eq(~hit_c & row[0].valid & row[0].pf),
            # (the victim's line whether or not there is one: the outputs zero it unless
            # ``ev_valid``, so its registers need no reset term)
            ev_line.eq(Cat(set_idx, row[0].tag)),
        ]
        need_fetch = Signal(name="c_need_fetch")   # demand miss: push a fetch
        need_pf = Signal(name="c_need_pf")         # target not resident: push a prefetch
        m.d.sync += [need_fetch.eq(op_demand & ~hit_c), need_pf.eq(~op_demand & ~hit_c),
                     write_row.eq(op_demand | ~hit_c)]
        # entry j takes entry j+1 iff the line sits at or below j (hit) or on a fill; a
        # line is in a row at most once, so that is "no match above j"
        for j in range(W - 1):
            m.d.sync += new_row[j].eq(Mux(shifts[j], row[j + 1], row[j]))
        m.d.sync += [new_row[W - 1].valid.eq(1), new_row[W - 1].pf.eq(~op_demand),
                     new_row[W - 1].tag.eq(tag)]
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
