"""The whole board core (UART PHY included) under cocotb + Verilator, driven by the host
driver's own code through a simulated UART (``sim/tb/tb_board.py``).

* ``test_board_queries``: load a tiny image over the link (CRC read-back per chunk) into a
  board with a two-context accelerator, stream 100 queries (``PROXIMA_BOARD_QUERIES``)
  with up to six on the board, every result (ids, distances, counters, reason, accesses by
  kind) equal to ``golden.search``, both contexts used.
* ``test_board_queries_hot_copies`` (slow): the same on an image with two hot copies
  (context ``q`` reads copy ``q % 2``; the entry's code from SET_GEOMETRY).
* ``test_board_fuzz``: random and mutated frames, each answered exactly as the protocol
  model predicts, the store never written by a bad frame (``PROXIMA_BOARD_FUZZ`` items),
  on the engine-less link subset and on the full board.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from proxima.config import preset
from proxima.golden.image import read_image, write_image
from proxima.golden.index import Index
from proxima.golden.pq import encode, train_codebook
from proxima.hdl.board import BoardCore
from proxima.sim.runner import run_cocotb
from tests.golden.conftest import clustered_u8, knn_plus_random_graph

DIVISOR = 4  # clock cycles per UART bit in simulation


def _write_tiny(tmp_path_factory, cfg, name, n=200, n_hot=8, seed=5):
    x = clustered_u8(n, cfg.vec.dim, seed=seed)
    nb = knn_plus_random_graph(x, cfg.graph.R, seed=seed)
    book = train_codebook(cfg, x, seed=seed)
    index = Index(cfg, x, nb, 0, book, encode(cfg, x, book), hot=np.arange(n) < n_hot)
    path = tmp_path_factory.mktemp("board") / name
    write_image(path, index)
    return path, read_image(path)


@pytest.fixture(scope="module")
def tiny_image(tmp_path_factory):
    """The tiny preset with the FPGA board's registered store read (engine.store_latency
    = 3: the store's address and data registered in the controller; tests/hdl/test_accel.py
    has latencies 1 and 2)."""
    return _write_tiny(tmp_path_factory, preset("tiny").with_(engine={"store_latency": 3}),
                       "tiny.pxi")


@pytest.fixture(scope="module")
def copies_image(tmp_path_factory):
    """Two copies of the hot region: context q reads copy q % 2 and the entry's code comes
    from SET_GEOMETRY."""
    return _write_tiny(tmp_path_factory, preset("tiny").with_(layout={"hot_copies": 2}),
                       "copies.pxi")


QUEUES = 2  # search contexts of the simulated board


def _board(img, engine=True):
    lay = img.layout
    return BoardCore(lay.cfg, lay, clk_hz=100_000_000, baud=100_000_000 // DIVISOR,
                     divisor=DIVISOR, engine=engine, queues=QUEUES if engine else None)


@pytest.mark.rtl
def test_board_queries(tiny_image, tmp_path):
    path, img = tiny_image
    nq = int(os.environ.get("PROXIMA_BOARD_QUERIES", "100"))
    q = clustered_u8(nq, img.layout.cfg.vec.dim, seed=77).astype(np.uint8)
    qpath = tmp_path / "queries.npy"
    np.save(qpath, q)
    run_cocotb(lambda: _board(img), "board", "proxima.sim.tb.tb_board", cfg=img.layout.cfg,
               parameters={"divisor": DIVISOR, "image": str(path), "queries": str(qpath)},
               build_name="board_tiny", testcase="board_queries")


@pytest.mark.rtl
def test_board_queries_other_geometry(tiny_image, tmp_path_factory, tmp_path):
    """The bitstream of ``test_board_queries`` (its nominal image's layout; the same cached
    build) serves an image of another geometry (N, hot count, slot width): SET_GEOMETRY
    writes its registers and every query equals golden.  A geometry beyond the store is
    refused with ERR_GEOMETRY and changes nothing."""
    _, nominal = tiny_image
    # the bitstream's configuration (the board refuses an image of another one)
    path, img = _write_tiny(tmp_path_factory, nominal.index.cfg, "other.pxi", n=60, n_hot=3,
                            seed=8)
    la, lb = nominal.layout, img.layout
    assert la.n != lb.n and la.hot != lb.hot and la.gap_width != lb.gap_width
    q = clustered_u8(8, lb.cfg.vec.dim, seed=79).astype(np.uint8)
    qpath = tmp_path / "queries.npy"
    np.save(qpath, q)
    run_cocotb(lambda: _board(nominal), "board", "proxima.sim.tb.tb_board", cfg=lb.cfg,
               parameters={"divisor": DIVISOR, "image": str(path), "queries": str(qpath),
                           "refuse_geometry": 1},
               build_name="board_tiny", testcase="board_queries")


@pytest.mark.rtl
@pytest.mark.slow
def test_board_queries_hot_copies(copies_image, tmp_path):
    path, img = copies_image
    assert img.layout.hot_copies == 2
    q = clustered_u8(8, img.layout.cfg.vec.dim, seed=78).astype(np.uint8)
    qpath = tmp_path / "queries.npy"
    np.save(qpath, q)
    run_cocotb(lambda: _board(img), "board", "proxima.sim.tb.tb_board", cfg=img.layout.cfg,
               parameters={"divisor": DIVISOR, "image": str(path), "queries": str(qpath)},
               build_name="board_tiny_copies", testcase="board_queries")


@pytest.mark.rtl
@pytest.mark.parametrize("engine", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_board_fuzz(tiny_image, engine):
    """On the link subset (the iCEBreaker top: a small, fast simulation) and on the full
    board (which shares the Verilator build of ``test_board_queries``)."""
    path, img = tiny_image
    cfg = img.layout.cfg
    run_cocotb(lambda: _board(img, engine), "board", "proxima.sim.tb.tb_board", cfg=cfg,
               parameters={"divisor": DIVISOR, "dsub": cfg.dsub,
                           "fuzz_items": int(os.environ.get("PROXIMA_BOARD_FUZZ",
                                                           "60" if engine else "400")),
                           "fuzz_seed": 7},
               build_name="board_tiny" if engine else "board_link_tiny",
               testcase="board_fuzz")
