"""Robustness sweep (issue 22): a table of careless and hostile inputs, then the fuzzers.

    python benchmarks/bench_robust.py                        # the table + 200 fuzz examples each
    python benchmarks/bench_robust.py --fuzz-examples 2000   # a long fuzz
    python benchmarks/bench_robust.py --no-fuzz

The table repeats the categories of the issue's 149 inputs: configuration values of every
field at build and at search time, output paths, queries and ground truth against the image,
vector-file and image corruptions, and the field store (two writers, a reader beside a
writer, a lost chunk, lossy casts, a killed writer's temporary files, CLI arguments).  Each
case is classified:

``error``       a one-line ``proxima ...: error:`` message (or a library error), exit 2;
``ok``          accepted where acceptance is right;
``TRACEBACK``   any other exception;
``ACCEPTED``    exit 0 where an error was expected (silently wrong);
``DATA LOSS``   an input file changed, or a reader saw a torn row / a false checksum error.

Prints the counts per category and in total; exits 1 if any case is in the last three.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from proxima.cli import main
from proxima.config import ProximaConfig, is_search_time
from proxima.golden import field as F
from proxima.golden.image import ImageError, read_image
from proxima.golden.vecio import VectorFileError, read_vectors, write_vectors

RESULTS: dict[str, Counter] = defaultdict(Counter)
BAD: list[str] = []


def _digest(p: Path) -> str | None:
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None


def record(cat: str, name: str, outcome: str) -> None:
    RESULTS[cat][outcome] += 1
    if outcome in ("TRACEBACK", "ACCEPTED", "DATA LOSS"):
        BAD.append(f"{cat}: {name}: {outcome}")


def cli_case(cat: str, argv: list[str], expect: str = "error", inputs: list[Path] = ()) -> None:
    before = {p: _digest(p) for p in inputs}
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
        except BaseException as e:  # noqa: BLE001 - that is what we count
            record(cat, " ".join(argv), "TRACEBACK")
            print(f"  TRACEBACK {' '.join(argv)}: {type(e).__name__}: {e}")
            return
    if any(_digest(p) != h for p, h in before.items()):
        record(cat, " ".join(argv), "DATA LOSS")
        return
    text = err.getvalue()
    if rc == 2 and "Traceback" not in text:
        record(cat, " ".join(argv), "error" if expect == "error" else "ACCEPTED")
    elif rc == 0:
        record(cat, " ".join(argv), "ok" if expect == "ok" else "ACCEPTED")
    else:
        record(cat, " ".join(argv), "TRACEBACK")


def lib_case(cat: str, name: str, fn, errors=(ValueError, OSError, F.FieldError)) -> None:
    try:
        fn()
    except errors:
        record(cat, name, "error")
    except BaseException as e:  # noqa: BLE001
        record(cat, name, "TRACEBACK")
        print(f"  TRACEBACK {name}: {type(e).__name__}: {e}")
    else:
        record(cat, name, "ACCEPTED")


# ---------------------------------------------------------------------------------------
def workspace(d: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    f = {k: d / v for k, v in dict(base="base.u8bin", fbase="base.fvecs", q="q.u8bin",
                                   gt="gt.ivecs", img="index.pxi").items()}
    write_vectors(f["base"], rng.integers(0, 256, (300, 16), dtype=np.uint8))
    write_vectors(f["fbase"], rng.standard_normal((300, 16)).astype(np.float32))
    write_vectors(f["q"], rng.integers(0, 256, (8, 16), dtype=np.uint8))
    from proxima.golden.datasets import ground_truth
    write_vectors(f["gt"], ground_truth(read_vectors(f["base"]), read_vectors(f["q"]),
                                        10)[0].astype(np.int32))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["build-index", "--preset", "tiny", "--base", str(f["base"]), "-o",
                     str(f["img"]), "--quiet"]) == 0
    return f


_BAD_VALUES = {"int": ["abc", "-1", "1.5", ""], "float": ["nan", "inf", "-1", "x"],
               "bool": ["banana", "2"]}


def config_cases(f: dict[str, Path], d: Path) -> None:
    cfg = ProximaConfig()
    for sec, fields in cfg.to_dict().items():
        if not isinstance(fields, dict):
            continue
        for key, val in fields.items():
            kind = "bool" if isinstance(val, bool) else "int" if isinstance(val, int) else "float"
            # build time: a value of the wrong kind / out of range (the first two per field)
            for bad in _BAD_VALUES[kind][:2]:
                if kind == "int" and bad == "-1" and key in ("seed",):
                    continue
                cli_case("config --set (build)", ["build-index", "--preset", "tiny", "--base",
                                                  str(f["base"]), "-o", str(d / "o.pxi"),
                                                  "--quiet", "--set", f"{sec}.{key}={bad}"],
                         inputs=[f["base"]])
            # search time: build-time fields are refused, search-time ones accepted
            if not is_search_time(sec, key):
                cli_case("config --set (search time)",
                         ["search", "--index", str(f["img"]), "--queries", str(f["q"]),
                          "--set", f"{sec}.{key}={val}"], inputs=[f["img"]])


def path_and_input_cases(f: dict[str, Path], d: Path) -> None:
    c = "paths and inputs"
    b = ["build-index", "--preset", "tiny", "--quiet"]
    cli_case(c, b + ["--base", str(f["base"]), "-o", str(f["base"])], inputs=[f["base"]])
    cli_case(c, b + ["--base", str(f["base"]), "-o", str(d / "missing" / "x.pxi")])
    cli_case(c, b + ["--base", str(f["base"]), "-o", str(d)])
    cli_case(c, ["search", "--index", str(f["img"]), "--queries", str(f["q"]), "-o",
                 str(f["q"])], inputs=[f["q"]])
    cli_case(c, ["search", "--index", str(f["img"]), "--queries", str(f["q"]), "-o",
                 str(f["img"])], inputs=[f["img"]])
    cli_case(c, ["eval", "--index", str(f["img"]), "--queries", str(f["q"]), "--gt",
                 str(f["gt"]), "--json", str(d)])
    cli_case(c, ["eval", "--index", str(f["img"]), "--queries", str(f["q"]), "--gt",
                 str(f["gt"]), "--json", str(f["gt"])], inputs=[f["gt"]])
    cli_case(c, ["eval", "--index", str(f["img"]), "--queries", str(f["q"]), "--gt",
                 str(f["gt"]), "--sweep", "search.L="])
    cli_case(c, ["eval", "--index", str(f["img"]), "--queries", str(f["q"]), "--gt",
                 str(f["gt"]), "--sweep", "L=8"])
    cli_case(c, ["eval", "--index", str(f["img"]), "--queries", str(f["q"]), "--gt",
                 str(f["gt"]), "--target", "nan"])
    rng = np.random.default_rng(1)
    for name, arr in [("q8", rng.integers(0, 256, (3, 8), dtype=np.uint8)),
                      ("q300", np.full((8, 16), 300, np.int32)),
                      ("qneg", np.full((8, 16), -1, np.int32)),
                      ("qnan", np.full((8, 16), np.nan, np.float32)),
                      ("qinf", np.full((8, 16), np.inf, np.float32))]:
        p = d / f"{name}.{'u8bin' if arr.dtype == np.uint8 else 'ivecs' if arr.dtype.kind == 'i' else 'fvecs'}"
        write_vectors(p, arr)
        for cmd in (["search"], ["eval", "--gt", str(f["gt"])]):
            cli_case(c, [*cmd, "--index", str(f["img"]), "--queries", str(p)])
    gt = read_vectors(f["gt"])
    for name, arr in [("gtf", gt.astype(np.float32)), ("gtfar", gt + 10_000),
                      ("gtneg", gt - 1000), ("gtshort", gt[:3])]:
        p = d / f"{name}.{'fvecs' if arr.dtype.kind == 'f' else 'ivecs'}"
        write_vectors(p, arr)
        cli_case(c, ["eval", "--index", str(f["img"]), "--queries", str(f["q"]), "--gt", str(p)])
    cli_case(c, ["eval", "--index", str(f["img"]), "--queries", str(f["q"]), "--gt",
                 str(f["gt"]), "--quiet", "--timing", "--set", "nand.tR_ns=3000"], expect="ok")
    nanf = d / "nan.fvecs"
    x = rng.random((10, 4)).astype(np.float32)
    x[2, 2] = np.nan
    write_vectors(nanf, x)
    cli_case(c, ["dataset", "info", str(nanf)], expect="ok")
    cli_case(c, b + ["--base", str(nanf), "-o", str(d / "n.pxi")])


def file_cases(f: dict[str, Path], d: Path) -> None:
    c = "vector files"
    base = f["base"].read_bytes()
    for i, data in enumerate([b"", b"\x00", base[:7], base[:100], base[:-1], b"\xff" * 64,
                              b"\x10\x00\x00\x00" + b"\x00" * 10]):
        for ext in ("u8bin", "fvecs", "ivecs", "npy"):
            p = d / f"bad{i}.{ext}"
            p.write_bytes(data)
            lib_case(c, p.name, lambda p=p: read_vectors(p), (VectorFileError,))
    c = "image file"
    img = f["img"].read_bytes()
    rng = np.random.default_rng(2)
    for i, off in enumerate(rng.integers(0, len(img), 16).tolist() + [0, 8, 12, 20, 30]):
        b = bytearray(img)
        b[off] ^= 0xFF
        p = d / f"flip{i}.pxi"
        p.write_bytes(bytes(b))
        lib_case(c, f"flip byte {off}", lambda p=p: read_image(p), (ImageError,))
    for n in (0, 10, 24, 100, len(img) // 2, len(img) - 1):
        p = d / f"trunc{n}.pxi"
        p.write_bytes(img[:n])
        lib_case(c, f"truncate at {n}", lambda p=p: read_image(p), (ImageError,))


def field_cases(d: Path) -> None:
    c = "field store"
    p = d / "fld"
    fw = F.create(p, (40, 8), "int32", chunk_rows=10)
    fw.batch_set(slice(None), 1)
    lib_case(c, "second writer (same process)", lambda: F.open(p, "r+"))
    r = subprocess.run([sys.executable, "-c", "import sys\nfrom proxima.golden import field as F"
                        "\ntry:\n F.open(sys.argv[1], 'r+')\nexcept F.FieldLockedError:\n"
                        " sys.exit(2)\n", str(p)], capture_output=True)
    record(c, "second writer (other process)", "error" if r.returncode == 2 else "ACCEPTED")
    for name, v in [("1e20", 1e20), ("nan", float("nan")), ("inf", float("inf")),
                    ("2**31", 2 ** 31), ("1.5", 1.5), ("'x'", "x"), ("1+1j", 1 + 1j)]:
        def put(v=v):
            fw[0, 0] = v
        lib_case(c, f"int32 <- {name}", put)
    ok = fw.get((0, 0)) == 1
    record(c, "value kept after refused writes", "ok" if ok else "DATA LOSS")
    fw.close()
    os.unlink(p / F.chunk_relpath(2))
    lib_case(c, "read of a deleted chunk", lambda: F.open(p).get((25, 0)))
    lib_case(c, "verify with a deleted chunk", lambda: F.open(p).verify())
    cli_case(c, ["field", "info", str(p), "--verify", "--quiet"])
    cli_case(c, ["field", "get", str(p), "-1,0"], expect="ok")
    cli_case(c, ["field", "get", str(p), "-41,0"])
    cli_case(c, ["field", "bench", "--gets", "0"])
    cli_case(c, ["field", "create", str(d / "f2"), "--shape", "4,3", "--chunk-bytes", "-1"])
    cli_case(c, ["field", "create", str(d / "f2"), "--shape", "0,3"])
    cli_case(c, ["field", "create", str(d / "f2"), "--shape", "4,3", "--dtype", "U4"])
    # a killed writer: no damage, temps removed by the next writer
    q = d / "fk"
    g = F.create(q, (20, 4), "int32", chunk_rows=5)
    g.batch_set(slice(None), 1)
    g.close()
    w = subprocess.Popen([sys.executable, "-c", "import sys\nfrom proxima.golden import field"
                          " as F\nf = F.open(sys.argv[1], 'r+')\nf[0, 0] = 9\nprint('w', "
                          "flush=True)\nsys.stdin.readline()\n", str(q)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    w.stdout.readline()
    w.send_signal(signal.SIGKILL)
    w.wait()
    intact = F.open(q, verify=True).verify() == 4 and (F.open(q).batch_get(...) == 1).all()
    record(c, "killed writer leaves the last flushed state", "ok" if intact else "DATA LOSS")
    F.open(q, "r+").close()
    record(c, "killed writer's temps removed", "ok" if not list(q.rglob("*.tmp*"))
           else "ACCEPTED")
    # a reader beside a writer
    t = d / "ft"
    F.create(t, (16, 1024), "int64", chunk_rows=4).close()
    w = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys
        from proxima.golden import field as F
        f = F.open(sys.argv[1], "r+")
        print("ready", flush=True)
        for v in range(1, 81):
            for r in range(0, 16, 3):
                f.batch_set((slice(r, r + 1), slice(0, 512)), v)
                f[r, 512:] = v
            f.flush()
        f.close()
    """), str(t)], stdout=subprocess.PIPE, text=True)
    w.stdout.readline()
    reads = torn = false_corrupt = 0
    while w.poll() is None:
        try:
            h = F.open(t, verify=True)
            for r in range(0, 16, 3):
                row = h.get(r)
                reads += 1
                torn += int(not (row == row[0]).all())
        except F.CorruptChunkError:
            false_corrupt += 1
    print(f"  reader beside a writer: {reads} row reads, {torn} torn, "
          f"{false_corrupt} false checksum errors")
    record(c, "reader beside a writer", "ok" if torn == 0 == false_corrupt else "DATA LOSS")


