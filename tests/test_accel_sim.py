"""The multi-queue Accelerator's generated Verilog under Verilator (cocotb, sim/tb/tb_accel.py)
against golden.search: >= 100 queries over an image of 5,000 vectors with 4 queues, random
query gaps, random result / stats back-pressure and random NAND latencies (the controller's
``resp_stall_seed``); a corrupt frame on one query's path; a soft reset in the middle of a
batch followed by a clean batch; a flipped expectation that must fail.

One Verilator build serves every test (the build cache of
:func:`proxima.sim.runner.run_cocotb`; the store port is outside the design and the bench
serves the image's bytes): the corrupt-frame test serves a copy of the image with one
corrupt normal frame, read by exactly one query of its batch (the golden reads of the
others prove they never touch it).  ``proxima sim`` reuses the build, on this image and on
one of another geometry and codebook (both are written at run time).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import warnings

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable

from proxima.config import preset
from proxima.golden.search_batch import search_batch
from tests.golden.conftest import clustered_u8
from tests.hdl.test_engine import _image

pytestmark = pytest.mark.rtl

N_VERTICES, N_HOT = 5000, 64
QUEUES = 4

STALL_SEED = 0xACE1
N_BATCH, N_CORRUPT, N_RESET, N_AFTER, N_FLIP = 100, 8, 12, 8, 3
VICTIM = 3  # the corrupt-frame test's query whose path holds the corrupt frame


@pytest.fixture(scope="module")
def accel_setup(tmp_path_factory):
    """(image, Accelerator, cache key, query sets with golden results, the corrupt vertex,
    the work folder with the image file, the store and the corrupt store)."""
    from proxima.hdl.accel import Accelerator
    from proxima.sim.accel_run import accel_for
    from proxima.sim.tb.tb_accel import corrupt_frame, frame_to_corrupt, write_store

    work = tmp_path_factory.mktemp("accel")
    img = _image(tmp_path_factory, preset("tiny"), N_VERTICES, N_HOT, seed=21,
                 path=work / "accel.pxi")
    cfg = img.index.cfg.with_(engine={"queues": QUEUES})
    n_all = N_BATCH + N_CORRUPT + N_RESET + N_AFTER + N_FLIP
    queries = clustered_u8(n_all, cfg.vec.dim, seed=77)
    refs = search_batch(img.index, queries, cfg, trace=True)
    cuts = np.cumsum([0, N_BATCH, N_CORRUPT, N_RESET, N_AFTER, N_FLIP])
    sets = {name: (queries[a:b], refs[a:b]) for name, a, b in
            zip(("batch", "corrupt", "reset", "after", "flip"), cuts[:-1], cuts[1:])}
    # the corrupt frame: read by the victim only, among the queries of its batch
    v = frame_to_corrupt(sets["corrupt"][1], img.layout, VICTIM)
    bad = dataclasses.replace(img, frames=corrupt_frame(img.frames, img.layout, v))
    write_store(work / "store.bin", Accelerator.store_image(img))
    write_store(work / "corrupt.bin", Accelerator.store_image(bad))
    dut, key = accel_for(img, cfg, QUEUES, STALL_SEED)
    yield img, dut, key, sets, v, work
    del dut
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        gc.collect()


def _run(setup, tmp_path, testcase, data, **params):
    from proxima.sim.runner import run_cocotb

    img, dut, key, *_ = setup
    path = tmp_path / f"{testcase}.json"
    path.write_text(json.dumps(data))
    out = tmp_path / f"{testcase}_out.json"
    res = run_cocotb(dut, "proxima_accel", "proxima.sim.tb.tb_accel", cfg=dut.cfg,
                     cache_key=key, testcase=testcase,
                     parameters={"data": str(path), "out": str(out), **params})
    assert res.tests == 1 and res.failed == 0
    return json.loads(out.read_text()) if out.is_file() else None


def _data(setup, name, tag0, store="store.bin"):
    from proxima.sim.accel_run import search_layout
    from proxima.sim.tb.tb_accel import accel_transactions

    img, dut, _, sets, _, work = setup
    q, refs = sets[name]
    tags = [(tag0 + 7919 * i) % (1 << 16) for i in range(len(q))]  # scattered, distinct
    return accel_transactions(img.index, q, search_layout(img, dut.cfg), dut, tags=tags,
                              refs=refs, cfg=dut.cfg, store_file=work / store,
                              codebook=img.index.codebook)


def test_accel_batch_matches_golden(accel_setup, tmp_path):
    """(a) 100 queries, 4 queues, query gaps, back-pressure, random NAND latency."""
    out = _run(accel_setup, tmp_path, "accel_batch", _data(accel_setup, "batch", 11),
               p_valid=0.7, p_ready=0.6)
    recs = out["records"]
    assert len(recs) == N_BATCH and not out["mismatches"]
    assert not any(r["stats"]["error"] for r in recs)
    # the queues overlapped: the queries' own cycles add up to well over the busy time
    g = out["globals"]
    assert sum(r["stats"]["cycles"] for r in recs) > 2 * g["g_busy"], g
    assert g["g_arb_wait"] > 0 and max(g["core_busy"]) > 0


def test_accel_corrupt_frame(accel_setup, tmp_path):
    """(b) The victim reads the corrupt frame: its stats say error = 1; every other query of
    the batch, in flight with it, matches golden."""
    from proxima.sim.tb.tb_accel import expect_error

    img, _, _, _, v, _ = accel_setup
    d = _data(accel_setup, "corrupt", 500, store="corrupt.bin")
    d["queries"][VICTIM]["expect"] = expect_error(d["queries"][VICTIM]["expect"],
                                                  img.layout, v)
    out = _run(accel_setup, tmp_path, "accel_batch", d, p_valid=0.8, p_ready=0.7)
    errs = [r["query"] for r in out["records"] if r["stats"]["error"]]
    assert errs == [VICTIM] and not out["mismatches"]


def test_accel_soft_reset_mid_batch(accel_setup, tmp_path):
    """(c) soft_reset after 4 of 12 queries finished (others in flight or not sent), then a
    clean batch of 8 that all match golden."""
    d = _data(accel_setup, "reset", 1000)
    d["queries2"] = _data(accel_setup, "after", 2000)["queries"]
    _run(accel_setup, tmp_path, "accel_reset", d, reset_after=4, p_valid=0.8, p_ready=0.7)


def test_accel_flipped_expectation_fails(accel_setup, tmp_path):
    """(d) The same bench with one golden distance off by one must fail."""
    from proxima.sim.runner import CocotbFailure

    d = _data(accel_setup, "flip", 3000)
    d["queries"][1]["expect"]["dists"][0] += 1
    with pytest.raises(CocotbFailure, match=r"query 1 \(tag \d+\): result"):
        _run(accel_setup, tmp_path, "accel_batch", d)


def test_proxima_sim_cli(accel_setup, tmp_path_factory, capsys):
    """``proxima sim --engine cocotb`` on the image file: every query matches golden, recall
    printed; then on an image of another geometry (vertex count, hot count, slot width) and
    codebook, same configuration: it reuses the build (geometry registers and codebook are
    written at run time; the first run may be the one that builds, whichever xdist worker
    runs the module's other tests) and matches golden too."""
    from proxima.cli import main
    from proxima.golden.datasets import ground_truth
    from proxima.golden.vecio import write_vectors

    img, _, _, sets, _, work = accel_setup
    other = _image(tmp_path_factory, img.index.cfg, 1400, 30, seed=5, path=work / "other.pxi")
    assert (other.layout.n, other.layout.hot) != (img.layout.n, img.layout.hot)
    assert other.layout.gap_width != img.layout.gap_width
    q = sets["flip"][0]
    write_vectors(work / "q.u8bin", q)
    outs = []
    for image, name in ((img, "accel.pxi"), (other, "other.pxi")):
        gt, _ = ground_truth(image.index.vectors, q, 10)
        write_vectors(work / f"gt-{name}.ivecs", gt.astype(np.int32))
        argv = ["sim", "--index", str(work / name), "--queries", str(work / "q.u8bin"),
                "--gt", str(work / f"gt-{name}.ivecs"), "--queues", str(QUEUES),
                "--stall-seed", hex(STALL_SEED), "--engine", "cocotb", "--quiet"]
        assert main(argv) == 0
        outs.append(capsys.readouterr().out)
    for o in outs:
        assert f"{N_FLIP}/{N_FLIP} queries match" in o
        assert "recall@1=" in o and "cycles/s" in o and "QPS at" in o
    assert "build: cached" in outs[1]
