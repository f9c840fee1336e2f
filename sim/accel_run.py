"""Run queries through the Accelerator's generated Verilog under Verilator, compare every
one with the golden model and sum up: the driver of ``proxima sim``, ``proxima demo`` and
``benchmarks/bench_accel.py``.

:func:`simulate_accel` computes the golden expectations (``golden.search_batch``, traced)
and runs the :class:`~proxima.hdl.accel.Accelerator` for the image (``external_store=True``:
the image's bytes are served on the store port) on one of two engines:

* ``"harness"`` (the default): the C++ Verilator harness :mod:`proxima.sim.harness` (no
  Python in the simulation loop; the codebook is written through ``cb_wr`` and the image's
  geometry registers are set at run time, and the design's store spans the configuration's
  ``nand.pages_per_core``, so one build serves every image of the configuration); its outputs (monitor, result and stats beats,
  global counters) are checked afterwards, in cycle order, by the bench's
  :class:`~proxima.sim.tb.tb_accel.TagBoard` (non-strict: mismatches are counted) and its
  global checks;
* ``"cocotb"``: the cocotb bench ``sim/tb/tb_accel.py`` (``accel_batch`` test, non-strict;
  the same design as the harness's), with every cycle through Python: about 30 times
  slower, but it can write a waveform (``wave=``) and run under Icarus.

Both builds are cached (``build/sim-cache``) by configuration, queue count and stall seed:
neither depends on the image's geometry or codebook (run-time registers and ``cb_wr``
writes), so one build of each serves every image of the configuration.  The result is an
:class:`AccelRun`: the per-query records, the mismatches, the global counters, the cycles
and the wall-clock time of the simulation; :meth:`AccelRun.report` is the summary that
``proxima sim`` and ``proxima demo`` print.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["AccelRun", "simulate_accel", "search_layout", "nand_bound", "model_prediction",
           "accel_for", "harness_accel_for", "ENGINES", "FAST_BUILD"]

#: the simulation engines of :func:`simulate_accel` (the first is the default)
ENGINES = ("harness", "cocotb")

#: ``make`` variables of a quick cocotb build: Verilator's C++ without optimisation (a large
#: design builds about twice as fast but simulates about 7 times slower: ``docs/RESOURCES.md``)
FAST_BUILD = {"OPT_FAST": "-O0", "OPT_GLOBAL": "-O0"}


@dataclass
class AccelRun:
    """What one batch did in RTL simulation (module doc)."""

    cfg: object
    queues: int
    records: list[dict]  # per query, in query order: stats, results, accesses
    mismatches: dict[int, list[str]]  # query index -> lines
    globals: dict  # g_cycles, g_busy, g_queries, g_arb_wait, g_sort, core_busy, idle
    cycles: int  # simulated cycles of the batch (first query beat to idle)
    wall_s: float  # wall-clock time of the simulated batch
    accesses: int
    build_cached: bool
    build_s: float  # elaboration + Verilator build (0 when cached) and simulator start
    refs: list = field(default_factory=list)  # golden results
    engine: str = "cocotb"  # the simulation engine (ENGINES)
    cpu_s: float = 0.0  # harness: CPU time of the simulator process (0: not measured)
    build_info: dict = field(default_factory=dict)  # the harness build's figures
    @property
    def n(self) -> int:
        return len(self.records)

    @property
    def errors(self) -> int:
        return sum(r["stats"]["error"] for r in self.records)

    def ids(self, labels=None) -> np.ndarray:
        """(Q, k) result ids (-1 padded), mapped through ``labels`` if given."""
        k = self.cfg.search.k
        out = np.full((self.n, k), -1, dtype=np.int64)
        for i, r in enumerate(self.records):
            ids = [b[0] for b in r["results"]][:k]
            out[i, :len(ids)] = ids if labels is None else labels[ids]
        return out

    @property
    def cycles_per_query(self) -> float:
        """Throughput: batch cycles / queries."""
        return self.cycles / max(1, self.n)

    @property
    def latency_cycles(self) -> float:
        """Mean of the queries' own ``cycles`` counters."""
        return float(np.mean([r["stats"]["cycles"] for r in self.records])) if self.n else 0.0

    @property
    def qps(self) -> float:
        """Queries per second at ``engine.clock_mhz``."""
        return self.n / (self.cycles * self.cfg.cycle_ns * 1e-9) if self.cycles else 0.0

    @property
    def sorter_occupancy(self) -> float:
        """Vectors sent to the sorter per cycle (``g_sort / g_cycles``: with the shared
        sorter, the fraction of cycles its input was busy)."""
        return self.globals["g_sort"] / max(1, self.globals["g_cycles"])

    def utilisation(self) -> tuple[float, float]:
        """Mean NAND core utilisation (index cores, raw cores): ``core_busy / g_cycles``."""
        busy = np.asarray(self.globals["core_busy"], dtype=float)
        total = max(1, self.globals["g_cycles"])
        ci = self.cfg.nand.cores
        raw = busy[ci:] / total
        return float((busy[:ci] / total).mean()), float(raw.mean()) if len(raw) else 0.0

    @property
    def sim_rate(self) -> float:
        """Simulated cycles per wall-clock second."""
        return self.cycles / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def sim_rate_cpu(self) -> float:
        """Simulated cycles per CPU second of the simulator process (harness; 0 if not
        measured): the speed on an unloaded machine."""
        return self.cycles / self.cpu_s if self.cpu_s > 0 else 0.0

    def reads(self) -> dict[str, float]:
        """Mean accesses per query by kind (from the RTL's stats beats)."""
        from proxima.sim.tb.tb_accel import READ_COUNTERS
        return {k: float(np.mean([r["stats"][c] for r in self.records]))
                for c, k in READ_COUNTERS.items()}

    def recall(self, gt, labels=None) -> dict[int, float]:
        """``{k: recall@k}`` of the RTL's ids against ground truth ``gt`` (``(Q, >= k)``
        original ids; ``labels`` maps the image's ids to them) for k in 1, 10, 100 up to
        ``search.k`` and the ground truth's width."""
        from proxima.golden.evaluate import recall_at
        ids = self.ids(labels)
        return {k: float(recall_at(ids, gt, k)) for k in (1, 10, 100)
                if k <= self.cfg.search.k and k <= gt.shape[1]}

    def report(self, *, gt=None, labels=None, bound_qps: float | None = None,
               show: int = 5) -> list[str]:
        """The run's summary lines (``proxima sim`` and ``proxima demo``): the build, the
        golden-vs-RTL agreement (and the first ``show`` mismatching queries), recall (with
        ground truth ``gt``, ids mapped through ``labels``), reads, cycles, QPS at
        ``engine.clock_mhz`` (and the fraction of the NAND bound ``bound_qps`` if given),
        NAND core utilisation and the simulation speed."""
        bad = len(self.mismatches)
        out = [f"build: {'cached' if self.build_cached else 'built'} "
               f"({self.build_s:.1f} s to build and start; engine {self.engine})",
               f"golden vs RTL: {self.n - bad}/{self.n} queries match (ids, distances, "
               f"counters, NAND access sequence); {self.errors} with the error flag"]
        out += [f"  query {i}: {'; '.join(lines)}"
                for i, lines in sorted(self.mismatches.items())[:show]]
        if gt is not None:
            out.append("recall: " + "  ".join(f"recall@{k}={v:.4f}"
                                              for k, v in self.recall(gt, labels).items()))
        out.append("reads per query: " + "  ".join(f"{k} {v:.1f}"
                                                   for k, v in self.reads().items()))
        out.append(f"cycles: {self.cycles} for {self.n} queries with {self.queues} queues = "
                   f"{self.cycles_per_query:.0f} per query (mean query latency "
                   f"{self.latency_cycles:.0f} cycles)")
        qps = f"QPS at {self.cfg.engine.clock_mhz:g} MHz: {self.qps:,.0f}"
        if bound_qps:
            qps += f" ({100 * self.qps / bound_qps:.0f}% of the NAND bound {bound_qps:,.0f})"
        out.append(qps)
        ui, ur = self.utilisation()
        out.append(f"NAND core utilisation: index cores {100 * ui:.1f}%, raw cores "
                   f"{100 * ur:.1f}%; arbiter waits in {self.globals['g_arb_wait']} cycles; "
                   f"sorter input busy {100 * self.sorter_occupancy:.1f}% of the cycles")
        out.append(f"simulation: {self.sim_rate:,.0f} cycles/s ({self.cycles} cycles in "
                   f"{self.wall_s:.1f} s" + (f"; {self.sim_rate_cpu:,.0f} per CPU second"
                                             if self.cpu_s else "") + ")")
        return out


