"""The ``proxima`` command line (argument parsing and error reporting only).

    proxima demo                 build an index, search it (golden model and RTL), report
    proxima dataset ...          synthetic sets, ground truth, quantisation, format conversion
    proxima build-index ...      vectors -> graph + PQ -> reordered NAND index image
    proxima search ...           search an image with Algorithm 1 or beam search
    proxima eval ...             recall, counters, NAND accesses, queries/s, sweeps
    proxima tune ...             tune the search parameters for a target recall (in the image)
    proxima field ...            the tiered memory-mapped field
    proxima hdl verilog ...      write a block's Verilog
    proxima sim ...              queries through the whole engine's RTL (Verilator) vs golden
    proxima fpga ...             board bitstreams, programming, queries on a board

The work is done by :mod:`proxima.pipeline` (build and evaluation, shared with
:mod:`proxima.demo`).  Bad input of any kind ends in one line on stderr,
``proxima <cmd>: error: <message>``, and exit status 2.

Sub-command modules: every module named in :data:`SUBCOMMAND_MODULES` exposes
``add_parser(subparsers)`` (adds its parser, every leaf sets ``func(args) -> int``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import itertools
import json
import os
import sys
from pathlib import Path

import numpy as np

from .config import PRESETS, ConfigError, ProximaConfig
from .pipeline import (PipelineError, build_config, build_pipeline, check_ground_truth,
                       check_output_path, evaluate, prepare_queries, print_reports,
                       search_config)

__all__ = ["main", "build_parser", "config_from_args", "parse_sweep", "CliError",
           "SUBCOMMAND_MODULES"]

#: Modules adding sub-commands (``proxima.<name>.add_parser(subparsers)``), in help order.
SUBCOMMAND_MODULES = ("cli_dataset", "cli_field", "cli_hdl", "cli_fpga", "cli_tune",
                      "cli_sim")

class CliError(PipelineError):
    """A user error: printed as one line, exit status 2."""


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="default", choices=sorted(PRESETS),
                   help="configuration preset (default: %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SEC.KEY=V",
                   help="override one configuration field, e.g. --set search.L=96 (repeatable)")


def config_from_args(args: argparse.Namespace, data_dim: int | None = None) -> ProximaConfig:
    return build_config(args.preset, args.overrides, data_dim)


def parse_sweep(items: list[str]) -> list[list[str]]:
    """``["search.L=16,32", "search.r=2,3"]`` -> the grid of ``--set`` lists (product)."""
    axes = []
    for it in items:
        lhs = it.split("=", 1)[0]
        if "=" not in it or "." not in lhs:
            raise CliError(f"--sweep wants section.key=v1,v2,..., got {it!r}")
        vals = [v.strip() for v in it.split("=", 1)[1].split(",") if v.strip()]
        if not vals:
            raise CliError(f"--sweep {it!r} has no values (want {lhs}=v1,v2,...)")
        axes.append([f"{lhs}={v}" for v in vals])
    return [list(p) for p in itertools.product(*axes)] if axes else [[]]



def _read(path: str) -> np.ndarray:
    from .golden.vecio import read_vectors
    return read_vectors(path)


# ---------------------------------------------------------------------------------------
def _cmd_build(args) -> int:
    check_output_path(args.output, [args.base])
    from .golden.vecio import vector_file_info
    dim = vector_file_info(args.base).dim
    cfg = config_from_args(args, dim)  # validated before the data is read in full
    base = _read(args.base)
    build_pipeline(cfg, base, Path(args.output), args.graph, args.seed,
                   reorder=False if args.no_reorder else None, progress=not args.quiet,
                   inputs=[args.base])
    return 0


def _cmd_search(args) -> int:
    from .golden.evaluate import run_queries
    from .golden.image import read_image
    from .golden.vecio import write_vectors

    if args.output:
        from .golden.vecio import FORMATS, detect_format
        check_output_path(args.output, [args.index, args.queries])
        dt = FORMATS[detect_format(args.output)][1]
        if dt is not None and (dt.kind != "i" or dt.itemsize < 4):
            raise CliError(f"-o {args.output}: result ids need an int32 format (.ivecs, .ibin, "
                           f".npy), not {dt}")
    if args.show < 0:
        raise CliError(f"--show must be >= 0, got {args.show}")
    img = read_image(args.index)
    cfg = search_config(img.index.cfg, args.overrides)
    q = prepare_queries(img.index, _read(args.queries))
    rep, results = run_queries(img.index, q, None, cfg, args.algo, img.layout)
    labels = img.index.labels
    if args.output:
        ids = np.full((len(results), cfg.search.k), -1, dtype=np.int64)  # checked on write
        for i, r in enumerate(results):
            ids[i, :len(r.ids)] = labels[r.ids]
        write_vectors(args.output, ids)
    if args.json:
        print(json.dumps({"report": rep.to_dict(),
                          "results": [{"ids": labels[r.ids].tolist(), "dists": r.dists.tolist(),
                                       "counters": r.counters, "reason": r.reason}
                                      for r in results]}))
    else:
        for i, r in enumerate(results[:args.show]):
            print(f"query {i}: ids {labels[r.ids].tolist()} dists {r.dists.tolist()} "
                  f"({r.reason})")
        print_reports([rep])
    return 0


def _cmd_eval(args) -> int:
    from .golden.image import read_image

    if args.json:
        check_output_path(args.json, [args.index, args.queries, args.gt], what="--json")
    if args.plot:
        check_output_path(args.plot, [args.index, args.queries, args.gt], what="--plot")
        if importlib.util.find_spec("matplotlib") is None:
            raise CliError("--plot needs matplotlib: pip install -e '.[bench]'")
    grid = [list(args.overrides) + g for g in parse_sweep(args.sweep)]
    img = read_image(args.index)
    for g in grid:  # every point is checked before the first search
        search_config(img.index.cfg, g)
    q = prepare_queries(img.index, _read(args.queries))
    gt = check_ground_truth(_read(args.gt), len(q), img.index.n)
    algos = ["alg1", "beam"] if args.algo == "both" else [args.algo]
    res = evaluate(img.index, img.layout, q, gt, algos, grid, args.target,
                   progress=not args.quiet, timing=args.timing)
    if args.json:
        from .golden.atomic import atomic_open
        with atomic_open(args.json, "w", encoding="utf-8") as f:
            f.write(json.dumps(res, indent=1))
    if args.plot:
        from .golden.evaluate import plot_reports
        plot_reports(res["reports"], args.plot)
    return 0


def _cmd_demo(args) -> int:
    from .demo import run_demo
    return run_demo(args)


def _int_at_least(lo: int):
    """An argparse type: an integer ``>= lo``."""
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {s!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        return v
    return parse


_positive = _int_at_least(1)
_non_negative = _int_at_least(0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="proxima", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("demo", help="build an index, search it in the golden model and RTL")
    add_config_args(d)
    d.add_argument("--n", type=_positive, default=20000, help="base vectors (default %(default)s)")
    d.add_argument("--queries", type=_positive, default=200)
    d.add_argument("--out", default="out/demo", help="working directory")
    d.add_argument("--engine-queries", type=_non_negative, default=8,
                   help="queries through the whole engine's RTL (0: skip)")
    d.add_argument("--engine-queues", type=_positive, default=4,
                   help="search contexts of the whole engine's RTL (default %(default)s)")
    d.add_argument("--rtl-queries", type=_non_negative, default=2,
                   help="queries replayed through the RTL blocks the whole engine does not "
                        "contain (0: skip)")
    d.add_argument("--replay-all", action="store_true",
                   help="replay through every RTL block, also those inside the engine")
    d.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"])
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=_cmd_demo)

    b = sub.add_parser("build-index", help="vectors -> NAND index image")
    add_config_args(b)
    b.add_argument("--base", required=True, help="base vectors (fvecs/bvecs/fbin/u8bin/npy...)")
    b.add_argument("--graph", default="vamana", choices=["vamana", "hnsw"])
    b.add_argument("--seed", type=_non_negative, default=0)
    b.add_argument("--no-reorder", action="store_true", help="keep ids (no hot nodes)")
    b.add_argument("-o", "--output", required=True, help="index image file to write")
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(func=_cmd_build)

    s = sub.add_parser("search", help="search an index image")
    s.add_argument("--index", required=True)
    s.add_argument("--queries", required=True)
    s.add_argument("--algo", default="alg1", choices=["alg1", "beam"])
    s.add_argument("--set", dest="overrides", action="append", default=[],
                   help="search-time override, e.g. --set search.L=96 (search.*, bloom.*, "
                        "cache.*, timing fields)")
    s.add_argument("-o", "--output", help="write result ids (.ivecs)")
    s.add_argument("--show", type=int, default=3, help="print this many queries' results")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_cmd_search)

    e = sub.add_parser("eval", help="recall, counters, NAND accesses, sweeps")
    e.add_argument("--index", required=True)
    e.add_argument("--queries", required=True)
    e.add_argument("--gt", required=True, help="ground truth (.ivecs)")
    e.add_argument("--algo", default="both", choices=["alg1", "beam", "both"])
    e.add_argument("--set", dest="overrides", action="append", default=[],
                   help="search-time override (search.*, bloom.*, cache.*, engine.queues, "
                        "engine.clock_mhz, nand.tR_ns, ...)")
    e.add_argument("--sweep", action="append", default=[], metavar="SEC.KEY=V1,V2",
                   help="sweep axis, e.g. --sweep search.L=16,32,64 (repeatable: grid)")
    e.add_argument("--target", type=float, default=None,
                   help="report counters interpolated at this recall@10")
    e.add_argument("--timing", action="store_true",
                   help="NAND timing model figures (with the --set timing fields)")
    e.add_argument("--json", help="write the results as JSON to this file")
    e.add_argument("--plot", help="PNG: recall against accesses (and modelled QPS with --timing)")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=_cmd_eval)

    for mod in SUBCOMMAND_MODULES:
        importlib.import_module(f"proxima.{mod}").add_parser(sub)
    return p


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input: every project error class is a ValueError
    (ConfigError, PipelineError, VectorFileError, ImageError, ...) or an OSError (missing,
    unreadable or unwritable files); FieldError for the field commands."""
    errs: list[type[BaseException]] = [ValueError, OSError, ConfigError]
    try:
        from .golden.field import FieldError
        errs.append(FieldError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errs)


def _one_line(e: BaseException) -> str:
    msg = str(e) or type(e).__name__
    if isinstance(e, OSError) and e.strerror:
        msg = f"{e.filename + ': ' if e.filename else ''}{e.strerror}"
    return " ".join(msg.split())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into e.g. head: stop quietly
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except _user_errors() as e:
        print(f"proxima {args.cmd}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"proxima {args.cmd}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
