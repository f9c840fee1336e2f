"""The multi-queue Accelerator's generated Verilog under Verilator (cocotb, sim/tb/tb_accel.py)
against golden.search: >= 100 queries over an image of 5,000 vectors with 4 queues, random
query gaps, random result / stats back-pressure and random NAND latencies (the controller's
``resp_stall_seed``); a corrupt frame on one query's path; a soft reset in the middle of a
batch followed by a clean batch; a flipped expectation that must fail.

One image and one Verilator build serve every test (the build cache of
:func:`proxima.sim.runner.run_cocotb`): the image carries one corrupt normal frame, read by
exactly one query of all (the corrupt-frame test's victim; the golden reads of every other
query prove they never touch it).
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import warnings

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable

from proxima.config import preset
from proxima.golden.image import read_image, write_image
from proxima.golden.index import Index
from proxima.golden.pq import encode, train_codebook
from proxima.golden.search_batch import search_batch
from tests.golden.conftest import clustered_u8, knn_plus_random_graph

pytestmark = pytest.mark.rtl

N_VERTICES, N_HOT = 5000, 64
QUEUES = 4
STALL_SEED = 0xACE1
N_BATCH, N_CORRUPT, N_RESET, N_AFTER, N_FLIP = 104, 8, 12, 8, 3
VICTIM = 3  # the corrupt-frame test's query whose path holds the corrupt frame


@pytest.fixture(scope="module")
def accel_setup(tmp_path_factory):
    """(image with one corrupt frame, Accelerator, cache key, query sets with golden
    results, the corrupt vertex)."""
    from proxima.hdl.accel import Accelerator
    from proxima.sim.tb.tb_accel import corrupt_frame, frame_to_corrupt

    cfg = preset("tiny")
    x = clustered_u8(N_VERTICES, cfg.vec.dim, seed=21)
    nb = knn_plus_random_graph(x, cfg.graph.R, seed=21)
    book = train_codebook(cfg, x, seed=21)
    index = Index(cfg, x, nb, 0, book, encode(cfg, x, book),
                  hot=np.arange(N_VERTICES) < N_HOT)
    path = tmp_path_factory.mktemp("accel") / "accel.pxi"
    write_image(path, index)
    img = read_image(path)
    n_all = N_BATCH + N_CORRUPT + N_RESET + N_AFTER + N_FLIP
    queries = clustered_u8(n_all, cfg.vec.dim, seed=77)
    refs = search_batch(img.index, queries, cfg, trace=True)
    cuts = np.cumsum([0, N_BATCH, N_CORRUPT, N_RESET, N_AFTER, N_FLIP])
    sets = {name: (queries[a:b], refs[a:b]) for name, a, b in
            zip(("batch", "corrupt", "reset", "after", "flip"), cuts[:-1], cuts[1:])}
    # the corrupt frame: read by the victim only, among every query of every test
    others = refs[:cuts[1]] + refs[cuts[2]:]
    v = frame_to_corrupt(sets["corrupt"][1], img.layout, VICTIM, others=others)
    bad = dataclasses.replace(img, frames=corrupt_frame(img.frames, img.layout, v))
    store = Accelerator.store_image(bad)
    with warnings.catch_warnings():  # elaborated only when the build cache misses
        warnings.simplefilter("ignore", UnusedElaboratable)
        dut = Accelerator(cfg, img.layout, image=store, queues=QUEUES,
                          codebook=img.index.codebook, resp_stall_seed=STALL_SEED)
    key = {"bench": "tb_accel", "cfg": cfg.to_json(), "queues": QUEUES,
           "stall": STALL_SEED, "store": hashlib.sha256(store.tobytes()).hexdigest(),
           "codebook": hashlib.sha256(np.ascontiguousarray(book).tobytes()).hexdigest()}
    yield img, dut, key, sets, v
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
    res = run_cocotb(dut, "proxima_accel", "proxima.sim.tb.tb_accel", cfg=img.index.cfg,
                     cache_key=key, testcase=testcase,
                     parameters={"data": str(path), "out": str(out), **params})
    assert res.tests == 1 and res.failed == 0
    return json.loads(out.read_text()) if out.is_file() else None


def _data(setup, name, tag0):
    from proxima.sim.tb.tb_accel import accel_transactions

    img, dut, _, sets, _ = setup
    q, refs = sets[name]
    tags = [(tag0 + 7919 * i) % (1 << 16) for i in range(len(q))]  # scattered, distinct
    return accel_transactions(img.index, q, img.layout, dut, tags=tags, refs=refs)


def test_accel_batch_matches_golden(accel_setup, tmp_path):
    """(a) 104 queries, 4 queues, query gaps, back-pressure, random NAND latency."""
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

    img, _, _, _, v = accel_setup
    d = _data(accel_setup, "corrupt", 500)
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
    with pytest.raises(CocotbFailure):
        _run(accel_setup, tmp_path, "accel_batch", d)
