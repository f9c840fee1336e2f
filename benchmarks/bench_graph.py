"""Benchmark the graph builders on a SIFT-like set.

Builds Vamana (:func:`proxima.golden.graph.build_vamana`) and the HNSW base layer
(:func:`proxima.golden.graph.build_hnsw_base`) over ``--n`` SIFT-like uint8 vectors
(:func:`proxima.golden.datasets.synth`), then reports per graph: build wall/CPU time, degree
statistics, reachability from the entry, and greedy-search recall@k at list size ``--L`` for
``--queries`` held-out queries against faiss brute force (``IndexFlatL2``).  The machine load
(``os.getloadavg``) before and after each build is printed, because the machines are shared.

Example::

    .venv/bin/python benchmarks/bench_graph.py --n 100000 --json /tmp/graph.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np


def _greedy_recall(graph, base, queries, truth, L: int, k: int) -> dict:
    from proxima.golden.graph import greedy_search

    hits, expansions = 0, 0
    t = time.perf_counter()
    for q, tr in zip(queries, truth):
        ids, _, expanded = greedy_search(graph, base, q, L)
        hits += len(set(ids[:k].tolist()) & set(tr[:k].tolist()))
        expansions += expanded.size
    return {
        f"recall@{k}": hits / (k * len(queries)),
        "mean_expansions": expansions / len(queries),
        "search_seconds": time.perf_counter() - t,
    }


def _timed(fn):
    load0 = os.getloadavg()
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, {
        "build_wall_s": time.perf_counter() - w,
        "build_cpu_s": time.process_time() - c,
        "load_before": [round(x, 2) for x in load0],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--L", type=int, default=64, help="greedy search list size")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--R", type=int, default=None, help="override graph.R")
    ap.add_argument("--build-L", type=int, default=None, help="override graph.build_L")
    ap.add_argument("--alpha", type=float, default=None, help="override graph.alpha")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None,
                    help="Vamana worker threads (default: available CPUs)")
    ap.add_argument("--hnsw-threads", type=int, default=None,
                    help="faiss threads for the HNSW build (default: faiss' default)")
    ap.add_argument("--skip-vamana", action="store_true")
    ap.add_argument("--skip-hnsw", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)

    import faiss

    from proxima.config import preset
    from proxima.golden.datasets import synth, synth_queries
    from proxima.golden.graph import build_hnsw_base, build_vamana

    cfg = preset(args.preset)
    changes = {k: v for k, v in (("R", args.R), ("build_L", args.build_L),
                                  ("alpha", args.alpha)) if v is not None}
    if changes:
        cfg = cfg.with_(graph=changes)
    gcfg = cfg.graph

    t = time.perf_counter()
    base = synth("sift", args.n, args.dim, seed=args.seed)
    queries = synth_queries("sift", args.queries, args.dim, seed=args.seed)
    flat = faiss.IndexFlatL2(args.dim)
    flat.add(base.astype(np.float32))
    _, truth = flat.search(queries.astype(np.float32), args.k)
    print(f"data: {args.n} x {args.dim} uint8 SIFT-like, {args.queries} queries, "
          f"brute force top-{args.k} in {time.perf_counter() - t:.1f} s; graph {gcfg}; "
          f"cpus {os.cpu_count()}", flush=True)

    results = {"n": args.n, "dim": args.dim, "queries": args.queries, "L": args.L,
               "k": args.k, "graph_config": dataclasses.asdict(gcfg),
               "builds": {}}
    builders = []
    if not args.skip_vamana:
        builders.append(("vamana", lambda: build_vamana(
            base, gcfg, seed=args.seed, progress=not args.no_progress, threads=args.threads)))
    if not args.skip_hnsw:
        builders.append(("hnsw", lambda: build_hnsw_base(
            base, gcfg, seed=args.seed, threads=args.hnsw_threads)))
    for name, fn in builders:
        graph, timing = _timed(fn)
        st = graph.stats()
        rec = _greedy_recall(graph, base, queries, truth, args.L, args.k)
        row = {**timing, **st, **rec}
        results["builds"][name] = row
        print(f"{name:7s} build {timing['build_wall_s']:7.1f} s wall "
              f"{timing['build_cpu_s']:7.1f} s cpu (load {timing['load_before'][0]:.1f} -> "
              f"{timing['load_after'][0]:.1f})  degree mean {st['mean_degree']:.2f} "
              f"min {st['min_degree']} max {st['max_degree']}  reachable "
              f"{st['reachable_fraction']:.5f}  recall@{args.k} (L={args.L}) "
              f"{rec[f'recall@{args.k}']:.4f}  expansions {rec['mean_expansions']:.1f}",
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
