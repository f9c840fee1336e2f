"""``proxima field``: create, inspect, read and benchmark tiered memory-mapped fields.

Sub-commands::

    proxima field create brain.field --shape 86e9,1000 --dtype float32
    proxima field info brain.field [--verify] [--json]
    proxima field get brain.field 42e9,7          # one element
    proxima field get brain.field 42e9 --stats    # a row (partial index), then cache stats
    proxima field get brain.field 0:4,0:3         # a region (numpy slices)
    proxima field bench [PATH] [--mb 64] [--gets 20000]

Indices accept integers written as ``42e9``, ``42_000_000_000`` or ``-1``.  ``add_parser(sub)``
adds the ``field`` command to a top-level argparse sub-parser object; every leaf sets
``func`` (``args.func(args) -> int``).  Bad input gives one line on stderr and exit code 2.
``main(argv)`` is a stand-alone harness with the same behaviour.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from decimal import Decimal, InvalidOperation

import numpy as np

__all__ = ["add_parser", "build_parser", "main", "parse_int", "parse_index",
           "positive_int", "non_negative_int"]


def parse_int(s: str) -> int:
    """``"42"``, ``"42e9"``, ``"4.2e10"``, ``"42_000"``, ``"-1"`` -> int (must be exact)."""
    t = s.strip().replace("_", "")
    try:
        d = Decimal(t)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an integer: {s!r}") from None
    if not d.is_finite() or d != d.to_integral_value():
        raise argparse.ArgumentTypeError(f"not an integer: {s!r}")
    return int(d)


def positive_int(s: str) -> int:
    v = parse_int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {s!r}")
    return v


def non_negative_int(s: str) -> int:
    v = parse_int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s!r}")
    return v


# an index argument may start with "-" ("-1,0"): argparse must not take it for an option
_INDEX_LIKE = re.compile(r"^-[0-9][0-9eE_.,:\- ]*$|^-\d+$|^-\d*\.\d+$")


def parse_shape(s: str) -> tuple[int, ...]:
    dims = tuple(parse_int(x) for x in s.replace("x", ",").split(",") if x.strip())
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"shape needs dimensions >= 1: {s!r}")
    return dims


def parse_index(s: str):
    """``"42e9,7"`` -> (42000000000, 7); ``"0:4,::2"`` -> (slice(0, 4), slice(None, None, 2))."""
    out = []
    if not s.strip():
        raise argparse.ArgumentTypeError("empty index")
    for part in s.split(","):
        part = part.strip()
        if not part:
            raise argparse.ArgumentTypeError(f"empty index component in {s!r}")
        if ":" in part:
            bits = part.split(":")
            if len(bits) > 3:
                raise argparse.ArgumentTypeError(f"bad slice {part!r}")
            out.append(slice(*[parse_int(b) if b.strip() else None for b in bits]))
        elif part == "...":
            out.append(Ellipsis)
        else:
            out.append(parse_int(part))
    return tuple(out)


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB", "EB"):
        if abs(n) < 1000 or unit == "EB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover


def _errors():
    from proxima.golden.field import FieldError
    return (FieldError, OSError, ValueError, IndexError, TypeError, OverflowError)


def _fail(cmd: str, e: Exception) -> int:
    msg = " ".join((str(e) or type(e).__name__).split())
    print(f"proxima field {cmd}: error: {msg}", file=sys.stderr)
    return 2


def _progress(it, quiet: bool, **kw):
    if quiet:
        return it
    from tqdm import tqdm
    return tqdm(it, file=sys.stderr, **kw)


# ---- create --------------------------------------------------------------------------
def _cmd_create(args) -> int:
    from proxima.golden import field as F
    try:
        t0 = time.perf_counter()
        f = F.create(args.path, args.shape, args.dtype, chunk_rows=args.chunk_rows,
                     chunk_bytes=args.chunk_bytes, overwrite=args.overwrite)
        dt = time.perf_counter() - t0
        print(f"created {args.path}: shape {f.shape} {f.dtype}, chunk {f.chunk_shape}, "
              f"{f.n_chunks} chunks; logical {_fmt_bytes(f.nbytes)}, on disk "
              f"{_fmt_bytes(f.disk_usage())}, in {dt * 1e3:.1f} ms")
        f.close()
    except _errors() as e:
        return _fail("create", e)
    return 0


# ---- info ----------------------------------------------------------------------------
def _cmd_info(args) -> int:
    from proxima.golden import field as F
    try:
        f = F.open(args.path)
        ids = f.expected_chunk_ids()
        on_disk = len(f.chunk_ids())
        info = {
            "path": str(f.path), "shape": list(f.shape), "dtype": f.dtype.str,
            "chunk_shape": list(f.chunk_shape), "chunks": f.n_chunks,
            "chunk_files": on_disk, "chunks_listed": len(ids), "format_version": f.header.version,
            "uid": f.uid.hex(), "logical_bytes": f.nbytes, "disk_bytes": f.disk_usage(),
        }
        if args.verify:
            for c in _progress(ids, args.quiet, desc="verify", unit="chunk"):
                f.verify_chunk(c)
            info["verified_chunks"] = len(ids)
        f.close()
    except _errors() as e:
        return _fail("info", e)
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        print(f"{info['path']}: shape {tuple(info['shape'])} {info['dtype']} "
              f"(format v{info['format_version']}, uid {info['uid']})")
        print(f"  chunks: {info['chunks']} of {tuple(info['chunk_shape'])}, "
              f"{info['chunk_files']} on disk, {info['chunks_listed']} written")
        print(f"  logical {_fmt_bytes(info['logical_bytes'])}, on disk "
              f"{_fmt_bytes(info['disk_bytes'])}")
        if args.verify:
            print(f"  verified {info['verified_chunks']} chunk(s): OK")
    return 0


# ---- get -----------------------------------------------------------------------------
def _cmd_get(args) -> int:
    from proxima.golden import field as F
    try:
        f = F.open(args.path, verify=args.verify)
        if args.max_print < 1:
            raise ValueError(f"--max-print must be >= 1, got {args.max_print}")
        v = f.get(args.index)
        np.set_printoptions(threshold=args.max_print, edgeitems=4)
        print(np.asarray(v) if np.ndim(v) else v.item() if hasattr(v, "item") else v)
        if args.stats:
            print(f.stats().format())
        f.close()
    except _errors() as e:
        return _fail("get", e)
    return 0


# ---- bench ---------------------------------------------------------------------------
def _cmd_bench(args) -> int:
    from proxima.golden import field as F
    tmp = None
    try:
        if args.path is None:
            tmp = tempfile.mkdtemp(prefix="proxima_field_bench_", dir=args.dir)
            cols = 256
            if args.dir is not None and not os.path.isdir(args.dir):
                raise ValueError(f"--dir {args.dir} is not a directory")
            rows = max(1, (args.mb << 20) // (cols * 4))
            f = F.create(os.path.join(tmp, "bench"), (rows, cols), "float32",
                         chunk_bytes=8 << 20)
            for r in _progress(range(0, rows, f.chunk_rows), args.quiet, desc="fill",
                               unit="chunk"):
                n = min(f.chunk_rows, rows - r)
                f.batch_set(slice(r, r + n),
                            np.arange(r * cols, (r + n) * cols, dtype=np.float32).reshape(n, cols))
            f.close()
            path = os.path.join(tmp, "bench")
        else:
            path = args.path
        opts = F.FieldOptions(prefetch_depth=args.depth, prefetch_streams=args.streams,
                              prefetch_mode=args.mode)
        f = F.open(path, options=opts)
        rng = np.random.default_rng(args.seed)
        stride = max(1, f.size // max(1, args.gets))
        patterns = {
            "random": rng.integers(0, f.size, args.gets),
            "strided": (np.arange(args.gets, dtype=np.int64) * stride) % f.size,
            "sequential": np.arange(min(args.gets, f.size), dtype=np.int64),
        }
        print(f"{path}: shape {f.shape} {f.dtype}; {args.gets} gets per pattern; "
              f"prefetch {opts.prefetch_mode}, {opts.prefetch_streams} streams x depth "
              f"{opts.prefetch_depth}; OS page cache dropped before each pattern")
        print(f"{'pattern':12s} {'us/get':>9s} {'hot/warm':>9s} {'L1':>7s} {'L2':>7s} {'L3':>7s} "
              f"{'absent':>7s} {'pf issued':>9s} {'used':>7s} {'wasted':>7s}")
        for name, idx in patterns.items():
            f.clear_cache()
            f.drop_os_cache()
            f.reset_stats()
            t0 = time.perf_counter()
            for e in _progress(idx.tolist(), args.quiet, desc=name, unit="get", leave=False):
                f.get_flat(e)
            dt = time.perf_counter() - t0
            s = f.stats()
            t = s.tier_hits
            print(f"{name:12s} {1e6 * dt / len(idx):9.2f} {100 * s.hot_warm_fraction:8.1f}% "
                  f"{t['L1']:7d} {t['L2']:7d} {t['L3']:7d} {t['absent']:7d} "
                  f"{s.prefetch_issued:9d} {s.prefetch_used:7d} {s.prefetch_wasted:7d}")
        f.close()
    except _errors() as e:
        return _fail("bench", e)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


# ---- wiring --------------------------------------------------------------------------
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``field`` (create | info | get | bench) to an argparse sub-parsers object."""
    p = subparsers.add_parser("field", help="tiered memory-mapped fields (create, info, get, bench)",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="field_cmd", required=True)

    c = sub.add_parser("create", help="create an empty sparse field")
    c.add_argument("path")
    c.add_argument("--shape", type=parse_shape, required=True, help="e.g. 86e9,1000")
    c.add_argument("--dtype", default="float32")
    c.add_argument("--chunk-rows", type=positive_int, default=None)
    c.add_argument("--chunk-bytes", type=positive_int, default=1 << 20,
                   help="target chunk size when --chunk-rows is not given")
    c.add_argument("--overwrite", action="store_true")
    c.set_defaults(func=_cmd_create)

    i = sub.add_parser("info", help="header, chunks and disk usage of a field")
    i.add_argument("path")
    i.add_argument("--verify", action="store_true", help="check every chunk (checksums)")
    i.add_argument("--json", action="store_true")
    i.add_argument("--quiet", action="store_true", help="no progress bar")
    i.set_defaults(func=_cmd_info)

    g = sub.add_parser("get", help="read an element, row or region")
    g._negative_number_matcher = _INDEX_LIKE  # "proxima field get F -1,0" is an index
    g.add_argument("path")
    g.add_argument("index", type=parse_index, help="e.g. 42e9,7 or 42e9 or 0:4,1")
    g.add_argument("--stats", action="store_true", help="print tier/prefetch statistics")
    g.add_argument("--verify", action="store_true", help="verify chunk checksums on open")
    g.add_argument("--max-print", type=int, default=1000)
    g.set_defaults(func=_cmd_get)

    b = sub.add_parser("bench", help="time random / strided / sequential gets")
    b.add_argument("path", nargs="?", default=None,
                   help="field to read (default: build a temporary one of --mb MiB)")
    b.add_argument("--mb", type=positive_int, default=64)
    b.add_argument("--dir", default=None, help="where to build the temporary field")
    b.add_argument("--gets", type=positive_int, default=20000)
    b.add_argument("--depth", type=non_negative_int, default=8)
    b.add_argument("--streams", type=positive_int, default=4)
    b.add_argument("--mode", default="kernel", choices=["kernel", "thread", "sync"])
    b.add_argument("--seed", type=non_negative_int, default=0)
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.set_defaults(func=_cmd_bench)
    return p




def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="proxima")
    add_parser(p.add_subparsers(dest="cmd", required=True))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except _errors() as e:
        return _fail(args.field_cmd, e)


if __name__ == "__main__":
    sys.exit(main())
