"""``proxima demo``: the main job on a built-in default.

1. a deterministic SIFT-like set (``--n`` base vectors, ``--queries`` queries) and its exact
   ground truth;
2. index build: Vamana graph, PQ, frequency reordering, hot nodes, NAND image on disk;
3. golden search of every query with Algorithm 1 and with the DiskANN beam-search baseline:
   recall, neighbour-list / PQ-code / raw-vector NAND accesses, counters, golden queries/s;
4. the NAND timing model: modelled cycles, latency and QPS for the configured engine;
5. RTL: the first ``--rtl-queries`` queries' transactions replayed through the generated
   Verilog of the engine blocks (cocotb), compared word by word with the golden model,
   with the cycle counts the RTL took.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


__all__ = ["run_demo"]


def run_demo(args) -> int:
    """Run the demo for parsed arguments (``preset``, ``overrides``, ``n``, ``queries``,
    ``out``, ``rtl_queries``, ``simulator``, ``quiet``); returns the exit status."""
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
        print(f"\n== NAND timing model ({cfg.engine.queues} queues, {cfg.nand.cores} index cores, "
              f"tR = {cfg.nand.tR_ns:g} ns = {cfg.tR_cycles} cycles at "
              f"{cfg.engine.clock_mhz:g} MHz)")
        print(f"  {args.queries} queries in {int(c['model_total_cycles'])} cycles: "
              f"{c['model_qps']:.0f} QPS, mean latency {c['model_mean_latency_us']:.2f} us, "
              f"index-core utilisation {100 * c['model_util_index']:.1f}%")
    summary = {"golden": res}

    if args.rtl_queries > 0:
        from .golden.image import read_image
        from .sim.replay import replay_queries
        print(f"\n== RTL: replaying {args.rtl_queries} queries' transactions through the "
              f"generated Verilog of each block ({args.simulator}, cocotb, no stalls)")
        rtl = replay_queries(read_image(out / "index.pxi"), queries[:args.rtl_queries],
                             simulator=args.simulator, workdir=out / "rtl")
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
