"""Recall@10 against the NAND raw bit error rate (no ECC), against the paper's claim.

    python benchmarks/bench_rber.py out/unseen-default.pxi out/unseen --png docs/rber.png

Searches the queries of ``DATA`` with fresh seeded bit errors (golden/rber.py: frames, PQ codes,
raw vectors; a corrupt gap decode drops that row) for every ``--rber``, with the image's
settings plus ``--set``, and prints recall@10, its drop relative to RBER 0 and the rows dropped
per query.  The paper claims a drop below 3% at RBER 1e-4.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from benchdata import image_parser, open_bench


def main() -> int:
    ap = image_parser(__doc__, queries=200)
    ap.add_argument("--rber", default="0,1e-6,1e-5,1e-4,3e-4,1e-3")
    ap.add_argument("--batch", type=int, default=10, help="queries per error draw")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--png", help="write the curve here (matplotlib)")
    a = ap.parse_args()

    from proxima.golden.evaluate import recall_at
    from proxima.golden.rber import search_with_errors

    img, cfg, q, gt = open_bench(a)
    index = img.index
    rows = []
    base = None
    print(f"{'RBER':>8} {'recall@10':>9} {'drop %':>7} {'rows dropped/query':>18}")
    for rb in (float(x) for x in a.rber.split(",")):
        res, dropped = search_with_errors(index, img.layout, q, rb, cfg, a.seed, a.batch)
        ids = np.full((len(res), cfg.search.k), -1, dtype=np.int64)
        for i, r in enumerate(res):
            ids[i, :len(r.ids)] = index.labels[r.ids]
        rec = recall_at(ids, gt, 10)
        base = rec if base is None else base
        drop = 100 * (base - rec) / base
        per_q = dropped / -(-len(q) // a.batch)  # rows dropped per error draw
        rows.append({"rber": rb, "recall@10": rec, "drop_pct": drop,
                     "rows_dropped_per_draw": per_q})
        print(f"{rb:8.0e} {rec:9.4f} {drop:7.2f} {per_q:18.1f}", flush=True)
    if a.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        xs = [r["rber"] for r in rows if r["rber"] > 0]
        ys = [r["recall@10"] for r in rows if r["rber"] > 0]
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        ax.semilogx(xs, ys, "o-", label="Proxima golden model (no ECC)")
        ax.axhline(base, color="grey", ls=":", label=f"no errors ({base:.3f})")
        ax.axhline(base * 0.97, color="tab:red", ls="--", label="paper: < 3% drop at 1e-4")
        ax.axvline(1e-4, color="tab:red", ls=":", lw=0.8)
        ax.set_xlabel("raw bit error rate")
        ax.set_ylabel("recall@10")
        ax.set_title(Path(a.image).stem)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(a.png, dpi=120)
        print(f"wrote {a.png}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
