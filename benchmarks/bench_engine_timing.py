"""Engine timing model (golden/engine_timing.py) against the RTL, and its speed on `paper`.

Prints figures (the table of docs/RESOURCES.md, "Engine timing model"); not a test.

* ``--rtl-engine PRESET``: per query, the single-query ``SearchEngine`` in the Amaranth
  simulator (the golden NAND controller serving) against the model: cycles and error.
* ``--rtl-accel PRESET --queues 1 2 4 8 [--path-bits B]``: a batch through the
  ``Accelerator`` in the Amaranth simulator against the model: total cycles and error per
  queue count (``--path-bits``: the shared memory path's width, ``engine.path_bits``).
* ``--model PRESET [--n N] [--path-bits B ...]``: the model alone on a synthetic index of
  that preset: cycles per query, QPS, core utilisation and the NAND bound per queue count,
  with the model's wall time; again for each shared path width ``B`` (``engine.path_bits``).

Synthetic clustered indexes (tests/golden/conftest.py): ``tiny`` 300 vertices (12 hot),
``default`` 3000 (90 hot); ``--model``: ``--n`` vertices.  Run from the repository root:
``nice -n 10 python benchmarks/bench_engine_timing.py --rtl-accel tiny --queues 1 2 4 8``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from proxima.config import preset  # noqa: E402
from proxima.golden.engine_timing import (EngineCosts, nand_bound, predict,  # noqa: E402
                                          query_program, simulate_batch)
from proxima.golden.nandctl import path_word_bits  # noqa: E402
from proxima.golden.search import search  # noqa: E402

SIZES = {"tiny": (300, 12), "default": (3000, 90)}


def _image(name, tmp):
    from tests.hdl.engine_timing_rtl import tiny_image
    n, hot = SIZES[name]
    return tiny_image(tmp, preset(name), n=n, n_hot=hot)


def _queries(cfg, n):
    from tests.golden.conftest import clustered_u8
    return clustered_u8(n, cfg.vec.dim, seed=200)


def rtl_engine(name, nq, tmp):
    from tests.hdl.engine_timing_rtl import run_engine
    img = _image(name, tmp)
    lay = img.layout
    qs = _queries(lay.cfg, nq)
    refs = [search(img.index, q) for q in qs]
    t0 = time.time()
    got = run_engine(img, qs)
    wall = time.time() - t0
    costs = EngineCosts.single_engine(lay.cfg)
    errs = []
    print(f"{name}: single-query engine, golden NAND controller ({wall:.0f} s simulated)")
    print("query  hops  RTL cycles  model  error")
    for i, (g, r) in enumerate(zip(got, refs)):
        prog = query_program(r.events, r.counters, lay, costs, merge_skips=r.merge_skips)
        res = simulate_batch([prog], costs, 1, lay.total_cores)
        model = int(res.latency[0]) + 1 + costs.count_offset
        errs.append(model / g["cycles"] - 1)
        print(f"{i:5d} {g['hops']:5d} {g['cycles']:11d} {model:6d} {100 * errs[-1]:+6.2f}%")
    e = 100 * np.abs(errs)
    print(f"mean |error| {e.mean():.2f}%, max {e.max():.2f}%, total "
          f"{100 * (sum(1 + x for x in errs) / len(errs) - 1):+.2f}% (unweighted)")


def rtl_accel(name, nq, queues, tmp, path_bits=None):
    from tests.hdl.engine_timing_rtl import run_accel
    img = _image(name, tmp)
    lay = img.layout
    cfg = lay.cfg
    qs = _queries(cfg, nq)
    refs = [search(img.index, q) for q in qs]
    mcfg = cfg if path_bits is None else cfg.with_(engine={"path_bits": path_bits})
    print(f"{name}: Accelerator, {nq} queries, shared path "
          f"{path_word_bits(mcfg)} bits")
    print("queues  RTL cycles  model  error  NAND bound  RTL util  model util  sim s")
    for Q in queues:
        t0 = time.time()
        total, stats, busy = run_accel(img, qs, Q, path_bits=path_bits)
        wall = time.time() - t0
        for s, r in zip(stats, refs):
            assert s["error"] == 0 and s["hops"] == r.counters["hops"]
        m = predict(mcfg, lay, refs, Q)
        b = nand_bound(mcfg, lay, refs, Q)
        err = m.total_cycles / total - 1
        print(f"{Q:6d} {total:11d} {m.total_cycles:6d} {100 * err:+6.2f}% "
              f"{b.total_cycles:11d} {np.mean(busy) / total:9.3f} "
              f"{m.utilisation.mean():11.3f} {wall:6.0f}", flush=True)


def model_table(name, n, nq, queues, paths=()):
    """The model alone on a synthetic clustered index of ``n`` vertices of preset ``name``:
    per queue count, cycles per query, QPS, utilisation and the NAND bound; then the same
    with each shared path width of ``paths`` (``engine.path_bits``)."""
    from proxima.golden.index import Index
    from proxima.golden.layout import Layout
    from proxima.golden.pq import encode, train_codebook
    from proxima.golden.search_batch import search_batch
    from tests.golden.conftest import clustered_u8, knn_plus_random_graph
    cfg = preset(name)
    x = clustered_u8(n, cfg.vec.dim, seed=3)
    nbrs = knn_plus_random_graph(x, cfg.graph.R, seed=3)
    book = train_codebook(cfg, x, seed=3)
    hot = np.arange(n) < int(cfg.layout.hot_fraction * n)
    index = Index(cfg, x, nbrs, 0, book, encode(cfg, x, book), hot=hot)
    lay = Layout(cfg, n, int(hot.sum()), cfg.id_bits)
    refs = search_batch(index, _queries(cfg, nq), trace=True)
    print(f"{name}: {n} vertices, {nq} queries, mean hops "
          f"{np.mean([r.counters['hops'] for r in refs]):.1f}, "
          f"{cfg.engine.clock_mhz:g} MHz")
    print("(util: core_busy / cycles, completion stalls included; svc: sensing and transfer only)")
    for pb in (None, *paths):
        mcfg = cfg if pb is None else cfg.with_(engine={"path_bits": int(pb)})
        print(f"shared path {path_word_bits(mcfg)} bits "
              f"({EngineCosts.from_cfg(mcfg).ctl_nb} beats per access)")
        print("queues  cycles/query      QPS  util index  svc index  util raw  bound QPS  "
              "of bound  model s")
        for Q in queues:
            t0 = time.time()
            m = predict(mcfg, lay, refs, Q)
            wall = time.time() - t0
            b = nand_bound(mcfg, lay, refs, Q)
            s = m.summary()
            print(f"{Q:6d} {m.cycles_per_query:13.0f} {m.qps:8.0f} {s['util_index']:11.3f} "
                  f"{s['service_util_index']:10.3f} {s['util_raw']:9.3f} {b.qps:10.0f} "
                  f"{m.qps / b.qps:9.2f} {wall:8.2f}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rtl-engine", choices=sorted(SIZES))
    ap.add_argument("--rtl-accel", choices=sorted(SIZES))
    ap.add_argument("--model", choices=["tiny", "default", "paper"])
    ap.add_argument("--queries", type=int, default=8)
    ap.add_argument("--queues", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--path-bits", type=int, nargs="+", default=[],
                    help="shared path widths (--rtl-accel: the first one)")
    a = ap.parse_args(argv)
    if not (a.rtl_engine or a.rtl_accel or a.model):
        ap.error("choose --rtl-engine, --rtl-accel or --model")
    with tempfile.TemporaryDirectory() as tmp:
        if a.rtl_engine:
            rtl_engine(a.rtl_engine, a.queries, tmp)
        if a.rtl_accel:
            rtl_accel(a.rtl_accel, a.queries, a.queues, tmp,
                      a.path_bits[0] if a.path_bits else None)
        if a.model:
            model_table(a.model, a.n, a.queries, a.queues, a.path_bits)


if __name__ == "__main__":
    main()
