"""Stopping rule of Algorithm 1: recall@10 and NAND accesses against L, per rule, vs beam search.

    python benchmarks/bench_stop.py out/unseen-default.pxi out/unseen
    python benchmarks/bench_stop.py out/words-default.pxi /work/shared/data/words-minilm-20k \
        --queries 200

``IMAGE`` is an index image, ``DATA`` a folder with ``query.{bvecs,fvecs}`` and
``groundtruth.ivecs``.  For every ``--L`` and every rule (``--rule NAME:SEC.KEY=V,...``; the
defaults compare the image's own search settings with fixed r = 3 and the L-tied rule) it
prints recall@10, neighbour-list (frame), PQ-code and raw-vector accesses per query, then beam
search (W = ``search.beam_width``) over the same L.  Prints figures; asserts nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchdata import image_parser, open_bench


def main() -> int:
    ap = image_parser(__doc__, queries=200)
    ap.add_argument("--L", default="32,48,64,96,128,192,256")
    ap.add_argument("--rule", action="append", default=[],
                    help="NAME:SEC.KEY=V,SEC.KEY=V (repeatable)")
    ap.add_argument("--no-beam", action="store_true")
    a = ap.parse_args()

    from proxima.golden.evaluate import run_queries
    img, _, q, gt = open_bench(a)
    index, layout = img.index, img.layout
    rules = a.rule or ["r3:search.r=3,search.L_per_r=0", "default:"]
    out = {}
    print(f"{'rule':12} {'L':>4} {'rec@10':>7} {'hops':>6} {'frame':>7} {'code':>7} {'raw':>7} "
          f"{'f+raw':>7} {'all':>7} {'conv%':>6}")
    for L in (int(x) for x in a.L.split(",")):
        for rule in rules:
            name, _, sets = rule.partition(":")
            ov = [f"search.L={L}", f"search.T0={min(L, index.cfg.search.T0)}"] + \
                [s for s in sets.split(",") if s]
            cfg = index.cfg.override(ov)
            rep, _ = run_queries(index, q, gt, cfg, "alg1", layout)
            c = rep.counters
            conv = 100 * rep.reasons.get("converged", 0) / len(q)
            print(f"{name:12} {L:4d} {rep.recall['recall@10']:7.4f} {c['hops']:6.1f} "
                  f"{c['frame_accesses']:7.1f} {c['code_accesses']:7.1f} {c['raw_accesses']:7.1f} "
                  f"{c['total_accesses']:7.1f} {c['total_with_codes']:7.1f} {conv:6.1f}",
                  flush=True)
            out[f"{name}/L={L}"] = {"recall@10": rep.recall["recall@10"], **c}
        if not a.no_beam:
            cfg = index.cfg.override([f"search.L={L}", f"search.T0={min(L, index.cfg.search.T0)}"])
            rep, _ = run_queries(index, q, gt, cfg, "beam", layout)
            c = rep.counters
            print(f"{'beam W=' + str(cfg.search.beam_width):12} {L:4d} "
                  f"{rep.recall['recall@10']:7.4f} {c['hops']:6.1f} {c['frame_accesses']:7.1f} "
                  f"{0.0:7.1f} {c['raw_accesses']:7.1f} {c['total_accesses']:7.1f} "
                  f"{c['total_accesses']:7.1f} {'-':>6}", flush=True)
            out[f"beam/L={L}"] = {"recall@10": rep.recall["recall@10"], **c}
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
