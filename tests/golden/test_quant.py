"""Float -> uint quantiser arithmetic, fitting, serialisation, recall-loss report, CLI."""

import json
from pathlib import Path

import numpy as np
import pytest

from proxima.cli_dataset import main as cli
from proxima.config import ProximaConfig, preset
from proxima.golden.datasets import ground_truth, synth, synth_queries
from proxima.golden.quant import (P_HI, P_LO, Quantiser, QuantiserError, RecallLossReport,
                                  recall_loss_report)
from proxima.golden.vecio import read_vectors, write_vectors

SHARED = Path("/work/shared/data/words-minilm-20k")
CFG = ProximaConfig()


def test_hand_computed_quantise():
    qz = Quantiser(lo=-1.0, scale=0.5, bits=8)
    assert qz.elem_max == 255 and qz.hi == 126.5 and qz.dtype == np.uint8
    x = np.array([[-3.0, -1.0, -0.75, -0.25, 0.25, 0.5],
                  [0.75, 126.25, 126.5, 126.75, 1e9, -1e9]])
    # (x + 1) / 0.5 = -4, 0, 0.5, 1.5, 2.5, 3 | 3.5, 254.5, 255, 255.5, huge, -huge
    # rint (half to even) = -4, 0, 0, 2, 2, 3 | 4, 254, 255, 256, ...; then clip 0..255
    expect = np.array([[0, 0, 0, 2, 2, 3], [4, 254, 255, 255, 255, 0]], np.uint8)
    np.testing.assert_array_equal(qz.quantise(x), expect)
    np.testing.assert_array_equal(qz.quantise(x.astype(np.float32)), expect)
    np.testing.assert_array_equal(qz.quantise(x[0]), expect[0])  # any shape
    np.testing.assert_array_equal(qz.dequantise(np.array([0, 3, 255], np.uint8)),
                                  np.array([-1.0, 0.5, 126.5], np.float32))


def test_formula_is_subtract_then_divide():
    # (x - lo) / scale can differ from (x - lo) * (1 / scale) in the last bit: the spec
    # is the division; 0.35 / 0.1 = 3.4999999999999996 rounds to 3, 0.35 * 10 rounds to 4
    qz = Quantiser(lo=0.0, scale=0.1, bits=8)
    assert (0.35 - 0.0) / 0.1 < 3.5 and 0.35 * (1 / 0.1) == 3.5
    assert qz.quantise(np.array([0.35]))[0] == 3


def test_fit_percentiles_by_hand():
    x = np.arange(10001, dtype=np.float32).reshape(-1, 1)  # values 0..10000
    qz = Quantiser.fit(x, CFG)
    # linear percentile of 0..10000 at p% is p * 100
    assert qz.lo == pytest.approx(P_LO * 100, abs=1e-9) and qz.lo == 1.0
    assert qz.hi == pytest.approx(P_HI * 100) and qz.bits == CFG.vec.elem_bits
    assert qz.scale == pytest.approx((9999.0 - 1.0) / 255, rel=1e-12)
    full = Quantiser.fit(x, CFG, p_lo=0, p_hi=100)
    assert (full.lo, full.scale) == (0.0, 10000.0 / 255)
    q = full.quantise(x)
    assert q[0, 0] == 0 and q[-1, 0] == 255
    # the spec computes in float64: 1000 / (10000 / 255) = 25.499999999999996 -> 25
    # (in float32 it would be 25.5 -> 26)
    ref = np.clip(np.rint(x[:, 0].astype(np.float64) / (10000 / 255)), 0, 255)
    np.testing.assert_array_equal(q[:, 0], ref)
    assert q[1000, 0] == 25
    # deterministic subsample: every ceil(n / max_rows)-th row: ceil(10001 / 100) = 101,
    # rows 0, 101, ..., 9999 (100 rows); with max_rows = 50: step 201, last row 9849
    sub = Quantiser.fit(x, CFG, p_lo=0, p_hi=100, max_rows=100)
    assert (sub.lo, sub.hi) == (0.0, pytest.approx(9999.0))
    sub = Quantiser.fit(x, CFG, p_lo=0, p_hi=100, max_rows=50)
    assert (sub.lo, sub.hi) == (0.0, pytest.approx(9849.0))


def test_round_trip_error_within_half_step():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 16)).astype(np.float32)
    qz = Quantiser.fit(x, CFG)
    inside = (x >= qz.lo) & (x <= qz.hi)
    err = np.abs(qz.dequantise(qz.quantise(x)).astype(np.float64) - x)
    assert err[inside].max() <= qz.scale / 2 * (1 + 1e-6)
    assert 0 < (~inside).mean() < 0.001  # only the extreme tails are clipped


