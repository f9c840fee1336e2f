"""Run queries through the Accelerator's generated Verilog (Verilator, cocotb bench
``sim/tb/tb_accel.py``), compare every one with the golden model and sum up: the driver of
``proxima sim``, ``proxima demo`` and ``benchmarks/bench_accel.py``.

:func:`simulate_accel` computes the golden expectations (``golden.search_batch``, traced),
builds the :class:`~proxima.hdl.accel.Accelerator` for the image (cached by configuration:
the image's digest, the configuration, the queue count and the stall seed, see
:func:`proxima.sim.runner.run_cocotb`), runs the ``accel_batch`` test in non-strict mode (every
query is checked, mismatches are counted instead of stopping the run) and returns a
:class:`AccelRun`: the per-query records, the mismatches, the global counters, the cycles and
the wall-clock time of the simulation.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["AccelRun", "simulate_accel", "search_layout", "nand_bound", "model_prediction",
           "accel_for",
           "FAST_BUILD"]

#: ``make`` variables of a quick build: Verilator's C++ without optimisation (a large design
#: builds about twice as fast but simulates about 7 times slower: ``docs/RESOURCES.md``)
FAST_BUILD = {"OPT_FAST": "-O0", "OPT_GLOBAL": "-O0"}


@dataclass
class AccelRun:
    """What one batch did in RTL simulation (module doc)."""

    cfg: object
    queues: int
    records: list[dict]  # per query, in query order: stats, results, accesses
    mismatches: dict[int, list[str]]  # query index -> lines
    globals: dict  # g_cycles, g_busy, g_queries, g_arb_wait, core_busy, idle
    cycles: int  # simulated cycles of the batch (first query beat to idle)
    wall_s: float  # wall-clock time of the simulated batch
    accesses: int
    build_cached: bool
    build_s: float  # elaboration + Verilator build (0 when cached) and simulator start
    refs: list = field(default_factory=list)  # golden results

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

    def reads(self) -> dict[str, float]:
        """Mean accesses per query by kind (from the RTL's stats beats)."""
        from proxima.sim.tb.tb_accel import READ_COUNTERS
        return {k: float(np.mean([r["stats"][c] for r in self.records]))
                for c, k in READ_COUNTERS.items()}


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
    """``(accelerator, cache key)`` for image ``img`` under ``cfg``: the store port outside
    (the bench serves the image's bytes, so one build serves every image of the same
    geometry and codebook), ``queues`` contexts, ``stall_seed`` for the response stalls.
    The key names everything the Verilog is made from (with the RTL sources, which
    :func:`proxima.sim.runner.run_cocotb` adds)."""
    import warnings

    from amaranth.hdl import UnusedElaboratable

    from proxima.hdl.accel import Accelerator

    layout = search_layout(img, cfg)
    with warnings.catch_warnings():  # elaborated only when the build cache misses
        warnings.simplefilter("ignore", UnusedElaboratable)
        dut = Accelerator(cfg, layout, queues=queues, codebook=img.index.codebook,
                          resp_stall_seed=stall_seed, external_store=True)
    key = {"bench": "tb_accel", "cfg": cfg.to_json(), "queues": int(queues),
           "stall": int(stall_seed), "layout": [layout.n, layout.hot, layout.gap_width],
           "codebook": _digest(img.index.codebook)}
    return dut, key


def simulate_accel(img, queries: np.ndarray, *, cfg=None, queues: int | None = None,
                   stall_seed: int = 0, p_valid: float = 1.0, p_ready: float = 1.0,
                   refs=None, wave: str | Path | None = None, workdir: str | Path | None = None,
                   progress: Callable[[int], None] | None = None,
                   simulator: str = "verilator", max_inflight: int | None = None,
                   make_vars: dict | None = None) -> AccelRun:
    """Run ``queries`` (uint8, ``(Q, dim)``) through the Accelerator for image ``img`` (a
    :class:`~proxima.golden.image.Image`); see the module doc.

    ``cfg``: the effective configuration (the image's with search-time overrides; default
    the image's); ``queues``: contexts (default ``cfg.engine.queues``); ``stall_seed``: the
    controller's random response stalls (0: none); ``p_valid`` / ``p_ready``: host-side
    stalls; ``wave``: write an FST waveform there (a separate cached build with tracing);
    ``progress``: called with the number of finished queries while the simulation runs;
    ``max_inflight``: at most that many queries in flight (host-side; default: as many as
    there are contexts); ``make_vars``: for the Verilator build (``run_cocotb``)."""
    from proxima.golden.search_batch import search_batch
    from proxima.hdl.accel import Accelerator
    from proxima.sim.runner import run_cocotb
    from proxima.sim.tb.tb_accel import accel_transactions, write_store

    cfg = cfg or img.index.cfg
    queues = cfg.engine.queues if queues is None else int(queues)
    cfg = cfg.with_(engine={"queues": queues})
    layout = search_layout(img, cfg)
    if refs is None:
        refs = search_batch(img.index, queries, cfg, trace=True)
    dut, key = accel_for(img, cfg, queues, stall_seed)
    tmp = tempfile.TemporaryDirectory(prefix="proxima-sim-", dir=workdir)
    work = Path(tmp.name)
    store = write_store(work / "store.bin", Accelerator.store_image(img))
    data = accel_transactions(img.index, queries, layout, dut, refs=refs, cfg=cfg,
                              store_file=store)
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
                    build_s=max(0.0, total - o["wall_s"]), refs=list(refs))
