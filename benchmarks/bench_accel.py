"""The whole engine in RTL simulation: throughput against the queue count and the NAND bound.

    python benchmarks/bench_accel.py                       # default preset, synthetic image
    python benchmarks/bench_accel.py --index out/demo/index.pxi --queries-file q.u8bin
    python benchmarks/bench_accel.py --preset tiny --n 5000 --queues 1,2,4 --queries 64

For every queue count, the same queries run through the Accelerator's generated Verilog
under Verilator (:func:`proxima.sim.accel_run.simulate_accel`: the C++ harness
``sim/harness`` unless ``--engine cocotb``; every query checked against the golden model,
mismatches counted) and the table gives: cycles per query (batch cycles /
queries), mean query latency, QPS at ``engine.clock_mhz``, mean index- and raw-core
utilisation (``core_busy / g_cycles``), the simulation speed (simulated cycles per
wall-clock second, the Verilator build excluded, and per CPU second of the harness process:
the rate on an unloaded machine; ``build s``: the harness's elaboration,
Verilation and compile, 0 when cached), the NAND bound (the engine timing model
:mod:`proxima.golden.engine_timing` for the same queries, NAND and queue count with the
engine's compute taking no time, :func:`proxima.sim.accel_run.nand_bound`), the achieved
fraction of it, and the timing model's prediction with the engine's compute
(:func:`proxima.golden.engine_timing.predict`) and its error against the RTL.

Without ``--index`` a SIFT-like image of ``--n`` vectors is built for ``--preset`` under
``--out`` (reused when it exists).  Each queue count is its own Verilator build (cached in
``build/sim-cache``); with ``--one-build`` a single build with the largest queue count runs
every row, the bench keeping at most that row's count of queries in flight (the controller's
queue depth and the arbiter then are those of the larger design: an approximation, named in
the output).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _image(a):
    from proxima.golden.datasets import synth, synth_queries
    from proxima.golden.image import read_image
    from proxima.golden.vecio import read_vectors
    from proxima.pipeline import build_config, build_pipeline, prepare_queries

    if a.index:
        img = read_image(a.index)
    else:
        path = Path(a.out) / f"{a.preset}-{a.n}.pxi"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            cfg = build_config(a.preset, [])
            base = synth("sift", a.n, cfg.vec.dim, seed=0)
            build_pipeline(cfg, base, path, progress=False,
                           reorder=True)
        img = read_image(path)
    cfg = img.index.cfg
    if a.queries_file:
        q = prepare_queries(img.index, read_vectors(a.queries_file))[:a.queries]
    else:
        q = synth_queries("sift", a.queries, cfg.vec.dim, seed=1)
    return img, q


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", help="an index image (default: build a synthetic one)")
    ap.add_argument("--queries-file", help="query vectors (default: synthetic SIFT-like)")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--n", type=int, default=20000, help="vectors of the synthetic image")
    ap.add_argument("--out", default="out/bench_accel", help="where the synthetic image goes")
    ap.add_argument("--queries", type=int, default=64)
    ap.add_argument("--queues", default="1,2,4,8,16")
    ap.add_argument("--stall-seed", type=int, default=0)
    ap.add_argument("--engine", choices=("harness", "cocotb"), default="harness",
                    help="the C++ Verilator harness (default) or the cocotb bench")
    ap.add_argument("--fast-build", action="store_true",
                    help="compile the simulation models with less optimisation (harness -O1, "
                         "cocotb -O0: faster build, slower run)")
    ap.add_argument("--opt", default=None,
                    help="harness: the C++ optimisation of the model (e.g. -O1, -O2, -O3)")
    ap.add_argument("--vopt", default="", help="harness: Verilator's own -O level (e.g. -O3)")
    ap.add_argument("--threads", type=int, default=None, help="harness: Verilator --threads")
    ap.add_argument("--p-valid", type=float, default=1.0, help="query gap probability")
    ap.add_argument("--p-ready", type=float, default=1.0, help="result/stats back-pressure")
    ap.add_argument("--one-build", action="store_true",
                    help="one build with the largest queue count, fewer queries in flight")
    ap.add_argument("--json", help="write the rows as JSON")
    a = ap.parse_args()

    from proxima.golden.search_batch import search_batch
    from proxima.sim.accel_run import (FAST_BUILD, model_prediction, nand_bound, search_layout,
                                       simulate_accel)
    from proxima.sim.harness import DEFAULT_OPTIONS, FAST_OPTIONS, HarnessOptions

    t0 = time.perf_counter()
    img, q = _image(a)
    cfg0 = img.index.cfg
    refs = search_batch(img.index, q, cfg0, trace=True)
    print(f"{len(q)} queries over {img.index.n} vectors, preset {cfg0.name}, "
          f"{cfg0.nand.cores}+{cfg0.nand.raw_vector_cores} NAND cores, service "
          f"{cfg0.tR_cycles} + transfer cycles at {cfg0.engine.clock_mhz:g} MHz "
          f"(golden + image {time.perf_counter() - t0:.0f} s)", flush=True)
    head = (f"{'queues':>6} {'cyc/q':>8} {'lat cyc':>8} {'QPS':>9} {'idx util':>8} "
            f"{'raw util':>8} {'bound QPS':>9} {'of bound':>8} {'model QPS':>9} "
            f"{'model err':>9} {'sim cyc/s':>9} {'cpu cyc/s':>9} {'build s':>7} {'bad':>4}")
    print(head, flush=True)
    rows = []
    counts = [int(x) for x in a.queues.split(",")]
    mv = FAST_BUILD if a.fast_build else None
    ho = FAST_OPTIONS if a.fast_build else DEFAULT_OPTIONS
    ho = HarnessOptions(opt=a.opt or ho.opt, verilator_opt=a.vopt, threads=a.threads)
    sim = {"engine": a.engine, "harness": ho, "make_vars": mv, "p_valid": a.p_valid,
           "p_ready": a.p_ready, "stall_seed": a.stall_seed, "refs": refs}
    if a.engine == "harness":
        print(f"(harness build: C++ {ho.opt}, Verilator {ho.verilator_opt or 'default -O'}, "
              f"threads {ho.threads or 'default'})")
    if a.one_build:
        print(f"(one build of {max(counts)} contexts; each row limits the queries in flight)")
    for nq in counts:
        cfg = cfg0.with_(engine={"queues": nq})
        lay = search_layout(img, cfg)
        if a.one_build:
            big = max(counts)
            run = simulate_accel(img, q, cfg=cfg0.with_(engine={"queues": big}), queues=big,
                                 max_inflight=nq, **sim)
        else:
            run = simulate_accel(img, q, cfg=cfg, queues=nq, **sim)
        bound = nand_bound(refs, lay, cfg, nq)
        model = model_prediction(refs, lay, cfg, nq)
        ui, ur = run.utilisation()
        row = {"queues": nq, "cycles_per_query": run.cycles_per_query,
               "latency_cycles": run.latency_cycles, "qps": run.qps, "util_index": ui,
               "util_raw": ur, "bound_qps": bound.qps, "of_bound": run.qps / bound.qps,
               "model_qps": model.qps, "model_cycles": model.total_cycles,
               "model_error": model.total_cycles / run.cycles - 1, "rtl_cycles": run.cycles,
               "sim_cycles_per_s": run.sim_rate, "build_s": run.build_s,
               "cached": run.build_cached, "mismatches": len(run.mismatches),
               "errors": run.errors, "one_build": a.one_build, "engine": run.engine,
               "sim_wall_s": run.wall_s, "sim_cpu_s": run.cpu_s,
               "sim_cycles_per_cpu_s": run.sim_rate_cpu, "build_info": run.build_info}
        rows.append(row)
        print(f"{nq:6d} {row['cycles_per_query']:8.0f} {row['latency_cycles']:8.0f} "
              f"{row['qps']:9,.0f} {100 * ui:7.1f}% {100 * ur:7.1f}% {row['bound_qps']:9,.0f} "
              f"{100 * row['of_bound']:7.1f}% {row['model_qps']:9,.0f} "
              f"{100 * row['model_error']:+8.1f}% {row['sim_cycles_per_s']:9,.0f} "
              f"{row['sim_cycles_per_cpu_s']:9,.0f} "
              f"{row['build_s']:7.0f} {row['mismatches']:4d}", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"preset": cfg0.name, "n": img.index.n,
                                            "queries": len(q), "rows": rows}, indent=1))
    return 1 if any(r["mismatches"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
