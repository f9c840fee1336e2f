"""Timing model of the multi-queue search engine: search events -> cycles, QPS, core utilisation.

The engine (``hdl/accel.py``, ``Accelerator``) runs ``Q`` search contexts, each the state
machine of :class:`proxima.hdl.engine.SearchEngine`, whose NAND accesses go through a
round-robin arbiter into the NAND controller (:mod:`proxima.golden.nandctl`) and come back
through a per-context reorder buffer.  This module predicts the cycles of a batch of queries
from their golden :func:`proxima.golden.search.search` events, fast enough for the ``paper``
preset at 256 queues.  It is the engine-level extension of :mod:`proxima.golden.nand` (which
models the NAND alone with coarse per-phase compute costs).  Integer cycles throughout;
``cfg.engine.clock_mhz`` converts to seconds.

A query as a program (:func:`query_program`)
--------------------------------------------
Each query is turned into a sequence of *steps* ``(compute, accesses, wait_until)``
(:class:`Step`): the context computes for ``compute`` cycles (and waits until
``wait_until`` after its start), then issues ``accesses`` (each ``(core, extra)``) back to
back and waits until every one of them has been delivered; then the next step starts.  The costs
(:class:`EngineCosts`, from the configuration and the RTL blocks' latencies) follow the
``SearchEngine`` states ("Cycle behaviour" in its docstring):

* start: ``entry_pre`` (the exact unit's query load, the Bloom clear and the entry's test),
  the entry's code read (none with ``layout.hot_copies > 1``: the engine holds that code);
  the first frame is requested ``entry_post`` after that read but not before ``adt_ready``
  after the start (``pq.build_latency``, the entry's PQ distance, RESET and SELECT);
* each expansion ``('frame', u)``: ``select`` (SELECT to the frame request), the frame read
  (hot: its ``hot_accesses`` chunks on consecutive cores of the query's hot copy; normal:
  ``frame_access_count`` accesses), its last access delivered :func:`frame_extra` cycles
  longer (the gap decoder emits one id per cycle); then the passed neighbours' code reads
  (a neighbour ``< code_copy_count``'s from the query's copy of its normal frame,
  ``golden/layout.py``),
  ``frame_to_code`` after the frame, each code delivered in ``nb`` beats plus ``code_extra``
  (its hand-off to the PQ unit); a batch of more than ``sorter_n`` codes is merged as
  sub-batches of ``sorter_n``: the codes keep flowing (the PQ unit's queue holds a
  sub-batch while the list merges the one before), merge ``b`` ends ``merge_tail`` (the PQ
  latency + ``merge_cycles``) after its last code or ``merge_cycles`` after merge ``b - 1``
  ends, whichever is later, and the next SELECT waits for the last one; a merge the
  candidate list skips (the query's merge plan, ``SearchResult.merge_skips``: the list is
  full and every key of the sub-batch is worse than its last) takes ``skip_cycles`` instead
  of ``merge_cycles``.  A hot frame's codes go to the PQ unit from the frame's buffer
  (``hot_to_code`` + ``hot_code`` per code, then the merges).  No passed neighbour: SELECT
  again after ``empty_frame``;
* each convergence check: ``check_pre`` (a failing SELECT, DUMP ``L + 4``, the bank swap),
  then the first ``min(T, |C|)`` slots, ``slot`` cycles each, an uncached one also its raw
  read and ``exact_post`` (the exact unit's ``ceil(dim / exact_lanes)`` beats and latency),
  then ``check_post``; ``T = T0 + c T_step`` at check ``c``, ``|C| = min(L, 1 + inserted so
  far)``;
* the final rerank: ``final_pre``, ``slot`` cycles per entry of the final list, the uncached
  chosen ones' raw reads and ``exact_post``, then ``final_post`` (the ``k`` result beats).
* every read that starts the reader (the entry's code, a frame, a frame's first code
  sub-batch, a raw vector) is issued ``read_start`` cycles later than the costs above say
  (the reader's request comes from a register: ``block_latencies``' ``read``).

The events do not say where each check happened: a maximal run of ``raw`` events between
two expansions is one check; the remaining checks (``counters['checks']`` minus those) come
just before the final rerank.  The raw events of that last run are split between its checks
and the final rerank by the counters (``final_reranked - final_T`` of them are the final
rerank's).  Without counters every run of raw events is one check.  A frame's degree is
taken as ``graph.R`` (the events name only the neighbours that passed the filter).

Memory path (:func:`simulate_batch`, event-driven)
--------------------------------------------------
* Reorder slots: a context raises an access only while fewer than ``reorder_slots`` of its
  accesses hold a slot (from the raise until ``slot_free`` after its last beat's delivery).
* Arbiter: raised accesses wait in one queue in raise order; the head is accepted by the
  controller at the earliest ``arb_latency`` after its raise (:func:`proxima.golden.arbiter.
  arbiter_model`'s latency; 0 for one context, wired straight to the controller), one per
  cycle, and only while its core's request queue holds fewer than ``ctl_depth`` requests at
  the start of the cycle (else everything behind it waits: the controller's back-pressure).
  A context raises its next access ``issue_gap - arb_latency`` after the previous one's
  accept.
* NAND controller: the rules of :class:`proxima.golden.nandctl.NandControllerModel` at access
  granularity: per-core FIFO order, ``start = max(accept + ACCEPT_TO_START, done of the
  previous)``, ``service`` cycles, a one-entry done slot (a completion waits while it is
  full), one output engine granting full done slots round robin, ``ctl_nb`` beats per
  access (the shared path's width, ``engine.path_bits``), one beat per cycle for all cores
  (the response bus), the first beat ``store_latency`` cycles after the grant (the store's
  read latency, ``engine.store_latency``; the response bus is always ready, so a longer read
  only delays every beat).  Tested cycle for cycle against it.
* Reorder buffer: store and forward (``store_forward``): an access is deliverable
  ``resp_delay`` after its last (path) beat came in, then ``nb`` beats (the context's), one
  per cycle in the context's request order, plus the access' extra cycles.
* Queries: the first ``Q`` go to the contexts in order, each further one to the context that
  finishes first, ``release`` cycles after its last result beat; every query first takes
  ``feed`` cycles of the one query port (its ``dim`` beats).  The batch ends with the last
  query's statistics beat (``done_to_stats`` after its last result beat).

Outputs (:class:`BatchResult`): total cycles, per-query start / finish, per-core busy cycles
(service plus completion stalls, as the RTL's ``core_busy``), QPS, utilisation.
:func:`nand_bound` runs the same batch with every compute cost zero (the contexts only
wait for their reads).  :func:`predict` / :func:`nand_bound` are the benchmark's API.
Cost: ``O(accesses log(accesses))``; the ``paper`` preset, 300 queries at 256 queues
(about 1,400 accesses per query), takes about a minute.

Accuracy against the RTL (single engine and the Accelerator, per preset and queue count):
``docs/RESOURCES.md`` ("Engine timing model").
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right, insort
from collections import deque
from dataclasses import dataclass, fields, replace
from typing import Iterable, Sequence

import numpy as np

from proxima.config import ProximaConfig

from .arbiter import arbiter_model
from .layout import Layout, LayoutError
from .nand import TimingParams
from .nandctl import ACCEPT_TO_START, DONE_TO_BEAT, default_word_bits, path_word_bits

__all__ = ["EngineCosts", "Step", "frame_extra", "BatchResult", "query_program", "simulate_batch",
           "predict", "nand_bound", "EngineTimingError", "block_latencies"]


class EngineTimingError(ValueError):
    """Bad input to the engine timing model."""


def _ceil_log2(n: int) -> int:
    return max(0, (int(n) - 1).bit_length())


def block_latencies(cfg: ProximaConfig) -> dict[str, int]:
    """Latencies of the RTL blocks the engine waits on, as their docstrings state them
    (``tests/golden/test_engine_timing.py`` checks each against the RTL block's attribute):

    * ``pq_build``: ``PQUnit.build_latency`` = ``M * ksub + 4 + 2 + 2 + square_stages(eb) +
      ceil_log2(dsub) + 2``; ``pq``: ``PQUnit.latency`` = ``1 + 2 + 2 + ceil_log2(M) + 2``;
    * ``exact``: ``ExactDistanceUnit.latency`` = ``2 + square_stages(eb) + ceil_log2(lanes)
      + 1 + 2``; ``exact_beats`` = ``ceil(dim / exact_lanes)``;
    * ``bloom``: ``BloomFilter.latency`` = ``1 + hash_stages + 5 + 2``;
    * ``select``: the candidate list's ``select_latency`` (6); ``merge``:
      ``cfg.insert_cycles`` (the list's ``merge_cycles``);
    * ``read``: ``MemReader.request_latency`` = 2 (a read's start -> its first request: the
      location is computed from registers into the request register).

    ``square_stages(eb)`` = ``1 + max(0, ceil_log2(eb - eb // 2) - 1) + 1`` (the LUT-square
    pipeline of an ``eb``-bit difference); RAM reads take 2 cycles, FIFOs 2."""
    eb = cfg.vec.elem_bits
    sq = 1 if eb < 2 else 1 + max(0, _ceil_log2(eb - eb // 2) - 1) + 1
    M, ksub = cfg.pq.M, cfg.pq.ksub
    bank_bits = cfg.bloom.bits // cfg.bloom.hashes
    hash_stages = 1 if bank_bits & (bank_bits - 1) == 0 else 2
    return {
        "pq_build": M * ksub + 4 + 2 + 2 + sq + _ceil_log2(cfg.dsub) + 2,
        "pq": 1 + 2 + 2 + _ceil_log2(M) + 2,
        "exact": 2 + sq + _ceil_log2(cfg.engine.exact_lanes) + 1 + 2,
        "exact_beats": -(-cfg.vec.dim // cfg.engine.exact_lanes),
        "bloom": 1 + hash_stages + 5 + 2,
        "select": 6,
        "merge": cfg.insert_cycles,
        "read": 2,
    }


@dataclass(frozen=True)
class EngineCosts:
    """Cycle costs of one search context (module doc) and of the memory path."""
    nb: int  # beats per access (8 * access_bytes / beat_bits)
    service: int  # NAND core cycles per access (tR + transfer)
    entry_pre: int  # query start -> the entry's code request
    entry_post: int  # the entry's code delivered -> the first frame request (ADT ready)
    adt_ready: int  # query start -> the first frame request at the earliest (ADT build)
    select: int  # SELECT that finds a vertex -> its frame request
    frame_extra: int  # added to :func:`frame_extra` of a normal frame
    hot_frame_extra: int  # added to :func:`frame_extra` of a hot frame
    frame_to_code: int  # frame delivered -> the first code request
    code_extra: int  # extra delivery cycles per code (hand-off to the PQ unit)
    hot_to_code: int  # hot frame delivered -> its first code to the PQ unit
    hot_code: int  # cycles per code of a hot frame (from its buffer to the PQ unit)
    merge_tail: int  # last code in -> the list ready for the next command (PQ + merge)
    merge_gap: int  # a sub-batch's last code -> the next sub-batch's code requests
    merge_cycles: int  # one candidate-list merge (``cfg.insert_cycles``)
    #: a merge the candidate list skips (``cfg.insert_skip_cycles``; the merge plan)
    skip_cycles: int
    sorter_n: int
    empty_frame: int  # frame delivered without passed neighbours -> ready for SELECT
    check_pre: int  # SELECT failing + DUMP + swap (-> the first slot)
    slot: int  # cycles per slot visited in a check or the final loop
    exact_post: int  # raw vector delivered -> the slot done (exact unit)
    check_post: int  # after the last slot of a check -> ready for SELECT
    final_pre: int  # after the last check -> the final loop's first slot
    final_post: int  # after the final loop -> the query's last cycle (result beats)
    count_offset: int  # the RTL ``cycles`` counter minus the model's query time
    #: beats per access on the shared path (controller -> reorder buffers); 0: ``nb``
    ctl_nb: int = 0
    arb_latency: int = 2  # a raised request -> accepted by the controller
    issue_gap: int = 2  # a context's consecutive accepts are at least this far apart
    #: the reorder buffer: store and forward (1: an access is delivered only after its last
    #: beat came in) and the delay from that beat (or, 0, from each beat) to its delivery
    store_forward: int = 1
    resp_delay: int = 2
    slot_free: int = 0  # an access' last beat delivered -> its reorder slot free again
    reorder_slots: int = 4  # accesses a context may have outstanding
    ctl_depth: int = 0  # requests each core's controller queue holds (0: unlimited)
    feed: int = 0  # cycles of the shared query port per query (dim beats + the pick)
    release: int = 0  # a query's last result beat -> its context takes the next query
    done_to_stats: int = 1  # the last result beat -> its statistics beat
    #: a grant -> its first beat on the response bus (the controller's store read latency,
    #: ``CtlParams.done_to_beat``)
    store_latency: int = 1
    #: a read's start -> its first request beyond one cycle (``block_latencies``' ``read`` -
    #: 1): added before every read that starts the reader (entry code, frame, the first code
    #: sub-batch of a frame, raw vectors)
    read_start: int = 0

    @classmethod
    def from_cfg(cls, cfg: ProximaConfig, *, queues: int | None = None,
                 beat_bits: int | None = None, reorder_slots: int = 4,
                 ctl_depth: int | None = None, shared_sorter: bool | None = None,
                 latencies: dict | None = None, path_bits: int | None = None
                 ) -> "EngineCosts":
        """The Accelerator's costs with ``queues`` contexts (default ``engine.queues``): one
        context is wired straight to the controller, more go through the round-robin
        arbiter (:func:`proxima.golden.arbiter.arbiter_model`'s latency).  ``ctl_depth``:
        the controller's per-core queue depth (default ``queues * reorder_slots``, the
        Accelerator's: never full); ``shared_sorter`` (default: more than one context): the
        contexts' lists share one sorter behind a round-robin arbiter, whose two cycles add
        to each of a merge's ``list_chunks + 1`` dependent sorter passes (its throughput,
        one vector per cycle, is not modelled as a shared resource); ``path_bits``: the
        shared path's width (default :func:`proxima.golden.nandctl.path_word_bits`, never
        narrower than the context's beat)."""
        lat = block_latencies(cfg) if latencies is None else dict(latencies)
        Q = cfg.engine.queues if queues is None else int(queues)
        if Q < 1:
            raise EngineTimingError(f"queues must be >= 1, got {Q}")
        arb = getattr(arbiter_model(Q), "latency", 2) if Q > 1 else 0
        bb = default_word_bits(cfg) if beat_bits is None else int(beat_bits)
        nb = 8 * cfg.nand.access_bytes // bb
        pb = max(bb, path_word_bits(cfg) if path_bits is None else int(path_bits))
        tp = TimingParams.from_cfg(cfg)
        s = cfg.search
        sel = lat["select"] + 2  # accept, latency, response taken
        if shared_sorter if shared_sorter is not None else Q > 1:
            lat["merge"] += 2 * (cfg.list_chunks + 1)
        merge_tail = lat["pq"] + lat["merge"] - 1
        return cls(
            nb=nb, ctl_nb=8 * cfg.nand.access_bytes // pb, service=tp.service_cycles,
            entry_pre=lat["exact_beats"] + lat["bloom"] + 2,
            entry_post=1 + lat["pq"] + 2 + sel,
            adt_ready=lat["pq_build"] + lat["pq"] + 1 + sel,
            select=sel + 1,
            frame_extra=0, hot_frame_extra=0, frame_to_code=5, code_extra=1, hot_to_code=0,
            hot_code=1,
            merge_tail=merge_tail, merge_gap=0, merge_cycles=lat["merge"],
            skip_cycles=cfg.insert_skip_cycles,
            sorter_n=cfg.engine.sorter_n,
            empty_frame=0,
            check_pre=sel + s.L + 4 + 1,
            slot=1, exact_post=lat["exact_beats"] + lat["exact"] + 1,
            check_post=1, final_pre=2, final_post=s.k + 4, count_offset=cfg.vec.dim - 1,
            arb_latency=arb, issue_gap=2 if Q > 1 else 1,
            reorder_slots=int(reorder_slots),
            ctl_depth=Q * int(reorder_slots) if ctl_depth is None else int(ctl_depth),
            feed=cfg.vec.dim + 1, release=2,
            store_latency=DONE_TO_BEAT + cfg.engine.store_latency - 1,
            read_start=lat["read"] - 1,
        )

    @classmethod
    def single_engine(cls, cfg: ProximaConfig, **options) -> "EngineCosts":
        """The single-query engine's cycle bench (``run_engine`` in
        ``tests/hdl/engine_timing_rtl.py``): its own sorter, no arbiter, the golden
        controller with queues of ``engine.queues``, a beat deliverable the cycle after it
        is emitted, a slot free the cycle after its last beat, queries fed apart."""
        options.setdefault("ctl_depth", cfg.engine.queues)
        options.setdefault("path_bits", 0)  # its controller moves the engine's beats
        c = cls.from_cfg(cfg, queues=1, shared_sorter=False, **options)
        return replace(c, arb_latency=0, issue_gap=1, store_forward=0, resp_delay=1,
                       slot_free=1, feed=0, release=0)

    def zero_compute(self) -> "EngineCosts":
        """The same memory path with every engine compute cost zero (the NAND bound)."""
        keep = {"nb", "ctl_nb", "service", "sorter_n", "arb_latency", "issue_gap", "store_forward",
                "resp_delay", "slot_free", "reorder_slots", "ctl_depth", "feed", "release",
                "done_to_stats", "store_latency"}
        return replace(self, **{f.name: 0 for f in fields(self) if f.name not in keep})


class Step(tuple):
    """``(compute, accesses, wait_until, holds)``: compute cycles, then the accesses
    ``((core, extra), ...)`` back to back, waited for; ``wait_until``: the step's accesses
    are not issued before this cycle after the query's start (0: no such wait); ``holds``:
    ``((back, delay), ...)``: nor before ``delay`` after the end of the step ``back`` steps
    before this one (the candidate list's merges run one after the other)."""
    __slots__ = ()

    def __new__(cls, compute: int, accesses=(), wait_until: int = 0, holds=()):
        return tuple.__new__(cls, (int(compute), tuple(tuple(a) for a in accesses),
                                   int(wait_until), tuple(tuple(h) for h in holds)))

    compute = property(lambda self: self[0])
    accesses = property(lambda self: self[1])
    wait_until = property(lambda self: self[2])
    holds = property(lambda self: self[3])


def _runs(events):
    """Split events into ('entry', v), ('hop', u, [codes]), ('raws', [v, ...]) items."""
    items = []
    for k, v in events:
        v = int(v)
        if k == "frame":
            items.append(["hop", v, []])
        elif k == "code":
            if not items:
                items.append(["entry", v])
            elif items[-1][0] == "hop":
                items[-1][2].append(v)
            else:
                raise EngineTimingError("a code event outside an expansion")
        elif k == "raw":
            if items and items[-1][0] == "raws":
                items[-1][1].append(v)
            else:
                items.append(["raws", [v]])
        else:
            raise LayoutError(f"unknown event kind {k!r}")
    if not items or items[0][0] != "entry":
        raise EngineTimingError("a query's events start with the entry's code")
    return items


def frame_extra(layout: Layout, nb: int, hot: bool, degree: int | None = None) -> int:
    """Cycles a frame's delivery takes beyond its ``nb`` beats per access: the gap decoder
    emits one neighbour id per cycle (a hot frame: an id and its code chunks), so a frame
    whose ``degree`` (default ``graph.R``) exceeds the words holding its ids (its records)
    holds the memory stream that much longer, plus ``3`` cycles (the decoder's start) for a
    hot frame (``hdl/gapdec.py``, "Latency and throughput")."""
    cfg = layout.cfg
    wb = 8 * cfg.nand.access_bytes // max(1, nb)
    d = cfg.graph.R if degree is None else int(degree)
    if hot:
        chunks = -(-8 * cfg.pq_code_bytes // wb)
        words = -(-layout.hot_frame_bits // wb)
        return max(0, 3 + d * (1 + chunks) - words)
    bits = layout.header_bits + cfg.id_bits + (cfg.graph.R - 1) * layout.gap_width
    return max(0, d - -(-bits // wb))


def query_program(events: Iterable[tuple[str, int]], counters: dict, layout: Layout,
                  costs: EngineCosts, copy: int = 0,
                  merge_skips: Sequence[bool] | None = None) -> list[Step]:
    """One query's steps (module doc) from its golden events and counters (``None``: one
    check per run of raw events, every raw event of the last run in its check) and its
    candidate list's merge plan (``SearchResult.merge_skips``; ``None``: no merge is
    skipped)."""
    cfg = layout.cfg
    s = cfg.search
    L, idb = s.L, cfg.id_bits
    del idb
    c = costs
    Ci, Cr = cfg.nand.cores, cfg.nand.raw_vector_cores
    nf, ncode, nr = layout.frame_access_count, layout.code_access_count, layout.raw_access_count
    K, H = layout.hot_accesses, layout.hot
    rot = layout._check_copy(copy) * layout.copy_shift
    items = _runs(events)
    norm_x = frame_extra(layout, c.nb, hot=False) + c.frame_extra
    hot_x = frame_extra(layout, c.nb, hot=True) + c.hot_frame_extra
    steps: list[Step] = []
    pending = 0  # compute carried into the next step

    def code_acc(v, extra=c.code_extra):  # a copied vertex's code: the query's copy
        return [(layout.code_core(v, copy), extra)] * ncode

    def raw_acc(v):
        return [(Ci + v % Cr, 0)] * nr

    # entry
    # with hot copies the engine holds the entry's code (golden/layout.reads_for_events)
    rs = c.read_start
    steps.append(Step(c.entry_pre + rs, code_acc(items[0][1], 0)) if layout.hot_copies == 1
                 else Step(c.entry_pre))
    pending = c.entry_post
    first_wait = c.adt_ready + rs
    inserted = 0
    plan = None if merge_skips is None else [bool(f) for f in merge_skips]
    used = 0  # flags of the plan taken so far
    tail0 = c.merge_tail - c.merge_cycles  # the last code in -> its merge starts

    def merge_costs(n_codes):  # cycles of each merge of an expansion's codes
        nonlocal used
        B = -(-n_codes // c.sorter_n)
        if plan is None:
            return [c.merge_cycles] * B
        if used + B > len(plan):
            raise EngineTimingError(f"the merge plan has {len(plan)} flags, the events need "
                                    f"more (sorter_n = {c.sorter_n})")
        used += B
        return [c.skip_cycles if f else c.merge_cycles for f in plan[used - B:used]]
    counters = counters or {}
    n_runs = sum(1 for it in items if it[0] == "raws")
    checks_total = int(counters.get("checks", max(1, n_runs)))
    # checks: one per raw run between expansions; the rest before the final rerank
    body = items[1:]
    last_hop = max((i for i, it in enumerate(body) if it[0] == "hop"), default=-1)
    mid_runs = sum(1 for i, it in enumerate(body) if it[0] == "raws" and i < last_hop)
    tail_checks = max(0, checks_total - mid_runs)
    tail = body[last_hop + 1:]
    tail_raws = tail[0][1] if tail else []
    check_no = 0

    def do_check(raws, n_checks):
        nonlocal pending, check_no
        length = min(L, 1 + inserted)
        for j in range(n_checks):
            T = s.T0 + check_no * s.T_step
            ntop = min(T, length)
            check_no += 1
            mine = raws if j == n_checks - 1 else []
            if j == 0 and n_checks > 1:
                mine = raws  # all uncached slots in the first of consecutive checks
                raws = []
            comp = pending + c.check_pre
            cached = max(0, ntop - len(mine))
            comp += cached * c.slot
            for v in mine:
                steps.append(Step(comp + c.slot + rs, raw_acc(v)))
                comp = c.exact_post
            pending = comp + c.check_post

    for i, it in enumerate(body):
        if i > last_hop:
            break
        if it[0] == "hop":
            u, codes = it[1], it[2]
            comp = pending + c.select + rs
            if u < H:
                acc = [((u * K + a + rot) % Ci, 0) for a in range(K)]
                acc[-1] = (acc[-1][0], hot_x)
            else:
                acc = [(u % Ci, 0)] * nf
                acc[-1] = (acc[-1][0], norm_x)
            steps.append(Step(comp, acc, first_wait))
            first_wait = 0
            n = len(codes)
            inserted += n
            if n == 0:
                pending = c.empty_frame
            elif u < H:
                pending = c.hot_to_code + n * c.hot_code + sum(tail0 + mc
                                                               for mc in merge_costs(n))
            else:
                mcs = merge_costs(n)
                comp = c.frame_to_code + rs
                subs = range(0, n, c.sorter_n)
                for b in subs:
                    sub = codes[b:b + c.sorter_n]
                    acc = [a for v in sub for a in code_acc(v)]
                    steps.append(Step(comp, acc))
                    comp = c.merge_gap
                # merge b starts tail0 after its last code, and not before merge b - 1
                # ends; it takes mcs[b] (a skipped merge skip_cycles): the list is ready
                # when the last merge ends
                B = len(subs)
                if B > 1:
                    steps.append(Step(tail0 + mcs[-1], (), 0, tuple(
                        (B - b, tail0 + sum(mcs[b:])) for b in range(B - 1))))
                    pending = 0
                else:
                    pending = tail0 + mcs[0]
        else:
            do_check(it[1], 1)
    # tail: the remaining checks, then the final rerank
    final_T = int(counters.get("final_T", 0))
    reranked = int(counters.get("final_reranked", final_T))
    # raws of the final rerank: the chosen slots beyond the last check's cached top
    n_final_raw = min(len(tail_raws), max(0, reranked - final_T)) if tail_checks else \
        len(tail_raws)
    check_raws = tail_raws[:len(tail_raws) - n_final_raw]
    final_raws = tail_raws[len(tail_raws) - n_final_raw:]
    if plan is not None and used != len(plan):
        raise EngineTimingError(f"the merge plan has {len(plan)} flags, the events need {used} "
                                f"(sorter_n = {c.sorter_n})")
    if tail_checks:
        do_check(check_raws, tail_checks)
    length = min(L, 1 + inserted)
    comp = pending + c.final_pre + max(0, length - len(final_raws)) * c.slot
    for v in final_raws:
        steps.append(Step(comp + c.slot + rs, raw_acc(v)))
        comp = c.exact_post
    steps.append(Step(comp + c.final_post))
    return steps


@dataclass
class BatchResult:
    start: np.ndarray  # (Q,) cycle each query started
    finish: np.ndarray  # (Q,) its last cycle
    total_cycles: int
    busy: np.ndarray  # (cores,) busy cycles: service plus completion stalls (RTL core_busy)
    cycle_ns: float
    queues: int
    accesses: int
    index_cores: int
    #: per access, in accept order: (query, accept cycle, last delivery cycle, core)
    trace: list | None = None
    stalls: np.ndarray | None = None  # (cores,) of ``busy``: cycles a done access waited

    @property
    def service_utilisation(self) -> np.ndarray:
        """Cycles spent sensing and transferring (``busy`` without the stalls) / total."""
        st = self.stalls if self.stalls is not None else 0
        return (self.busy - st) / max(1, self.total_cycles)

    @property
    def latency(self) -> np.ndarray:
        return self.finish - self.start

    @property
    def utilisation(self) -> np.ndarray:
        return self.busy / max(1, self.total_cycles)

    @property
    def seconds(self) -> float:
        return self.total_cycles * self.cycle_ns * 1e-9

    @property
    def qps(self) -> float:
        return len(self.start) / self.seconds if self.total_cycles else float("inf")

    @property
    def cycles_per_query(self) -> float:
        return self.total_cycles / max(1, len(self.start))

    def summary(self) -> dict:
        u = self.utilisation
        return {"queries": len(self.start), "queues": self.queues,
                "total_cycles": self.total_cycles, "qps": self.qps,
                "mean_latency_cycles": float(self.latency.mean()) if len(self.start) else 0.0,
                "util_index": float(u[:self.index_cores].mean()),
                "util_raw": float(u[self.index_cores:].mean()) if len(u) > self.index_cores
                else 0.0,
                "service_util_index": float(self.service_utilisation[:self.index_cores].mean()),
                "accesses": self.accesses}


def simulate_batch(programs: Sequence[Sequence[Step]], costs: EngineCosts, queues: int,
                   cores: int, cycle_ns: float = 10.0, index_cores: int | None = None,
                   trace: bool = False) -> BatchResult:
    """Run the query programs on ``queues`` contexts sharing the memory path (module doc)."""
    if queues < 1:
        raise EngineTimingError(f"queues must be >= 1, got {queues}")
    c = costs
    nb, svc, slots = max(1, c.nb), c.service, max(1, c.reorder_slots)
    cnb = c.ctl_nb or nb  # beats per access on the shared path
    fwd = (cnb - 1) if c.store_forward else 0
    port_free = 0  # the query port
    Qn = len(programs)
    start = np.zeros(Qn, dtype=np.int64)
    finish = np.zeros(Qn, dtype=np.int64)
    busy = [0] * cores
    stall = [0] * cores
    heap: list = []
    seq = 0

    # event priorities at equal cycles: completions (x0) before grants, arrivals last
    X0, GRANT, RAISE, RESUME, ARB = 0, 1, 2, 3, 4

    def push(t, kind, arg):
        nonlocal seq
        seq += 1
        heapq.heappush(heap, (t, kind, seq, arg))

    # the grant and arbiter events are kept to one pending each (the earliest one)
    pending_at = [None, None]

    def wake(t, which):
        p = pending_at[which]
        if p is None or t < p:
            pending_at[which] = t
            push(t, GRANT if which == 0 else ARB, None)

    # NAND state
    fifo = [[] for _ in range(cores)]  # (accept, access id) per core, FIFO
    fhead = [0] * cores
    cur = [None] * cores  # access in service
    cur_x0 = [0] * cores
    free = [0] * cores  # done cycle of the core's previous access
    slot = [None] * cores  # (access id, done cycle)
    stalled = [False] * cores
    eng_free = 0
    last_g = cores - 1
    arb_next = 0
    arbq: deque = deque()  # raised accesses waiting at the arbiter: (ready cycle, access)
    depth = max(0, c.ctl_depth)
    acc_times = [[] for _ in range(cores)]  # accept cycles per core
    pop_times = [[] for _ in range(cores)]  # cycles each core popped its queue head
    blocked = [False] * cores
    full_cores: list = []  # cores with a full done slot, sorted

    # accesses: owner context, its index in the context's request order, extra
    acc_ctx: list[int] = []
    qacc: list[int] = []  # the query of each access
    acc_extra: list[int] = []
    acc_core: list[int] = []
    acc_emit: list[int] = []
    acc_dend: list[int] = []  # its last beat's delivery cycle (-1: not known yet)
    acc_acc: list[int] = []  # accept cycle

    # context state
    prog: list = [None] * queues
    qid = [-1] * queues
    pc = [0] * queues
    t0 = [0] * queues
    ends: list = [[] for _ in range(queues)]  # end cycle of each step of the query
    pend: list = [[] for _ in range(queues)]  # accesses of the step not yet raised
    outstanding: list = [[] for _ in range(queues)]  # raised, not delivered (in order)
    ohead = [0] * queues  # first access whose delivery is not scheduled yet
    ofree = [0] * queues  # first access still holding a reorder slot
    deliv_end = [0] * queues  # last delivery cycle of the context
    left = [0] * queues  # accesses of the step not yet delivered
    raising = [False] * queues
    next_query = 0
    n_acc = 0

    def begin(q, t):
        nonlocal next_query, port_free
        if next_query >= Qn:
            prog[q] = None
            return
        qid[q] = next_query
        prog[q] = programs[next_query]
        # the query's beats through the shared port, then its program
        f = max(t, port_free)
        port_free = f + c.feed
        t = f + c.feed
        start[next_query] = t
        next_query += 1
        pc[q], t0[q] = 0, t
        ends[q] = []
        run_step(q, t)

    def run_step(q, t):
        p = prog[q]
        if pc[q] == len(p):
            finish[qid[q]] = t
            begin(q, t + c.release)
            return
        comp, accs, wait, holds = p[pc[q]]
        e = ends[q]
        e.append(t)  # the end of the previous step
        pc[q] += 1
        go = max(t + comp, t0[q] + wait)
        for back, delay in holds:
            go = max(go, e[len(e) - back] + delay)
        if not accs:
            push(go, RESUME, q)
            return
        pend[q] = list(accs)
        pend[q].reverse()
        left[q] = len(accs)
        raising[q] = True
        push(go, RAISE, q)

    def core_start(k, t_pop_min):
        """Start the core's next queued access if any (first service cycle >= t_pop_min)."""
        f = fifo[k]
        if fhead[k] < len(f):
            a_t, aid = f[fhead[k]]
            fhead[k] += 1
            s = max(a_t + ACCEPT_TO_START, t_pop_min)
            pop_times[k].append(s - 1)
            if blocked[k]:
                blocked[k] = False
                wake(s, 1)
            cur[k] = aid
            cur_x0[k] = s + svc - 1
            busy[k] += svc
            push(cur_x0[k], X0, k)
        else:
            cur[k] = None

    def deliver(q):
        """Advance the context's in-order delivery over accesses already granted."""
        out = outstanding[q]
        while ohead[q] < len(out):
            aid = out[ohead[q]]
            e = acc_emit[aid]
            if e < 0:
                break
            ohead[q] += 1
            st = max(e + fwd + c.resp_delay, deliv_end[q] + 1)
            deliv_end[q] = st + nb - 1 + acc_extra[aid]
            acc_dend[aid] = deliv_end[q]
            left[q] -= 1
            # its reorder slot frees after its last beat: a waiting raise may go on
            if pend[q] and not raising[q]:
                raising[q] = True
                push(deliv_end[q] + c.slot_free, RAISE, q)
            if left[q] == 0:
                push(deliv_end[q] + 1, RESUME, q)

    for q in range(min(queues, Qn)):
        begin(q, 0)

    while heap:
        t, kind, _, arg = heapq.heappop(heap)
        if kind == X0:
            k = arg
            if slot[k] is not None:
                stalled[k] = True
                continue
            aid = cur[k]
            slot[k] = (aid, t + 1)
            insort(full_cores, k)
            free[k] = t + 1
            wake(max(t + 1, eng_free), 0)
            core_start(k, t + 1)
        elif kind == GRANT:
            if pending_at[0] != t:
                continue  # superseded by an earlier one
            pending_at[0] = None
            if t < eng_free or not full_cores:
                continue
            # round robin: the first full slot (done by now) after the last granted core
            n_full = len(full_cores)
            i0 = bisect_right(full_cores, last_g)
            g = -1
            for j in range(n_full):
                k = full_cores[(i0 + j) % n_full]
                if slot[k][1] <= t:
                    g = k
                    break
            if g < 0:  # the full slots are done later
                wake(min(slot[k][1] for k in full_cores), 0)
                continue
            aid = slot[g][0]
            slot[g] = None
            del full_cores[bisect_left(full_cores, g)]
            last_g = g
            eng_free = t + cnb
            acc_emit[aid] = t + c.store_latency
            if stalled[g]:
                stalled[g] = False
                busy[g] += t + 1 - cur_x0[g]
                stall[g] += t + 1 - cur_x0[g]
                cur_x0[g] = t + 1
                push(t + 1, X0, g)
            if full_cores:
                wake(eng_free, 0)
            deliver(acc_ctx[aid])
        elif kind == RAISE:
            q = arg
            if not pend[q]:
                raising[q] = False
                continue
            out = outstanding[q]
            while ofree[q] < len(out) and 0 <= acc_dend[out[ofree[q]]] <= t - c.slot_free:
                ofree[q] += 1
            if len(out) - ofree[q] >= slots:
                d = acc_dend[out[ofree[q]]]
                if d >= 0:  # its slot frees after its last beat
                    push(d + c.slot_free, RAISE, q)
                else:  # deliver() raises again once its delivery is known
                    raising[q] = False
                continue
            # raising[q] stays set until the arbiter passes this access on
            core, extra = pend[q].pop()
            if not 0 <= core < cores:
                raise EngineTimingError(f"access on core {core}, the model has {cores}")
            aid = n_acc
            n_acc += 1
            acc_ctx.append(q)
            qacc.append(qid[q])
            acc_extra.append(extra)
            acc_core.append(core)
            acc_emit.append(-1)
            acc_dend.append(-1)
            acc_acc.append(-1)
            outstanding[q].append(aid)
            arbq.append((t + c.arb_latency, aid))
            wake(max(t + c.arb_latency, arb_next), 1)
        elif kind == ARB:
            if pending_at[1] != t:
                continue  # superseded by an earlier one
            pending_at[1] = None
            if not arbq:
                continue
            if t < arb_next:
                wake(arb_next, 1)
                continue
            ready_t, aid = arbq[0]
            if ready_t > t:
                wake(ready_t, 1)
                continue
            core = acc_core[aid]
            popped = bisect_left(pop_times[core], t)
            if depth and len(acc_times[core]) - popped >= depth:
                # the core's queue is full: the arbiter waits for its next pop
                if popped < len(pop_times[core]):
                    wake(pop_times[core][popped] + 1, 1)
                else:
                    blocked[core] = True
                continue
            arbq.popleft()
            acc_acc[aid] = t
            arb_next = t + 1
            acc_times[core].append(t)
            fifo[core].append((t, aid))
            if cur[core] is None and not stalled[core]:
                core_start(core, free[core])
            q = acc_ctx[aid]
            if pend[q]:
                push(max(t + 1 - c.arb_latency, t + c.issue_gap - c.arb_latency), RAISE, q)
            else:
                raising[q] = False
            if arbq:
                wake(t + 1, 1)
        else:  # RESUME
            q = arg
            run_step(q, t)
    # the batch ends with the last statistics beat (cycles counted from the first query beat)
    total = int(finish.max()) + 1 + c.done_to_stats if Qn else 0
    tr = None
    if trace:
        tr = [(qacc[i], acc_acc[i], acc_dend[i], acc_core[i]) for i in range(n_acc)]
    return BatchResult(start, finish, total, np.asarray(busy, dtype=np.int64), cycle_ns,
                       queues, n_acc, cores if index_cores is None else index_cores, tr,
                       np.asarray(stall, dtype=np.int64))


def _programs(cfg, layout, events_per_query, counters_per_query, costs, skips_per_query):
    X = layout.hot_copies
    return [query_program(ev, cn, layout, costs, q % X, sk)
            for q, (ev, cn, sk) in enumerate(zip(events_per_query, counters_per_query,
                                                 skips_per_query))]


def predict(cfg: ProximaConfig, layout: Layout, events_per_query, queues: int | None = None,
            counters_per_query=None, costs: EngineCosts | None = None) -> BatchResult:
    """Cycles of a batch on the multi-queue engine (module doc).  ``events_per_query``: each
    query's golden search events, or its :class:`~proxima.golden.search.SearchResult`
    (events and counters); with bare event lists give ``counters_per_query`` (without
    them the checks are guessed from the events, see :func:`query_program`).
    ``queues`` defaults to ``cfg.engine.queues``; ``costs`` to
    :meth:`EngineCosts.from_cfg`."""
    evs, cnts, sks = _split(events_per_query, counters_per_query)
    queues = cfg.engine.queues if queues is None else int(queues)
    if queues < 1:
        raise EngineTimingError(f"queues must be >= 1, got {queues}")
    costs = costs or EngineCosts.from_cfg(cfg, queues=queues)
    progs = _programs(cfg, layout, evs, cnts, costs, sks)
    return simulate_batch(progs, costs, queues, layout.total_cores, cfg.cycle_ns,
                          cfg.nand.cores)


def nand_bound(cfg: ProximaConfig, layout: Layout, events_per_query,
               queues: int | None = None, counters_per_query=None,
               costs: EngineCosts | None = None) -> BatchResult:
    """:func:`predict` with the engine's compute taking no time (module doc)."""
    q = cfg.engine.queues if queues is None else int(queues)
    if q < 1:
        raise EngineTimingError(f"queues must be >= 1, got {q}")
    costs = (costs or EngineCosts.from_cfg(cfg, queues=q)).zero_compute()
    return predict(cfg, layout, events_per_query, queues, counters_per_query, costs)


def _split(events_per_query, counters_per_query):
    evs, cnts, sks = [], [], []
    for i, e in enumerate(events_per_query):
        if hasattr(e, "events") and hasattr(e, "counters"):
            evs.append(e.events)
            cnts.append(e.counters)
            sks.append(getattr(e, "merge_skips", None))
        else:
            evs.append(e)
            cnts.append(None if counters_per_query is None else counters_per_query[i])
            sks.append(None)
    if not all(evs):
        raise EngineTimingError("a query without events (search with trace=True)")
    return evs, cnts, sks
