"""``proxima tune``: pick Algorithm 1's search parameters for a target recall, store them.

    proxima tune --base base.fvecs -o index.pxi --target 0.95
    proxima tune --base base.bvecs --index built.pxi -o tuned.pxi --objective accesses
    proxima tune --base base.fvecs -o index.pxi --recommend   # + build-setting advice

Holds ``--holdout`` base vectors out of a graph built on the rest, searches them and tunes
``search.{L, r, L_per_r, T0, T_step, beta}`` against their exact ground truth
(:mod:`proxima.golden.tune`).  The tuned values go into the configuration stored in the
image, so ``proxima search`` and ``proxima eval`` use them unless ``--set`` overrides them.
Without ``--index`` the image is then built from the whole base with the tuned settings; with
``--index`` (an image built from the same ``--base``) that image is rewritten with them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

__all__ = ["add_parser"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    from .cli import add_config_args
    from .golden.tune import DEFAULT_LS, DEFAULT_RS, OBJECTIVES

    t = subparsers.add_parser("tune", help="tune the search parameters for a target recall",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(t)
    t.add_argument("--base", required=True, help="base vectors (fvecs/bvecs/fbin/u8bin/npy...)")
    t.add_argument("--index", help="an image already built from --base: rewrite its settings")
    t.add_argument("-o", "--output", required=True, help="index image file to write")
    t.add_argument("--target", type=float, default=0.95, help="recall@k to reach (0..1)")
    t.add_argument("--objective", default="latency", choices=OBJECTIVES,
                   help="modelled query time with one query in flight (default), modelled "
                        "QPS with engine.queues in flight, NAND accesses per query, or "
                        "neighbour-list + raw-vector accesses per query (codes not counted)")
    t.add_argument("--holdout", type=int, default=500, help="base vectors held out as queries")
    t.add_argument("--margin", type=float, default=0.005,
                   help="recall to spare on the sample (default %(default)s)")
    t.add_argument("--L-values", default=",".join(map(str, DEFAULT_LS)),
                   help="candidate list sizes to try (default %(default)s)")
    t.add_argument("--r-values", default=",".join(map(str, DEFAULT_RS)),
                   help="runs of unchanged checks (r_eff) to try; above 15 through "
                        "search.L_per_r (default %(default)s)")
    t.add_argument("--refine", type=int, default=3,
                   help="best feasible points refined by coordinate descent (default %(default)s)")
    t.add_argument("--graph", default="vamana", choices=["vamana", "hnsw"])
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--recommend", action="store_true",
                   help="also measure alternative build settings (pq.M, graph.R, hot fraction)")
    t.add_argument("--json", help="write every evaluated point as JSON to this file")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_cmd_tune)
    return t




def _variants(cfg) -> list[dict]:
    out = []
    for M in (cfg.pq.M // 2, cfg.pq.M * 2):
        if M >= 1 and cfg.vec.dim % M == 0:
            out.append({"pq": {"M": M}})
    for R in (cfg.graph.R // 2, cfg.graph.R * 2):
        out.append({"graph": {"R": R, "build_L": max(cfg.graph.build_L, R)}})
    for h in (0.01, 0.05):
        if h != cfg.layout.hot_fraction:
            out.append({"layout": {"hot_fraction": h}})
    return out


def _cmd_tune(args) -> int:
    from .golden.atomic import atomic_open
    from .golden.build import prepare_vectors
    from .golden.image import read_image, write_image
    from .golden.tune import holdout_index, recommend_build, recommendation, tune_search
    from .golden.vecio import read_vectors
    from .pipeline import (PipelineError, build_config, build_pipeline, check_output_path,
                           search_config)

    inputs = [args.base] + ([args.index] if args.index else [])
    check_output_path(args.output, inputs)
    if args.json:
        check_output_path(args.json, inputs, what="--json")

    if not 0.0 < args.target <= 1.0:
        raise PipelineError(f"--target must be in (0, 1], got {args.target}")
    log = (lambda s: None) if args.quiet else print
    base = read_vectors(args.base)
    if args.index:
        img = read_image(args.index)
        cfg = search_config(img.index.cfg, args.overrides)
        if img.index.n != len(base) or cfg.vec.dim != base.shape[1]:
            raise PipelineError(f"{args.index} holds {img.index.n} x {img.index.cfg.vec.dim} vectors, "
                           f"--base {len(base)} x {base.shape[1]}: not built from it")
    else:
        cfg = build_config(args.preset, args.overrides, base.shape[1])
    if not 1 <= args.holdout < len(base):
        raise PipelineError(f"--holdout must be in 1..{len(base) - 1}, got {args.holdout}")
    try:
        base_u8 = prepare_vectors(cfg, base)[0]
    except ValueError as e:
        raise PipelineError(str(e)) from None
    log(f"building the tuning index on {len(base) - args.holdout} vectors "
        f"({args.holdout} held out)...")
    graphs: dict = {}  # the tuning graph, reused by --recommend's variants of pq / layout
    index, layout, q, gt = holdout_index(base_u8, cfg, args.holdout, args.graph, args.seed,
                                         graphs=graphs)
    log(f"tuning for recall@{cfg.search.k} >= {args.target} (+{args.margin} on the sample), "
        f"objective {args.objective}:")
    try:
        Ls = [int(x) for x in args.L_values.split(",") if x]
        rs = [int(x) for x in args.r_values.split(",") if x]
    except ValueError:
        raise PipelineError("--L-values and --r-values take comma-separated integers") from None
    res = tune_search(index, layout, q, gt, args.target, cfg, args.objective,
                      margin=args.margin, Ls=Ls, rs=rs, refine=args.refine, log=log)
    report = res.to_dict()
    if res.best is None:
        raise PipelineError(f"recall@{cfg.search.k} {args.target} not reached on the sample "
                       f"(best {max(p.recall for p in res.points):.4f}); build a denser graph "
                       "(graph.R, graph.build_L) or a finer PQ (pq.M), or lower --target")
    b = res.best
    log(f"\nchosen: {' '.join(f'search.{k}={v}' for k, v in b.search.items())}\n"
        f"  on the sample: recall@{cfg.search.k} {b.recall:.4f}, "
        f"{b.accesses['frame_accesses']:.1f} frame + {b.accesses['code_accesses']:.1f} code + "
        f"{b.accesses['raw_accesses']:.1f} raw accesses per query, modelled "
        f"{b.latency_us:.2f} us per query (one in flight), {b.qps:,.0f} q/s at "
        f"{cfg.engine.queues} queues")
    if args.recommend:
        log("\nbuild settings, each re-tuned (L x r) on the same sample; advice only, the "
            "image below is built as configured:")
        report["recommend"] = recommend_build(base_u8, cfg, args.holdout, args.target,
                                              _variants(cfg), args.objective, args.graph,
                                              args.seed, args.margin, log=log, graphs=graphs,
                                              Ls=Ls, rs=rs)
        report["recommended"] = recommendation(report["recommend"], args.objective)
    tuned = cfg.with_(search=b.search)
    out = Path(args.output)
    if args.index:
        write_image(out, dataclasses.replace(img.index, cfg=tuned))
        log(f"wrote {out} (the image of {args.index} with the tuned search settings)")
    else:
        build_pipeline(tuned, base, out, graph=args.graph, seed=args.seed,
                       progress=not args.quiet, log=log, inputs=inputs)
    if args.json:
        with atomic_open(args.json, "w", encoding="utf-8") as f:
            f.write(json.dumps(report, indent=1, default=float))
    return 0
