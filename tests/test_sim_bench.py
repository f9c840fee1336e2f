"""The testbench helpers of ``sim/tb/bench.py`` that need no simulator: the golden
comparison, payload fields and stall decisions (the cocotb side runs in every block's
cocotb test)."""

import random

import pytest
from amaranth.lib import data

from proxima.sim.tb import bench


def test_scoreboard_in_order_and_complete():
    board = bench.Scoreboard([(1, 2), (3, 4)], "beat")
    board((1, 2))
    assert not board.done
    with pytest.raises(AssertionError, match=r"beat 1: got \(3, 5\), golden \(3, 4\)"):
        board((3, 5))
    board((3, 4))
    assert board.done and board.count == 2
    board.finish()
    with pytest.raises(AssertionError, match="beat 2: got 7, golden nothing"):
        board(7)
    short = bench.Scoreboard([1, 2], "beat")
    short(1)
    with pytest.raises(AssertionError, match="beat: 1 transactions, golden has 2"):
        short.finish()


def test_compare_and_mismatches():
    bench.compare([1, 2, 3], [1, 2, 3])
    with pytest.raises(AssertionError, match="response: 2 transactions, golden has 3"):
        bench.compare([1, 2], [1, 2, 3], "response")
    with pytest.raises(AssertionError, match="response 1: got 5, golden 2"):
        bench.compare([1, 5, 3], [1, 2, 3], "response")
    assert bench.mismatches([1, 5, 3, 4], [1, 2, 3], "id") == [
        "id 1: got 5, golden 2", "id 3: got 4, golden None"]
    assert bench.mismatches([9], [8], explain=lambda k, g, e: f"{k}/{g}/{e}") == ["0/9/8"]


def test_fields_pack_unpack():
    layout = data.StructLayout({"tag": 3, "core": 2, "page": 5})
    fmt = bench.fields(layout)
    assert fmt == {"tag": (0, 3), "core": (3, 2), "page": (5, 5)}
    word = bench.pack({"tag": 5, "core": 2, "page": 17}, layout)
    assert word == 5 | 2 << 3 | 17 << 5
    assert bench.unpack(word, layout) == {"tag": 5, "core": 2, "page": 17}
    assert bench.unpack(word, fmt, ("page", "tag")) == (17, 5)
    with pytest.raises(ValueError, match="core = 4 does not fit in 2 bits"):
        bench.pack({"core": 4}, fmt)


def test_stall_decisions():
    rnd = random.Random(1)
    assert all(bench.chance(1.0, None, c) for c in range(10))  # no draw at p = 1
    assert bench.chance(lambda c: c % 2 == 0, None, 4) and not bench.chance(
        lambda c: c % 2 == 0, None, 3)
    hits = sum(bench.chance(0.3, rnd, c) for c in range(10_000))
    assert 2700 < hits < 3300
    assert bench.stall_probabilities({"p_valid": 0.9}, 0.8) == (0.9, 0.8)
