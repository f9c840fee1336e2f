"""Self-tuning of Algorithm 1's search parameters on a sample of the base (``proxima tune``).

Contract
--------
:func:`holdout_split` takes ``count`` base vectors out (seeded); the index is built on the
rest, the held-out vectors are the tuning queries and their exact top-``k`` among the rest
(faiss brute force, :func:`exact_ground_truth`) is the ground truth: the tuning queries are
never vertices of the graph they are searched on, as a user's queries are not.

:func:`tune_search` picks ``search.{L, r, L_per_r, T0, T_step, beta}`` for a recall@k
``target`` (reached on the sample with ``margin`` to spare) minimising ``objective``:

* ``"latency"`` (default): mean modelled query time of the NAND timing model
  (:mod:`proxima.golden.nand`) with one query in flight: every read of the query (frames,
  PQ codes, raw vectors) and the compute between them;
* ``"qps"``: modelled throughput with ``engine.queues`` queries in flight (maximised);
* ``"accesses"``: mean NAND accesses per query, PQ-code accesses included;
* ``"frame_raw"``: mean neighbour-list + raw-vector accesses per query (PQ-code reads not
  counted: the figure compared with beam search, whose codes are in host RAM).

The timing figures come from the configuration ``cfg`` given (the image's plus any
search-time overrides), never from hidden state.  Search: for each ``L`` of ``Ls`` the
smallest run of unchanged checks ``r_eff`` of ``rs`` that reaches the target with the other
parameters at their configured values (:func:`stop_rule`: ``r`` alone up to 15, longer runs
through ``L_per_r``; an ``L`` is given up once a longer run adds less than 0.001);
the best few of those are then refined by coordinate descent over
``T0``, ``T_step``, ``beta``, ``r`` and ``L_per_r`` (each move kept only if the target still
holds and the objective improves).  Every evaluated point is returned (:class:`TunePoint`),
so the choice can be checked.  Deterministic for given inputs.

:func:`recommend_build` rebuilds the held-out index with alternative build settings
(``pq.M``, ``graph.R``, ``layout.hot_fraction``), re-tunes each, and reports the objective
at the target for each, so a user sees the measured effect before building for real.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from proxima.config import R_MAX, ConfigError, ProximaConfig

from .evaluate import access_counts, recall_at
from .index import Index
from .layout import Layout

__all__ = ["OBJECTIVES", "DEFAULT_LS", "DEFAULT_RS", "TunePoint", "TuneResult", "holdout_split",
           "exact_ground_truth",
           "evaluate_point", "tune_search", "stop_rule", "recommend_build", "recommendation",
           "SEARCH_KEYS"]

OBJECTIVES = ("latency", "qps", "accesses", "frame_raw")
#: the list sizes and runs of unchanged checks (``r_eff``, :func:`stop_rule`) tried by default
DEFAULT_LS = (32, 48, 64, 96, 128, 192, 256)
DEFAULT_RS = (1, 2, 3, 4, 6, 8, 10, 12, 15, 20, 24, 32, 48, 64)
#: the search fields a tune result sets (stored in the image's configuration)
SEARCH_KEYS = ("L", "r", "L_per_r", "T0", "T_step", "beta")


@dataclass
class TunePoint:
    search: dict  # the search fields of this point
    recall: float
    accesses: dict  # mean accesses per query by kind (evaluate.access_counts)
    latency_us: float  # modelled, one query in flight
    qps: float  # modelled, engine.queues in flight

    def objective(self, name: str) -> float:
        """Smaller is better for every objective (``qps`` is negated)."""
        if name == "latency":
            return self.latency_us
        if name == "qps":
            return -self.qps
        if name == "accesses":
            return self.accesses["total_with_codes"]
        if name == "frame_raw":
            return self.accesses["total_accesses"]
        raise ValueError(f"unknown objective {name!r}; choose from {OBJECTIVES}")

    def to_dict(self) -> dict:
        return {"search": self.search, "recall": self.recall, "accesses": self.accesses,
                "latency_us": self.latency_us, "qps": self.qps}


@dataclass
class TuneResult:
    best: TunePoint | None  # None: the target was not reached anywhere
    points: list[TunePoint] = field(default_factory=list)
    target: float = 0.0
    objective: str = "latency"

    def to_dict(self) -> dict:
        return {"target": self.target, "objective": self.objective,
                "best": self.best.to_dict() if self.best else None,
                "points": [p.to_dict() for p in self.points]}


def holdout_split(n: int, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(keep, held)``: sorted index arrays; ``held`` has ``count`` rows of ``0..n-1``."""
    if not 1 <= count < n:
        raise ValueError(f"hold-out count must be in 1..{n - 1}, got {count}")
    held = np.sort(np.random.default_rng(seed).choice(n, count, replace=False))
    keep = np.setdiff1d(np.arange(n), held)
    return keep, held


