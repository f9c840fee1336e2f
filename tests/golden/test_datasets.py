"""Synthetic data sets (determinism, prefix property), exact ground truth, dataset CLI."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from proxima.cli_dataset import main as cli, parse_count
from proxima.golden import datasets as ds
from proxima.golden.datasets import (GEN_BLOCK, DatasetError, ground_truth, iter_synth,
                                     recall_at_k, synth, synth_queries, synth_spec,
                                     write_ground_truth, write_synth)
from proxima.golden.vecio import read_vectors, write_vectors

SHARED = Path("/work/shared/data/words-minilm-20k")


def brute_force(base, queries, k):
    """Independent reference: full distance rows, stable sort by (distance, id)."""
    if base.dtype.kind in "iu":
        b, q = base.astype(np.int64), queries.astype(np.int64)
    else:
        b, q = base.astype(np.float64), queries.astype(np.float64)
    ids, dists = [], []
    for row in q:
        diff = b - row
        d = (diff * diff).sum(axis=1)
        order = np.argsort(d, kind="stable")[:k]  # stable: equal distances keep id order
        ids.append(order)
        dists.append(d[order])
    return np.array(ids, dtype=np.int32), np.array(dists)


# ---- synthetic generators ---------------------------------------------------------------

@pytest.mark.parametrize("kind,dim", [("sift", None), ("float", 24)])
def test_determinism_and_prefix(kind, dim):
    n = 2 * GEN_BLOCK + 300
    a = synth(kind, n, dim, seed=7)
    b = synth(kind, n, dim, seed=7)
    assert a.tobytes() == b.tobytes()
    assert synth(kind, n, dim, seed=8).tobytes() != a.tobytes()
    for m in (1, GEN_BLOCK - 1, GEN_BLOCK, GEN_BLOCK + 1, n - 1):
        np.testing.assert_array_equal(synth(kind, m, dim, seed=7), a[:m])
    spec = synth_spec(kind, dim)
    for chunk in (1000, 333, GEN_BLOCK):
        np.testing.assert_array_equal(np.concatenate(list(iter_synth(spec, n, 7, chunk))), a)
    tail = np.concatenate(list(iter_synth(spec, n, 7, 500, start=GEN_BLOCK + 17)))
    np.testing.assert_array_equal(tail, a[GEN_BLOCK + 17:])


def test_pinned_bytes():
    """Regression pin of the generator definition (numpy 2.x Generator/PCG64 streams)."""
    assert hashlib.sha256(synth("sift", 2048, seed=0).tobytes()).hexdigest() == \
        "cbe04440f3c1fe6b83ae8f9c9e518a0b1cd76d337efa356773c45762b2e9c53b"
    assert hashlib.sha256(synth("float", 2048, dim=24, seed=3).tobytes()).hexdigest() == \
        "f63b844100dc733e7371c1fef4676a84fcf8b7730c8bfca0bc0c405c1a2794ed"


def test_sift_like_character():
    x = synth("sift", 4000, seed=1)
    assert x.dtype == np.uint8 and x.shape == (4000, 128)
    norms = np.linalg.norm(x.astype(np.float64), axis=1)
    assert 480 < norms.min() and norms.max() < 530  # SIFT normalisation to ~512
    zeros = np.mean(x == 0)
    assert 0.1 < zeros < 0.5  # many zero elements
    assert 15 < x.mean() < 40 and x.max() > 150  # small typical values, heavy tail
    # clustered: nearest neighbour much closer than a random pair
    d = ((x[:200, None, :].astype(np.int64) - x[None, 200:, :]) ** 2).sum(-1)
    assert np.median(d.min(axis=1)) < 0.6 * np.median(d)


def test_float_set_and_queries():
    x = synth("float", 3000, 40, seed=2)
    assert x.dtype == np.float32 and x.shape == (3000, 40) and np.isfinite(x).all()
    q = synth_queries("float", 200, 40, seed=2)
    np.testing.assert_array_equal(q, synth("float", 200, 40, seed=2 + ds.QUERY_SEED_OFFSET))
    assert not np.isin(q[:, 0], x[:, 0]).any()  # a different sample ...
    # ... of the same distribution: per-dimension means agree within sampling error
    assert np.abs(q.mean(0) - x.mean(0)).max() < 5 * x.std(0).max() / np.sqrt(200)
    # a different distribution seed moves the clusters
    y = synth("float", 3000, 40, seed=2, dist_seed=1)
    assert np.abs(y.mean(0) - x.mean(0)).max() > 0.1


def test_synth_bad_arguments():
    with pytest.raises(DatasetError, match="unknown synthetic kind"):
        synth("glove", 10)
    with pytest.raises(DatasetError, match="n must be"):
        synth("sift", 0)
    with pytest.raises(DatasetError, match="dim must be"):
        synth("float", 10, 0)
    with pytest.raises(DatasetError, match="seed"):
        synth("sift", 10, seed=-1)


def test_write_synth_streams_same_bytes(tmp_path):
    p = tmp_path / "s.u8bin"
    write_synth(p, "sift", 2500, seed=4, chunk_rows=700)
    np.testing.assert_array_equal(read_vectors(p), synth("sift", 2500, seed=4))


# ---- ground truth -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.float32])
@pytest.mark.parametrize("k", [1, 5, 40])
def test_ground_truth_with_heavy_ties(dtype, k, monkeypatch):
    fallbacks = []
    real = ds._topk_sorted
    monkeypatch.setattr(ds, "_topk_sorted", lambda *a: fallbacks.append(1) or real(*a))
    rng = np.random.default_rng(k)
    lo = -1 if dtype == np.int8 else 0
    base = rng.integers(lo, 2, (1500, 4)).astype(dtype)  # few distinct rows: huge ties
    queries = rng.integers(lo, 2, (40, 4)).astype(dtype)
    ids, dists = ground_truth(base, queries, k, block_rows=300, query_rows=16, margin=3)
    ref_ids, ref_d = brute_force(base, queries, k)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(dists, ref_d)
    assert fallbacks  # ties beyond faiss' candidates: the exact whole-block path ran
    assert ids.dtype == np.int32
    assert dists.dtype == (np.float64 if dtype == np.float32 else np.int64)


@pytest.mark.parametrize("kind", ["sift", "float"])
def test_ground_truth_matches_brute_force(kind):
    base = synth(kind, 3000, 32 if kind == "float" else None, seed=5)
    queries = synth_queries(kind, 60, 32 if kind == "float" else None, seed=5)
    base[1000] = base[10]  # exact duplicates: equal distances with different ids
    base[2999] = base[10]
    queries[0] = base[10]
    for block_rows in (3000, 1024, 999):
        ids, dists = ground_truth(base, queries, 20, block_rows=block_rows, query_rows=25)
        ref_ids, ref_d = brute_force(base, queries, 20)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_array_equal(dists, ref_d)
    assert list(ids[0, :3]) == [10, 1000, 2999] and (dists[0, :3] == 0).all()


def test_ground_truth_large_integer_distances_exact():
    # distances above 2**24 that differ by 1: float32 (spacing 2 there) cannot order them
    base = np.zeros((600, 512), np.uint8)
    base[:, :300] = 255
    base[:, 400] = 1
    base[77, 400] = 0
    q = np.zeros((1, 512), np.uint8)
    d_full = 300 * 255 ** 2
    assert d_full > 2 ** 24 and np.float32(d_full) == np.float32(d_full + 1)
    ids, dists = ground_truth(base, q, 3, block_rows=128, margin=1)
    assert list(dists[0]) == [d_full, d_full + 1, d_full + 1]
    assert list(ids[0]) == [77, 0, 1]


def test_ground_truth_k_equals_n_and_files(tmp_path):
    base = synth("sift", 50, seed=9)
    q = synth_queries("sift", 7, seed=9)
    ids, _ = ground_truth(base, q, 50, block_rows=16)
    np.testing.assert_array_equal(ids, brute_force(base, q, 50)[0])
    write_vectors(tmp_path / "b.u8bin", base)
    write_vectors(tmp_path / "q.bvecs", q)
    ids2, _ = ground_truth(tmp_path / "b.u8bin", tmp_path / "q.bvecs", 50)
    np.testing.assert_array_equal(ids2, ids)
    write_ground_truth(tmp_path / "gt.ivecs", ids)
    np.testing.assert_array_equal(read_vectors(tmp_path / "gt.ivecs"), ids)


def test_ground_truth_errors(tmp_path):
    b = np.zeros((10, 4), np.uint8)
    with pytest.raises(DatasetError, match="k must be in 1..10"):
        ground_truth(b, b[:2], 11)
    with pytest.raises(DatasetError, match="dim"):
        ground_truth(b, np.zeros((2, 5), np.uint8), 1)
    with pytest.raises(DatasetError, match="both be integer or both"):
        ground_truth(b, np.zeros((2, 4), np.float32), 1)
    f = np.zeros((10, 4), np.float32)
    f[3, 1] = np.nan
    with pytest.raises(DatasetError, match="NaN"):
        ground_truth(f, np.zeros((2, 4), np.float32), 1)
    with pytest.raises(DatasetError, match="16 bits"):
        ground_truth(b.astype(np.int32), b[:2].astype(np.int32), 1)
    with pytest.raises(DatasetError, match="no such file"):
        ground_truth(tmp_path / "missing.fbin", b, 1)


def test_ground_truth_reproduces_shared_groundtruth():
    base = read_vectors(SHARED / "base.fvecs")
    q = read_vectors(SHARED / "query.fvecs")
    gt = read_vectors(SHARED / "groundtruth.ivecs")
    ids, _ = ground_truth(base, q[:100], 100)
    assert (ids[:, :10] == gt[:100, :10]).all()
    assert recall_at_k(ids, gt[:100], 100) > 0.999  # float rounding of near ties only


def test_recall_at_k():
    found = np.array([[1, 2, 3], [4, 5, 6]])
    truth = np.array([[3, 2, 9], [7, 8, 4]])
    assert recall_at_k(found, truth, 1) == 0.0
    assert recall_at_k(found, truth, 2) == 0.25
    assert recall_at_k(found, truth, 3) == 3 / 6
    with pytest.raises(DatasetError):
        recall_at_k(found, truth, 4)


# ---- CLI ----------------------------------------------------------------------------------

def test_parse_count():
    assert [parse_count(s) for s in ("12", "100k", "1M", "2_000", "1.5k")] == \
        [12, 100_000, 1_000_000, 2000, 1500]


def test_cli_synth_groundtruth_info_convert(tmp_path, capsys):
    b, q, gt = tmp_path / "b.bvecs", tmp_path / "q.u8bin", tmp_path / "gt.ivecs"
    assert cli(["dataset", "synth", "--kind", "sift", "--n", "3k", "--seed", "3",
                "--out", str(b), "--no-progress", "--chunk-rows", "1000"]) == 0
    np.testing.assert_array_equal(read_vectors(b), synth("sift", 3000, seed=3))
    assert cli(["dataset", "synth", "--kind", "sift", "--n", "50", "--seed", "3", "--queries",
                "--out", str(q), "--no-progress"]) == 0
    np.testing.assert_array_equal(read_vectors(q), synth_queries("sift", 50, seed=3))
    assert cli(["dataset", "groundtruth", "--base", str(b), "--queries", str(q), "--k", "10",
                "--out", str(gt), "--no-progress"]) == 0
    np.testing.assert_array_equal(read_vectors(gt), brute_force(read_vectors(b),
                                                                read_vectors(q), 10)[0])
    capsys.readouterr()
    assert cli(["dataset", "info", str(b), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape"] == [3000, 128] and info["format"] == "bvecs"
    assert info["dtype"] == "uint8" and info["max"] <= 255
    assert abs(info["row_norm"]["mean"] - 512) < 5
    assert cli(["dataset", "info", str(gt)]) == 0
    assert "ivecs, 50 x 10 int32" in capsys.readouterr().out
    for dst in ("b.npy", "b.u8bin", "b2.bvecs"):
        assert cli(["dataset", "convert", str(b), str(tmp_path / dst)]) == 0
        np.testing.assert_array_equal(read_vectors(tmp_path / dst), read_vectors(b))
    assert cli(["dataset", "convert", str(b), str(tmp_path / "b.fbin")]) == 2
    assert "must be float32" in capsys.readouterr().err
    assert cli(["dataset", "convert", str(b), str(tmp_path / "b.fbin"), "--cast"]) == 0
    np.testing.assert_array_equal(read_vectors(tmp_path / "b.fbin"),
                                  read_vectors(b).astype(np.float32))
    f = tmp_path / "f.fvecs"
    write_vectors(f, np.array([[0.5, 1.0]], np.float32))
    assert cli(["dataset", "convert", str(f), str(tmp_path / "f.bvecs"), "--cast"]) == 2
    assert "integral" in capsys.readouterr().err


def test_cli_errors(tmp_path, capsys):
    bad = tmp_path / "bad.fbin"
    bad.write_bytes(b"\x05\x00\x00\x00\x02\x00\x00\x00" + b"\x00" * 12)
    assert cli(["dataset", "info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "proxima dataset info: error:" in err and "truncated" in err and str(bad) in err
    assert cli(["dataset", "groundtruth", "--base", str(bad), "--queries", str(bad),
                "--k", "1", "--out", str(tmp_path / "g.ivecs"), "--no-progress"]) == 2
    assert cli(["dataset", "synth", "--kind", "float", "--n", "0", "--out",
                str(tmp_path / "x.fvecs"), "--no-progress"]) == 2
    with pytest.raises(SystemExit):
        cli(["dataset", "synth", "--kind", "glove", "--n", "5", "--out", "x.fvecs"])
    assert not list(tmp_path.glob("*.tmp")) and not (tmp_path / "x.fvecs").exists()
