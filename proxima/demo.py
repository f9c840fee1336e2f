"""``proxima demo``: the main job on a built-in default.

1. a deterministic SIFT-like set (``--n`` base vectors, ``--queries`` queries) and its exact
   ground truth;
2. index build: Vamana graph, PQ, frequency reordering, hot nodes, NAND image on disk;
3. golden search of every query with Algorithm 1 and with the DiskANN beam-search baseline:
   recall, neighbour-list / PQ-code / raw-vector NAND accesses, counters, golden queries/s;
4. the timing models: the NAND reads alone (:mod:`proxima.golden.nand`) and the whole engine
   (:mod:`proxima.golden.engine_timing`: the contexts' compute, the shared sorter and memory
   path), its QPS against the NAND bound (the same model with the compute taking no time);
5. the whole engine in RTL: the first ``--engine-queries`` queries through the generated
   Verilog of the Accelerator (``--engine-queues`` search contexts in flight sharing the NAND
   controller, the image's bytes served on its store port; Verilator,
   :mod:`proxima.sim.accel_run`):
   golden-vs-RTL agreement per query (ids, distances, counters, NAND access sequence),
   recall, reads, cycles and the projected QPS at ``engine.clock_mhz``.  The Verilator
   build is cached (``build/sim-cache``): the first run of a configuration pays it;
6. per-block replay: the first ``--rtl-queries`` queries' transactions through the
   generated Verilog of the blocks the whole engine does not contain (the page cache), or of
   every replayed block with ``--replay-all`` (the bloom filter, PQ unit, exact unit, sorter
   and gap decoder run inside every engine context in step 5), compared word by word with
   the golden model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


__all__ = ["run_demo"]


def run_demo(args) -> int:
    """Run the demo for parsed arguments (``preset``, ``overrides``, ``n``, ``queries``,
    ``out``, ``engine_queries``, ``engine_queues``, ``rtl_queries``, ``replay_all``,
    ``simulator``, ``quiet``); returns the exit status."""
    from .golden.datasets import ground_truth, synth, synth_queries
    from .pipeline import PipelineError, build_config, build_pipeline, evaluate

    cfg = build_config(args.preset, args.overrides)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise PipelineError(f"--out {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.quiet
    t0 = time.perf_counter()
    print(f"== proxima demo: preset {cfg.name}, {args.n} SIFT-like base vectors, "
          f"{args.queries} queries")
    base = synth("sift", args.n, cfg.vec.dim, seed=0)
    queries = synth_queries("sift", args.queries, cfg.vec.dim, seed=0)
    gt, _ = ground_truth(base, queries, 100)
    print(f"data + exact ground truth in {time.perf_counter() - t0:.1f} s")

    index, layout, _ = build_pipeline(cfg, base, out / "index.pxi", progress=progress)
    print(f"layout: {layout.summary() if hasattr(layout, 'summary') else layout}")

    print("\n== golden model search (Algorithm 1 vs DiskANN beam search, same graph and PQ)")
    res = evaluate(index, layout, queries, gt, ["alg1", "beam"], [[]], None,
                       progress=progress, timing=True)
    a1 = next(r for r in res["reports"] if r["algo"] == "alg1")
    c = a1["counters"]
    if "model_total_cycles" in c:
        print(f"\n== timing models ({cfg.engine.queues} queues, {cfg.nand.cores} index cores, "
              f"tR = {cfg.nand.tR_ns:g} ns = {cfg.tR_cycles} cycles at "
              f"{cfg.engine.clock_mhz:g} MHz)")
        print(f"  NAND reads alone: {args.queries} queries in {int(c['model_total_cycles'])} "
              f"cycles: {c['model_qps']:.0f} QPS, mean latency "
              f"{c['model_mean_latency_us']:.2f} us, index-core utilisation "
              f"{100 * c['model_util_index']:.1f}%")
        _engine_model(index, layout, queries, cfg)
    summary = {"golden": res}

    ok = True
    n_eng = min(getattr(args, "engine_queries", 0), len(queries))
    if n_eng > 0:
        ok &= _engine_run(args, out, queries[:n_eng], gt[:n_eng], summary, progress)
    if args.rtl_queries > 0 and ok:
        from .golden.image import read_image
        from .sim.replay import BLOCKS, replay_queries
        covered = {"sorter", "bloom", "pq", "exact", "gapdec"} if n_eng > 0 else set()
        blocks = BLOCKS if getattr(args, "replay_all", False) else \
            tuple(b for b in BLOCKS if b not in covered)
        print(f"\n== RTL: replaying {args.rtl_queries} queries' transactions through the "
              f"generated Verilog of {', '.join(blocks)} ({args.simulator}, cocotb, no stalls)")
        rtl = replay_queries(read_image(out / "index.pxi"), queries[:args.rtl_queries],
                             simulator=args.simulator, workdir=out / "rtl", blocks=blocks)
        summary["rtl"] = rtl
        ok = all(b["mismatches"] == 0 for b in rtl["blocks"].values())
        for name, b in rtl["blocks"].items():
            print(f"  {name:10} {b['transactions']:7d} transactions compared, "
                  f"{b['mismatches']} mismatches, {b['cycles']:7d} cycles"
                  + (f"  ({b['first_mismatch']})" if b.get("first_mismatch") else ""))
        print("  RTL matches the golden model" if ok else "  RTL MISMATCH")
    if not ok:
        (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
        return 1
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    print(f"\ndone in {time.perf_counter() - t0:.1f} s; summary in {out / 'summary.json'}")
    return 0


def _engine_model(index, layout, queries, cfg) -> None:
    """Step 4's engine line: :func:`~proxima.golden.engine_timing.predict` and
    :func:`~proxima.golden.engine_timing.nand_bound` of the queries on ``engine.queues``
    contexts."""
    from .golden.engine_timing import nand_bound, predict
    from .golden.search_batch import search_batch

    refs = search_batch(index, queries, cfg, trace=True)
    run, bound = predict(cfg, layout, refs), nand_bound(cfg, layout, refs)
    s = run.summary()
    print(f"  whole engine (compute, shared sorter and {cfg.engine.path_bits}-bit memory path): "
          f"{run.total_cycles} cycles: {run.qps:,.0f} QPS, {100 * run.qps / bound.qps:.0f}% of "
          f"the NAND bound {bound.qps:,.0f}, index-core utilisation "
          f"{100 * s['util_index']:.1f}%")


def _engine_run(args, out: Path, queries, gt, summary: dict, progress: bool) -> bool:
    """Step 5 of the module doc; True when every query matched the golden model."""
    from tqdm import tqdm

    from .golden.evaluate import recall_at
    from .golden.image import read_image
    from .sim.accel_run import (FAST_BUILD, model_prediction, nand_bound, search_layout,
                                simulate_accel)
    from .sim.harness import FAST_OPTIONS as DEMO_OPTIONS

    img = read_image(out / "index.pxi")
    cfg = img.index.cfg
    nq = args.engine_queues
    print(f"\n== RTL: the whole engine, {len(queries)} queries with {nq} queues in flight "
          f"(Accelerator Verilog under Verilator: contexts, arbiter, NAND controller and reorder "
          f"buffers; the image's bytes served on its store port by the C++ harness)")
    bar = tqdm(total=len(queries), desc="rtl engine", unit="q", disable=not progress)
    try:
        run = simulate_accel(img, queries, queues=nq, workdir=out, simulator=args.simulator,
                             make_vars=FAST_BUILD, harness=DEMO_OPTIONS,
                             progress=lambda n: bar.update(n - bar.n))
    finally:
        bar.close()
    ccfg = cfg.with_(engine={"queues": nq})
    bound = nand_bound(run.refs, search_layout(img, ccfg), ccfg, nq)
    model = model_prediction(run.refs, search_layout(img, ccfg), ccfg, nq)
    model_err = model.total_cycles / max(1, run.cycles) - 1
    bad = len(run.mismatches)
    k = cfg.search.k
    ids = run.ids(img.index.labels)
    recall = recall_at(ids, gt, min(10, k)) if gt.shape[1] >= min(10, k) else None
    reads = run.reads()
    ui, ur = run.utilisation()
    for line in run.report(gt=gt, labels=img.index.labels, bound_qps=bound.qps, show=3):
        print(f"  {line}")
    print(f"  engine timing model: {model.total_cycles} cycles predicted for this batch "
          f"({100 * model_err:+.1f}% against the RTL)")
    summary["engine_rtl"] = {
        "queries": run.n, "queues": nq, "mismatches": bad, "recall": recall,
        "reads": reads, "cycles": run.cycles, "cycles_per_query": run.cycles_per_query,
        "latency_cycles": run.latency_cycles, "qps": run.qps, "nand_bound_qps": bound.qps,
        "util_index": ui, "util_raw": ur, "sim_cycles_per_s": run.sim_rate,
        "model_cycles": model.total_cycles, "model_error": model_err,
        "build_cached": run.build_cached, "build_s": run.build_s}
    return bad == 0
