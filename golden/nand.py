"""Cycle-level timing model of the NAND side: per-query read traces -> latency, QPS, utilisation.

Everything is in integer engine cycles (``cfg.engine.clock_mhz``).  The RTL's cycle counts are
checked against this model, so its rules are stated exactly.

This is the NAND-side model with coarse per-phase compute costs.  The model of the RTL
engine itself -- the ``SearchEngine`` state machine's costs between its reads, ``Q`` contexts
sharing the arbiter, the NAND controller's done slots and single response bus, the reorder
buffers -- is :mod:`proxima.golden.engine_timing` (``predict`` / ``nand_bound``); it is the
one that predicts the RTL's cycles.

Cores
-----
``Ci = nand.cores`` index cores (ids ``0..Ci-1``) and ``Cr = nand.raw_vector_cores`` raw-vector
cores (ids ``Ci..Ci+Cr-1``), as in :mod:`proxima.golden.layout`.  Every :class:`~.layout.Read`
is one access.  A core serves its reads one at a time in FIFO order of arrival; one access
occupies the core for ``service = tR_cycles + transfer_cycles`` where
``tR_cycles = cfg.tR_cycles`` (``ceil(tR_ns / cycle_ns)``) and
``transfer_cycles = ceil(access_bytes / (transfer_bytes_per_ns * cycle_ns))`` (sensing and the
transfer of one access do not overlap; different cores are fully parallel).
A read arriving at cycle ``t`` at a core that is free from cycle ``f`` starts at ``max(t, f)``
and completes ``service`` cycles later.

Queries and the dependency rule
-------------------------------
A query's events are cut into *phases* (:func:`phases_for_events`): each ``'frame'`` event is a
phase of its own; a maximal run of ``'code'`` events is one phase; a maximal run of ``'raw'``
events is one phase.  All reads of a phase are issued together (in trace order, which is also
their FIFO order at a core) at the phase's issue cycle ``t``.  The phase completes at
``done = max(t, completion of its reads)``; the next phase issues at ``done + compute`` where

* ``frame`` phase: ``compute = 0`` (the neighbour list streams into the code requests),
* ``code`` phase with ``c`` codes (read or carried by a hot frame):
  ``ceil(c / engine.pq_codes_per_cycle) + ceil(c / engine.sorter_n) * sorter_cycles``, with
  ``sorter_cycles = cfg.insert_cycles`` (one candidate-list merge through the sorter:
  ``cfg.merge_passes`` passes, as the RTL list schedules them; a batch of more than
  ``sorter_n`` keys is merged as sub-batches of ``sorter_n``, ``cfg.insert_merges``).
  Every merge is charged in full: this model reads events only, not the candidate list's
  merge plan (``SearchResult.merge_skips``: the RTL skips the merges that cannot change
  the list), so its merge compute is an upper bound; :mod:`proxima.golden.engine_timing`
  charges the plan,
* ``raw`` phase with ``x`` exact distances: ``x * ceil(vec.dim / engine.exact_lanes)``.

A query starting at cycle ``s`` issues its first phase at ``s + setup_cycles`` (0 unless set:
room for a per-query ADT build); its latency runs from ``s`` to the completion
(``done + compute``) of its last phase.  ``Nq`` (``engine.queues`` by default) queries are in flight: queries start in order,
the first ``Nq`` at cycle 0, each further one at the cycle a running query finishes.  Phases
issuing at the same cycle are processed in increasing query index (so their reads enter the
core FIFOs in that order; a query always has at most one pending phase).

Outputs (:class:`TimingResult`): per-query start / finish / latency, total cycles (the last
finish), QPS = queries / (total_cycles * cycle_ns), per-core busy cycles and utilisation
(busy / total), the mean over index cores and over raw cores.  Cost: ``O(reads + phases *
log Nq)``.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from proxima.config import ProximaConfig

from .layout import Layout, LayoutError

__all__ = ["TimingError", "TimingParams", "Phase", "TimingResult", "phases_for_events",
           "beam_phases_for_events", "simulate", "simulate_events"]


class TimingError(ValueError):
    """Bad input to the timing model."""


@dataclass(frozen=True)
class TimingParams:
    tR_cycles: int
    transfer_cycles: int
    index_cores: int
    raw_cores: int
    pq_codes_per_cycle: int
    sorter_cycles: int
    exact_cycles: int  # per exact distance
    cycle_ns: float
    queues: int
    setup_cycles: int = 0  # per query, before its first phase (e.g. the ADT build); 0 by default
    #: keys per candidate-list merge (``engine.sorter_n``): a code phase of ``c`` codes pays
    #: ``ceil(c / sorter_n)`` merges; ``None``: one merge per phase, however large
    sorter_n: int | None = None

    @classmethod
    def from_cfg(cls, cfg: ProximaConfig) -> "TimingParams":
        per_access_ns = cfg.nand.access_bytes / cfg.nand.transfer_bytes_per_ns
        return cls(
            tR_cycles=cfg.tR_cycles,
            transfer_cycles=max(1, math.ceil(per_access_ns / cfg.cycle_ns - 1e-9)),
            index_cores=cfg.nand.cores,
            raw_cores=cfg.nand.raw_vector_cores,
            pq_codes_per_cycle=cfg.engine.pq_codes_per_cycle,
            sorter_cycles=cfg.insert_cycles,
            exact_cycles=-(-cfg.vec.dim // cfg.engine.exact_lanes),
            cycle_ns=cfg.cycle_ns,
            queues=cfg.engine.queues,
            sorter_n=cfg.engine.sorter_n,
        )

    @property
    def service_cycles(self) -> int:
        return self.tR_cycles + self.transfer_cycles

    @property
    def total_cores(self) -> int:
        return self.index_cores + self.raw_cores

    def code_compute(self, c: int) -> int:
        merges = 1 if self.sorter_n is None else max(1, -(-c // self.sorter_n))
        return -(-c // self.pq_codes_per_cycle) + merges * self.sorter_cycles

    def raw_compute(self, x: int) -> int:
        return x * self.exact_cycles


class Phase(NamedTuple):
    kind: str  # 'frame', 'code' or 'raw'
    cores: tuple[int, ...]  # one entry per access, in issue order
    compute: int  # cycles after the phase's reads complete


@dataclass
class TimingResult:
    start: np.ndarray  # (Q,) int64 cycle each query issued its first phase
    finish: np.ndarray  # (Q,) int64
    total_cycles: int
    busy: np.ndarray  # (total cores,) int64 busy cycles
    params: TimingParams
    nq: int
    accesses: int

    @property
    def latency(self) -> np.ndarray:
        return self.finish - self.start

    @property
    def utilisation(self) -> np.ndarray:
        return self.busy / max(1, self.total_cycles)

    @property
    def mean_util_index(self) -> float:
        return float(self.utilisation[:self.params.index_cores].mean())

    @property
    def mean_util_raw(self) -> float:
        return float(self.utilisation[self.params.index_cores:].mean()) \
            if self.params.raw_cores else 0.0

    @property
    def seconds(self) -> float:
        return self.total_cycles * self.params.cycle_ns * 1e-9

    @property
    def qps(self) -> float:
        return len(self.start) / self.seconds if self.total_cycles else float("inf")

    @property
    def mean_latency_ns(self) -> float:
        return float(self.latency.mean()) * self.params.cycle_ns if len(self.start) else 0.0

    def summary(self) -> dict:
        lat = self.latency * self.params.cycle_ns
        return {
            "queries": len(self.start), "nq": self.nq, "total_cycles": self.total_cycles,
            "qps": self.qps, "mean_latency_us": float(lat.mean()) / 1e3 if len(lat) else 0.0,
            "p99_latency_us": float(np.percentile(lat, 99)) / 1e3 if len(lat) else 0.0,
            "util_index": self.mean_util_index, "util_raw": self.mean_util_raw,
            "util_max": float(self.utilisation.max()) if len(self.busy) else 0.0,
            "busiest_cores": [int(c) for c in np.argsort(-self.busy, kind="stable")[:4]],
            "accesses": self.accesses,
        }


def phases_for_events(events: Iterable[tuple[str, int]], layout: Layout,
                      params: TimingParams | None = None, copy: int = 0) -> list[Phase]:
    """Cut one query's events into phases (module doc) with the cores of their reads, using
    exactly the read rules of :func:`proxima.golden.layout.reads_for_events` (hot frames
    and the copied vertices' codes from hot copy ``copy``)."""
    params = params or TimingParams.from_cfg(layout.cfg)
    phases: list[Phase] = []
    kind = None
    cores: list[int] = []
    count = 0
    after_hot = layout.hot_copies > 1  # the entry's code is held by the engine (layout doc)

    def close() -> None:
        if kind is None:
            return
        if kind == "code":
            compute = params.code_compute(count)
        elif kind == "raw":
            compute = params.raw_compute(count)
        else:
            compute = 0
        phases.append(Phase(kind, tuple(cores), compute))

    Ci, Cr, K, H = layout.cfg.nand.cores, layout.cfg.nand.raw_vector_cores, \
        layout.hot_accesses, layout.hot
    rot = layout._check_copy(copy) * layout.copy_shift
    nf, nc, nr = layout.frame_access_count, layout.code_access_count, layout.raw_access_count
    for k, v in events:
        v = int(v)
        if not 0 <= v < layout.n:
            raise LayoutError(f"vertex {v} out of range 0..{layout.n - 1}")
        if k == "frame":
            close()
            after_hot = v < H
            cores = [(v * K + a + rot) % Ci for a in range(K)] if after_hot else [v % Ci] * nf
            kind, count = "frame", 1
            continue
        if k == "code":  # a copied vertex's code from the query's copy (code-copy region)
            rs = () if after_hot else (layout.code_core(v, copy),) * nc
        elif k == "raw":
            rs = (Ci + v % Cr,) * nr
        else:
            raise LayoutError(f"unknown event kind {k!r}")
        if k != kind:
            close()
            kind, cores, count = k, [], 0
        cores.extend(rs)
        count += 1
    close()
    return phases


def beam_phases_for_events(events: Iterable[tuple[str, int]], layout: Layout,
                           params: TimingParams | None = None) -> list[Phase]:
    """Phases of a DiskANN beam search (:func:`proxima.golden.beam.beam_search` events) on the
    same NAND: a round's ``W`` neighbour-list reads (normal frames, ``frame_access_count``
    accesses each; a hot frame's codes are of no use with codes in RAM) and its ``W``
    raw-vector reads issue together (one phase, ``compute`` = the exact distances); the
    round's PQ distances are a phase without reads (codes in host RAM), ``compute`` as a code
    phase of :func:`phases_for_events`."""
    params = params or TimingParams.from_cfg(layout.cfg)
    Ci, Cr = layout.cfg.nand.cores, layout.cfg.nand.raw_vector_cores
    nf, nr = layout.frame_access_count, layout.raw_access_count
    phases: list[Phase] = []
    cores: list[int] = []
    raws = codes = 0
    for k, v in list(events) + [("end", 0)]:
        v = int(v)
        if k in ("frame", "raw"):
            if codes:
                phases.append(Phase("code", (), params.code_compute(codes)))
                codes = 0
            if k == "frame":
                cores += [v % Ci] * nf
            else:
                cores += [Ci + v % Cr] * nr
                raws += 1
            continue
        if cores:
            phases.append(Phase("frame", tuple(cores), params.raw_compute(raws)))
            cores, raws = [], 0
        if k == "code":
            codes += 1
        elif k == "end":
            if codes:
                phases.append(Phase("code", (), params.code_compute(codes)))
        else:
            raise LayoutError(f"unknown event kind {k!r}")
    return phases


def simulate(traces: Sequence[Sequence[Phase]], params: TimingParams,
             nq: int | None = None) -> TimingResult:
    """Run the queries' phase traces through the core model with ``nq`` queries in flight."""
    nq = params.queues if nq is None else int(nq)
    if nq < 1:
        raise TimingError(f"queries in flight must be >= 1, got {nq}")
    Q = len(traces)
    svc = params.service_cycles
    ncores = params.total_cores
    free = [0] * ncores
    busy = [0] * ncores
    start = np.zeros(Q, dtype=np.int64)
    finish = np.zeros(Q, dtype=np.int64)
    setup = params.setup_cycles
    heap: list[tuple[int, int, int]] = [(setup, q, 0) for q in range(min(nq, Q))]
    heapq.heapify(heap)
    next_q = min(nq, Q)
    accesses = 0
    while heap:
        t, q, i = heapq.heappop(heap)
        tr = traces[q]
        if i == len(tr):
            finish[q] = t
            if next_q < Q:
                start[next_q] = t
                heapq.heappush(heap, (t + setup, next_q, 0))
                next_q += 1
            continue
        ph = tr[i]
        done = t
        for c in ph.cores:
            if not 0 <= c < ncores:
                raise TimingError(f"read on core {c}, the model has {ncores} cores")
            s = free[c] if free[c] > t else t
            f = s + svc
            free[c] = f
            busy[c] += svc
            if f > done:
                done = f
        accesses += len(ph.cores)
        heapq.heappush(heap, (done + ph.compute, q, i + 1))
    total = int(finish.max()) if Q else 0
    return TimingResult(start, finish, total, np.asarray(busy, dtype=np.int64), params, nq,
                        accesses)


def simulate_events(events_per_query: Sequence[Iterable[tuple[str, int]]], layout: Layout,
                    nq: int | None = None, cfg: ProximaConfig | None = None,
                    algo: str = "alg1") -> TimingResult:
    """:func:`simulate` on the search events of each query (phases cut by the layout; query
    ``q`` reads hot copy ``q % layout.hot_copies``, its own copy, of hot frames and of the
    copied vertices' codes).

    ``cfg`` is the effective configuration of the run (the image's with search-time
    overrides, e.g. ``engine.queues``, ``engine.clock_mhz``, ``nand.tR_ns``); the timing
    parameters come from it, the geometry (cores, frame sizes, addresses) from ``layout``.
    ``None``: the layout's own configuration.  A ``cfg`` with another NAND geometry than the
    layout's (cores, access or page size) is refused: the image fixes those.  ``algo="beam"``:
    the events are beam search's, cut by :func:`beam_phases_for_events`."""
    if cfg is not None:
        for f in ("cores", "raw_vector_cores", "access_bytes", "page_bytes"):
            if getattr(cfg.nand, f) != getattr(layout.cfg.nand, f):
                raise TimingError(f"nand.{f} = {getattr(cfg.nand, f)} differs from the image's "
                                  f"{getattr(layout.cfg.nand, f)}: the image fixes the geometry")
    params = TimingParams.from_cfg(cfg or layout.cfg)
    X = layout.hot_copies
    if algo == "beam":
        traces = [beam_phases_for_events(ev, layout, params) for ev in events_per_query]
    else:
        traces = [phases_for_events(ev, layout, params, q % X)
                  for q, ev in enumerate(events_per_query)]
    return simulate(traces, params, nq)