def search_layout(img, cfg):
    """The image's geometry under ``cfg`` (search-time fields changed, same frames)."""
    from proxima.golden.layout import Layout
    lay = img.layout
    return Layout(cfg, lay.n, lay.hot, lay.gap_width)


def nand_bound(refs, layout, cfg, queues: int):
    """The NAND bound: :func:`proxima.golden.engine_timing.nand_bound` (the Accelerator's
    timing model with the engine's compute taking no time) for the same queries (golden
    :class:`~proxima.golden.search.SearchResult` s with events), NAND and queue count."""
    from proxima.golden.engine_timing import nand_bound as bound

    return bound(cfg, layout, refs, queues)


def model_prediction(refs, layout, cfg, queues: int):
    """The timing model's cycles for the batch on ``queues`` contexts
    (:func:`proxima.golden.engine_timing.predict`)."""
    from proxima.golden.engine_timing import predict

    return predict(cfg, layout, refs, queues)


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def accel_for(img, cfg, queues: int, stall_seed: int = 0):
    """``(accelerator, cache key)`` for the cocotb bench: as :func:`harness_accel_for`
    (capacities only, the geometry registers and the codebook written at run time: one
    build serves every image of the configuration), under its own cache key."""
    dut, key = harness_accel_for(img, cfg, queues, stall_seed)
    return dut, dict(key, bench="tb_accel")


