"""Small synthetic indexes for golden-model tests (no dependency on the graph builders)."""

import faiss
import numpy as np
import pytest

from proxima.config import preset
from proxima.golden.index import Index
from proxima.golden.pq import encode, train_codebook


def clustered_u8(n, dim, seed, clusters=20, spread=20.0):
    rng = np.random.default_rng(seed)
    cent = np.random.default_rng(1000).integers(0, 200, (clusters, dim))
    x = cent[rng.integers(0, clusters, n)] + rng.normal(0, spread, (n, dim))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def exact_knn_rows(vec, R):
    """The ``R`` nearest other vectors of each vector by exact squared distance (ties by id),
    each row sorted by id: a brute-force graph for small test indexes."""
    d = ((vec[:, None, :].astype(np.int64) - vec[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.iinfo(np.int64).max)
    return np.sort(np.argsort(d, axis=1, kind="stable")[:, :R], axis=1).astype(np.int32)


def knn_plus_random_graph(x, R, seed, n_random=4):
    """k-NN rows plus a few random long edges (connected in practice), sorted, -1 padded."""
    n = len(x)
    rng = np.random.default_rng(seed)
    flat = faiss.IndexFlatL2(x.shape[1])
    flat.add(x.astype(np.float32))
    _, nn = flat.search(x.astype(np.float32), R - n_random + 1)
    rows = np.concatenate([nn[:, 1:], rng.integers(0, n, (n, n_random))], axis=1)
    out = np.full((n, R), -1, dtype=np.int32)
    for i, r in enumerate(rows):
        u = np.unique(r[(r != i) & (r >= 0)])[:R]
        out[i, :len(u)] = u
    return out


def make_index(cfg, n, seed=0):
    x = clustered_u8(n, cfg.vec.dim, seed)
    nb = knn_plus_random_graph(x, cfg.graph.R, seed)
    book = train_codebook(cfg, x, seed=seed)
    return Index(cfg, x, nb, 0, book, encode(cfg, x, book))


@pytest.fixture(scope="session")
def default_index():
    return make_index(preset("default"), 3000, seed=0)


@pytest.fixture(scope="session")
def tiny_index():
    return make_index(preset("tiny"), 400, seed=1)
