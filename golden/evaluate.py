"""Evaluation: recall, per-query counters, throughput, sweeps, matched-recall comparison."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from proxima.config import ProximaConfig

from .index import Index

__all__ = ["recall_at", "EvalReport", "run_queries", "sweep", "at_recall", "access_counts",
           "plot_reports", "ALGOS"]

ALGOS = ("alg1", "beam")


def recall_at(ids: np.ndarray, gt: np.ndarray, k: int) -> float:
    """Mean |returned top-k ∩ true top-k| / k over queries (``ids`` (Q, >=k), ``gt`` (Q, >=k))."""
    if ids.shape[1] < k or gt.shape[1] < k:
        raise ValueError(f"recall@{k} needs at least {k} results and ground-truth columns")
    hits = [len(np.intersect1d(a[:k], b[:k])) for a, b in zip(ids, gt)]
    return float(np.mean(hits)) / k


@dataclass
class EvalReport:
    algo: str
    params: dict
    recall: dict[str, float]
    counters: dict[str, float]  # means per query
    qps: float
    seconds: float
    reasons: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"algo": self.algo, "params": self.params, "recall": self.recall,
                "counters": self.counters, "qps": self.qps, "seconds": self.seconds,
                "reasons": self.reasons}


def access_counts(results: list, layout, algo: str = "alg1") -> dict[str, float]:
    """Mean NAND accesses per query by kind, from the results' events and the image layout.

    ``frame`` = neighbour-list accesses, ``code`` = PQ-code accesses, ``raw`` = raw-vector
    accesses.  ``total`` = frame + raw (the comparison measure of the design reference);
    ``total_with_codes`` adds the code accesses.  For the beam-search baseline the PQ codes
    are in host RAM (DiskANN), so its code accesses are 0 and every frame it reads, hot or
    not, is the normal frame's neighbour part (``layout.frame_access_count`` accesses: a hot
    frame's duplicated codes would be of no use to it).
    """
    from .layout import reads_for_events

    sums = {"frame": 0, "code": 0, "raw": 0}
    for r in results:
        if not r.events:
            raise ValueError("access counts need results searched with trace=True")
        if algo == "beam":
            for kind, _ in r.events:
                if kind == "frame":
                    sums["frame"] += layout.frame_access_count
                elif kind == "raw":
                    sums["raw"] += layout.raw_access_count
            continue
        for rd in reads_for_events(r.events, layout):
            sums[rd.kind] += 1
    n = max(1, len(results))
    out = {f"{k}_accesses": v / n for k, v in sums.items()}
    out["total_accesses"] = out["frame_accesses"] + out["raw_accesses"]
    out["total_with_codes"] = out["total_accesses"] + out["code_accesses"]
    return out


def _searcher(algo: str) -> Callable:
    if algo == "alg1":
        import os

        from .search_batch import search_batch

        def run(index, queries, cfg, trace=False):
            return search_batch(index, queries, cfg, trace=trace, workers=os.cpu_count() or 1)
        return run
    if algo == "beam":
        from .beam import beam_search

        def run(index, queries, cfg, trace=False):
            return [beam_search(index, q, cfg, trace=trace) for q in queries]
        return run
    raise ValueError(f"unknown algorithm {algo!r}; choose from {ALGOS}")


def run_queries(index: Index, queries: np.ndarray, gt: np.ndarray | None,
                cfg: ProximaConfig | None = None, algo: str = "alg1",
                layout=None) -> tuple[EvalReport, list]:
    """Search every query; return the report and the per-query results.

    Queries/s is measured on an untraced run.  With a ``layout`` the queries are searched
    again with events on, and NAND accesses per query are added to the counters.
    """
    cfg = cfg or index.cfg
    t0 = time.perf_counter()
    results = _searcher(algo)(index, queries, cfg, trace=False)
    dt = time.perf_counter() - t0
    accesses = {}
    if layout is not None:
        results = _searcher(algo)(index, queries, cfg, trace=True)
        accesses = access_counts(results, layout, algo)
    k = cfg.search.k
    ids = np.full((len(results), k), -1, dtype=np.int64)
    for i, r in enumerate(results):
        ids[i, :len(r.ids)] = index.labels[r.ids]  # the caller's ids
    recall = {}
    if gt is not None:
        for kk in (1, 10, 100):
            if kk <= k and kk <= gt.shape[1]:
                recall[f"recall@{kk}"] = recall_at(ids, gt, kk)
    names = sorted({c for r in results for c in r.counters})
    counters = {c: float(np.mean([r.counters.get(c, 0) for r in results])) for c in names}
    counters.update(accesses)
    reasons: dict[str, int] = {}
    for r in results:
        reasons[r.reason] = reasons.get(r.reason, 0) + 1
    params = {"L": cfg.search.L, "k": k}
    if algo == "alg1":
        params.update(T0=cfg.search.T0, T_step=cfg.search.T_step, r=cfg.search.r,
                      beta=cfg.search.beta, L_per_r=cfg.search.L_per_r,
                      r_eff=cfg.search.r_eff)
    else:
        params.update(W=cfg.search.beam_width)
    rep = EvalReport(algo, params, recall, counters, len(results) / dt if dt > 0 else 0.0, dt,
                     reasons)
    return rep, results


def sweep(index: Index, queries: np.ndarray, gt: np.ndarray, algo: str,
          grid: Iterable[dict[str, dict]], progress: bool = True,
          layout=None) -> list[EvalReport]:
    """Run :func:`run_queries` for every configuration change in ``grid``.

    Each grid point is a ``ProximaConfig.with_`` mapping, e.g. ``{"search": {"L": 48}}``.
    """
    from tqdm import tqdm

    grid = list(grid)
    out = []
    for change in tqdm(grid, desc=f"sweep {algo}", disable=not progress, unit="pt"):
        cfg = index.cfg.with_(**change)
        rep, _ = run_queries(index, queries, gt, cfg, algo, layout)
        out.append(rep)
    return out


def at_recall(reports: list[EvalReport], target: float, metric: str = "recall@10",
              counter: str = "hops") -> float | None:
    """``counter`` at ``metric == target``, interpolated linearly between the two sweep points
    that bracket the target on the recall-sorted curve (None if the sweep never reaches it)."""
    pts = sorted((r.recall[metric], r.counters[counter]) for r in reports if metric in r.recall)
    # the cheapest point at or above the target, and the best one below it
    above = [p for p in pts if p[0] >= target]
    if not above:
        return None
    hi = min(above, key=lambda p: p[1])
    below = [p for p in pts if p[0] < target and p[1] <= hi[1]]
    if not below:
        return hi[1]
    lo = max(below, key=lambda p: p[0])
    if hi[0] == lo[0]:
        return hi[1]
    return lo[1] + (hi[1] - lo[1]) * (target - lo[0]) / (hi[0] - lo[0])


def plot_reports(reports: list[dict], path, metric: str = "recall@10") -> None:
    """Plot ``metric`` against NAND accesses per query (frame + raw, and all accesses), per
    algorithm, and against the modelled QPS when the reports carry timing (``model_qps``);
    ``reports`` are :meth:`EvalReport.to_dict` results.  Writes a PNG (matplotlib, optional
    extra ``bench``)."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError("plots need matplotlib: pip install -e '.[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = any("model_qps" in r["counters"] for r in reports)
    fig, axes = plt.subplots(1, 2 if timed else 1, figsize=(11 if timed else 6, 4),
                             squeeze=False)
    algos = sorted({r["algo"] for r in reports})
    for algo in algos:
        rs = sorted((r for r in reports if r["algo"] == algo and metric in r["recall"]),
                    key=lambda r: r["recall"][metric])
        if not rs or "total_accesses" not in rs[0]["counters"]:
            continue
        y = [r["recall"][metric] for r in rs]
        axes[0][0].plot([r["counters"]["total_accesses"] for r in rs], y, "o-",
                        label=f"{algo}: frame + raw")
        if algo != "beam":
            axes[0][0].plot([r["counters"]["total_with_codes"] for r in rs], y, "o--",
                            label=f"{algo}: all (PQ codes from NAND)")
        if timed and "model_qps" in rs[0]["counters"]:
            axes[0][1].semilogx([r["counters"]["model_qps"] for r in rs], y, "o-", label=algo)
    axes[0][0].set_xlabel("NAND accesses per query")
    if timed:
        axes[0][1].set_xlabel("modelled queries per second")
        axes[0][1].set_ylabel(metric)
        axes[0][1].grid(alpha=0.3)
        axes[0][1].legend(fontsize=8)
    axes[0][0].set_ylabel(metric)
    axes[0][0].grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
