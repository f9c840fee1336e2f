"""Peers side by side, measured in one run on the same data: hnswlib, faiss HNSW and IVF-PQ
(CPU, one thread), this project's golden search (CPU), and the modelled accelerator (Algorithm 1
and beam search on the same NAND timing model).

    pip install -e '.[bench]'            # matplotlib, hnswlib
    python benchmarks/bench_peers.py out/unseen-default.pxi out/unseen --png docs/peers-unseen
    python benchmarks/bench_peers.py out/words-default.pxi ../shared/data/words-minilm-20k

``IMAGE`` is a Proxima index image built from ``DATA``'s base; ``DATA`` holds ``base``,
``query`` (``.bvecs``/``.fvecs``) and ``groundtruth.ivecs``.  The peers index the base as the
image does (the uint8 vectors the engine holds, as float32), so every system searches the same
points.  Every curve is swept (hnswlib / faiss HNSW ``ef``, IVF-PQ ``nprobe``, Proxima
``search.L`` with the image's other settings, beam ``search.L`` with W = ``search.beam_width``);
at each ``--target`` recall@10 the cost of every system is interpolated on its curve:
CPU q/s (one thread), and for Proxima / beam the NAND accesses per query by kind, the modelled
latency (one query in flight) and the modelled QPS at ``--queues``.  ``--png PREFIX`` writes
``PREFIX-accesses.png`` (recall against accesses) and ``PREFIX-qps.png`` (recall against q/s,
modelled and CPU).  Prints figures; asserts nothing.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from benchdata import image_parser, open_bench


def _recall(ids: np.ndarray, gt: np.ndarray, k: int = 10) -> float:
    return float(np.mean([len(np.intersect1d(a[:k], b[:k])) for a, b in zip(ids, gt)])) / k


def _timed(fn, reps: int = 1):
    best, out = None, None
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
    return out, best


def peers(base: np.ndarray, q: np.ndarray, gt: np.ndarray, pq_m: int, labels: np.ndarray,
          log=print) -> dict:
    """Peer curves; ``base`` in the image's id order, ``labels`` maps those ids to the
    ground truth's."""
    import faiss

    gt = np.asarray(gt)
    lab = np.append(np.asarray(labels), -1)  # faiss pads with -1

    faiss.omp_set_num_threads(1)
    xb = np.ascontiguousarray(base, dtype=np.float32)
    xq = np.ascontiguousarray(q, dtype=np.float32)
    out: dict[str, list] = {}
    try:
        import hnswlib

        t = time.perf_counter()
        h = hnswlib.Index(space="l2", dim=xb.shape[1])
        h.init_index(max_elements=len(xb), M=16, ef_construction=200, random_seed=0)
        h.set_num_threads(1)
        h.add_items(xb, np.arange(len(xb)))
        log(f"hnswlib M 16 efC 200 built in {time.perf_counter() - t:.1f} s (one thread)")
        pts = []
        for ef in (10, 16, 24, 32, 48, 64, 96, 128, 192, 256):
            h.set_ef(ef)
            (ids, _), dt = _timed(lambda: h.knn_query(xq, k=10), reps=3)
            pts.append({"param": f"ef={ef}", "recall": _recall(lab[ids], gt),
                        "cpu_qps": len(xq) / dt})
        out["hnswlib"] = pts
    except ImportError:
        log("hnswlib missing: pip install -e '.[bench]' (skipped)")
    t = time.perf_counter()
    fh = faiss.IndexHNSWFlat(xb.shape[1], 32)
    fh.hnsw.efConstruction = 200
    fh.add(xb)
    log(f"faiss HNSW32 built in {time.perf_counter() - t:.1f} s")
    pts = []
    for ef in (10, 16, 24, 32, 48, 64, 96, 128, 192, 256):
        fh.hnsw.efSearch = ef
        (_, ids), dt = _timed(lambda: fh.search(xq, 10), reps=3)
        pts.append({"param": f"efSearch={ef}", "recall": _recall(lab[ids], gt),
                    "cpu_qps": len(xq) / dt})
    out["faiss-hnsw"] = pts
    t = time.perf_counter()
    nlist = max(16, int(4 * np.sqrt(len(xb))))
    ivf = faiss.IndexIVFPQ(faiss.IndexFlatL2(xb.shape[1]), xb.shape[1], nlist, pq_m, 8)
    ivf.train(xb)
    ivf.add(xb)
    log(f"faiss IVF{nlist},PQ{pq_m} built in {time.perf_counter() - t:.1f} s")
    pts = []
    for npb in (1, 2, 4, 8, 16, 32, 64, 128):
        if npb > nlist:
            break
        ivf.nprobe = npb
        (_, ids), dt = _timed(lambda: ivf.search(xq, 10), reps=3)
        pts.append({"param": f"nprobe={npb}", "recall": _recall(lab[ids], gt),
                    "cpu_qps": len(xq) / dt})
    out["faiss-ivfpq"] = pts
    return out


