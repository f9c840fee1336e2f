"""Bloom filter spec: splitmix64, H3 + multiply-shift hashing, test-and-set, false positives."""

import numpy as np

from proxima.config import preset
from proxima.golden.bloom import BloomFilter, bloom_indices, bloom_table, h3_matrix, splitmix64


def test_splitmix64_reference_values():
    # published first outputs of splitmix64 seeded with 0
    assert splitmix64(0, 3) == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_h3_hash_by_hand():
    cfg = preset("tiny")
    q = h3_matrix(cfg)
    assert q.shape == (cfg.bloom.hashes, cfg.id_bits) and q.dtype == np.uint32
    x = 0b1011  # bits 0, 1, 3
    for i in range(cfg.bloom.hashes):
        h = int(q[i, 0]) ^ int(q[i, 1]) ^ int(q[i, 3])
        assert bloom_indices(cfg, np.array([x]))[i, 0] == (h * cfg.bloom.bank_bits) >> 32
    assert (bloom_indices(cfg, np.array([0])) == 0).all()  # H3 of 0 is 0


def test_non_power_of_two_banks_stay_in_range():
    cfg = preset("paper")  # 98304 bits / 8 = 12288 per bank
    idx = bloom_indices(cfg, np.arange(200000))
    assert idx.min() >= 0 and idx.max() < cfg.bloom.bank_bits
    assert idx.max() > cfg.bloom.bank_bits * 0.99  # the whole bank is used


def test_table_equals_direct_hashing():
    cfg = preset("default")
    tab = bloom_table(cfg, 5000)
    assert np.array_equal(tab.T, bloom_indices(cfg, np.arange(5000)))


def test_test_and_set_semantics_and_clear():
    cfg = preset("tiny")
    f = BloomFilter(cfg)
    assert not f.test_and_set(5)
    assert f.test_and_set(5)
    assert f.test(5)
    f.clear()
    assert not f.test(5)


def test_false_positive_rate_near_theory():
    cfg = preset("default")  # 32768 bits, 4 banks of 8192
    f = BloomFilter(cfg, bloom_table(cfg, 1 << 20))
    rng = np.random.default_rng(0)
    ids = rng.choice(1 << 20, size=6000, replace=False)
    for x in ids[:3000]:
        f.test_and_set(int(x))
    fp = np.mean([f.test(int(x)) for x in ids[3000:]])
    theory = (1 - np.exp(-3000 / cfg.bloom.bank_bits)) ** cfg.bloom.hashes
    assert 0.3 * theory < fp < 3 * theory + 1e-3, (fp, theory)
