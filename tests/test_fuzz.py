"""Property-based fuzzing (hypothesis): the vector readers, the image reader, ``--set``
parsing and the CLI entry points.  Any input gives a result or a one-line error (exit 2),
never a traceback and never the loss of an input file.

Sizes are CI-sized (tens of examples, files of a few kB, the ``tiny`` preset); the long run
is ``python benchmarks/bench_robust.py --fuzz-examples N``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from proxima.cli import main
from proxima.config import ConfigError, ProximaConfig, preset
from proxima.golden.image import ImageError, read_image, write_image
from proxima.golden.vecio import (FORMATS, VectorFileError, iter_vectors, read_vectors,
                                  vector_file_info, write_vectors)

FUZZ = settings(max_examples=int(os.environ.get("PROXIMA_FUZZ_EXAMPLES", "40")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])
EXTS = sorted(FORMATS)


# ------------------------------------------------------------------ vector readers
def _valid_bytes(fmt: str, rows: int, dim: int) -> bytes:
    import tempfile
    dt = FORMATS[fmt][1] or np.dtype(np.float32)
    x = (np.arange(rows * dim) % 100).reshape(rows, dim).astype(dt)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"v.{fmt}"
        write_vectors(p, x)
        return p.read_bytes()


@st.composite
def vector_files(draw):
    fmt = draw(st.sampled_from(EXTS))
    kind = draw(st.sampled_from(["random", "mutated", "truncated", "header"]))
    if kind == "random":
        return fmt, draw(st.binary(max_size=300))
    data = bytearray(_valid_bytes(fmt, draw(st.integers(1, 5)), draw(st.integers(1, 6))))
    if kind == "truncated":
        return fmt, bytes(data[:draw(st.integers(0, len(data)))])
    if kind == "header":  # plausible-looking but wrong counts in the first words
        word = draw(st.sampled_from([0, 1, 2, 3, -1, 2 ** 31 - 1, -2 ** 31, 7, 10 ** 6]))
        pos = draw(st.sampled_from([0, 4])) if len(data) >= 8 else 0
        if len(data) >= pos + 4:
            struct.pack_into("<i", data, pos, word)
        return fmt, bytes(data)
    for _ in range(draw(st.integers(1, 4))):
        if data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
    return fmt, bytes(data)


@FUZZ
@given(vector_files(), st.booleans())
def test_vector_readers_never_crash(tmp_path, f, mmap):
    fmt, data = f
    p = tmp_path / f"x.{fmt}"
    p.write_bytes(data)
    try:
        info = vector_file_info(p)
        x = read_vectors(p, mmap=mmap)
        rows = sum(len(c) for c in iter_vectors(p, chunk_rows=2))
    except VectorFileError as e:
        assert str(e).startswith(str(p)) and "\n" not in str(e)
        event("rejected")
        return
    event("read")
    assert x.ndim == 2 and x.shape == (info.n, info.dim) and rows == info.n
    assert info.n >= 1 and info.dim >= 1


# ------------------------------------------------------------------ image reader
@pytest.fixture(scope="module")
def image_bytes(tmp_path_factory):
    from tests.golden.test_image import make_index
    p = tmp_path_factory.mktemp("img") / "x.pxi"
    write_image(p, make_index(n=80, hot=4))
    return p.read_bytes()


def _sections(data: bytes) -> list[tuple[int, int, int]]:
    nsec = struct.unpack_from("<I", data, 16)[0]
    return [struct.unpack_from("<16sQQII", data, 24 + 40 * i)[1:3] + (24 + 40 * i,)
            for i in range(nsec)]


def _forge(data: bytearray) -> None:
    """Recompute the section and header checksums so the mutation reaches the decoders."""
    try:
        for off, ln, ent in _sections(bytes(data)):
            if off + ln <= len(data):
                struct.pack_into("<I", data, ent + 32, zlib.crc32(data[off:off + ln]))
        hb = struct.unpack_from("<I", data, 12)[0]
        struct.pack_into("<I", data, 20, 0)
        struct.pack_into("<I", data, 20, zlib.crc32(bytes(data[:hb])))
    except struct.error:
        pass


@FUZZ
@given(st.data())
def test_image_reader_never_crashes(tmp_path, image_bytes, data):
    buf = bytearray(image_bytes)
    mode = data.draw(st.sampled_from(["flip", "forge", "truncate", "config", "metadata"]))
    if mode == "truncate":
        buf = buf[:data.draw(st.integers(0, len(buf) - 1))]
    elif mode in ("config", "metadata"):  # rewrite a JSON section, then forge the checksums
        secs = _sections(bytes(buf))
        off, ln, _ = secs[0 if mode == "config" else 1]
        text = bytes(buf[off:off + ln]).decode()
        for _ in range(data.draw(st.integers(1, 3))):
            i = data.draw(st.integers(0, len(text) - 1))
            text = text[:i] + data.draw(st.sampled_from(
                ["0", "-1", "1e400", "Infinity", "NaN", '"x"', "null", "[]", "9" * 30, "}",
                 "true", "2"])) + text[i + 1:]
        raw = text.encode()[:ln].ljust(ln, b" ")
        buf[off:off + ln] = raw
        _forge(buf)
    else:
        for _ in range(data.draw(st.integers(1, 6))):
            i = data.draw(st.integers(0, len(buf) - 1))
            buf[i] = data.draw(st.integers(0, 255))
        if mode == "forge":
            _forge(buf)
    p = tmp_path / "m.pxi"
    p.write_bytes(bytes(buf))
    try:
        img = read_image(p)
    except ImageError as e:
        assert "\n" not in str(e)
        event(f"{mode}: rejected")
        return
    event(f"{mode}: accepted")
    assert img.index.n >= 1  # an accepted image decodes to a consistent index


# ------------------------------------------------------------------ --set parsing
_FIELDS = [f"{s}.{k}" for s, sec in ProximaConfig().to_dict().items() if isinstance(sec, dict)
           for k in sec]
_VALUES = ["0", "1", "-1", "2", "16", "64", "1.5", "1e9", "1e400", "nan", "inf", "-inf", "",
           "true", "false", "banana", "0x10", "1_000", "٣", " 8 ", "None", "[]", "2**4",
           str(2 ** 70), "-0", "0.0"]


@FUZZ
@given(st.lists(st.one_of(
    st.tuples(st.sampled_from(_FIELDS), st.sampled_from(_VALUES)).map(lambda t: f"{t[0]}={t[1]}"),
    st.text(max_size=30)), min_size=1, max_size=4),
       st.sampled_from(["tiny", "default", "paper"]), st.booleans())
def test_set_parsing_never_crashes(sets, name, search_time):
    base = preset(name)
    try:
        cfg = base.override(sets, search_time=search_time)
    except ConfigError as e:
        assert "\n" not in str(e)
        return
    assert ProximaConfig.from_json(cfg.to_json()) == cfg  # what is accepted is valid


# ------------------------------------------------------------------ CLI entry points
def _digest(p: Path) -> str | None:
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_fuzz")
    rng = np.random.default_rng(0)
    write_vectors(d / "base.u8bin", rng.integers(0, 256, (64, 16), dtype=np.uint8))
    write_vectors(d / "base.fvecs", rng.standard_normal((64, 16)).astype(np.float32))
    write_vectors(d / "q.u8bin", rng.integers(0, 256, (4, 16), dtype=np.uint8))
    write_vectors(d / "q8.u8bin", rng.integers(0, 256, (4, 8), dtype=np.uint8))
    write_vectors(d / "gt.ivecs", rng.integers(0, 64, (4, 10), dtype=np.int32))
    (d / "junk.fvecs").write_bytes(b"\x05\x00\x00\x00abc")
    assert main(["build-index", "--preset", "tiny", "--base", str(d / "base.u8bin"), "-o",
                 str(d / "index.pxi"), "--quiet", "--no-reorder",
                 "--set", "pq.train_iters=2"]) == 0
    from proxima.golden import field as F
    F.create(d / "fld", (6, 3), "int32").close()
    pristine = d / "pristine"
    pristine.mkdir()
    for p in d.iterdir():
        if p.is_file():
            shutil.copy2(p, pristine / p.name)
    shutil.copytree(d / "fld", pristine / "fld")
    return d


_INPUTS = ["base.u8bin", "base.fvecs", "q.u8bin", "q8.u8bin", "gt.ivecs", "junk.fvecs",
           "index.pxi", "missing.fvecs", "."]
_OUTPUTS = ["out.pxi", "out.ivecs", "out.json", "nodir/out.pxi", "."] + _INPUTS[:7]
_SETS = ["search.L=8", "search.L=0", "search.k=4", "search.beta=inf", "graph.R=4", "pq.M=8",
         "vec.dim=8", "engine.queues=8", "nand.tR_ns=-1", "layout.reorder=banana", "x", "a.b=c",
         "bloom.bits=64", "cache.ways=0", "engine.clock_mhz=nan", "search.T0=99"]


@st.composite
def command_lines(draw):
    f = lambda xs, good=None: draw(st.sampled_from(  # noqa: E731
        xs if good is None else [good] * len(xs) + list(xs)))  # half the time the right file
    cmd = f(["build-index", "search", "eval", "dataset-info", "dataset-convert", "field-get",
             "field-info", "field-create", "garbage"])
    sets = [x for s in draw(st.lists(st.sampled_from(_SETS), max_size=2)) for x in ("--set", s)]
    if cmd == "build-index":
        argv = ["build-index", "--preset", "tiny", "--base", f(_INPUTS, "base.fvecs"),
                "-o", f(_OUTPUTS, "out.pxi"),
                "--quiet", "--no-reorder", "--set", "pq.train_iters=2", *sets]
        ins = [argv[4]]
    elif cmd in ("search", "eval"):
        argv = [cmd, "--index", f(_INPUTS, "index.pxi"), "--queries", f(_INPUTS, "q.u8bin"),
                *sets]
        ins = [argv[2], argv[4]]
        if cmd == "eval":
            argv += ["--gt", f(_INPUTS, "gt.ivecs"), "--quiet", "--algo", f(["alg1", "beam"])]
            ins.append(argv[6])
            if draw(st.booleans()):
                argv += ["--sweep", f(["search.L=8,16", "search.L=", "search.r=1,x", "q"])]
            if draw(st.booleans()):
                argv += ["--json", f(_OUTPUTS)]
        elif draw(st.booleans()):
            argv += ["-o", f(_OUTPUTS)]
    elif cmd == "dataset-info":
        argv = ["dataset", "info", f(_INPUTS)] + (["--rows", f(["0", "1", "-1", "x"])]
                                                  if draw(st.booleans()) else [])
        ins = [argv[2]]
    elif cmd == "dataset-convert":
        argv = ["dataset", "convert", f(_INPUTS), f(_OUTPUTS)]
        ins = [argv[2]]
    elif cmd.startswith("field"):
        idx = f(["0,0", "-1,0", "5,2", "6,0", "1e30", "0:2", "a", ",", "-1", "0,0,0", "::-1"])
        argv = {"field-get": ["field", "get", "fld", idx],
                "field-info": ["field", "info", f(["fld", "index.pxi", "missing"]), "--quiet"]
                + (["--verify"] if draw(st.booleans()) else []),
                "field-create": ["field", "create", f(["newf", "fld", "index.pxi"]), "--shape",
                                 f(["4,3", "0", "-1,2", "1e40", "x"]), "--dtype",
                                 f(["int8", "float32", "U4", "nope"])]}[cmd]
        ins = ["fld"] if cmd != "field-create" else []
    else:
        argv = draw(st.lists(st.sampled_from(["--set", "-o", "x", "search", "--index", "eval",
                                              "", "-", "--", "dataset", "field"]), max_size=5))
        ins = []
    return argv, ins


@FUZZ
@given(command_lines())
def test_cli_never_tracebacks_or_loses_an_input(cli_files, monkeypatch, cmdline):
    argv, ins = cmdline
    d = cli_files
    monkeypatch.chdir(d)
    before = {p: _digest(d / p) for p in ins}
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse: usage errors (2) and --help (0)
            rc = e.code
    assert rc in (0, 1, 2), (argv, rc)
    event(f"{argv[0] if argv else '-'} exit {rc}")
    text = err.getvalue()
    assert "Traceback" not in text, (argv, text)
    if rc == 2 and not text.startswith("usage:"):
        lines = [x for x in text.splitlines() if x.strip() and not x.startswith(("note:", "\r"))
                 and "warning" not in x]
        assert len(lines) == 1, (argv, text)
    for p, h in before.items():
        assert _digest(d / p) == h, (argv, "input changed", p)
    # put the working files back for the next example
    pristine = d / "pristine"
    for p in pristine.iterdir():
        if p.is_file():
            shutil.copy2(p, d / p.name)
    for p in ("out.pxi", "out.ivecs", "out.json", "newf"):
        q = d / p
        if q.is_dir():
            shutil.rmtree(q)
        elif q.exists():
            q.unlink()
    shutil.rmtree(d / "fld")
    shutil.copytree(pristine / "fld", d / "fld")
