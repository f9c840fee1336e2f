"""End to end through the command line on a tiny configuration."""

import json

import numpy as np
import pytest

from proxima.cli import main
from proxima.golden.vecio import read_vectors
from tests.cli_data import build_cli_set


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_cli_set(tmp_path_factory.mktemp("cli"), 1500, 40)


def test_search_writes_callers_ids(built, capsys):
    d, base, q, gt, img = built
    out = d / "ids.ivecs"
    assert main(["search", "--index", str(img), "--queries", str(q), "-o", str(out)]) == 0
    ids = read_vectors(out)
    truth = read_vectors(gt)
    assert ids.shape == (40, 4)
    # ids are the caller's (not the reordered internal ones): the nearest is mostly right
    assert np.mean(ids[:, 0] == truth[:, 0]) > 0.7


def test_eval_sweep_json(built, tmp_path):
    d, base, q, gt, img = built
    js = tmp_path / "r.json"
    assert main(["eval", "--index", str(img), "--queries", str(q), "--gt", str(gt),
                 "--sweep", "search.L=8,16", "--target", "0.5", "--json", str(js),
                 "--quiet", "--timing"]) == 0
    res = json.loads(js.read_text())
    assert len(res["reports"]) == 4  # 2 algorithms x 2 points
    a = [r for r in res["reports"] if r["algo"] == "alg1"]
    assert a[1]["recall"]["recall@1"] >= a[0]["recall"]["recall@1"] - 0.05
    assert a[0]["counters"]["frame_accesses"] >= a[0]["counters"]["hops"]
    assert "model_total_cycles" in a[0]["counters"]


def test_bad_inputs_exit_2_with_a_message(built, tmp_path, capsys):
    d, base, q, gt, img = built
    broken = tmp_path / "broken.pxi"
    data = bytearray(img.read_bytes())
    data[len(data) // 2] ^= 0xFF
    broken.write_bytes(bytes(data))
    assert main(["search", "--index", str(broken), "--queries", str(q)]) == 2
    assert "checksum" in capsys.readouterr().err
    trunc = tmp_path / "trunc.fvecs"
    trunc.write_bytes(b"\x10\x00\x00\x00" + b"\x00" * 10)
    assert main(["build-index", "--base", str(trunc), "-o", str(tmp_path / "x.pxi")]) == 2
    assert "error" in capsys.readouterr().err
    assert main(["build-index", "--base", str(base), "-o", str(tmp_path / "y.pxi"),
                 "--set", "search.L=100001"]) == 2
    assert not (tmp_path / "y.pxi").exists()


def test_demo_golden_and_timing_steps(tmp_path, capsys):
    """``proxima demo`` without the RTL steps: build, golden search of both algorithms, both
    timing models (the whole engine's QPS against its NAND bound), summary written."""
    out = tmp_path / "demo"
    assert main(["demo", "--preset", "tiny", "--n", "600", "--queries", "8",
                 "--engine-queries", "0", "--rtl-queries", "0", "--quiet",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "alg1" in text and "beam" in text
    assert "NAND reads alone: 8 queries" in text
    line = next(t for t in text.splitlines() if "whole engine" in t)
    frac = int(line.split("% of the NAND bound")[0].rsplit(" ", 1)[1])
    assert 0 < frac <= 100, line
    summary = json.loads((out / "summary.json").read_text())
    assert "golden" in summary and "engine_rtl" not in summary
