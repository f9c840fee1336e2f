"""The ``proxima`` command line.

    proxima demo                 build an index, search it (golden model and RTL), report
    proxima dataset ...          synthetic sets, ground truth, quantisation, format conversion
    proxima build-index ...      vectors -> graph + PQ -> reordered NAND index image
    proxima search ...           search an image with Algorithm 1 or beam search
    proxima eval ...             recall, counters, NAND accesses, queries/s, sweeps
    proxima field ...            the tiered memory-mapped field
    proxima hdl verilog ...      write a block's Verilog
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

from .config import PRESETS, ConfigError, ProximaConfig, preset

__all__ = ["main", "config_from_args"]


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="default", choices=sorted(PRESETS),
                   help="configuration preset (default: %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SEC.KEY=V",
                   help="override one configuration field, e.g. --set search.L=96 (repeatable)")


def config_from_args(args: argparse.Namespace) -> ProximaConfig:
    return preset(args.preset).override(args.overrides)


def _fit_dim(cfg: ProximaConfig, dim: int, overrides: list[str]) -> ProximaConfig:
    """Adopt the data's dimension unless the user set ``vec.dim`` explicitly."""
    if cfg.vec.dim == dim:
        return cfg
    if any(o.startswith("vec.dim=") for o in overrides):
        raise CliError(f"data has dimension {dim} but --set vec.dim={cfg.vec.dim}")
    try:
        new = cfg.with_(vec={"dim": dim})
    except ConfigError as e:
        raise CliError(f"data has dimension {dim}: {e} (choose pq.M with --set)") from None
    print(f"note: vec.dim set to {dim} to match the data", file=sys.stderr)
    return new


def _read(path: str) -> np.ndarray:
    from .golden.vecio import read_vectors
    return read_vectors(path)


def _queries_for(index, path: str) -> np.ndarray:
    q = _read(path)
    if np.issubdtype(q.dtype, np.floating):
        if index.quantiser is None:
            raise CliError("float queries but the index was built from integer vectors")
        from .golden.quant import Quantiser
        lo, scale = index.quantiser
        return Quantiser(lo, scale, index.cfg.vec.elem_bits).quantise(q)
    from .golden.build import prepare_vectors
    return prepare_vectors(index.cfg, q)[0]


# ---------------------------------------------------------------------------------------------
def build_pipeline(cfg: ProximaConfig, base: np.ndarray, out: Path, graph: str = "vamana",
                   seed: int = 0, reorder: bool | None = None, progress: bool = True,
                   log=print):
    """vectors -> index -> (reorder + hot) -> image file; returns ``(index, layout, perm)``."""
    from .golden.build import build_index, prepare_vectors, reorder_index
    from .golden.image import read_image, write_image

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


def _cmd_build(args) -> int:
    cfg = config_from_args(args)
    base = _read(args.base)
    cfg = _fit_dim(cfg, base.shape[1], args.overrides)
    build_pipeline(cfg, base, Path(args.output), args.graph, args.seed,
                   reorder=False if args.no_reorder else None, progress=not args.quiet)
    return 0


def _search_cfg(index, args) -> ProximaConfig:
    try:
        return index.cfg.override(args.overrides)
    except ConfigError as e:
        raise CliError(str(e)) from None


def _cmd_search(args) -> int:
    from .golden.evaluate import run_queries
    from .golden.image import read_image
    from .golden.vecio import write_vectors

    img = read_image(args.index)
    cfg = _search_cfg(img.index, args)
    q = _queries_for(img.index, args.queries)
    rep, results = run_queries(img.index, q, None, cfg, args.algo, img.layout)
    if args.output:
        ids = np.full((len(results), cfg.search.k), -1, dtype=np.int32)
        for i, r in enumerate(results):
            ids[i, :len(r.ids)] = img.index.labels[r.ids]
        write_vectors(args.output, ids)
    if args.json:
        print(json.dumps({"report": rep.to_dict(),
                          "results": [{"ids": img.index.labels[r.ids].tolist(), "dists": r.dists.tolist(),
                                       "counters": r.counters, "reason": r.reason}
                                      for r in results]}))
    else:
        for i, r in enumerate(results[:args.show]):
            print(f"query {i}: ids {img.index.labels[r.ids].tolist()} dists {r.dists.tolist()} ({r.reason})")
        _print_reports([rep])
    return 0


def _parse_sweep(items: list[str]) -> list[dict]:
    axes = []
    for it in items:
        if "=" not in it or "." not in it.split("=")[0]:
            raise CliError(f"--sweep wants section.key=v1,v2,..., got {it!r}")
        lhs, vals = it.split("=", 1)
        axes.append([f"{lhs}={v}" for v in vals.split(",") if v])
    return [list(p) for p in itertools.product(*axes)] if axes else [[]]


def _print_reports(reports) -> None:
    cols = ["recall@1", "recall@10", "recall@100"]
    ctrs = ["hops", "frame_accesses", "code_accesses", "raw_accesses", "total_accesses",
            "exact_dists", "pq_dists", "bloom_fp"]
    head = f"{'algo':5} {'params':34} " + " ".join(f"{c:>10}" for c in cols) + " " + \
        " ".join(f"{c[:10]:>10}" for c in ctrs) + f" {'q/s':>8}"
    print(head)
    for r in reports:
        p = ",".join(f"{k}={v}" for k, v in r.params.items() if k != "k")
        rec = " ".join(f"{r.recall[c]:10.4f}" if c in r.recall else f"{'-':>10}" for c in cols)
        ct = " ".join(f"{r.counters[c]:10.1f}" if c in r.counters else f"{'-':>10}"
                      for c in ctrs)
        print(f"{r.algo:5} {p[:34]:34} {rec} {ct} {r.qps:8.0f}")