def exact_ground_truth(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-``k`` ids of ``queries`` in ``base`` by squared L2 (faiss brute force)."""
    import faiss

    ix = faiss.IndexFlatL2(base.shape[1])
    ix.add(np.ascontiguousarray(base, dtype=np.float32))
    _, ids = ix.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return ids.astype(np.int64)


def _search_dict(cfg: ProximaConfig) -> dict:
    s = cfg.search
    return {k: getattr(s, k) for k in SEARCH_KEYS}


def evaluate_point(index: Index, layout: Layout, queries: np.ndarray, gt: np.ndarray,
                   cfg: ProximaConfig) -> TunePoint:
    """Search ``queries`` with ``cfg`` (events on); recall@k, accesses and modelled timing."""
    import os

    from .nand import simulate_events
    from .search_batch import search_batch

    k = cfg.search.k
    res = search_batch(index, queries, cfg, trace=True, workers=os.cpu_count() or 1)
    ids = np.full((len(res), k), -1, dtype=np.int64)
    for i, r in enumerate(res):
        ids[i, :len(r.ids)] = index.labels[r.ids]
    rec = recall_at(ids, gt, k)
    acc = access_counts(res, layout)
    events = [r.events for r in res]
    one = simulate_events(events, layout, nq=1, cfg=cfg)
    many = simulate_events(events, layout, cfg=cfg)
    return TunePoint(_search_dict(cfg), rec, acc, one.mean_latency_ns / 1e3, many.qps)


def _valid(cfg: ProximaConfig, change: dict) -> ProximaConfig | None:
    try:
        return cfg.with_(search=change)
    except ConfigError:
        return None


def tune_search(index: Index, layout: Layout, queries: np.ndarray, gt: np.ndarray,
                target: float, cfg: ProximaConfig | None = None, objective: str = "latency",
                margin: float = 0.005, Ls: Iterable[int] = DEFAULT_LS,
                rs: Iterable[int] = DEFAULT_RS, refine: int = 3,
                log: Callable[[str], None] | None = None) -> TuneResult:
    """Pick search parameters reaching ``target + margin`` recall@k at the least ``objective``
    (module doc).  ``cfg`` defaults to the index's configuration."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose from {OBJECTIVES}")
    cfg = cfg or index.cfg
    log = log or (lambda s: None)
    need = target + margin
    seen: dict[tuple, TunePoint] = {}

    def run(c: ProximaConfig) -> TunePoint:
        key = tuple(sorted(_search_dict(c).items()))
        if key not in seen:
            seen[key] = evaluate_point(index, layout, queries, gt, c)
            p = seen[key]
            log(f"  {_fmt(p.search)}: recall {p.recall:.4f}, "
                f"{p.accesses['total_with_codes']:.1f} accesses, {p.latency_us:.2f} us, "
                f"{p.qps:,.0f} q/s")
        return seen[key]

    k, sn = cfg.search.k, cfg.engine.sorter_n
    Ls = [L for L in Ls if L >= k and (L <= sn or L % sn == 0)]
    rs = sorted(set(rs))
    feasible: list[TunePoint] = []
    for L in Ls:
        prev = None
        for r in rs:  # the smallest r_eff that reaches the target at this L
            c = _valid(cfg, {"L": L, **stop_rule(L, r), "T0": min(L, max(k, cfg.search.T0))})
            if c is None:
                continue
            p = run(c)
            if p.recall >= need:
                feasible.append(p)
                break
            if r == rs[-1] or c.search.T0 + c.search.r_eff * c.search.T_step > L:
                break  # a larger r would only reach list_end: no gain at this L
            if prev is not None and p.recall - prev.recall < 0.001:
                break  # r no longer lifts recall at this L: the list is too short
            prev = p
    feasible.sort(key=lambda p: p.objective(objective))
    best = feasible[0] if feasible else None
    axes = {"T0": (k, 12, 16, 24, 32), "T_step": (1, 2, 4, 8), "beta": (1.0, 1.06, 1.15, 1.3),
            "r": tuple(r for r in rs if r <= R_MAX), "L_per_r": (0, 8, 16)}
    for start in feasible[:refine]:
        cur = start
        improved = True
        while improved:
            improved = False
            for ax, vals in axes.items():
                for v in vals:
                    if v == cur.search[ax]:
                        continue
                    c = _valid(cfg, {**cur.search, ax: v})
                    if c is None:
                        continue
                    p = run(c)
                    if p.recall >= need and p.objective(objective) < cur.objective(objective):
                        cur, improved = p, True
        if best is None or cur.objective(objective) < best.objective(objective):
            best = cur
    return TuneResult(best, list(seen.values()), target, objective)


def stop_rule(L: int, r_eff: int) -> dict:
    """``search.{r, L_per_r}`` giving ``r_eff`` unchanged checks at list size ``L``: ``r``
    alone up to its bound ``R_MAX`` (15), above it through the L-tied rule
    (``r = R_MAX, L_per_r = L // r_eff``: ``r_eff`` rounded up to what ``L`` allows)."""
    if r_eff <= R_MAX:
        return {"r": r_eff, "L_per_r": 0}
    return {"r": R_MAX, "L_per_r": max(1, L // r_eff)}


def _fmt(search: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in search.items())


def recommend_build(base_u8: np.ndarray, cfg: ProximaConfig, held: int, target: float,
                    variants: Iterable[dict], objective: str = "latency", graph: str = "vamana",
                    seed: int = 0, margin: float = 0.005,
                    log: Callable[[str], None] | None = None,
                    graphs: dict | None = None,
                    Ls: Iterable[int] = DEFAULT_LS,
                    rs: Iterable[int] = DEFAULT_RS) -> list[dict]:
    """Measured effect of build settings: for ``cfg`` and each ``variants`` change (a
    ``ProximaConfig.with_`` mapping, e.g. ``{"pq": {"M": 32}}``), build the held-out index,
    tune it (``Ls`` x ``rs`` only) and report ``{"change", "best", "image_bytes",
    "vs_configured"}`` per change (``vs_configured``: the objective's relative change against
    the first row, the settings as configured); :func:`recommendation` picks one.  Graphs are
    shared between variants with equal ``graph`` settings (``graphs``: :func:`holdout_index`)."""
    log = log or (lambda s: None)
    out = []
    graphs = {} if graphs is None else graphs
    for change in [{}] + list(variants):
        try:
            c = cfg.with_(**change) if change else cfg
        except ConfigError as e:
            log(f"  skip {change}: {e}")
            continue
        index, layout, q, gt = holdout_index(base_u8, c, held, graph=graph, seed=seed,
                                             graphs=graphs)
        res = tune_search(index, layout, q, gt, target, c, objective, margin=margin, Ls=Ls,
                          rs=rs, refine=0)
        size = c.nand.cores * layout.index_core_bytes + \
            c.nand.raw_vector_cores * layout.raw_core_bytes
        b = res.best
        row = {"change": change, "best": b.to_dict() if b else None, "image_bytes": size,
               "vs_configured": None}
        if b is not None and out and out[0]["best"] is not None:
            row["vs_configured"] = _metric(b, objective) / _metric(out[0]["_point"],
                                                                   objective) - 1
        row["_point"] = b
        out.append(row)
        log(f"  {' '.join(_sets(change)) or 'as configured'}: " +
            (f"{_fmt(b.search)} -> recall {b.recall:.4f}, {b.latency_us:.2f} us, "
             f"{b.accesses['total_with_codes']:.1f} accesses, {b.qps:,.0f} q/s"
             if b else "target not reached") + f", NAND image {size / 1e6:.1f} MB" +
            (f" ({objective} {100 * row['vs_configured']:+.1f}%)"
             if row["vs_configured"] is not None else ""))
    for row in out:
        del row["_point"]
    rec = recommendation(out, objective)
    if rec is None:
        log("recommended: none of these reaches the target; build a denser graph")
    elif not rec["change"]:
        log("recommended: keep the build settings as configured")
    else:
        log(f"recommended: --set {' --set '.join(_sets(rec['change']))} ({objective} "
            f"{100 * rec['vs_configured']:+.1f}%, NAND image "
            f"{100 * (rec['image_bytes'] / out[0]['image_bytes'] - 1):+.0f}%)")
    return out


def _metric(p: TunePoint, objective: str) -> float:
    """The objective's own figure (us, q/s or accesses): positive, for relative changes."""
    return abs(p.objective(objective))


def _sets(change: dict) -> list[str]:
    return [f"{sec}.{k}={v}" for sec, kv in change.items() for k, v in kv.items()]


def recommendation(rows: list[dict], objective: str = "latency") -> dict | None:
    """The :func:`recommend_build` row to build with: the one whose tuned point has the best
    ``objective`` (the configured row, ``change == {}``, unless another is better by more
    than 2%, so noise on the sample does not move the build settings); None if no row
    reaches the target."""
    ok = [r for r in rows if r["best"] is not None]
    if not ok:
        return None
    sign = -1 if objective == "qps" else 1  # qps: larger is better

    def score(r):
        return sign * (r["vs_configured"] or 0.0) if r["change"] else 0.0
    best = min(ok, key=score)
    if rows[0]["best"] is not None and best["change"] and score(best) > -0.02:
        return rows[0]
    return best


def holdout_index(base_u8: np.ndarray, cfg: ProximaConfig, held: int, graph: str = "vamana",
                  seed: int = 0, progress: bool = False, graphs: dict | None = None):
    """``(index, layout, queries, gt)``: the index over the base minus ``held`` seeded
    vectors (reordered as the build pipeline does), the held-out vectors and their exact
    top-``k`` among the rest (ids of the kept set, the index's labels).  ``graphs``: a dict
    kept by the caller across calls on the same ``base_u8``; a graph already built there for
    the same ``graph``, ``seed``, ``held`` and ``cfg.graph`` is reused (the graph depends on
    nothing else), so variants of ``pq`` or ``layout`` cost no graph build."""
    from .build import build_graph, build_index, reorder_index

    keep, out = holdout_split(len(base_u8), held, seed)
    kept = np.ascontiguousarray(base_u8[keep])
    key = (graph, seed, held, cfg.graph)
    g = graphs.get(key) if graphs is not None else None
    if g is None:
        g = build_graph(cfg, kept, graph, seed, progress)
        if graphs is not None:
            graphs[key] = g
    index = build_index(cfg, kept, graph=graph, seed=seed, progress=progress, prebuilt=g)
    if cfg.layout.reorder:
        index, _ = reorder_index(index, seed=seed, progress=progress)
    q = np.ascontiguousarray(base_u8[out])
    gt = exact_ground_truth(kept, q, cfg.search.k)
    return index, Layout.for_index(index), q, gt
