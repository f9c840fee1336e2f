"""``proxima dataset``: synthetic sets, ground truth, quantisation, file info and conversion.

Sub-commands (all file formats are chosen by extension, see :mod:`proxima.golden.vecio`)::

    proxima dataset synth --kind sift --n 100k --seed 0 --out base.bvecs
    proxima dataset synth --kind sift --n 1000 --seed 0 --queries --out query.bvecs
    proxima dataset groundtruth --base base.bvecs --queries query.bvecs --k 100 --out gt.ivecs
    proxima dataset quantise --in base.fvecs --out base.bvecs        # writes base.bvecs.quant.json
    proxima dataset quantise --in query.fvecs --out query.bvecs --scheme base.bvecs.quant.json
    proxima dataset info base.bvecs
    proxima dataset convert base.bvecs base.u8bin

``add_parser(subparsers)`` adds the ``dataset`` command to a top-level argparse parser; every
leaf sets ``func`` (``args.func(args) -> int`` exit code).  Errors in the inputs (bad
files, bad arguments) are reported on stderr as one line and give exit code 2.
``main(argv)`` is a stand-alone harness with the same behaviour.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

__all__ = ["add_parser", "build_parser", "main", "parse_count"]

_SUFFIX = {"k": 10**3, "m": 10**6, "g": 10**9}


def parse_count(s: str) -> int:
    """``"1000"``, ``"100k"``, ``"1M"``, ``"1_000_000"`` -> int (>= 0)."""
    t = s.strip().lower().replace("_", "")
    mult = 1
    if t and t[-1] in _SUFFIX:
        mult, t = _SUFFIX[t[-1]], t[:-1]
    try:
        v = int(t) * mult if t.isdigit() else int(float(t) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a count: {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"count must be >= 0: {s!r}")
    return v


def _err(cmd: str, e: Exception) -> int:
    print(f"proxima dataset {cmd}: error: {e}", file=sys.stderr)
    return 2


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors caused by the user's inputs: every project error class is a ValueError
    (VectorFileError, DatasetError, QuantiserError, ConfigError); OSError covers missing
    or unwritable files."""
    return (ValueError, OSError)


# ---- synth ---------------------------------------------------------------------------

def _cmd_synth(args: argparse.Namespace) -> int:
    from proxima.golden.datasets import QUERY_SEED_OFFSET, synth_spec, write_synth
    try:
        spec = synth_spec(args.kind, args.dim, args.clusters, args.dist_seed)
        seed = args.seed + (QUERY_SEED_OFFSET if args.queries else 0)
        t = time.perf_counter()
        write_synth(args.out, args.kind, args.n, spec.dim, seed, n_clusters=spec.n_clusters,
                    dist_seed=spec.dist_seed, fmt=args.fmt, chunk_rows=args.chunk_rows,
                    progress=not args.no_progress)
        dt = time.perf_counter() - t
    except _user_errors() as e:
        return _err("synth", e)
    print(f"wrote {args.out}: {args.n} x {spec.dim} {spec.dtype} ({args.kind}, "
          f"{spec.n_clusters} clusters, dist_seed {spec.dist_seed}, sample seed {seed}) "
          f"in {dt:.2f} s")
    return 0


# ---- groundtruth ---------------------------------------------------------------------

def _cmd_groundtruth(args: argparse.Namespace) -> int:
    from proxima.golden.datasets import ground_truth, write_ground_truth
    from proxima.pipeline import check_output_path
    try:
        ins = [args.base, args.queries]
        check_output_path(args.out, ins, "--out")
        if args.distances:
            check_output_path(args.distances, ins + [args.out], "--distances")
        t = time.perf_counter()
        ids, dists = ground_truth(args.base, args.queries, args.k, block_rows=args.block_rows,
                                  progress=not args.no_progress)
        write_ground_truth(args.out, ids)
        dt = time.perf_counter() - t
    except _user_errors() as e:
        return _err("groundtruth", e)
    print(f"wrote {args.out}: {ids.shape[0]} queries x top-{args.k} ids (exact squared L2, "
          f"ties to the smaller id) in {dt:.2f} s")
    if args.distances:
        try:
            from proxima.golden.vecio import write_vectors
            d = dists.astype(np.float32) if dists.dtype.kind == "f" else dists
            if d.dtype.kind == "i" and d.size and int(d.max()) > np.iinfo(np.int32).max:
                raise ValueError("integer distances exceed int32; use a .npy file")
            if d.dtype.kind == "i" and not args.distances.endswith(".npy"):
                d = d.astype(np.int32)
            write_vectors(args.distances, d)
        except (ValueError, OSError) as e:
            return _err("groundtruth", e)
        print(f"wrote {args.distances}: distances")
    return 0