def _mark_used(obj, seen=None) -> None:
    """Mark ``obj`` and the elaboratables it holds as used: a component whose build came
    from the cache is never elaborated, which is not a mistake (no UnusedElaboratable
    warnings when it is collected)."""
    from amaranth._unused import MustUse

    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, MustUse):
        obj._MustUse__used = True
    if isinstance(obj, (list, tuple)):
        for x in obj:
            _mark_used(x, seen)
    elif isinstance(obj, MustUse) and hasattr(obj, "__dict__"):
        for x in vars(obj).values():
            if isinstance(x, (MustUse, list, tuple)):
                _mark_used(x, seen)


def harness_accel_for(img, cfg, queues: int, stall_seed: int = 0):
    """``(accelerator, cache key)`` for the C++ harness: capacities only
    (:meth:`Accelerator.from_config <proxima.hdl.accel.Accelerator.from_config>` with a
    store of ``nand.pages_per_core`` pages per core, which the harness maps onto the image's
    smaller store file), no codebook (written through ``cb_wr``) and the image's geometry
    as run-time registers: one build serves every image of the configuration.  ``img``
    (may be None) is checked to fit (:class:`~proxima.hdl.accel.AccelError` otherwise)."""
    import warnings

    from amaranth.hdl import UnusedElaboratable

    from proxima.hdl.accel import Accelerator

    pages = cfg.nand.pages_per_core
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        dut = Accelerator.from_config(cfg, queues=queues, resp_stall_seed=stall_seed,
                                      external_store=True, pages=pages)
    _mark_used(dut)
    if img is not None:
        dut.check_geometry(search_layout(img, cfg))
    key = {"bench": "harness", "cfg": cfg.to_json(), "queues": int(queues),
           "stall": int(stall_seed), "pages": pages}
    return dut, key


