"""Bit-error injection: the tolerant gap decode equals the strict one on intact frames, drops
only impossible rows, and a search never fails, whatever the error rate."""

import numpy as np

from proxima.golden.layout import Layout, decode_frames, decode_hot_frames, encode_frames, \
    encode_hot_frames
from proxima.golden.rber import corrupt_index, decode_rows, flip_bits, search_with_errors

from .conftest import clustered_u8


def test_flip_bits_rate_and_seed():
    x = np.zeros(100_000, dtype=np.uint8)
    y = flip_bits(x, 1e-2, np.random.default_rng(1))
    assert 7000 < np.unpackbits(y).sum() < 9000
    assert np.array_equal(y, flip_bits(x, 1e-2, np.random.default_rng(1)))
    assert np.array_equal(flip_bits(x, 0.0, np.random.default_rng(1)), x)


def test_tolerant_decode(tiny_index):
    idx = tiny_index
    lay = Layout(idx.cfg, idx.n, 20, Layout.for_index(idx).gap_width)
    fr = encode_frames(lay, idx.neighbors, idx.codes)
    rows, ok = decode_rows(lay, fr[:, :lay.id_region_bytes])
    assert ok.all() and np.array_equal(rows, decode_frames(lay, fr)[0])
    hot = encode_hot_frames(lay, idx.neighbors[:20], idx.codes)
    rows, ok = decode_rows(lay, hot, hot=True)
    assert ok.all() and np.array_equal(rows, decode_hot_frames(lay, hot)[0])
    bad = fr[:, :lay.id_region_bytes].copy()
    bad[3, 0] |= 0xFF  # degree field all ones: > R
    rows, ok = decode_rows(lay, bad)
    assert not ok[3] and (rows[3] == -1).all() and ok[:3].all() and ok[4:].all()


def test_search_survives_any_error_rate(tiny_index):
    idx = tiny_index
    lay = Layout(idx.cfg, idx.n, 20, Layout.for_index(idx).gap_width)
    q = clustered_u8(30, idx.cfg.vec.dim, seed=3)
    clean, d0 = search_with_errors(idx, lay, q, 0.0)
    assert d0 == 0
    noisy, dropped = search_with_errors(idx, lay, q, 2e-2, seed=5, batch=10)
    assert dropped > 0 and len(noisy) == len(q)
    assert all(1 <= len(r.ids) <= idx.cfg.search.k for r in noisy)  # the entry at least
    bad, _ = corrupt_index(idx, lay, 2e-2, np.random.default_rng(0))
    assert (bad.codes != idx.codes).any() and (bad.vectors != idx.vectors).any()