# ---- quantise ------------------------------------------------------------------------

def _cmd_quantise(args: argparse.Namespace) -> int:
    from proxima.config import preset
    from proxima.golden.quant import Quantiser
    from proxima.golden.vecio import (VectorWriter, iter_vectors, read_vectors,
                                      vector_file_info, write_text_atomic)
    scheme_out = args.scheme_out or (args.out + ".quant.json")
    try:
        from proxima.pipeline import check_output_path
        ins = [args.inp, args.scheme]
        check_output_path(args.out, ins, "--out")
        check_output_path(scheme_out, ins + [args.out], "--scheme-out")
        cfg = getattr(args, "cfg", None)
        if cfg is None:
            cfg = preset(args.dataset_preset)
            if args.dataset_set:
                cfg = cfg.override(args.dataset_set)
        info = vector_file_info(args.inp)
        if info.dtype.kind != "f":
            raise ValueError(f"{args.inp}: quantise needs float input, the file holds "
                             f"{info.dtype}")
        if args.scheme:
            try:
                with open(args.scheme) as f:
                    qz = Quantiser.from_dict(json.load(f))
            except json.JSONDecodeError as e:
                raise ValueError(f"{args.scheme}: not valid JSON: {e}") from None
            if qz.bits != cfg.vec.elem_bits:
                raise ValueError(f"{args.scheme}: scheme has {qz.bits}-bit elements, the "
                                 f"configuration has vec.elem_bits = {cfg.vec.elem_bits}")
            fitted = False
        else:
            base = read_vectors(args.inp, mmap=True)
            qz = Quantiser.fit(base, cfg, args.p_lo, args.p_hi, max_rows=args.max_rows)
            del base
            fitted = True
        with VectorWriter(args.out, dim=info.dim, dtype=qz.dtype) as w:
            for chunk in iter_vectors(args.inp, args.chunk_rows):
                w.write(qz.quantise(chunk))
        if fitted:
            write_text_atomic(scheme_out, qz.to_json() + "\n")
    except _user_errors() as e:
        return _err("quantise", e)
    d = qz.to_dict()
    src = f"fitted on {args.inp} (p_lo {args.p_lo}%, p_hi {args.p_hi}%)" if fitted else \
        f"from {args.scheme}"
    print(f"scheme: {d['formula']}")
    print(f"  lo = {qz.lo!r}  scale = {qz.scale!r}  hi = {qz.hi!r}  bits = {qz.bits}  ({src})")
    print(f"wrote {args.out}: {info.n} x {info.dim} {qz.dtype}" +
          (f"; scheme in {scheme_out}" if fitted else ""))
    return 0


# ---- info ----------------------------------------------------------------------------

