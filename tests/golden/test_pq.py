"""PQ arithmetic: ADT entries by hand, rounding, saturation, encoding ties, distances."""

import numpy as np

from proxima.config import preset
from proxima.golden.pq import adt_raw, build_adt, encode, pq_distances, train_codebook


def _book(cfg, fill=0):
    return np.full((cfg.pq.M, cfg.pq.ksub, cfg.dsub), fill, dtype=np.uint8)


def test_adt_entry_by_hand_round_half_up():
    cfg = preset("default")  # dsub 8, shift 3
    book = _book(cfg)
    q = np.zeros(cfg.vec.dim, dtype=np.uint8)
    q[0] = 2  # subspace 0, element 0: (2 - c)^2
    book[0, 1, 0] = 0  # raw 4  -> (4 + 4) >> 3 = 1
    book[0, 2, 0] = 4  # raw 4  -> 1
    book[0, 3, 0] = 5  # raw 9  -> (9 + 4) >> 3 = 1
    book[0, 4, 0] = 6  # raw 16 -> 2
    book[0, 5, 0] = 0
    book[0, 5, 1] = 2  # raw 4 + 4 = 8 -> 1 (12 >> 3)
    adt = build_adt(cfg, q, book)
    assert adt_raw(cfg, q, book)[0, 3] == 9
    assert [adt[0, c] for c in (1, 2, 3, 4, 5)] == [1, 1, 1, 2, 1]
    # 12 -> (12 + 4) >> 3 = 2: exactly half rounds up
    book[0, 6, 0] = 2 + 2
    book[0, 6, 1] = 2 * 1  # (2-4)^2 + (0-2)^2 = 8; and element 1 of q is 0
    assert build_adt(cfg, q, book)[0, 6] == 1


def test_adt_worst_case_entry_fits():
    # adt_shift is chosen so that the largest raw entry, rounded, still fits adt_bits; the
    # saturation in build_adt is a guard that these widths never reach
    for cfg in (preset("tiny").with_(pq={"adt_bits": 8}), preset("default"), preset("paper")):
        book = _book(cfg, 255)
        q = np.zeros(cfg.vec.dim, dtype=np.uint8)
        adt = build_adt(cfg, q, book)
        raw_max = cfg.dsub * 255 ** 2
        s = cfg.adt_shift
        expect = (raw_max + ((1 << (s - 1)) if s else 0)) >> s
        assert (adt == expect).all()
        assert expect <= cfg.adt_max


def test_batch_adt_equals_single():
    cfg = preset("default")
    rng = np.random.default_rng(0)
    book = rng.integers(0, 256, (cfg.pq.M, 256, cfg.dsub), dtype=np.uint8)
    qs = rng.integers(0, 256, (5, cfg.vec.dim), dtype=np.uint8)
    batch = build_adt(cfg, qs, book)
    for i, q in enumerate(qs):
        assert np.array_equal(batch[i], build_adt(cfg, q, book))


def test_encode_picks_nearest_with_ties_to_smaller_index():
    cfg = preset("tiny")
    book = _book(cfg)
    book[:, 3, :] = 10
    book[:, 7, :] = 10  # duplicate centroid: ties must go to 3
    book[:, 9, :] = 30
    x = np.full((2, cfg.vec.dim), 12, dtype=np.uint8)
    x[1] = 29
    codes = encode(cfg, x, book)
    assert (codes[0] == 3).all() and (codes[1] == 9).all()


def test_pq_distance_is_sum_of_entries_and_tracks_true_distance():
    cfg = preset("default")
    rng = np.random.default_rng(1)
    cent = rng.integers(0, 255, (8, cfg.vec.dim))
    x = np.clip(cent[rng.integers(0, 8, 3000)] + rng.normal(0, 10, (3000, cfg.vec.dim)),
                0, 255).astype(np.uint8)
    book = train_codebook(cfg.with_(pq={"train_size": 3000, "train_iters": 8}), x)
    codes = encode(cfg, x, book)
    q = x[0]
    adt = build_adt(cfg, q, book)
    d = pq_distances(adt, codes)
    m = np.arange(cfg.pq.M)
    assert d[17] == sum(int(adt[i, codes[17, i]]) for i in m)
    exact = ((x.astype(np.int64) - q) ** 2).sum(1)
    # PQ distance (scaled back) correlates strongly with the exact distance
    assert np.corrcoef(d << cfg.adt_shift, exact)[0, 1] > 0.9
    assert d.max() < (1 << cfg.pq_dist_bits)
