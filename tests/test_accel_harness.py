"""The Accelerator in the C++ Verilator harness (``sim/harness``, the default engine of
:func:`proxima.sim.accel_run.simulate_accel`) against golden.search: every query of a batch
checked (ids, exact distances, counters, NAND access sequence) with random query gaps,
random result / stats back-pressure and random NAND latencies (the controller's
``resp_stall_seed``); a flipped expectation must be reported as a mismatch of exactly that
query; a corrupt frame on one query's path sets that query's error flag and no other's;
``proxima sim`` on the image reuses the build.

One harness build (tiny preset, 2 contexts, at the quick ``FAST_OPTIONS``) serves every
test: the store and the codebook are files read by the harness at run time, the geometry
registers are set at run time (a second image of another geometry runs on the same build).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from proxima.config import preset
from proxima.golden.search_batch import search_batch
from tests.golden.conftest import clustered_u8
from tests.hdl.test_engine import _image

pytestmark = pytest.mark.rtl

N_VERTICES, N_HOT, QUEUES, STALL_SEED = 2000, 32, 2, 0x1D2B
N_BATCH, N_CORRUPT, N_CLI = 40, 6, 3
VICTIM = 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(image, config, query sets with golden results, work folder)."""
    work = tmp_path_factory.mktemp("harness")
    img = _image(tmp_path_factory, preset("tiny"), N_VERTICES, N_HOT, seed=5,
                 path=work / "h.pxi")
    cfg = img.index.cfg.with_(engine={"queues": QUEUES})
    q = clustered_u8(N_BATCH + N_CORRUPT + N_CLI, cfg.vec.dim, seed=9)
    refs = search_batch(img.index, q, cfg, trace=True)
    cuts = np.cumsum([0, N_BATCH, N_CORRUPT, N_CLI])
    sets = {name: (q[a:b], refs[a:b])
            for name, a, b in zip(("batch", "corrupt", "cli"), cuts[:-1], cuts[1:])}
    return img, cfg, sets, work


def _sim(setup, name, **kw):
    from proxima.sim.accel_run import simulate_accel
    from proxima.sim.harness import FAST_OPTIONS

    img, cfg, sets, work = setup
    q, refs = sets[name]
    kw.setdefault("refs", refs)
    return simulate_accel(kw.pop("img", img), q, cfg=cfg, queues=QUEUES,
                          stall_seed=STALL_SEED, harness=FAST_OPTIONS, workdir=work, **kw)


@pytest.fixture(scope="module")
def built(setup):
    """The CLI's query set run through the harness first: the harness is then built (in the
    shared cache) whichever test, on whichever xdist worker, comes first."""
    run = _sim(setup, "cli")
    assert not run.mismatches
    return run


def test_harness_batch_matches_golden(setup):
    """Every query equal to golden, with host stalls and random NAND latencies; the
    contexts overlapped; the run's figures are consistent."""
    run = _sim(setup, "batch", p_valid=0.7, p_ready=0.6, seed=3)
    assert run.engine == "harness" and run.n == N_BATCH
    assert not run.mismatches and run.errors == 0
    # ids and distances as golden's, in query order
    refs = setup[2]["batch"][1]
    for r, ref in zip(run.records, refs):
        assert [b[0] for b in r["results"]] == [int(i) for i in ref.ids]
        assert [b[1] for b in r["results"]] == [int(d) for d in ref.dists]
    g = run.globals
    assert g["g_queries"] == N_BATCH and g["idle"] == 1
    assert sum(r["stats"]["cycles"] for r in run.records) > 1.3 * g["g_busy"], g
    assert run.accesses == sum(r["accesses"] for r in run.records)
    assert run.cycles >= g["g_busy"] and run.sim_rate > 0
    assert {r["stats"]["context"] for r in run.records} == set(range(QUEUES))
    assert "40/40 queries match" in "\n".join(run.report())


def test_harness_flipped_expectation_fails(setup, built):
    """One golden distance off by one: that query, and only it, is reported."""
    refs = list(setup[2]["batch"][1][:6])
    bad = dataclasses.replace(refs[4], dists=refs[4].dists.copy())
    bad.dists[0] += 1
    refs[4] = bad
    img, cfg, sets, work = setup
    q = sets["batch"][0][:6]
    from proxima.sim.accel_run import simulate_accel
    from proxima.sim.harness import FAST_OPTIONS
    run = simulate_accel(img, q, cfg=cfg, queues=QUEUES, stall_seed=STALL_SEED, refs=refs,
                         harness=FAST_OPTIONS, workdir=work)
    assert list(run.mismatches) == [4]
    assert "result" in run.mismatches[4][0]
    assert run.build_cached


def test_harness_corrupt_frame(setup):
    """A corrupt frame read by one query only: its stats say error = 1 (a mismatch against
    the clean golden run), every other query in flight with it matches."""
    from proxima.sim.tb.tb_accel import corrupt_frame, frame_to_corrupt

    img, cfg, sets, work = setup
    refs = sets["corrupt"][1]
    v = frame_to_corrupt(refs, img.layout, VICTIM)
    bad = dataclasses.replace(img, frames=corrupt_frame(img.frames, img.layout, v))
    run = _sim(setup, "corrupt", img=bad, p_valid=0.8, p_ready=0.7)
    assert [i for i, r in enumerate(run.records) if r["stats"]["error"]] == [VICTIM]
    assert list(run.mismatches) == [VICTIM]
    assert "error = 1" in run.mismatches[VICTIM]


def test_proxima_sim_cli_harness(setup, built, capsys):
    """``proxima sim`` (harness engine, quick build) reuses the tests' build and reports the
    same run as the library call on the same queries."""
    from proxima.cli import main
    from proxima.golden.datasets import ground_truth
    from proxima.golden.vecio import write_vectors

    img, cfg, sets, work = setup
    q = sets["cli"][0]
    write_vectors(work / "q.u8bin", q)
    gt, _ = ground_truth(img.index.vectors, q, 10)
    write_vectors(work / "gt.ivecs", gt.astype(np.int32))
    argv = ["sim", "--index", str(work / "h.pxi"), "--queries", str(work / "q.u8bin"),
            "--gt", str(work / "gt.ivecs"), "--queues", str(QUEUES), "--fast-build",
            "--stall-seed", hex(STALL_SEED), "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"{N_CLI}/{N_CLI} queries match" in out and "build: cached" in out
    assert "engine harness" in out and "recall@1=" in out and "cycles/s" in out
    assert f"cycles: {built.cycles} for {N_CLI} queries" in out, (built.report(), out)


def test_harness_second_geometry_on_the_same_build(setup, built, tmp_path_factory):
    """An image of another geometry (N, hot count, slot width and so the code offset, hot
    pages, ...) runs on the same cached build: its geometry registers are written at run
    time and its smaller store file is mapped onto the design's store."""
    img, cfg, sets, work = setup
    img2 = _image(tmp_path_factory, preset("tiny"), 700, 5, seed=6, path=work / "g2.pxi")
    la, lb = img.layout, img2.layout
    assert la.n != lb.n and la.hot != lb.hot and la.gap_width != lb.gap_width
    q = clustered_u8(4, cfg.vec.dim, seed=12)
    from proxima.sim.accel_run import simulate_accel
    from proxima.sim.harness import FAST_OPTIONS
    run = simulate_accel(img2, q, cfg=cfg, queues=QUEUES, stall_seed=STALL_SEED,
                         harness=FAST_OPTIONS, workdir=work, p_valid=0.8, p_ready=0.7)
    assert run.build_cached
    assert run.n == 4 and not run.mismatches and run.errors == 0