def _cmd_info(args: argparse.Namespace) -> int:
    """Shape, format and value statistics.  NaN / infinite values are counted and left out
    of the statistics, with a warning on stderr (exit 0: the file is readable)."""
    from proxima.golden.vecio import iter_vectors, vector_file_info
    try:
        info = vector_file_info(args.path, args.fmt)
        rows = info.n if args.rows is None else min(info.n, args.rows)
        mn, mx, s, s2, cnt, zeros = np.inf, -np.inf, 0.0, 0.0, 0, 0
        nrm_min, nrm_max, nrm_sum, nrm_rows = np.inf, -np.inf, 0.0, 0
        bad_vals, bad_rows, first_bad = 0, 0, None
        seen = 0
        for c in iter_vectors(args.path, fmt=args.fmt, stop=rows) if rows else ():
            v = c.astype(np.float64)
            fin = np.isfinite(v)
            ok_rows = fin.all(axis=1)
            if not ok_rows.all():
                bad_vals += int(v.size - np.count_nonzero(fin))
                bad_rows += int(np.count_nonzero(~ok_rows))
                if first_bad is None:
                    first_bad = seen + int(np.flatnonzero(~ok_rows)[0])
            seen += len(v)
            fv = v[fin]
            if fv.size:
                mn, mx = min(mn, float(fv.min())), max(mx, float(fv.max()))
                s += float(fv.sum())
                s2 += float((fv * fv).sum())
                cnt += fv.size
            zeros += int(np.count_nonzero(c == 0))
            good = v[ok_rows]
            if len(good):
                nrm = np.sqrt((good * good).sum(axis=1))
                nrm_min = min(nrm_min, float(nrm.min()))
                nrm_max = max(nrm_max, float(nrm.max()))
                nrm_sum += float(nrm.sum())
                nrm_rows += len(good)
    except _user_errors() as e:
        return _err("info", e)
    mean = s / cnt if cnt else None
    std = float(np.sqrt(max(0.0, s2 / cnt - mean * mean))) if cnt else None
    out = {
        "path": info.path, "format": info.fmt, "shape": [info.n, info.dim],
        "dtype": str(info.dtype.newbyteorder("=")), "file_bytes": info.file_bytes,
        "stats_rows": rows, "min": mn if cnt else None, "max": mx if cnt else None,
        "mean": mean, "std": std,
        "zero_fraction": zeros / (rows * info.dim) if rows else None,
        "nonfinite_values": bad_vals, "nonfinite_rows": bad_rows,
        "row_norm": {"min": nrm_min if nrm_rows else None,
                     "mean": nrm_sum / nrm_rows if nrm_rows else None,
                     "max": nrm_max if nrm_rows else None},
    }
    if bad_vals:
        print(f"proxima dataset info: warning: {info.path}: {bad_vals} NaN or infinite values "
              f"in {bad_rows} of {rows} rows (first: row {first_bad}); the statistics cover "
              f"the finite values only", file=sys.stderr)
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        def g(x):
            return "-" if x is None else f"{x:.6g}"
        print(f"{info.path}: {info.fmt}, {info.n} x {info.dim} {out['dtype']}, "
              f"{info.file_bytes} bytes")
        if not rows:
            print("  no rows examined")
            return 0
        print(f"  over {rows} rows: min {g(out['min'])}  max {g(out['max'])}  mean {g(mean)}  "
              f"std {g(std)}  zeros {100 * out['zero_fraction']:.2f}%"
              + (f"  non-finite {bad_vals}" if bad_vals else ""))
        rn = out["row_norm"]
        print(f"  row L2 norm: min {g(rn['min'])}  mean {g(rn['mean'])}  max {g(rn['max'])}")
    return 0


# ---- convert -------------------------------------------------------------------------

def _cmd_convert(args: argparse.Namespace) -> int:
    from proxima.golden.vecio import (VectorWriter, detect_format, format_dtype, iter_vectors,
                                      vector_file_info)
    try:
        from proxima.pipeline import check_output_path
        check_output_path(args.dst, [args.src], "output")
        info = vector_file_info(args.src, args.in_fmt)
        out_fmt = detect_format(args.dst, args.out_fmt)
        target = format_dtype(out_fmt)  # None: npy keeps the source dtype
        wdtype = info.dtype.newbyteorder("=") if target is None else None
        with VectorWriter(args.dst, dim=info.dim, fmt=out_fmt, dtype=wdtype) as w:
            for c in iter_vectors(args.src, args.chunk_rows, args.in_fmt):
                if args.cast and target is not None and c.dtype != target:
                    c = _cast_checked(args.src, c, target.newbyteorder("="))
                w.write(c)
    except _user_errors() as e:
        return _err("convert", e)
    print(f"wrote {args.dst}: {info.n} x {info.dim} ({info.fmt} -> {out_fmt})")
    return 0


def _cast_checked(src: str, c: np.ndarray, target: np.dtype) -> np.ndarray:
    """Cast a chunk to ``target``; integer targets need integral, in-range values."""
    if target.kind in "iu":
        if c.dtype.kind == "f" and (not np.isfinite(c).all() or not np.array_equal(c, np.rint(c))):
            raise ValueError(f"{src}: --cast to {target.name} needs integral float values")
        ii = np.iinfo(target)
        if c.size and (c.min() < ii.min or c.max() > ii.max):
            raise ValueError(f"{src}: values {c.min()}..{c.max()} do not fit {target.name}")
    return c.astype(target)


# ---- registration --------------------------------------------------------------------

