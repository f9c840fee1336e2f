"""What the image benchmarks share: their common arguments (an index image, a data folder
with ``query.*`` and ``groundtruth.ivecs``, a query count, ``--set`` search-time overrides,
``--json``) and loading the image, the queries and the ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path


def image_parser(doc: str | None, queries: int) -> argparse.ArgumentParser:
    """An argument parser with ``image``, ``data``, ``--queries`` (default ``queries``),
    ``--set`` and ``--json``; the caller adds its own arguments."""
    ap = argparse.ArgumentParser(description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image")
    ap.add_argument("data")
    ap.add_argument("--queries", type=int, default=queries)
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="search-time override section.key=value (repeatable)")
    ap.add_argument("--json")
    return ap


def load_queries(index, data: Path, n: int):
    """The first ``n`` queries of ``data`` (checked against the index) and their ground truth."""
    from proxima.golden.vecio import read_vectors
    from proxima.pipeline import prepare_queries

    qf = next(p for p in (data / "query.bvecs", data / "query.fvecs", data / "query.u8bin")
              if p.exists())
    q = prepare_queries(index, read_vectors(qf))[:n]
    gt = read_vectors(data / "groundtruth.ivecs")[:n]
    return q, gt


def open_bench(a: argparse.Namespace):
    """``(image, cfg, queries, ground truth)`` for parsed :func:`image_parser` arguments;
    ``cfg`` is the image's configuration with the ``--set`` overrides."""
    from proxima.golden.image import read_image
    from proxima.pipeline import search_config

    img = read_image(a.image)
    cfg = search_config(img.index.cfg, a.overrides)
    q, gt = load_queries(img.index, Path(a.data), a.queries)
    return img, cfg, q, gt