def proxima_curves(index, layout, q, gt, Ls, queues, log=print, cpu_n: int | None = None) -> dict:
    """Algorithm 1 and beam search over ``Ls``: recall, accesses and modelled timing on all
    of ``q``; CPU q/s timed on the first ``cpu_n`` queries (all if None)."""
    from proxima.golden.evaluate import access_counts
    from proxima.golden.nand import simulate_events
    from proxima.golden.search_batch import search_batch

    from proxima.golden.beam import beam_search

    out: dict[str, list] = {"proxima-alg1": [], "beam-same-nand": []}
    k = index.cfg.search.k
    for L in Ls:
        cfg = index.cfg.override([f"search.L={L}", f"search.T0={min(L, index.cfg.search.T0)}"])
        for algo in ("alg1", "beam"):
            qc = q[:cpu_n]
            if algo == "alg1":
                _, dt = _timed(lambda: search_batch(index, qc, cfg, workers=1))
                res = search_batch(index, q, cfg, trace=True, workers=1)
            else:
                _, dt = _timed(lambda: [beam_search(index, v, cfg, trace=False) for v in qc])
                res = [beam_search(index, v, cfg, trace=True) for v in q]
            ids = np.full((len(res), k), -1, dtype=np.int64)
            for i, r in enumerate(res):
                ids[i, :len(r.ids)] = index.labels[r.ids]
            acc = access_counts(res, layout, algo)
            ev = [r.events for r in res]
            one = simulate_events(ev, layout, nq=1, cfg=cfg, algo=algo)
            pt = {"param": f"L={L}", "recall": _recall(ids, gt), "cpu_qps": len(qc) / dt,
                  "latency_us": one.mean_latency_ns / 1e3, **acc}
            for nq in queues:
                t = simulate_events(ev, layout, cfg=cfg.with_(engine={"queues": nq}), algo=algo)
                pt[f"qps@{nq}"] = t.qps
                pt[f"util_index@{nq}"] = t.mean_util_index
            name = "proxima-alg1" if algo == "alg1" else "beam-same-nand"
            out[name].append(pt)
            log(f"  {name:15} L={L:4d} recall {pt['recall']:.4f} "
                f"f+raw {acc['total_accesses']:.1f} all {acc['total_with_codes']:.1f} "
                f"lat {pt['latency_us']:.2f} us, qps@{queues[-1]} {pt[f'qps@{queues[-1]}']:,.0f}, "
                f"cpu {pt['cpu_qps']:.0f} q/s", flush=True)
    return out


def at_recall(pts: list[dict], target: float, key: str) -> float | None:
    """``key`` interpolated at ``target`` on the recall-sorted curve (None if not reached)."""
    p = sorted(pts, key=lambda x: x["recall"])
    for lo, hi in zip(p, p[1:]):
        if lo["recall"] < target <= hi["recall"]:
            f = (target - lo["recall"]) / (hi["recall"] - lo["recall"])
            return lo[key] + f * (hi[key] - lo[key])
    if p and p[0]["recall"] >= target:
        return p[0][key]
    return None


