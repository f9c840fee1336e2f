"""The build and evaluation pipelines, shared by the command line and the demo.

Every function here validates its inputs before any long-running work starts and raises
:class:`PipelineError` (a ``ValueError``) with a one-line message for bad input; the CLI
(``proxima/cli.py``) maps it to ``proxima <cmd>: error: ...`` and exit status 2.

Configuration layering
----------------------
Build:  ``preset -> data dimension (vec.dim) -> --set overrides``, validated once at the end
        (:func:`build_config`), so ``--set pq.M=48`` on 384-d data works without ``vec.dim``.
Search: ``the image's stored configuration -> --set overrides`` restricted to
        :data:`proxima.config.SEARCH_TIME_FIELDS` (:func:`search_config`).  The timing model
        takes the overridden configuration (``simulate_events(..., cfg=)``): ``--set engine.queues=64``,
        ``nand.tR_ns=...``, ``engine.clock_mhz=...`` change the modelled figures.

Functions
---------
:func:`build_config`, :func:`search_config`, :func:`check_output_path`,
:func:`prepare_queries`, :func:`check_ground_truth`, :func:`check_build`,
:func:`build_pipeline` (vectors -> image), :func:`evaluate` (recall, counters, timing model,
sweeps), :func:`print_reports`.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .config import ProximaConfig, preset

__all__ = ["PipelineError", "build_config", "search_config",
           "check_output_path", "prepare_queries", "check_ground_truth", "check_build",
           "build_pipeline", "evaluate", "print_reports"]


class PipelineError(ValueError):
    """A user error found by the pipelines' checks: one line, no traceback."""


def _note(msg: str) -> None:
    print(f"note: {msg}", file=sys.stderr)


# ---------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------
def build_config(preset_name: str, overrides: Sequence[str],
                 data_dim: int | None = None) -> ProximaConfig:
    """Build-time configuration: preset, then the data's dimension, then ``overrides``.

    The assignments are applied together and validated once, so ``pq.M`` may be chosen for
    the data's dimension.  An explicit ``vec.dim`` that disagrees with the data is an error.
    """
    overrides = list(overrides)
    base = preset(preset_name)
    if data_dim is None:
        return base.override(overrides)
    user_dims = [o for o in overrides if o.replace(" ", "").startswith("vec.dim=")]
    cfg = base.override([f"vec.dim={int(data_dim)}", *overrides])
    if user_dims and cfg.vec.dim != data_dim:
        raise PipelineError(f"the data has dimension {data_dim} but --set vec.dim={cfg.vec.dim}")
    if cfg.vec.dim != base.vec.dim and not user_dims:
        _note(f"vec.dim set to {data_dim} to match the data")
    return cfg


def search_config(image_cfg: ProximaConfig, overrides: Sequence[str]) -> ProximaConfig:
    """The image's configuration with search-time ``overrides`` (others are refused)."""
    return image_cfg.override(list(overrides), search_time=True)


