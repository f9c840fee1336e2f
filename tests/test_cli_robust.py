"""Issue 22's command-line cases: every bad input is refused before work starts, with one
line on stderr and exit status 2; nothing overwrites an input; search-time overrides."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from proxima.cli import main
from proxima.config import ConfigError, preset
from proxima.golden.vecio import read_vectors, write_vectors
from proxima.pipeline import build_config
from tests.cli_data import build_cli_set


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_cli_set(tmp_path_factory.mktemp("robust"), 600, 12)


def _fails(argv, capsys, *words):
    """Exit status 2, one line on stderr naming ``words``."""
    t0 = time.perf_counter()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and err.startswith("proxima ")
    for w in words:
        assert w in err, err
    return time.perf_counter() - t0


# ------------------------------------------------------------------ data loss
def test_build_index_refuses_to_overwrite_its_input(built, tmp_path, capsys):
    d, base, *_ = built
    v = tmp_path / "v.u8bin"
    v.write_bytes(base.read_bytes())
    before = v.read_bytes()
    _fails(["build-index", "--preset", "tiny", "--base", str(v), "-o", str(v)], capsys,
           "also an input")
    link = tmp_path / "link.u8bin"
    link.symlink_to(v)
    _fails(["build-index", "--preset", "tiny", "--base", str(v), "-o", str(link)], capsys,
           "also an input")
    assert v.read_bytes() == before


def test_outputs_that_cannot_be_written_fail_before_work(built, tmp_path, capsys):
    d, base, q, gt, img = built
    _fails(["build-index", "--preset", "tiny", "--base", str(base), "-o",
            str(tmp_path / "missing" / "x.pxi")], capsys, "does not exist")
    _fails(["build-index", "--preset", "tiny", "--base", str(base), "-o", str(tmp_path)],
           capsys, "is a directory")
    _fails(["eval", "--index", str(img), "--queries", str(q), "--gt", str(gt), "--json",
            str(tmp_path)], capsys, "is a directory")
    _fails(["search", "--index", str(img), "--queries", str(q), "-o", str(q)], capsys,
           "also an input")
    _fails(["search", "--index", str(img), "--queries", str(q), "-o", str(tmp_path / "r.fvecs")],
           capsys, "int32 format")
    _fails(["search", "--index", str(img), "--queries", str(q), "-o", str(tmp_path / "r.xyz")],
           capsys, "r.xyz")


# ------------------------------------------------------------------ tracebacks before
def test_query_dimension_and_range_checked_against_the_image(built, tmp_path, capsys):
    d, base, q, gt, img = built
    q8 = tmp_path / "q8.u8bin"
    write_vectors(q8, np.zeros((3, 8), np.uint8))
    for cmd in (["search"], ["eval", "--gt", str(gt)]):
        _fails([*cmd, "--index", str(img), "--queries", str(q8)], capsys,
               "queries have dimension 8", "index has dimension 16")
    big = tmp_path / "big.ivecs"
    write_vectors(big, np.full((12, 16), 300, np.int32))
    for cmd in (["search"], ["eval", "--gt", str(gt)]):
        _fails([*cmd, "--index", str(img), "--queries", str(big)], capsys, "300", "0..255")
    fq = tmp_path / "q.fvecs"
    write_vectors(fq, np.full((12, 16), np.nan, np.float32))
    _fails(["search", "--index", str(img), "--queries", str(fq)], capsys, "NaN")


def test_infinite_beta_refused_on_the_command_line_and_in_an_image(built, tmp_path, capsys):
    d, base, q, gt, img = built
    _fails(["build-index", "--preset", "tiny", "--base", str(base), "-o",
            str(tmp_path / "x.pxi"), "--set", "search.beta=inf"], capsys, "search.beta")
    _fails(["search", "--index", str(img), "--queries", str(q), "--set", "search.beta=inf"],
           capsys, "finite")
    from proxima.golden.image import read_image, write_image
    index = read_image(img).index
    object.__setattr__(index.cfg.search, "beta", float("inf"))  # as a damaged file holds
    bad = tmp_path / "inf.pxi"
    write_image(bad, index)
    _fails(["search", "--index", str(bad), "--queries", str(q)], capsys, "search.beta")


@pytest.mark.parametrize("setting, words", [
    ("pq.train_size=0", ["pq.train_size"]), ("pq.train_iters=-1", ["pq.train_iters"]),
    ("layout.reorder=banana", ["layout.reorder", "banana"]),
    ("engine.clock_mhz=nan", ["engine.clock_mhz"]), ("nand.page_bytes=0", ["nand.page_bytes"]),
    ("engine.id_bits=4", ["id_bits"]),  # 600 vectors need more than 16 ids
])
def test_bad_build_settings_fail_before_the_graph_build(built, tmp_path, capsys, setting,
                                                         words):
    d, base, *_ = built
    out = tmp_path / "x.pxi"
    dt = _fails(["build-index", "--preset", "tiny", "--base", str(base), "-o", str(out),
                 "--set", setting, "--quiet"], capsys, *words)
    assert dt < 5 and not out.exists()


def test_sweep_without_values_and_bad_counts(built, tmp_path, capsys):
    d, base, q, gt, img = built
    _fails(["eval", "--index", str(img), "--queries", str(q), "--gt", str(gt), "--sweep",
            "search.L="], capsys, "no values")
    _fails(["eval", "--index", str(img), "--queries", str(q), "--gt", str(gt), "--sweep",
            "search.L=8,abc"], capsys, "search.L")
    js = tmp_path / "never.json"
    _fails(["eval", "--index", str(img), "--queries", str(q), "--gt", str(gt), "--sweep",
            "search.L=8,100001", "--json", str(js)], capsys, "search.L")
    assert not js.exists()


# ------------------------------------------------------------------ silently wrong before
@pytest.mark.parametrize("setting", ["graph.R=4", "pq.M=8", "vec.dim=32", "engine.id_bits=4",
                                     "nand.page_bytes=8192", "layout.hot_fraction=0.5"])
def test_build_time_fields_refused_at_search_time(built, capsys, setting):
    d, base, q, gt, img = built
    key = setting.split("=")[0]
    for cmd in (["search"], ["eval", "--gt", str(gt)]):
        _fails([*cmd, "--index", str(img), "--queries", str(q), "--set", setting], capsys,
               f"{key} is fixed when the index is built")


def test_timing_overrides_change_the_model(built, tmp_path, capsys):
    """eval --timing --set nand.tR_ns / engine.clock_mhz / nand.transfer_bytes_per_ns /
    engine.queues reach the NAND timing model (the image's stored config is the base)."""
    d, base, q, gt, img = built

    def cycles(*sets):
        js = tmp_path / "t.json"
        argv = ["eval", "--index", str(img), "--queries", str(q), "--gt", str(gt), "--algo",
                "alg1", "--timing", "--quiet", "--json", str(js)]
        for s in sets:
            argv += ["--set", s]
        assert main(argv) == 0
        capsys.readouterr()
        c = json.loads(js.read_text())["reports"][0]["counters"]
        return c["model_total_cycles"], c["model_qps"], c["recall@10" if False else "hops"]

    ref = cycles()
    slow = cycles("nand.tR_ns=3000")
    assert slow[0] > 2 * ref[0] and slow[2] == ref[2]  # same search, slower NAND
    assert cycles("engine.clock_mhz=400")[0] > ref[0]  # tR is more cycles at a faster clock
    assert cycles("nand.transfer_bytes_per_ns=0.01")[0] > ref[0]
    assert cycles("engine.queues=64")[1] != ref[1]


def test_ground_truth_checked(built, tmp_path, capsys):
    d, base, q, gt, img = built
    fgt = tmp_path / "gt.fvecs"
    write_vectors(fgt, read_vectors(gt).astype(np.float32))
    _fails(["eval", "--index", str(img), "--queries", str(q), "--gt", str(fgt)], capsys,
           "float32", "integer ids")
    far = tmp_path / "far.ivecs"
    write_vectors(far, read_vectors(gt) + 10_000)
    _fails(["eval", "--index", str(img), "--queries", str(q), "--gt", str(far)], capsys,
           "outside the index's 0..599")
    short = tmp_path / "short.ivecs"
    write_vectors(short, read_vectors(gt)[:5])
    _fails(["eval", "--index", str(img), "--queries", str(q), "--gt", str(short)], capsys,
           "5 rows")


def test_dataset_info_warns_about_nan(tmp_path, capsys):
    x = np.random.default_rng(0).random((10, 4)).astype(np.float32)
    x[3, 1], x[5, 0] = np.nan, np.inf
    p = tmp_path / "bad.fvecs"
    write_vectors(p, x)
    assert main(["dataset", "info", str(p)]) == 0
    out, err = capsys.readouterr()
    assert "warning" in err and "2 NaN or infinite values in 2 of 10 rows (first: row 3)" in err
    assert "min inf" not in out and "max -inf" not in out and "nan" not in out
    assert main(["dataset", "info", str(p), "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["nonfinite_values"] == 2 and np.isfinite(js["min"]) and np.isfinite(js["max"])


def test_killed_image_writer_temp_removed_by_next_write(built, tmp_path, capsys):
    d, base, q, gt, img = built
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "index.pxi"
    stale = tmp_path / f".index.pxi.{dead.pid}.abcd1234.tmp"
    stale.write_bytes(b"half an image")
    mine = tmp_path / f".index.pxi.{__import__('os').getpid()}.live.tmp"
    mine.write_bytes(b"a live writer's")
    assert main(["build-index", "--preset", "tiny", "--base", str(base), "-o", str(out),
                 "--quiet"]) == 0
    assert out.exists() and not stale.exists() and mine.exists()
    stale.write_bytes(b"again")  # a reader of the image removes it too
    assert main(["search", "--index", str(out), "--queries", str(q)]) == 0
    assert not stale.exists() and mine.exists()


# ------------------------------------------------------------------ issue 18: layering
def test_pq_m_chosen_for_the_data_dimension():
    """--set pq.M=48 on 384-d data: the data's dimension is applied before validation."""
    cfg = build_config("default", ["pq.M=48"], 384)
    assert (cfg.vec.dim, cfg.pq.M, cfg.dsub) == (384, 48, 8)
    with pytest.raises(ConfigError, match="divisible by pq.M"):
        build_config("default", ["pq.M=48"], 100)
    with pytest.raises(ValueError, match="--set vec.dim=64"):
        build_config("default", ["vec.dim=64"], 384)
    assert build_config("default", [], None) == preset("default")


def test_pq_m_48_builds_on_384_d_data(tmp_path, capsys):
    x = np.random.default_rng(1).standard_normal((300, 384)).astype(np.float32)
    p = tmp_path / "b.fvecs"
    write_vectors(p, x)
    out = tmp_path / "b.pxi"
    assert main(["build-index", "--preset", "tiny", "--base", str(p), "-o", str(out),
                 "--set", "pq.M=48", "--set", "pq.train_iters=2", "--no-reorder",
                 "--quiet"]) == 0
    from proxima.golden.image import read_image
    assert read_image(out).index.cfg.pq.M == 48


def test_cli_and_demo_do_not_import_each_other():
    """The demo and the pipelines never import the CLI (the CLI calls them)."""
    import ast
    import pathlib
    import proxima
    root = pathlib.Path(proxima.__file__).parent
    for a, b in (("demo", "cli"), ("pipeline", "cli"), ("pipeline", "demo")):
        tree = ast.parse((root / f"{a}.py").read_text())
        names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        names |= {al.name for n in ast.walk(tree) if isinstance(n, ast.Import) for al in n.names}
        assert not any(x == b or x.endswith(f".{b}") for x in names), (a, names)


def test_subcommand_modules_register_with_add_parser():
    from proxima.cli import SUBCOMMAND_MODULES, build_parser
    import importlib
    assert set(SUBCOMMAND_MODULES) == {"cli_dataset", "cli_field", "cli_hdl", "cli_fpga",
                                       "cli_tune", "cli_sim"}
    for mod in SUBCOMMAND_MODULES:
        assert callable(importlib.import_module(f"proxima.{mod}").add_parser)
    choices = build_parser()._subparsers._group_actions[0].choices
    assert {"demo", "build-index", "search", "eval", "dataset", "field", "hdl", "fpga",
            "tune", "sim"} <= set(choices)


def test_dataset_commands_refuse_to_overwrite_their_inputs(built, tmp_path, capsys):
    d, base, q, gt, img = built
    b = tmp_path / "b.u8bin"
    b.write_bytes(base.read_bytes())
    before = b.read_bytes()
    _fails(["dataset", "groundtruth", "--base", str(b), "--queries", str(q), "--out", str(b),
            "--no-progress"], capsys, "also an input")
    _fails(["dataset", "convert", str(b), str(b)], capsys, "also an input")
    f = tmp_path / "f.fvecs"
    write_vectors(f, np.ones((4, 16), np.float32))
    _fails(["dataset", "quantise", "--in", str(f), "--out", str(f)], capsys, "also an input")
    assert b.read_bytes() == before


def test_eval_plot_without_matplotlib_fails_before_the_run(built, capsys, monkeypatch):
    import importlib.util
    d, base, q, gt, img = built
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    _fails(["eval", "--index", str(img), "--queries", str(q), "--gt", str(gt),
            "--plot", str(d / "p.png")], capsys, "matplotlib")
    assert not (d / "p.png").exists()