def _finish(fig, ax, xlabel: str, fontsize: int, path: str) -> None:
    """Label a recall@10 plot, add its legend and grid, write it to ``path`` (PNG)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("recall@10")
    ax.legend(fontsize=fontsize)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    ap = image_parser(__doc__, queries=200)
    ap.add_argument("--L", default="32,64,96,128,192,256,320")
    ap.add_argument("--queues", default="1,32,64,128,256")
    ap.add_argument("--target", default="0.9,0.95,0.98")
    ap.add_argument("--png", help="plot file prefix")
    ap.add_argument("--reuse", help="take the Proxima / beam curves from this earlier --json")
    ap.add_argument("--cpu-queries", type=int,
                    help="time the golden model's CPU q/s on this many queries only (all are "
                         "searched for recall, accesses and the modelled timing)")
    a = ap.parse_args()

    img, _, q, gt = open_bench(a)
    index, layout = img.index, img.layout
    queues = [int(x) for x in a.queues.split(",")]
    log = print
    log(f"{a.image}: {index.n} x {index.cfg.vec.dim}, {len(q)} queries, preset "
        f"{index.cfg.name}")
    curves = peers(index.vectors, q, gt, index.cfg.pq.M, index.labels)
    if a.reuse:
        old = json.loads(Path(a.reuse).read_text())["curves"]
        curves.update({k: v for k, v in old.items() if k in ("proxima-alg1", "beam-same-nand")})
        log(f"Proxima and beam curves reused from {a.reuse}")
    else:
        curves.update(proxima_curves(index, layout, q, gt, [int(x) for x in a.L.split(",")],
                                     queues, log, a.cpu_queries))
    targets = [float(x) for x in a.target.split(",")]
    table = {}
    for tg in targets:
        log(f"\n== at recall@10 = {tg}")
        for name, pts in curves.items():
            row = {key: at_recall(pts, tg, key) for key in pts[0] if key not in ("param",)}
            table[f"{name}@{tg}"] = row
            if row["cpu_qps"] is None:
                log(f"  {name:15} not reached (best {max(p['recall'] for p in pts):.4f})")
                continue
            s = f"  {name:15} CPU {row['cpu_qps']:9,.0f} q/s"
            if "total_accesses" in row:
                s += (f" | frame {row['frame_accesses']:6.1f} code {row['code_accesses']:6.1f} "
                      f"raw {row['raw_accesses']:6.1f} (f+raw {row['total_accesses']:6.1f}, all "
                      f"{row['total_with_codes']:6.1f}) | latency {row['latency_us']:6.2f} us | "
                      + " ".join(f"{nq}q {row[f'qps@{nq}']:,.0f}" for nq in queues))
            log(s)
        h = table.get(f"hnswlib@{tg}", {}).get("cpu_qps")
        p = table.get(f"proxima-alg1@{tg}", {}).get(f"qps@{queues[-1]}")
        if h and p:
            log(f"  modelled Proxima at {queues[-1]} queues / hnswlib one core = {p / h:.1f}x")
    if a.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for name, key, st in (("proxima-alg1", "total_with_codes", "o-"),
                              ("proxima-alg1", "total_accesses", "o--"),
                              ("beam-same-nand", "total_accesses", "s-")):
            pts = sorted(curves[name], key=lambda x: x["recall"])
            lab = {"total_with_codes": "all accesses", "total_accesses": "frame + raw"}[key]
            ax.plot([p[key] for p in pts], [p["recall"] for p in pts], st,
                    label=f"{name} ({lab})")
        _finish(fig, ax, "NAND accesses per query", 8, f"{a.png}-accesses.png")
        fig, ax = plt.subplots(figsize=(6, 4))
        nq = queues[-1]
        for name in ("proxima-alg1", "beam-same-nand"):
            pts = sorted(curves[name], key=lambda x: x["recall"])
            ax.semilogx([p[f"qps@{nq}"] for p in pts], [p["recall"] for p in pts], "o-",
                        label=f"{name}, modelled, {nq} queues")
        for name in ("hnswlib", "faiss-hnsw", "faiss-ivfpq", "proxima-alg1"):
            if name in curves:
                pts = sorted(curves[name], key=lambda x: x["recall"])
                ax.semilogx([p["cpu_qps"] for p in pts], [p["recall"] for p in pts], "x:",
                            label=f"{name}, CPU one thread" if name != "proxima-alg1"
                            else "proxima golden model, CPU")
        _finish(fig, ax, "queries per second", 7, f"{a.png}-qps.png")
        log(f"wrote {a.png}-accesses.png, {a.png}-qps.png")
    if a.json:
        Path(a.json).write_text(json.dumps({"curves": curves, "at_recall": table}, indent=1,
                                           default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
