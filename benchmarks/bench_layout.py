"""Layout / image / NAND timing report on a large synthetic graph (issue 3).

What it does (every step logged with its wall time):

1. Data: ``golden.datasets.synth("sift", N)`` (uint8, 128-d, clustered) and its queries.
2. Graph: a *kNN-like* graph built quickly (Vamana / HNSW at 10^6 vertices take far too long on
   the shared 2-core machine): approximate ``R - long`` nearest neighbours from a faiss IVF index
   on a 32-d PCA projection, plus ``long`` uniformly random long-range links per vertex (so greedy
   search navigates between clusters), deduplicated and sorted; entry = the medoid.
3. PQ: ``golden.pq.train_codebook`` / ``encode`` with the preset's M.
4. Reordering: visit frequency from Algorithm 1 (``golden.search_batch``) on ``--sample`` base
   vectors; ``golden.reorder.reorder``; hot = ceil(hot_fraction * N).
5. Gap widths (per row and the image slot width W), index size vs 32-bit ids, frame sizes in
   accesses, before and after reordering.
6. Search traces of ``--queries`` queries (Algorithm 1, trace=True) on the reordered index; reads
   per query and timing for hot fractions 0 / 1% / 3% / 5% (the events do not depend on the hot
   set, only the reads do), and the core-utilisation curve for Nq = 32..256 (paper preset).
7. Image: ``write_image`` + ``open_image`` of the reordered index, identical search results and
   counters on a few queries, file size, write/open times.

Run: ``OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_layout.py --n 1000000``
(``--n 100000`` for a quick look).  Prints a JSON report (``--json PATH`` also writes it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

import numpy as np

from proxima.config import preset
from proxima.golden.datasets import synth, synth_queries
from proxima.golden.graph import medoid
from proxima.golden.image import read_image, write_image
from proxima.golden.index import Index
from proxima.golden.layout import Layout, gap_widths, reads_for_events
from proxima.golden.nand import TimingParams, phases_for_events, simulate
from proxima.golden.pq import encode, train_codebook
from proxima.golden.reorder import hot_count, reorder, sample_base_vectors
from proxima.golden.search_batch import search_batch

T0 = time.time()


def log(msg: str) -> None:
    print(f"[{time.time() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def knn_like_graph(x: np.ndarray, R: int, n_long: int, seed: int = 0) -> np.ndarray:
    """Approximate kNN (faiss IVF on 32-d PCA) + ``n_long`` random links; rows sorted, -1 pad."""
    import faiss

    n, d = x.shape
    rng = np.random.default_rng(seed)
    train = x[rng.choice(n, size=min(n, 100_000), replace=False)].astype(np.float32)
    dp = min(32, d)
    pca = faiss.PCAMatrix(d, dp)
    pca.train(train)
    nlist = max(16, int(4 * math.sqrt(n)))
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(dp), dp, nlist)
    ivf.train(pca.apply(train))
    ivf.nprobe = 3
    k = R - n_long + 1
    rows = np.empty((n, R - n_long + 1 + n_long), dtype=np.int64)
    for s in range(0, n, 200_000):
        y = pca.apply(x[s:s + 200_000].astype(np.float32))
        ivf.add(y)
    for s in range(0, n, 100_000):
        y = pca.apply(x[s:s + 100_000].astype(np.float32))
        _, idx = ivf.search(y, k)
        rows[s:s + len(y), :k] = idx
    rows[:, k:] = rng.integers(0, n, (n, n_long))
    big = np.iinfo(np.int64).max
    rows[(rows < 0) | (rows == np.arange(n)[:, None])] = big
    rows.sort(axis=1)
    dup = np.zeros_like(rows, dtype=bool)
    dup[:, 1:] = rows[:, 1:] == rows[:, :-1]
    rows[dup] = big
    rows.sort(axis=1)
    rows = rows[:, :R]
    rows[rows == big] = -1
    return rows.astype(np.int32)


def width_stats(nb: np.ndarray) -> dict:
    w = gap_widths(nb)
    deg = (nb >= 0).sum(axis=1)
    return {"W": int(w.max()), "mean_row_width": float(w.mean()),
            "p50": int(np.percentile(w, 50)), "p99": int(np.percentile(w, 99)),
            "hist": {int(b): int(c) for b, c in zip(*np.unique(w, return_counts=True))},
            "mean_degree": float(deg.mean())}


def size_stats(cfg, n: int, W: int, hot: int) -> dict:
    lay = Layout(cfg, n, hot, W)
    R = cfg.graph.R
    ids_gap = lay.id_region_bits
    ids_32 = 32 * R
    A, C = cfg.nand.access_bytes, cfg.pq_code_bytes
    plain_bytes = 4 * R + C  # R 32-bit ids then the code, no header
    plain_stride = (1 << (plain_bytes - 1).bit_length() if plain_bytes <= A
                    else -(-plain_bytes // A) * A)
    return {
        "id_bits_per_frame_gap": ids_gap, "id_bits_per_frame_32bit": ids_32,
        "id_compression": 1 - ids_gap / ids_32,
        "bits_per_id_slot": ids_gap / R,
        "frame_bytes": lay.frame_bytes, "stride": lay.stride,
        "frame_accesses": lay.frame_access_count,
        "frame_bytes_32bit": plain_bytes, "stride_32bit": plain_stride,
        "frame_accesses_32bit": -(-(4 * R) // A),
        "normal_region_MB":
            cfg.nand.cores * lay.normal_pages_per_core * cfg.nand.page_bytes / 2**20,
        "hot_accesses": lay.hot_accesses, "hot_region_MB":
            cfg.nand.cores * lay.hot_pages * cfg.nand.page_bytes / 2**20,
    }


def markdown(r: dict) -> str:
    """The report's tables as Markdown (docs/LAYOUT.md section 12 is this output)."""
    L = []
    s, wo, wr = r["sizes"], r["widths_original_order"], r["widths_reordered"]
    L.append(f"N = {r['n']:,}, preset `{r['preset']}`, graph: {r['graph']}, reorder sample "
             f"{r['sample']}, {r['queries']} query traces.\n")
    L.append("| gap widths | W (slot width) | mean row width | p50 | p99 |")
    L.append("|---|---|---|---|---|")
    for name, w in (("synthetic id order", wo), ("after frequency reordering", wr)):
        L.append(f"| {name} | {w['W']} | {w['mean_row_width']:.2f} | {w['p50']} | {w['p99']} |")
    L.append("")
    L.append("| frame (reordered, W = %d) | gap-encoded | 32-bit ids |" % wr["W"])
    L.append("|---|---|---|")
    L.append(f"| neighbour bits per frame | {s['id_bits_per_frame_gap']} "
             f"({s['bits_per_id_slot']:.1f} per slot, incl. header) | "
             f"{s['id_bits_per_frame_32bit']} |")
    L.append(f"| id compression | {100 * s['id_compression']:.1f}% smaller | - |")
    L.append(f"| frame bytes / stride | {s['frame_bytes']} / {s['stride']} | "
             f"{s['frame_bytes_32bit']} / {s['stride_32bit']} |")
    L.append(f"| accesses per neighbour-list read | {s['frame_accesses']} | "
             f"{s['frame_accesses_32bit']} |")
    L.append(f"| normal region (all index cores) | {s['normal_region_MB']:.0f} MiB | "
             f"{s['normal_region_MB'] * s['stride_32bit'] / s['stride']:.0f} MiB |")
    L.append("")
    vf = r["visit_frequency"]
    share = [v for k, v in vf.items() if k.startswith("share")][0]
    L.append(f"Reorder sample: {vf['vertices_expanded']:,} distinct vertices expanded; the top "
             f"{r['reads_by_hot_fraction']['0.03']['hot']:,} (3%) hold {100 * share:.1f}% of the "
             f"sample's expansions.\n")
    L.append("| hot fraction | H | K (accesses / hot frame) | hot share of expansions | "
             "frame / code / raw accesses per query | total | latency Nq=1 (us) | "
             "QPS Nq=256 | latency Nq=256 (us) |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for frac, h in r["reads_by_hot_fraction"].items():
        t1 = r["timing_by_hot_fraction"][f"{frac}@1"]
        tq = [v for k, v in r["timing_by_hot_fraction"].items()
              if k.startswith(f"{frac}@") and not k.endswith("@1")][0]
        L.append(f"| {float(frac):.0%} | {h['hot']:,} | {h['hot_accesses_per_frame']} | "
                 f"{100 * h['expansions_hot_share']:.1f}% | {h['frame_reads_per_query']:.0f} / "
                 f"{h['code_reads_per_query']:.0f} / {h['raw_reads_per_query']:.0f} | "
                 f"{h['reads_per_query']:.0f} | {t1['mean_latency_us']:.1f} | {tq['qps']:,.0f} | "
                 f"{tq['mean_latency_us']:.0f} |")
    L.append("")
    L.append("| Nq (paper preset, 3% hot) | QPS | mean index-core util | max core util | "
             "raw-core util | mean latency (us) |")
    L.append("|---|---|---|---|---|---|")
    for nq, c in r["utilisation_curve"].items():
        mx = f"{100 * c['util_max']:.1f}% (core {c['busiest_cores'][0]})" \
            if "util_max" in c else "n/a"
        L.append(f"| {nq} | {c['qps']:,.0f} | {100 * c['util_index']:.1f}% | {mx} | "
                 f"{100 * c['util_raw']:.1f}% | {c['mean_latency_us']:.0f} |")
    if "fpga_preset" in r:
        f = r["fpga_preset"]
        L.append("")
        L.append(f"FPGA preset `{f['preset']}` (its own {f['layout']['index_cores']} + "
                 f"{f['layout']['raw_cores']} cores, {1000 / f['params']['cycle_ns']:.0f} MHz, "
                 f"tR {f['params']['tR_cycles']} + transfer {f['params']['transfer_cycles']} "
                 f"cycles; R and M of the traced index), same traces:\n")
        L.append("| Nq | QPS | mean index-core util | mean latency (us) |")
        L.append("|---|---|---|---|")
        for nq, c in f["by_nq"].items():
            L.append(f"| {nq} | {c['qps']:,.0f} | {100 * c['util_index']:.1f}% | "
                     f"{c['mean_latency_us']:.0f} |")
    im = r["image"]
    L.append("")
    L.append(f"Image: {im['bytes'] / 2**20:.0f} MiB, write {im['write_s']:.0f} s, open + verify + "
             f"decode {im['open_s']:.0f} s; decoded index equal: {im['decoded_equal']}; "
             f"Algorithm 1 on the opened image vs in memory (ids, counters, events): "
             f"{'identical' if im['search_identical'] else 'DIFFERENT'}.")
    return "\n".join(L)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--long-links", type=int, default=8)
    ap.add_argument("--sample", type=int, default=None,
                    help="base vectors for reordering (default: the preset's "
                         "layout.reorder_sample)")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--image-check", type=int, default=20, help="queries compared on the image")
    ap.add_argument("--fpga-preset", default="default")
    ap.add_argument("--json", default=None)
    ap.add_argument("--markdown-from", default=None, metavar="JSON",
                    help="only print the Markdown tables of a saved report")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.markdown_from:
        with open(a.markdown_from) as f:
            print(markdown(json.load(f)))
        return {}

    cfg = preset(a.preset)
    if a.sample is not None:
        cfg = cfg.with_(layout={"reorder_sample": a.sample})
    a.sample = cfg.layout.reorder_sample
    report: dict = {"n": a.n, "preset": cfg.name, "graph": f"kNN-like: IVF-PCA32 approx "
                    f"{cfg.graph.R - a.long_links} NN + {a.long_links} random links",
                    "sample": a.sample, "queries": a.queries}
    x = synth("sift", a.n, seed=a.seed)
    q = synth_queries("sift", a.queries, seed=a.seed)
    log(f"data {x.shape}")
    nb = knn_like_graph(x, cfg.graph.R, a.long_links, a.seed)
    entry = medoid(x)
    log(f"graph built, entry {entry}")
    book = train_codebook(cfg, x, seed=a.seed + 1)
    codes = encode(cfg, x, book)
    log("PQ trained / encoded")
    index = Index(cfg, x, nb, entry, book, codes)
    report["widths_original_order"] = width_stats(nb)

    sample = sample_base_vectors(index, a.sample, seed=a.seed)
    counts = np.zeros(index.n, dtype=np.int64)
    for res in search_batch(index, sample, trace=True):
        fr = [v for k, v in res.events if k == "frame"]
        np.add.at(counts, np.asarray(fr, dtype=np.int64), 1)
    log(f"visit frequency from {a.sample} base searches ({int(counts.sum())} expansions)")
    ridx, perm = reorder(index, counts)
    H = hot_count(cfg, ridx.n)
    ws = width_stats(ridx.neighbors)
    report["widths_reordered"] = ws
    W = ws["W"]
    report["sizes"] = size_stats(cfg, ridx.n, W, H)
    report["visit_frequency"] = {
        "vertices_expanded": int((counts > 0).sum()),
        f"share_of_expansions_in_top_{H}": float(np.sort(counts)[::-1][:H].sum() /
                                                 max(1, counts.sum()))}
    log(f"reordered: W = {W} (original order {report['widths_original_order']['W']}), H = {H}")

    res = search_batch(ridx, q, trace=True)
    events = [r.events for r in res]
    log(f"{len(events)} query traces")
    per_hot = {}
    timing_hot = {}
    params = TimingParams.from_cfg(cfg)
    for frac in (0.0, 0.01, 0.03, 0.05):
        h = hot_count(cfg.with_(layout={"hot_fraction": frac}), ridx.n)
        lay = Layout(cfg, ridx.n, h, W)
        kinds = {"frame": 0, "code": 0, "raw": 0}
        for ev in events:
            for rd in reads_for_events(ev, lay):
                kinds[rd.kind] += 1
        hot_exp = sum(1 for ev in events for k, v in ev if k == "frame" and v < h)
        all_exp = sum(1 for ev in events for k, v in ev if k == "frame")
        per_hot[frac] = {"hot": h, "hot_accesses_per_frame": lay.hot_accesses,
                         "expansions_hot_share": hot_exp / max(1, all_exp),
                         **{f"{k}_reads_per_query": c / len(events) for k, c in kinds.items()},
                         "reads_per_query": sum(kinds.values()) / len(events)}
        traces = [phases_for_events(ev, lay, params) for ev in events]
        for nq in (1, cfg.engine.queues):
            r = simulate(traces, params, nq)
            timing_hot[f"{frac}@{nq}"] = r.summary()
        log(f"hot {frac}: {per_hot[frac]['reads_per_query']:.1f} reads/query, "
            f"Nq=1 latency {timing_hot[f'{frac}@1']['mean_latency_us']:.2f} us")
    report["reads_by_hot_fraction"] = per_hot
    report["timing_by_hot_fraction"] = timing_hot

    lay = Layout(cfg, ridx.n, H, W)
    traces = [phases_for_events(ev, lay, params) for ev in events]
    curve = {}
    for nq in (32, 64, 128, 256):
        r = simulate(traces, params, nq)
        curve[nq] = r.summary()
        log(f"Nq {nq}: util {r.mean_util_index:.3f}, QPS {r.qps:.0f}")
    report["utilisation_curve"] = curve
    report["timing_params"] = vars(params)

    # FPGA preset: its own NAND geometry, clock, tR and queues, with the graph / PQ shape of the
    # traced index (R, M) so that the same events can be laid out and timed
    fcfg = preset(a.fpga_preset).with_(graph={"R": cfg.graph.R, "build_L": cfg.graph.build_L},
                                       pq={"M": cfg.pq.M})
    flay = Layout(fcfg, ridx.n, H, W)
    fparams = TimingParams.from_cfg(fcfg)
    ftraces = [phases_for_events(ev, flay, fparams) for ev in events]
    fpga = {}
    for nq in sorted({1, fcfg.engine.queues, 8, 16}):
        fpga[nq] = simulate(ftraces, fparams, nq).summary()
        log(f"FPGA {fcfg.name} Nq {nq}: util {fpga[nq]['util_index']:.3f}, "
            f"QPS {fpga[nq]['qps']:.0f}")
    report["fpga_preset"] = {"preset": fcfg.name, "params": vars(fparams),
                             "layout": flay.summary(), "by_nq": fpga}

    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as d:
        path = os.path.join(d, "index.pxi")
        t = time.time()
        write_image(path, ridx)
        tw = time.time() - t
        t = time.time()
        im = read_image(path)
        to = time.time() - t
        same = all(np.array_equal(getattr(im.index, f), getattr(ridx, f))
                   for f in ("vectors", "neighbors", "codes", "codebook", "hot", "labels"))
        qs = q[:a.image_check]
        r1 = search_batch(ridx, qs, trace=True)
        r2 = search_batch(im.index, qs, trace=True)
        ident = all(np.array_equal(x1.ids, x2.ids) and x1.counters == x2.counters and
                    x1.events == x2.events for x1, x2 in zip(r1, r2))
        report["image"] = {"bytes": os.path.getsize(path), "write_s": tw, "open_s": to,
                           "decoded_equal": bool(same), "search_identical": bool(ident),
                           "layout": im.layout.summary()}
        log(f"image {os.path.getsize(path) / 2**20:.1f} MiB, write {tw:.1f}s open {to:.1f}s, "
            f"identical {same and ident}")
    out = json.dumps(report, indent=1, default=float)
    print(out)
    print(markdown(json.loads(out)))
    if a.json:
        with open(a.json, "w") as f:
            f.write(out)
    return report


if __name__ == "__main__":
    main()