def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``dataset`` (with its sub-commands) to ``subparsers``; returns its parser."""
    p = subparsers.add_parser("dataset", help="synthetic sets, ground truth, quantisation, "
                                              "vector file info/conversion",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="dataset_cmd", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("synth", help="write a deterministic synthetic data set")
    s.add_argument("--kind", choices=("sift", "float"), required=True,
                   help="sift: 128-d uint8 SIFT-like; float: clustered float32")
    s.add_argument("--n", type=parse_count, required=True, help="rows (e.g. 1000, 100k, 1M)")
    s.add_argument("--dim", type=int, default=None, help="dimension (sift 128, float 96)")
    s.add_argument("--seed", type=int, default=0, help="sample seed (default 0)")
    s.add_argument("--queries", action="store_true",
                   help="draw queries for the base with --seed (sample seed + offset)")
    s.add_argument("--clusters", type=int, default=None, help="mixture components")
    s.add_argument("--dist-seed", type=int, default=0, help="distribution seed (default 0)")
    s.add_argument("--out", required=True, help="output file (.bvecs, .u8bin, .fvecs, ...)")
    s.add_argument("--fmt", default=None, help="output format (default: from extension)")
    s.add_argument("--chunk-rows", type=parse_count, default=65536)
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_cmd_synth)

    g = sub.add_parser("groundtruth", help="exact k-NN ids (ties to the smaller id)")
    g.add_argument("--base", required=True)
    g.add_argument("--queries", required=True)
    g.add_argument("--k", type=int, default=100)
    g.add_argument("--out", required=True, help="ids file (.ivecs)")
    g.add_argument("--distances", default=None, help="also write distances here")
    g.add_argument("--block-rows", type=parse_count, default=1 << 16)
    g.add_argument("--no-progress", action="store_true")
    g.set_defaults(func=_cmd_groundtruth)

    q = sub.add_parser("quantise", aliases=["quantize"],
                       help="float vectors -> elem_bits unsigned integers (global affine)")
    q.add_argument("--in", dest="inp", required=True, help="float vector file")
    q.add_argument("--out", required=True, help="integer vector file (.bvecs, .u8bin, .npy)")
    q.add_argument("--scheme", default=None,
                   help="apply this saved scheme (JSON) instead of fitting one")
    q.add_argument("--scheme-out", default=None,
                   help="where to save a fitted scheme (default OUT.quant.json)")
    q.add_argument("--p-lo", type=float, default=None, help="low percentile (default 0.01)")
    q.add_argument("--p-hi", type=float, default=None, help="high percentile (default 99.99)")
    q.add_argument("--max-rows", type=parse_count, default=None,
                   help="fit on a deterministic row subsample of at most this many rows")
    q.add_argument("--preset", dest="dataset_preset", default="default",
                   help="configuration preset for vec.elem_bits (default: default)")
    q.add_argument("--set", dest="dataset_set", action="append", default=[],
                   metavar="SECTION.KEY=VALUE", help="configuration override")
    q.add_argument("--chunk-rows", type=parse_count, default=65536)
    q.set_defaults(func=_cmd_quantise_defaults)

    i = sub.add_parser("info", help="shape, dtype, format and value statistics")
    i.add_argument("path")
    i.add_argument("--fmt", default=None)
    i.add_argument("--rows", type=parse_count, default=None,
                   help="compute statistics over the first ROWS rows only")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_cmd_info)

    c = sub.add_parser("convert", help="convert between vector file formats (streaming)")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--in-fmt", default=None)
    c.add_argument("--out-fmt", default=None)
    c.add_argument("--cast", action="store_true",
                   help="cast elements to the output format's dtype (range-checked)")
    c.add_argument("--chunk-rows", type=parse_count, default=65536)
    c.set_defaults(func=_cmd_convert)
    return p




def _cmd_quantise_defaults(args: argparse.Namespace) -> int:
    from proxima.golden.quant import P_HI, P_LO
    if args.p_lo is None:
        args.p_lo = P_LO
    if args.p_hi is None:
        args.p_hi = P_HI
    return _cmd_quantise(args)


def build_parser() -> argparse.ArgumentParser:
    """A stand-alone parser ``prog dataset ...`` (the same tree the main CLI gets)."""
    parser = argparse.ArgumentParser(prog="proxima")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``proxima dataset ...`` with ``argv`` (e.g. ``["dataset", "info", "x.fvecs"]``)."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