def simulate_accel(img, queries: np.ndarray, *, cfg=None, queues: int | None = None,
                   stall_seed: int = 0, p_valid: float = 1.0, p_ready: float = 1.0,
                   refs=None, wave: str | Path | None = None, workdir: str | Path | None = None,
                   progress: Callable[[int], None] | None = None,
                   simulator: str = "verilator", max_inflight: int | None = None,
                   make_vars: dict | None = None, engine: str | None = None,
                   harness=None, seed: int = 1) -> AccelRun:
    """Run ``queries`` (uint8, ``(Q, dim)``) through the Accelerator for image ``img`` (a
    :class:`~proxima.golden.image.Image`); see the module doc.

    ``cfg``: the effective configuration (the image's with search-time overrides; default
    the image's); ``queues``: contexts (default ``cfg.engine.queues``); ``stall_seed``: the
    controller's random response stalls (0: none); ``p_valid`` / ``p_ready``: host-side
    stalls (``seed``: the harness's stall generator; the cocotb bench uses its own seed);
    ``wave``: write an FST waveform there (cocotb engine only: a separate cached build with
    tracing); ``progress``: called with the number of finished queries while the simulation
    runs; ``max_inflight``: at most that many queries in flight (host-side; default: as
    many as there are contexts); ``engine``: ``"harness"`` (default) or ``"cocotb"`` (the
    default when a waveform or a simulator other than Verilator is asked for);
    ``harness``: the harness's :class:`~proxima.sim.harness.HarnessOptions` (default
    :data:`~proxima.sim.harness.DEFAULT_OPTIONS`); ``make_vars``: for the cocotb engine's
    Verilator build (``run_cocotb``).  Environment: ``PROXIMA_HARNESS_KEEP=<folder>`` keeps
    the harness's run folder there (and the executable's path in ``executable.txt``), to
    rerun ``accel_sim <folder>`` by hand."""
    from proxima.golden.search_batch import search_batch

    if engine is None:
        engine = "cocotb" if wave is not None or simulator != "verilator" else "harness"
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "harness" and (wave is not None or simulator != "verilator"):
        raise ValueError("the C++ harness runs Verilator without tracing: use "
                         "engine='cocotb' for a waveform or another simulator")
    cfg = cfg or img.index.cfg
    queues = cfg.engine.queues if queues is None else int(queues)
    cfg = cfg.with_(engine={"queues": queues})
    if refs is None:
        refs = search_batch(img.index, queries, cfg, trace=True)
    if engine == "harness":
        return _simulate_harness(img, queries, cfg, queues, refs, stall_seed, p_valid,
                                 p_ready, workdir, progress, max_inflight, harness, seed)
    return _simulate_cocotb(img, queries, cfg, queues, refs, stall_seed, p_valid, p_ready,
                            wave, workdir, progress, simulator, max_inflight, make_vars)


def _simulate_harness(img, queries, cfg, queues, refs, stall_seed, p_valid, p_ready,
                      workdir, progress, max_inflight, options, seed) -> AccelRun:
    from proxima.hdl.accel import Accelerator
    from proxima.sim import harness as hs
    from proxima.sim.tb.tb_accel import TagBoard, accel_transactions, check_globals, query_beats

    layout = search_layout(img, cfg)
    dut, key = harness_accel_for(img, cfg, queues, stall_seed)
    t0 = time.perf_counter()
    exe, cached, info = hs.build_harness(dut, key, options=options or hs.DEFAULT_OPTIONS)
    build_s = time.perf_counter() - t0
    tmp = tempfile.TemporaryDirectory(prefix="proxima-harness-", dir=workdir)
    work = Path(tmp.name)
    try:
        data = accel_transactions(img.index, queries, layout, dut, refs=refs, cfg=cfg,
                                  store_file=work / "store.bin", codebook=img.index.codebook)
        hs.write_inputs(work, store=Accelerator.store_image(img),
                        query_beats=query_beats(data, data["queries"]),
                        query_bits=dut.query_layout.size, dim=cfg.vec.dim,
                        cb_beats=data["codebook"]["beats"],
                        cb_bits=dut.cb_wr.payload.shape().size, beat_bits=len(dut.store_data),
                        entry=data["entry"], entry_code=data["entry_code"], geom=data["geom"],
                        core_words=data["core_words"],
                        p_valid=p_valid,
                        p_ready=p_ready, seed=seed, max_inflight=max_inflight,
                        max_cycles=100_000 + 60_000 * len(queries))
        summary = hs.run_harness(exe, work, progress)
        out = hs.read_outputs(work, dut.result_layout.size, dut.stats_layout.size)
    finally:
        keep = os.environ.get("PROXIMA_HARNESS_KEEP")
        if keep:  # the run folder, to rerun the executable by hand (profiling, debugging)
            shutil.copytree(work, keep, dirs_exist_ok=True)
            (Path(keep) / "executable.txt").write_text(str(exe))
        tmp.cleanup()
    board = TagBoard(data["queries"], strict=False)
    try:
        _replay(board, out, data)
        if not board.done:
            raise AssertionError(board.status())
        check_globals(summary["globals"], data, len(queries), summary["accesses"])
    except AssertionError as e:
        raise hs.HarnessFailure(f"harness run ({exe.parent}): {e}") from None
    tags = {q["tag"]: i for i, q in enumerate(data["queries"])}
    return AccelRun(cfg=cfg, queues=queues,
                    records=sorted(board.records.values(), key=lambda r: r["query"]),
                    mismatches={tags[t]: v for t, v in board.mismatches.items()},
                    globals=summary["globals"], cycles=summary["cycles"],
                    wall_s=summary["wall_s"], accesses=summary["accesses"],
                    build_cached=cached, build_s=build_s, refs=list(refs), engine="harness",
                    build_info=info, cpu_s=summary["cpu_s"])


