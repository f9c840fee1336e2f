"""``proxima tune``: held-out split, the chosen point meets the target at the least cost, the
image stores the tuned search settings."""

import numpy as np
import pytest

from proxima.golden.layout import Layout
from proxima.golden.tune import evaluate_point, exact_ground_truth, holdout_split, tune_search

from .conftest import clustered_u8


def test_holdout_split_is_disjoint_and_seeded():
    keep, held = holdout_split(100, 7, seed=3)
    assert len(held) == 7 and len(keep) == 93
    assert not set(keep) & set(held) and set(keep) | set(held) == set(range(100))
    assert np.array_equal(held, holdout_split(100, 7, seed=3)[1])
    with pytest.raises(ValueError, match="hold-out"):
        holdout_split(10, 10)


@pytest.mark.parametrize("objective", ["latency", "frame_raw"])
def test_tune_meets_the_target_at_least_cost(tiny_index, objective):
    cfg = tiny_index.cfg
    q = clustered_u8(40, cfg.vec.dim, seed=31)
    gt = exact_ground_truth(tiny_index.vectors, q, cfg.search.k)
    layout = Layout.for_index(tiny_index)
    res = tune_search(tiny_index, layout, q, gt, 0.8, cfg, objective, margin=0.01,
                      Ls=(8, 16), rs=(1, 2, 4), refine=1)
    b = res.best
    assert b is not None and b.recall >= 0.81
    ok = [p for p in res.points if p.recall >= 0.81]
    assert b.objective(objective) == min(p.objective(objective) for p in ok)
    again = evaluate_point(tiny_index, layout, q, gt, cfg.with_(search=b.search))
    assert again.recall == b.recall and again.accesses == b.accesses


def test_cli_tune_stores_the_settings_in_the_image(tmp_path):
    from proxima.cli import main
    from proxima.golden.image import read_image
    from proxima.golden.vecio import write_vectors

    base = clustered_u8(600, 16, seed=2)
    write_vectors(tmp_path / "b.bvecs", base)
    out = tmp_path / "t.pxi"
    assert main(["tune", "--preset", "tiny", "--base", str(tmp_path / "b.bvecs"), "-o", str(out),
                 "--holdout", "30", "--target", "0.7", "--quiet", "--L-values", "16",
                 "--r-values", "1,2,4",
                 "--json", str(tmp_path / "t.json")]) == 0
    import json
    best = json.loads((tmp_path / "t.json").read_text())["best"]["search"]
    s = read_image(out).index.cfg.search
    assert {k: getattr(s, k) for k in best} == best
    assert main(["tune", "--preset", "tiny", "--base", str(tmp_path / "b.bvecs"), "-o",
                 str(out), "--target", "1.5"]) == 2


def test_recommend_reuses_the_graph_and_picks_the_best_variant(monkeypatch):
    from proxima.config import preset
    from proxima.golden import build
    from proxima.golden.tune import recommend_build, recommendation

    cfg = preset("tiny")
    base = clustered_u8(300, cfg.vec.dim, seed=5)
    built = []
    real = build.build_graph
    monkeypatch.setattr(build, "build_graph", lambda *a, **k: built.append(1) or real(*a, **k))
    lines = []
    rows = recommend_build(base, cfg, 20, 0.6, [{"pq": {"M": 8}}, {"layout": {"hot_fraction": 0.1}},
                                               {"graph": {"R": 4}}],
                           margin=0.0, log=lines.append, Ls=(8, 16), rs=(1, 2))
    assert len(built) == 2  # the configured graph (shared by pq / layout variants) and R = 4
    assert [r["change"] for r in rows][0] == {} and rows[0]["vs_configured"] is None
    ok = [r for r in rows[1:] if r["best"]]
    assert ok and all(r["vs_configured"] == pytest.approx(
        r["best"]["latency_us"] / rows[0]["best"]["latency_us"] - 1) for r in ok)
    rec = recommendation(rows, "latency")
    best = min(ok, key=lambda r: r["vs_configured"])
    assert rec is (best if best["vs_configured"] < -0.02 else rows[0])
    assert lines[-1].startswith("recommended: ")


def test_stop_rule_reaches_runs_longer_than_r_allows():
    from proxima.config import R_MAX, preset
    from proxima.golden.tune import stop_rule

    s = preset("default").search
    for L, v in ((64, 3), (256, 15), (512, 32), (512, 64), (1024, 48)):
        got = s.__class__(**{**s.__dict__, "L": L, **stop_rule(L, v)})
        assert got.r_eff >= v and (v <= R_MAX or got.r_eff < 2 * v)
