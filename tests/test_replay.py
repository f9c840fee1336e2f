"""The demo's RTL path: real search traffic through every block's Verilog vs the golden model."""

import json

import pytest

from proxima.cli import main
from proxima.golden.datasets import synth_queries
from proxima.golden.image import read_image
from proxima.sim.replay import BLOCKS, replay_queries, replay_transactions

pytestmark = pytest.mark.rtl


@pytest.fixture(scope="module")
def tiny_image(tmp_path_factory):
    d = tmp_path_factory.mktemp("replay")
    base = d / "base.u8bin"
    assert main(["dataset", "synth", "--kind", "sift", "--dim", "16", "--n", "1200",
                 "--out", str(base), "--no-progress"]) == 0
    assert main(["build-index", "--preset", "tiny", "--base", str(base),
                 "-o", str(d / "index.pxi"), "--quiet"]) == 0
    return read_image(d / "index.pxi"), d


def test_transactions_agree_with_the_search(tiny_image):
    img, _ = tiny_image
    q = synth_queries("sift", 3, 16, seed=0)
    t = replay_transactions(img, q)
    ops, exp = t["bloom"]["ops"], t["bloom"]["expect"]
    assert ops.count(-1) == 3 and len(exp) == len(ops) - 3
    assert any(h for h, _ in exp) and not all(h for h, _ in exp)
    # one sorter vector per expansion with new candidates (none for an empty batch, more
    # for rows longer than the sorter): every new candidate exactly once
    vectors, pad = t["sorter"]["vectors"], (1 << img.index.cfg.sort_key_bits) - 1
    new = [k for v in vectors for k in v if k != pad]
    assert 0 < len(vectors) <= len(t["gapdec"]["frames"])
    assert all(v[0] != pad for v in vectors)
    # (each query's entry is a Bloom miss too, but enters the list by RESET, not a sort)
    assert len(new) == sum(1 - h for h, _ in exp) - len(q)
    assert sum(len(x) for x in t["pq"]["expect"]) == sum(1 - h for h, _ in exp)
    assert any(t["gapdec"]["hot"])  # the entry (id 0) is hot after reordering


def test_every_block_matches_the_golden_model_on_search_traffic(tiny_image):
    img, d = tiny_image
    q = synth_queries("sift", 2, 16, seed=0)
    rep = replay_queries(img, q, workdir=d / "rtl")
    assert set(rep["blocks"]) == set(BLOCKS)
    for name, b in rep["blocks"].items():
        assert b["mismatches"] == 0, (name, b)
        assert b["transactions"] > 0 and b["cycles"] > 0, (name, b)


def test_a_wrong_golden_expectation_is_reported(tiny_image, monkeypatch):
    img, d = tiny_image
    q = synth_queries("sift", 1, 16, seed=0)
    work = d / "rtl_bad"
    # flip one expected Bloom hit in the transaction file the testbench reads
    from proxima.sim import replay as rp
    real = rp.replay_transactions

    def tampered(img_, queries_):
        t = real(img_, queries_)
        t["bloom"]["expect"][3][0] ^= 1
        return t

    monkeypatch.setattr(rp, "replay_transactions", tampered)
    rep = replay_queries(img, q, workdir=work, blocks=("bloom",))
    b = rep["blocks"]["bloom"]
    assert b["mismatches"] == 1 and "id test 3" in b["first_mismatch"]
    assert json.loads((work / "result_bloom.json").read_text())["mismatches"] == 1