def evaluate_cmd(index, layout, queries, gt, algos, grid, target, progress=True,
                 timing=False, log=print) -> dict:
    """Evaluation shared by ``proxima eval`` and ``proxima demo``: returns a JSON-able dict."""
    from .golden.evaluate import at_recall, run_queries

    out: dict = {"reports": [], "at_target": {}}
    from tqdm import tqdm
    points = [(a, g) for a in algos for g in grid]
    reports = []
    for algo, g in tqdm(points, desc="eval", disable=not progress or len(points) < 2,
                        unit="pt"):
        cfg = index.cfg.override(g)
        rep, results = run_queries(index, queries, gt, cfg, algo, layout)
        if timing and algo == "alg1":
            from .golden.nand import simulate_events
            tr = simulate_events([r.events for r in results], layout)
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
    _print_reports(reports)
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


def _cmd_eval(args) -> int:
    from .golden.image import read_image
    from .golden.vecio import read_vectors

    img = read_image(args.index)
    q = _queries_for(img.index, args.queries)
    gt = read_vectors(args.gt)
    if len(gt) != len(q):
        raise CliError(f"ground truth has {len(gt)} rows, queries {len(q)}")
    base_set = list(args.overrides)
    grid = [base_set + g for g in _parse_sweep(args.sweep)]
    try:
        img.index.cfg.override(grid[0])
    except ConfigError as e:
        raise CliError(str(e)) from None
    algos = ["alg1", "beam"] if args.algo == "both" else [args.algo]
    res = evaluate_cmd(img.index, img.layout, q, gt, algos, grid, args.target,
                       progress=not args.quiet, timing=args.timing)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


def _cmd_demo(args) -> int:
    from .demo import run_demo
    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="proxima", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("demo", help="build an index, search it in the golden model and RTL")
    add_config_args(d)
    d.add_argument("--n", type=int, default=20000, help="base vectors (default %(default)s)")
    d.add_argument("--queries", type=int, default=200)
    d.add_argument("--out", default="out/demo", help="working directory")
    d.add_argument("--rtl-queries", type=int, default=2,
                   help="queries replayed through the RTL blocks (0: skip RTL)")
    d.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"])
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=_cmd_demo)

    b = sub.add_parser("build-index", help="vectors -> NAND index image")
    add_config_args(b)
    b.add_argument("--base", required=True, help="base vectors (fvecs/bvecs/fbin/u8bin/npy...)")
    b.add_argument("--graph", default="vamana", choices=["vamana", "hnsw"])
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--no-reorder", action="store_true", help="keep ids (no hot nodes)")
    b.add_argument("-o", "--output", required=True, help="index image file to write")
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(func=_cmd_build)

    s = sub.add_parser("search", help="search an index image")
    s.add_argument("--index", required=True)
    s.add_argument("--queries", required=True)
    s.add_argument("--algo", default="alg1", choices=["alg1", "beam"])
    s.add_argument("--set", dest="overrides", action="append", default=[],
                   help="search-time override, e.g. --set search.L=96")
    s.add_argument("-o", "--output", help="write result ids (.ivecs)")
    s.add_argument("--show", type=int, default=3, help="print this many queries' results")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_cmd_search)

    e = sub.add_parser("eval", help="recall, counters, NAND accesses, sweeps")
    e.add_argument("--index", required=True)
    e.add_argument("--queries", required=True)
    e.add_argument("--gt", required=True, help="ground truth (.ivecs)")
    e.add_argument("--algo", default="both", choices=["alg1", "beam", "both"])
    e.add_argument("--set", dest="overrides", action="append", default=[])
    e.add_argument("--sweep", action="append", default=[], metavar="SEC.KEY=V1,V2",
                   help="sweep axis, e.g. --sweep search.L=16,32,64 (repeatable: grid)")
    e.add_argument("--target", type=float, default=None,
                   help="report counters interpolated at this recall@10")
    e.add_argument("--timing", action="store_true", help="NAND timing model figures")
    e.add_argument("--json", help="write the results as JSON to this file")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=_cmd_eval)

    for mod in ("cli_dataset", "cli_field", "cli_hdl", "cli_fpga"):
        try:
            m = __import__(f"proxima.{mod}", fromlist=["register"])
        except ModuleNotFoundError as ex:
            if ex.name != f"proxima.{mod}":
                raise
            continue
        m.register(sub)
    return p


def _user_errors() -> tuple[type[BaseException], ...]:
    errs: list[type[BaseException]] = [CliError, ConfigError, FileNotFoundError]
    for mod, name in (("golden.vecio", "VectorFileError"), ("golden.image", "ImageError"),
                      ("golden.graph", "GraphError"), ("golden.quant", "QuantiserError"),
                      ("golden.index", "IndexError_"), ("golden.layout", "LayoutError"),
                      ("golden.datasets", "DatasetError")):
        try:
            m = __import__(f"proxima.{mod}", fromlist=[name])
            errs.append(getattr(m, name))
        except (ImportError, AttributeError):
            pass
    return tuple(errs)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except _user_errors() as e:
        print(f"proxima {args.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
