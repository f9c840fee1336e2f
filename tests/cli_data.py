"""A small data set and index built through the command line, for the CLI tests."""

from __future__ import annotations

from pathlib import Path

from proxima.cli import main


def build_cli_set(d: Path, n: int, queries: int):
    """``(d, base, queries, ground truth, image)``: ``n`` 16-d SIFT-like vectors, ``queries``
    queries, their exact top 10 and a ``tiny`` preset image, all made by ``proxima``."""
    base, q, gt, img = d / "base.u8bin", d / "q.u8bin", d / "gt.ivecs", d / "index.pxi"
    common = ["--kind", "sift", "--dim", "16", "--no-progress"]
    assert main(["dataset", "synth", *common, "--n", str(n), "--out", str(base)]) == 0
    assert main(["dataset", "synth", *common, "--n", str(queries), "--queries",
                 "--out", str(q)]) == 0
    assert main(["dataset", "groundtruth", "--base", str(base), "--queries", str(q),
                 "--k", "10", "--out", str(gt), "--no-progress"]) == 0
    assert main(["build-index", "--preset", "tiny", "--base", str(base), "-o", str(img),
                 "--quiet"]) == 0
    return d, base, q, gt, img
