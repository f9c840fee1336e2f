"""A SIFT-like data set that the project's own generator (``golden/datasets.py``) did not make.

    python benchmarks/unseen_data.py out/unseen            # 20k base, 200 queries, 128-d
    python benchmarks/unseen_data.py out/unseen --n 50000 --queries 2000

Writes ``base.bvecs``, ``query.bvecs`` (uint8) and ``groundtruth.ivecs`` (exact 100 nearest
neighbours by squared L2 on the uint8 vectors, faiss brute force).  The distribution is
deliberately unlike ``golden/datasets.synth``: a mixture of ``--clusters`` Gaussians with
power-law weights, each with its own random rotation and log-uniform axis scales (anisotropic,
a few dominant directions per cluster), non-negative cluster centres with sparse large
coordinates (as SIFT's gradient histograms have), clipped and rounded to 0..255.  Queries are
fresh draws from the same mixture (not base points) with 10% of them from the tails (noise
scaled by 1.5).  Deterministic for a given ``--seed``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def mixture(n: int, dim: int, clusters: int, seed: int, queries: int = 0):
    """``(base (n, dim) uint8, queries (queries, dim) uint8)`` drawn from one mixture."""
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, clusters + 1) ** 0.8
    w /= w.sum()
    centres = rng.gamma(0.6, 30.0, size=(clusters, dim))  # sparse, skewed, non-negative
    rots = []
    scales = []
    for _ in range(clusters):
        q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        rots.append(q.astype(np.float32))
        s = np.exp(rng.uniform(np.log(1.0), np.log(22.0), size=dim))
        s[rng.choice(dim, 4, replace=False)] *= 2.5  # a few dominant directions
        scales.append(s.astype(np.float32))

    def draw(m: int, tail: np.ndarray | None) -> np.ndarray:
        lab = rng.choice(clusters, size=m, p=w)
        out = np.empty((m, dim), dtype=np.float32)
        for c in np.unique(lab):
            sel = np.nonzero(lab == c)[0]
            z = rng.standard_normal((len(sel), dim)).astype(np.float32) * scales[c]
            if tail is not None:
                z *= tail[sel, None]
            out[sel] = centres[c] + z @ rots[c].T
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    base = draw(n, None)
    tail = np.where(rng.random(queries) < 0.1, 1.5, 1.0).astype(np.float32)
    return base, draw(queries, tail)


def exact_knn(base: np.ndarray, q: np.ndarray, k: int = 100) -> np.ndarray:
    import faiss

    ix = faiss.IndexFlatL2(base.shape[1])
    ix.add(np.ascontiguousarray(base, dtype=np.float32))
    _, ids = ix.search(np.ascontiguousarray(q, dtype=np.float32), k)
    return ids.astype(np.int32)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--clusters", type=int, default=64)
    ap.add_argument("--seed", type=int, default=2024)
    a = ap.parse_args()
    from proxima.golden.vecio import write_vectors

    base, q = mixture(a.n, a.dim, a.clusters, a.seed, a.queries)
    gt = exact_knn(base, q)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_vectors(out / "base.bvecs", base)
    write_vectors(out / "query.bvecs", q)
    write_vectors(out / "groundtruth.ivecs", gt)
    print(f"wrote {out}: base {base.shape}, queries {q.shape}, ground truth {gt.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