# ---------------------------------------------------------------------------------------
# paths and inputs
# ---------------------------------------------------------------------------------------
def check_output_path(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (),
                      what: str = "output") -> Path:
    """``out`` can be written: its directory exists and is writable, it is not a directory,
    and it is not one of ``inputs`` (the same file by path or by inode)."""
    p = Path(out)
    if str(out) == "":
        raise PipelineError(f"{what} path is empty")
    if p.is_dir():
        raise PipelineError(f"{what} {p} is a directory, expected a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise PipelineError(f"{what} directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PipelineError(f"{what} directory {parent} is not writable")
    if p.exists() and not os.access(p, os.W_OK):
        raise PipelineError(f"{what} {p} exists and is not writable")
    for src in inputs:
        if src is None:
            continue
        s = Path(src)
        same = s.resolve() == p.resolve()
        if not same and s.exists() and p.exists():
            try:
                same = os.path.samefile(s, p)
            except OSError:
                same = False
        if same:
            raise PipelineError(f"{what} {p} is also an input of this command ({s}): "
                                f"choose another {what} file")
    return p


def prepare_queries(index, q: np.ndarray, what: str = "queries") -> np.ndarray:
    """Queries in the index's element format: dimension checked against the image, float
    queries quantised with the index's quantiser, integer queries checked to lie in
    ``0..elem_max``."""
    cfg = index.cfg
    q = np.asarray(q)
    if q.ndim != 2 or q.shape[0] == 0:
        raise PipelineError(f"{what}: expected a non-empty (n, dim) matrix, got shape {q.shape}")
    if q.shape[1] != cfg.vec.dim:
        raise PipelineError(f"{what} have dimension {q.shape[1]}, the index has dimension "
                            f"{cfg.vec.dim}")
    if np.issubdtype(q.dtype, np.floating):
        if not np.isfinite(q).all():
            bad = int(np.flatnonzero(~np.isfinite(q).all(axis=1))[0])
            raise PipelineError(f"{what}: row {bad} holds NaN or infinity")
        if index.quantiser is None:
            raise PipelineError(f"float {what} but the index was built from integer vectors")
        from .golden.quant import Quantiser
        lo, scale = index.quantiser
        return Quantiser(lo, scale, cfg.vec.elem_bits).quantise(q)
    if not np.issubdtype(q.dtype, np.integer):
        raise PipelineError(f"{what}: unsupported element type {q.dtype}")
    if q.size and (int(q.min()) < 0 or int(q.max()) > cfg.vec.elem_max):
        raise PipelineError(f"{what}: integer values {int(q.min())}..{int(q.max())} lie outside "
                            f"the index's element range 0..{cfg.vec.elem_max}")
    return q.astype(np.uint8)


def check_ground_truth(gt: np.ndarray, n_queries: int, n_base: int) -> np.ndarray:
    """Ground truth: integer ids, one row per query, ids in ``0..n_base-1`` (-1 = padding)."""
    gt = np.asarray(gt)
    if gt.ndim != 2 or gt.shape[1] == 0:
        raise PipelineError(f"ground truth: expected an (n, k) id matrix, got shape {gt.shape}")
    if not np.issubdtype(gt.dtype, np.integer):
        raise PipelineError(f"ground truth holds {gt.dtype} values, expected integer ids "
                            f"(.ivecs / .ibin)")
    if len(gt) != n_queries:
        raise PipelineError(f"ground truth has {len(gt)} rows, queries {n_queries}")
    lo, hi = int(gt.min()), int(gt.max())
    if lo < -1 or hi >= n_base:
        raise PipelineError(f"ground truth ids {lo}..{hi} lie outside the index's "
                            f"0..{n_base - 1}: wrong ground-truth file for this index?")
    return gt


def check_build(cfg: ProximaConfig, n: int) -> None:
    """Checks that need only the configuration and the vector count (run before the build)."""
    from .golden.layout import Layout, LayoutError
    if n < 2:
        raise PipelineError(f"need at least 2 base vectors, got {n}")
    if n > cfg.engine.max_vertices:
        raise PipelineError(f"{n} vectors do not fit engine.id_bits = {cfg.engine.id_bits} "
                            f"(at most {cfg.engine.max_vertices}); raise engine.id_bits")
    hot = min(n, int(math.floor(cfg.layout.hot_fraction * n)))
    try:
        Layout(cfg, n, hot, 0)
    except LayoutError as e:
        raise PipelineError(f"the index would not fit the NAND layout: {e}") from None


def _check_base(base: np.ndarray, cfg: ProximaConfig) -> None:
    if base.ndim != 2 or base.shape[1] != cfg.vec.dim:
        raise PipelineError(f"base vectors have shape {base.shape}, the configuration wants "
                            f"(N, {cfg.vec.dim})")
    if np.issubdtype(base.dtype, np.floating):
        finite = np.isfinite(base).all(axis=1)
        if not finite.all():
            raise PipelineError(f"base vectors: row {int(np.flatnonzero(~finite)[0])} holds NaN "
                                f"or infinity")
    elif np.issubdtype(base.dtype, np.integer):
        if base.size and (int(base.min()) < 0 or int(base.max()) > cfg.vec.elem_max):
            raise PipelineError(f"integer base vectors hold {int(base.min())}..{int(base.max())}, "
                                f"outside 0..{cfg.vec.elem_max} (convert to float to quantise)")
    else:
        raise PipelineError(f"base vectors: unsupported element type {base.dtype}")


# ---------------------------------------------------------------------------------------
# pipelines
# ---------------------------------------------------------------------------------------
def build_pipeline(cfg: ProximaConfig, base: np.ndarray, out: str | os.PathLike,
                   graph: str = "vamana", seed: int = 0, reorder: bool | None = None,
                   progress: bool = True, log: Callable[[str], None] = print,
                   inputs: Iterable[str | os.PathLike] = ()):
    """vectors -> graph + PQ -> (reorder + hot) -> image file at ``out``.

    Every check (data shape and range, vertex count against ``engine.id_bits``, the NAND
    layout, the output path against ``inputs``) runs before the graph build.  Returns
    ``(index, layout, perm)`` as read back from the written image.
    """
    from .golden.build import GRAPH_KINDS, build_index, prepare_vectors, reorder_index
    from .golden.image import read_image, write_image

    out = check_output_path(out, inputs)
    if graph not in GRAPH_KINDS:
        raise PipelineError(f"unknown graph kind {graph!r}; choose from {GRAPH_KINDS}")
    _check_base(base, cfg)
    check_build(cfg, len(base))
    t0 = time.perf_counter()
    base_u8, _, quantiser = prepare_vectors(cfg, base)
    if quantiser is not None:
        log(f"quantised float vectors to uint{cfg.vec.elem_bits}: lo={quantiser[0]:.6g} "
            f"scale={quantiser[1]:.6g}")
    index = build_index(cfg, base_u8, graph=graph, seed=seed, progress=progress,
                        quantiser=quantiser)
    log(f"built {graph} graph + PQ over {index.n} vectors in {time.perf_counter() - t0:.1f} s")
    perm = np.arange(index.n)
    if cfg.layout.reorder if reorder is None else reorder:
        t1 = time.perf_counter()
        index, perm = reorder_index(index, seed=seed, progress=progress)
        log(f"reordered by visit frequency ({cfg.layout.reorder_sample} sampled searches), "
            f"{int(index.hot.sum())} hot vertices, in {time.perf_counter() - t1:.1f} s")
    write_image(out, index)
    img = read_image(out)  # the search reads what the NAND holds
    log(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return img.index, img.layout, perm


def print_reports(reports, log: Callable[[str], None] = print) -> None:
    """The evaluation table: recall, mean counters and golden queries/s per point."""
    cols = ["recall@1", "recall@10", "recall@100"]
    ctrs = ["hops", "frame_accesses", "code_accesses", "raw_accesses", "total_accesses",
            "exact_dists", "pq_dists", "bloom_fp"]
    log(f"{'algo':5} {'params':34} " + " ".join(f"{c:>10}" for c in cols) + " "
        + " ".join(f"{c[:10]:>10}" for c in ctrs) + f" {'q/s':>8}")
    for r in reports:
        p = ",".join(f"{k}={v}" for k, v in r.params.items() if k != "k")
        rec = " ".join(f"{r.recall[c]:10.4f}" if c in r.recall else f"{'-':>10}" for c in cols)
        ct = " ".join(f"{r.counters[c]:10.1f}" if c in r.counters else f"{'-':>10}"
                      for c in ctrs)
        log(f"{r.algo:5} {p[:34]:34} {rec} {ct} {r.qps:8.0f}")


def evaluate(index, layout, queries: np.ndarray, gt: np.ndarray | None,
             algos: Sequence[str], grid: Sequence[Sequence[str]], target: float | None,
             progress: bool = True, timing: bool = False,
             log: Callable[[str], None] = print) -> dict:
    """Search ``queries`` with each algorithm at each grid point; return a JSON-able dict.

    ``grid``: lists of search-time ``--set`` strings applied on top of the image's
    configuration (all validated before the first search).  ``timing``: run the NAND
    timing model on Algorithm 1's events with the point's configuration (``model_*``
    counters).  ``target``: counters interpolated at this recall@10.
    """
    from tqdm import tqdm

    from .golden.evaluate import ALGOS, at_recall, run_queries

    for a in algos:
        if a not in ALGOS:
            raise PipelineError(f"unknown algorithm {a!r}; choose from {ALGOS}")
    if target is not None and not (math.isfinite(target) and 0.0 < target <= 1.0):
        raise PipelineError(f"--target must be a recall in (0, 1], got {target}")
    cfgs = [search_config(index.cfg, g) for g in grid]
    out: dict = {"reports": [], "at_target": {}}
    points = [(a, c) for a in algos for c in cfgs]
    reports = []
    for algo, cfg in tqdm(points, desc="eval", disable=not progress or len(points) < 2,
                          unit="pt"):
        rep, results = run_queries(index, queries, gt, cfg, algo, layout)
        if timing:
            from .golden.nand import simulate_events
            tr = simulate_events([r.events for r in results], layout, cfg=cfg, algo=algo)
            rep.counters.update({f"model_{k}": v for k, v in tr.summary().items()
                                 if isinstance(v, (int, float))})
        reports.append(rep)
    out["reports"] = [r.to_dict() for r in reports]
    if target is not None:
        for algo in algos:
            rs = [r for r in reports if r.algo == algo]
            out["at_target"][algo] = {
                c: at_recall(rs, target, counter=c)
                for c in ("hops", "total_accesses", "total_with_codes", "exact_dists")
                if rs and c in rs[0].counters}
    print_reports(reports, log)
    if target is not None:
        log(f"\nat recall@10 = {target} (interpolated over the sweep):")
        for algo, d in out["at_target"].items():
            log(f"  {algo:5} " + "  ".join(
                f"{k}={'not reached' if v is None else f'{v:.1f}'}" for k, v in d.items()))
        a, b = out["at_target"].get("alg1", {}), out["at_target"].get("beam", {})
        if a.get("hops") and b.get("hops"):
            saving = 1 - a["hops"] / b["hops"]
            out["neighbour_read_saving"] = saving
            log(f"  Algorithm 1 needs {100 * saving:.1f}% fewer neighbour-list reads than "
                f"beam search")
    return out