def test_quantiser_errors():
    with pytest.raises(QuantiserError, match="degenerate"):
        Quantiser.fit(np.full((10, 3), 2.5, np.float32), CFG)
    with pytest.raises(QuantiserError, match="NaN"):
        Quantiser.fit(np.array([[1.0, np.nan]]), CFG)
    with pytest.raises(QuantiserError, match="float data"):
        Quantiser.fit(np.zeros((3, 3), np.uint8), CFG)
    with pytest.raises(QuantiserError, match="p_lo < p_hi"):
        Quantiser.fit(np.zeros((3, 3), np.float32), CFG, p_lo=50, p_hi=10)
    with pytest.raises(QuantiserError, match="non-empty"):
        Quantiser.fit(np.zeros((0, 3), np.float32), CFG)
    with pytest.raises(QuantiserError, match="scale"):
        Quantiser(0.0, 0.0, 8)
    with pytest.raises(QuantiserError, match="bits"):
        Quantiser(0.0, 1.0, 0)
    qz = Quantiser(0.0, 1.0, 8)
    with pytest.raises(QuantiserError, match="NaN"):
        qz.quantise(np.array([[1.0, np.inf]]))
    with pytest.raises(QuantiserError, match="outside"):
        qz.dequantise(np.array([256]))
    with pytest.raises(QuantiserError, match="integer codes"):
        qz.dequantise(np.array([1.0]))


def test_serialisation():
    qz = Quantiser(-0.19, 0.0017, 8)
    assert Quantiser.from_tuple(qz.as_tuple(), preset("tiny")) == qz
    assert Quantiser.from_dict(json.loads(qz.to_json())) == qz
    with pytest.raises(QuantiserError, match="bad quantiser"):
        Quantiser.from_dict({"lo": 0.0})


def test_recall_identity_quantiser_is_lossless():
    # integral data in 0..255 with lo = 0, scale = 1: quantisation is the identity
    base = synth("sift", 1500, seed=11).astype(np.float32)
    q = synth_queries("sift", 40, seed=11).astype(np.float32)
    gt, _ = ground_truth(base, q, 10)
    rep = recall_loss_report(base, q, gt, (1, 10), quantiser=Quantiser(0.0, 1.0, 8))
    assert isinstance(rep, RecallLossReport)
    assert rep.recall == {1: 1.0, 10: 1.0} and rep.clipped_fraction == 0.0
    coarse = recall_loss_report(base, q, gt, 10, quantiser=Quantiser(0.0, 64.0, 8))
    assert coarse.recall[10] < 0.9  # 4 levels: real loss is measured, not assumed
    assert "recall@10" in str(coarse)


def test_recall_loss_on_float_set_and_missing_gt():
    base = synth("float", 2000, 24, seed=1)
    q = synth_queries("float", 50, 24, seed=1)
    rep = recall_loss_report(base, q, None, (1, 10))
    assert 0.8 < rep.recall[10] <= 1.0
    with pytest.raises(QuantiserError, match="does not cover"):
        recall_loss_report(base, q, np.zeros((50, 5), np.int32), 10)


def test_recall_loss_words_minilm():
    """The documented measurement: 20k x 384 real embeddings, 500 queries."""
    base = read_vectors(SHARED / "base.fvecs")
    q = read_vectors(SHARED / "query.fvecs")
    gt = read_vectors(SHARED / "groundtruth.ivecs")
    rep = recall_loss_report(base, q, gt, (1, 10, 100))
    assert rep.n == 20000 and rep.nq == 500
    assert rep.clipped_fraction == pytest.approx(2e-4, rel=0.05)
    for k in (1, 10, 100):
        assert 0.97 < rep.recall[k] <= 1.0, rep


def test_cli_quantise(tmp_path, capsys):
    base = synth("float", 800, 12, seed=3)
    queries = synth_queries("float", 30, 12, seed=3)
    write_vectors(tmp_path / "b.fvecs", base)
    write_vectors(tmp_path / "q.fbin", queries)
    assert cli(["dataset", "quantise", "--in", str(tmp_path / "b.fvecs"),
                "--out", str(tmp_path / "b.bvecs"), "--chunk-rows", "100"]) == 0
    out = capsys.readouterr().out
    assert "q = clip(rint((x - lo) / scale), 0, 2**bits - 1)" in out
    qz = Quantiser.fit(base, CFG)
    saved = Quantiser.from_dict(json.loads((tmp_path / "b.bvecs.quant.json").read_text()))
    assert saved == qz
    np.testing.assert_array_equal(read_vectors(tmp_path / "b.bvecs"), qz.quantise(base))
    assert cli(["dataset", "quantise", "--in", str(tmp_path / "q.fbin"), "--out",
                str(tmp_path / "q.u8bin"), "--scheme", str(tmp_path / "b.bvecs.quant.json")]) == 0
    np.testing.assert_array_equal(read_vectors(tmp_path / "q.u8bin"), qz.quantise(queries))
    assert cli(["dataset", "quantise", "--in", str(tmp_path / "b.bvecs"), "--out",
                str(tmp_path / "x.bvecs")]) == 2
    assert "needs float input" in capsys.readouterr().err
    assert cli(["dataset", "quantise", "--in", str(tmp_path / "b.fvecs"), "--out",
                str(tmp_path / "x.fvecs")]) == 2
    assert "wrong dtype uint8 for fvecs" in capsys.readouterr().err
    assert not (tmp_path / "x.fvecs").exists() and not list(tmp_path.glob(".*.tmp"))
