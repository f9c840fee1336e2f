"""Search benchmark: Algorithm 1 vs DiskANN beam search on one graph, at matched recall.

    python benchmarks/bench_search.py                      # 100K SIFT-like, default preset
    python benchmarks/bench_search.py --n 20000 --queries 500
    python benchmarks/bench_search.py --real ../shared/data/words-minilm-20k

Builds (or reuses, ``--work``) the index image, sweeps Algorithm 1 (``--alg1-sweep``, any
configuration axes) and beam search over L, interpolates every counter at recall@10 = ``--target`` and prints the
neighbour-list reads, raw-vector reads and total NAND accesses of both, plus golden-model
throughput with 1 and with all cores.  Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from proxima.pipeline import build_pipeline, evaluate
from proxima.config import preset
from proxima.golden.datasets import ground_truth, synth, synth_queries
from proxima.golden.image import read_image
from proxima.golden.search_batch import search_batch


def _L(point: list[str]) -> int | None:
    """The search.L a sweep point sets (the last one wins), if any."""
    vals = [int(a.split("=", 1)[1]) for a in point if a.startswith("search.L=")]
    return vals[-1] if vals else None


def load(args, cfg):
    if args.real:
        from proxima.golden.vecio import read_vectors
        d = Path(args.real)

        def one(stem):  # a TEXMEX set stores floats (.fvecs) or bytes (.bvecs)
            for ext in ("fvecs", "bvecs"):
                if (d / f"{stem}.{ext}").is_file():
                    return read_vectors(d / f"{stem}.{ext}")
            raise SystemExit(f"--real {d}: no {stem}.fvecs or {stem}.bvecs")
        base = one("base")
        q = one("query")[:args.queries]
        gt = read_vectors(d / "groundtruth.ivecs")[:args.queries]
        return base, q, gt
    t = time.perf_counter()
    base = synth("sift", args.n, 128, seed=0)
    q = synth_queries("sift", args.queries, 128, seed=0)
    gt, _ = ground_truth(base, q, 100)
    print(f"data: {args.n} x 128 SIFT-like + {args.queries} queries + ground truth in "
          f"{time.perf_counter() - t:.1f} s")
    return base, q, gt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--real", help="a TEXMEX folder: base and query .fvecs or .bvecs, "
                    "groundtruth.ivecs")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--graph", default="vamana", choices=["vamana", "hnsw"])
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--work", default="out/bench_search")
    ap.add_argument("--search-set", action="append", default=[], metavar="SEC.KEY=V",
                    help="search-time override for every point, e.g. engine.sorter_n=256")
    ap.add_argument("--alg1-sweep", action="append", default=[], metavar="SEC.KEY=V1,V2",
                    help="Algorithm 1 sweep axis (repeatable: grid); default L=16..64 x r=2,3")
    ap.add_argument("--beam-L", default="10,16,24,32,48,64")
    ap.add_argument("--json", help="write all figures here")
    args = ap.parse_args()

    cfg = preset(args.preset).override(args.overrides)
    base, q, gt = load(args, cfg)
    if base.shape[1] != cfg.vec.dim:
        cfg = cfg.with_(vec={"dim": base.shape[1]})
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    tag = f"{'real' if args.real else 'sift'}-{len(base)}-{cfg.name}-{args.graph}"
    img_path = work / f"{tag}.pxi"
    if img_path.exists():
        img = read_image(img_path)
        index, layout = img.index, img.layout
        print(f"reusing {img_path}")
    else:
        t = time.perf_counter()
        index, layout, _ = build_pipeline(cfg, base, img_path, graph=args.graph)
        print(f"index build total {time.perf_counter() - t:.1f} s")
    queries = q
    if np.issubdtype(q.dtype, np.floating):
        from proxima.golden.quant import Quantiser
        lo, scale = index.quantiser
        queries = Quantiser(lo, scale, index.cfg.vec.elem_bits).quantise(q)

    from proxima.cli import parse_sweep

    k = index.cfg.search.k
    sweep = args.alg1_sweep or ["search.L=16,24,32,48,64", "search.r=2,3"]
    grid1 = []
    for g in parse_sweep(sweep):
        pt = args.search_set + g
        if not any(a.startswith("search.T0=") for a in pt):  # keep T0 <= L
            pt = [f"search.T0={min(index.cfg.search.T0, _L(pt) or index.cfg.search.L)}"] + pt
        grid1.append(pt)
    # beam search ignores T0: pin it to k so that every L >= k is a valid configuration
    gridb = [args.search_set + [f"search.L={L}", f"search.T0={k}"]
             for L in (int(x) for x in args.beam_L.split(",") if x) if L >= k]
    print(f"\n== Algorithm 1 sweep ({len(grid1)} points)")
    r1 = evaluate(index, layout, queries, gt, ["alg1"], grid1, args.target)
    W = index.cfg.override(args.search_set).search.beam_width
    print(f"\n== beam search sweep ({len(gridb)} points, W = {W})")
    rb = evaluate(index, layout, queries, gt, ["beam"], gridb, args.target)
    a, b = r1["at_target"]["alg1"], rb["at_target"]["beam"]
    print(f"\n== at recall@10 = {args.target}")
    for c in ("hops", "total_accesses", "total_with_codes", "exact_dists"):
        va, vb = a.get(c), b.get(c)
        if va is None or vb is None:
            print(f"  {c:18} alg1 {va}  beam {vb} (target not reached)")
            continue
        print(f"  {c:18} alg1 {va:8.1f}  beam {vb:8.1f}  alg1/beam = {va / vb:.3f}")

    # golden throughput, best configuration at the target
    pts = [r for r in r1["reports"] if r["recall"].get("recall@10", 0) >= args.target]
    best = min(pts, key=lambda r: r["counters"]["hops"]) if pts else r1["reports"][-1]
    p = best["params"]
    tcfg = index.cfg.override(args.search_set).with_(
        search={"L": p["L"], "T0": p["T0"], "r": p["r"], "beta": p["beta"]})
    index.bloom_table
    through = {}
    for w in sorted({1, os.cpu_count() or 1}):
        t = time.perf_counter()
        search_batch(index, queries, tcfg, workers=w)
        through[w] = len(queries) / (time.perf_counter() - t)
    print(f"\n== golden Algorithm 1 throughput at {p}: " +
          ", ".join(f"{qps:.0f} q/s with {w} worker(s)" for w, qps in through.items()) +
          f" (load average {os.getloadavg()[0]:.1f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"alg1": r1, "beam": rb, "throughput": through},
                                              indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
