"""NAND core balance: modelled QPS and index-core utilisation against queues and hot copies.

    python benchmarks/unseen_data.py out/unseen2k --queries 2000
    proxima build-index --preset paper --graph hnsw --base out/unseen2k/base.bvecs \
        -o out/unseen-paper.pxi
    python benchmarks/bench_cores.py out/unseen-paper.pxi out/unseen2k --set search.L=96 \
        --copies 1,8 --code-fractions 0,1

Searches the queries of ``DATA`` (``query.{bvecs,fvecs}``, ``groundtruth.ivecs``) once with
events on (Algorithm 1, the image's settings plus ``--set``), then runs the NAND timing model
for every ``--queues`` x ``--copies`` (``layout.hot_copies``) x ``--code-fractions``
(``layout.code_copy_fraction``: which vertices' codes have copies; ignored with one copy): the
events do not depend on them, the core of every hot-frame and copied code read does.  Prints
recall@10, modelled QPS, mean latency, mean and busiest index-core utilisation, the
busiest/mean ratio, the busiest cores and the index cores' NAND space (MiB, whole pages).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from benchdata import image_parser, open_bench


def main() -> int:
    ap = image_parser(__doc__, queries=2000)
    ap.add_argument("--queues", default="32,64,128,256")
    ap.add_argument("--copies", default="1,4,16,64")
    ap.add_argument("--code-fractions", default="",
                    help="layout.code_copy_fraction values (default: the image's)")
    ap.add_argument("--peers", action="store_true",
                    help="also measure hnswlib / faiss on the same queries (bench_peers.peers)")
    a = ap.parse_args()

    from proxima.golden.evaluate import run_queries
    from proxima.golden.layout import Layout
    from proxima.golden.nand import simulate_events

    img, cfg, q, gt = open_bench(a)
    index = img.index
    rep, res = run_queries(index, q, gt, cfg, "alg1", img.layout)
    c = rep.counters
    print(f"{len(q)} queries, recall@10 {rep.recall['recall@10']:.4f}, per query "
          f"{c['frame_accesses']:.1f} frame + {c['code_accesses']:.1f} code + "
          f"{c['raw_accesses']:.1f} raw accesses; golden {rep.qps:.0f} q/s")
    events = [r.events for r in res]
    lay0 = img.layout
    Ci = cfg.nand.cores
    out = []
    fracs = [float(x) for x in a.code_fractions.split(",")] if a.code_fractions else \
        [cfg.layout.code_copy_fraction]
    print(f"{'copies':>6} {'codes':>6} {'MiB':>7} {'queues':>6} {'QPS':>10} {'lat us':>8} "
          f"{'idx util':>8} {'max':>6} {'max/mean':>8} {'raw util':>8}  busiest")
    for X in (int(x) for x in a.copies.split(",")):
        for f in (fracs if X > 1 else fracs[:1]):
            lay = Layout(cfg.with_(layout={"hot_copies": X, "code_copy_fraction": f}), lay0.n,
                         lay0.hot, lay0.gap_width)
            mib = lay.index_core_bytes * Ci / 2**20
            for nq in (int(x) for x in a.queues.split(",")):
                t = simulate_events(events, lay, cfg=cfg.with_(engine={"queues": nq}))
                u = t.utilisation[:Ci]
                row = {"copies": X, "code_copy_count": lay.code_copy_count, "index_mib": mib,
                       "queues": nq, "qps": t.qps, "latency_us": t.mean_latency_ns / 1e3,
                       "util_index": float(u.mean()), "util_index_max": float(u.max()),
                       "util_raw": t.mean_util_raw,
                       "busiest": [int(x) for x in np.argsort(-u)[:3]]}
                out.append(row)
                print(f"{X:6d} {lay.code_copy_count:6d} {mib:7.1f} {nq:6d} {t.qps:10,.0f} "
                      f"{row['latency_us']:8.2f} {row['util_index']:8.3f} "
                      f"{row['util_index_max']:6.3f} "
                      f"{row['util_index_max'] / row['util_index']:8.2f} "
                      f"{row['util_raw']:8.3f}  {row['busiest']}", flush=True)
    peer = {}
    if a.peers:
        from bench_peers import at_recall, peers

        peer = peers(index.vectors, q, gt, cfg.pq.M, index.labels)
        rec = rep.recall["recall@10"]
        for name, pts in peer.items():
            v = at_recall(pts, rec, "cpu_qps")
            print(f"{name:12} at recall@10 {rec:.4f}: "
                  f"{'not reached' if v is None else f'{v:,.0f} q/s (CPU, one thread)'}")
            if v and name == "hnswlib":
                best = max(r["qps"] for r in out if r["queues"] == max(x["queues"] for x in out))
                print(f"  best modelled QPS at the most queues / hnswlib = {best / v:.1f}x")
    if a.json:
        Path(a.json).write_text(json.dumps({"recall@10": rep.recall["recall@10"],
                                            "counters": c, "rows": out, "peers": peer},
                                           indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