def fuzz(examples: int) -> None:
    env = dict(os.environ, PROXIMA_FUZZ_EXAMPLES=str(examples))
    tests = Path(__file__).resolve().parents[1] / "tests" / "test_fuzz.py"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(tests), "--hypothesis-show-statistics"], env=env,
                       capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1])
    ok = r.returncode == 0
    for name in ("vector_readers", "image_reader", "set_parsing", "cli_never"):
        RESULTS[f"fuzz ({name})"]["ok" if ok else "TRACEBACK"] += examples
    print(f"fuzz: 4 properties x {examples} examples in {time.perf_counter() - t0:.0f} s: "
          f"{'no failure' if ok else 'FAILED'}")
    if not ok:
        BAD.append("fuzz: " + r.stdout[-2000:])


def main_() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fuzz-examples", type=int, default=200)
    ap.add_argument("--no-fuzz", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="proxima_robust_") as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        f = workspace(d)
        config_cases(f, d)
        path_and_input_cases(f, d)
        file_cases(f, d)
        field_cases(d)
        print(f"case table in {time.perf_counter() - t0:.0f} s")
    if not args.no_fuzz:
        fuzz(args.fuzz_examples)
    total = Counter()
    print(f"{'category':32} {'cases':>6} " + " ".join(f"{k:>10}" for k in
                                                      ("error", "ok", "TRACEBACK", "ACCEPTED",
                                                       "DATA LOSS")))
    for cat, cnt in RESULTS.items():
        total.update(cnt)
        print(f"{cat:32} {sum(cnt.values()):6d} " + " ".join(
            f"{cnt[k]:10d}" for k in ("error", "ok", "TRACEBACK", "ACCEPTED", "DATA LOSS")))
    print(f"{'total':32} {sum(total.values()):6d} " + " ".join(
        f"{total[k]:10d}" for k in ("error", "ok", "TRACEBACK", "ACCEPTED", "DATA LOSS")))
    for b in BAD:
        print("BAD:", b)
    return 1 if BAD else 0


if __name__ == "__main__":
    sys.exit(main_())