def _replay(board, out: dict, data: dict) -> None:
    """Feed the harness's outputs to ``board`` in cycle order (in a cycle: the monitored
    access, then a result beat, then a stats beat, as the cocotb bench samples them)."""
    from heapq import merge

    from proxima.sim.tb import bench

    rfmt, sfmt = data["result"], data["stats"]
    mon = ((c, 0, (tag, acc)) for c, tag, *acc in out["mon"].tolist())
    res = ((int(c), 1, w) for c, w in out["results"])
    st = ((int(c), 2, w) for c, w in out["stats"])
    for cycle, stream_, item in merge(mon, res, st, key=lambda e: e[:2]):
        if stream_ == 0:
            board.read(item[0], item[1], cycle)
        elif stream_ == 1:
            board.result(bench.unpack(item, rfmt), cycle)
        else:
            board.stats(bench.unpack(item, sfmt), cycle)


def _simulate_cocotb(img, queries, cfg, queues, refs, stall_seed, p_valid, p_ready, wave,
                     workdir, progress, simulator, max_inflight, make_vars) -> AccelRun:
    from proxima.hdl.accel import Accelerator
    from proxima.sim.runner import run_cocotb
    from proxima.sim.tb.tb_accel import accel_transactions, write_store

    layout = search_layout(img, cfg)
    dut, key = accel_for(img, cfg, queues, stall_seed)
    tmp = tempfile.TemporaryDirectory(prefix="proxima-sim-", dir=workdir)
    work = Path(tmp.name)
    store = write_store(work / "store.bin", Accelerator.store_image(img))
    data = accel_transactions(img.index, queries, layout, dut, refs=refs, cfg=cfg,
                              store_file=store, codebook=img.index.codebook)
    (work / "data.json").write_text(json.dumps(data))
    out, prog = work / "out.json", work / "progress"
    params = {"data": str(work / "data.json"), "out": str(out), "progress": str(prog),
              "strict": False, "p_valid": p_valid, "p_ready": p_ready,
              "max_inflight": max_inflight}
    box: dict = {}

    def target():
        try:
            box["res"] = run_cocotb(dut, "proxima_accel", "proxima.sim.tb.tb_accel", cfg=cfg,
                                    cache_key=key, testcase="accel_batch", parameters=params,
                                    waves=wave is not None, simulator=simulator,
                                    build_args=["--trace-fst"] if wave is not None else (),
                                    make_vars=make_vars)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["err"] = e

    t0 = time.perf_counter()
    th = threading.Thread(target=target, daemon=True)
    th.start()
    seen = 0
    while th.is_alive():
        th.join(0.5)
        if progress is not None and prog.is_file():
            try:
                n = int(prog.read_text() or 0)
            except ValueError:
                n = seen
            if n != seen:
                progress(n)
                seen = n
    try:
        if "err" in box:
            raise box["err"]
        res = box["res"]
        o = json.loads(out.read_text())
        if progress is not None:
            progress(len(o["records"]))
        if wave is not None:
            dump = res.build_dir / "dump.fst"
            Path(wave).parent.mkdir(parents=True, exist_ok=True)
            Path(wave).write_bytes(dump.read_bytes())
    finally:
        tmp.cleanup()
    total = time.perf_counter() - t0
    tags = {q["tag"]: i for i, q in enumerate(data["queries"])}
    return AccelRun(cfg=cfg, queues=queues, records=o["records"],
                    mismatches={tags[int(t)]: v for t, v in o["mismatches"].items()},
                    globals=o["globals"], cycles=o["cycles"], wall_s=o["wall_s"],
                    accesses=o["accesses"], build_cached=res.cached,
                    build_s=max(0.0, total - o["wall_s"]), refs=list(refs),
                    engine="cocotb")
