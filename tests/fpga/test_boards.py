"""Board build helpers that need no FPGA tools: PLL settings, the nominal store size, the
top's elaboration on each platform, the report text."""

from __future__ import annotations

import pytest
from amaranth.hdl import Fragment, Module, Signal

from proxima.config import preset
from proxima.hdl.lib.vendor import StoreRAM
from proxima.fpga.boards import (BOARDS, DP16KD_LINK, DP16KD_PER_CONTEXT, ECP5_85F_DP16KD,
                                 BuildError, board_layout, build, ecp5_pll, format_report,
                                 store_word_bits)
from proxima.golden.link import store_map


@pytest.mark.parametrize("f_out", [100.0, 125.0, 50.0])
def test_ecp5_pll_exact_for_round_frequencies(f_out):
    m = Module()
    f, _ = ecp5_pll(m, Signal(), 25.0, f_out)
    assert f == pytest.approx(f_out)
    Fragment.get(m, None)  # the PLL instance elaborates


def test_ecp5_pll_impossible():
    m = Module()
    with pytest.raises(BuildError):
        ecp5_pll(m, Signal(), 25.0, 2000.0)
    assert not Fragment.get(m, None).subfragments  # nothing was added to the module


@pytest.mark.parametrize("queues", [1, 2])
def test_nominal_ulx3s_store_is_the_largest_that_fits(queues):
    """The store follows the controller's map (cores padded to a power of two pages) and
    is the largest that fits beside the contexts' and the link's block RAM."""
    cfg = preset("default")
    lay = board_layout(cfg, BOARDS["ulx3s-85f"], queues=queues)
    beat = store_word_bits(cfg)
    budget = ECP5_85F_DP16KD - DP16KD_PER_CONTEXT * queues - DP16KD_LINK

    def blocks(layout):  # the board's store: StoreRAM's DP16KD (a depth cascade)
        return StoreRAM(beat, store_map(layout, beat // 8)[1], impl="ecp5").primitives
    assert blocks(lay) <= budget
    # the next size does not fit: refused with the figures, before any tool runs
    with pytest.raises(BuildError, match=rf"store for {lay.n + 16} vertices needs \d+ DP16KD"):
        board_layout(cfg, BOARDS["ulx3s-85f"], n=lay.n + 16, queues=queues)
    assert lay.hot == int(cfg.layout.hot_fraction * lay.n) and lay.gap_width == cfg.id_bits


def test_no_store_fits_is_an_error():
    with pytest.raises(BuildError, match="no store fits beside 4 search contexts"):
        board_layout(preset("default"), BOARDS["ulx3s-85f"], queues=4)


def test_icebreaker_link_store_within_its_block_ram():
    cfg = preset("tiny").override(["nand.page_bytes=512"])
    lay = board_layout(cfg, BOARDS["icebreaker"])
    words, bb = store_map(lay, 4)[1], 4
    assert words * bb <= BOARDS["icebreaker"].link_store_bytes
    assert 16 < lay.n <= 256


def test_format_report():
    r = {"board": "icebreaker", "preset": "tiny", "engine": False, "queues": 0,
         "cells": {"LUT4": (1612, 5280), "FF": (846, 5280), "BRAM": (30, 30)},
         "fmax_mhz": 26.86, "clock_mhz": 12.0, "timing_met": True, "store_bytes": 14336,
         "image": {"n_max": 256, "hot": 7, "gap_width": 16}, "baud": 1_000_000,
         "uart_divisor": 12, "bitstream": "top.bin"}
    text = format_report(r)
    assert "1,612 / 5,280 (31%)" in text and "met" in text and "no engine" in text
    r["timing_met"] = False
    assert "VIOLATED" in format_report(r)
    r.update(board="ulx3s-85f", engine=True, queues=2)
    assert "Accelerator, 2 search contexts" in format_report(r)
    r["queues"] = 1
    assert "Accelerator, 1 search context)" in format_report(r)


def test_board_layout_of_an_image(tmp_path):
    import numpy as np

    from proxima.golden.image import write_image
    from proxima.golden.index import Index
    from proxima.golden.pq import encode, train_codebook
    from tests.golden.conftest import clustered_u8, knn_plus_random_graph
    cfg = preset("tiny")
    x = clustered_u8(50, cfg.vec.dim, seed=2)
    book = train_codebook(cfg, x, seed=2)
    idx = Index(cfg, x, knn_plus_random_graph(x, cfg.graph.R, seed=2), 0, book,
                encode(cfg, x, book), hot=np.arange(50) < 3)
    lay = write_image(tmp_path / "i.pxi", idx)
    got = board_layout(preset("default"), BOARDS["ulx3s-85f"], index_path=tmp_path / "i.pxi")
    assert (got.n, got.hot, got.gap_width) == (lay.n, lay.hot, lay.gap_width)
    assert got.cfg.to_dict() == cfg.to_dict()  # the image's configuration wins
    with pytest.raises(BuildError, match="cannot read index image"):
        board_layout(cfg, BOARDS["ulx3s-85f"], index_path=tmp_path / "missing.pxi")


def test_ulx3s_build_needs_the_registered_store_read(tmp_path):
    # refused before any tool runs: a one-cycle store read, an unknown router, a
    # placer density outside (0, 1]
    for low in (1, 2):
        with pytest.raises(BuildError, match="engine.store_latency = 3"):
            build("ulx3s-85f", preset("default").override([f"engine.store_latency={low}"]),
                  out_dir=tmp_path, n=16, queues=1)
    with pytest.raises(BuildError, match="unknown router"):
        build("ulx3s-85f", preset("default"), out_dir=tmp_path, router="router3")
    for bad in (0.0, 1.5):
        with pytest.raises(BuildError, match="placer density"):
            build("ulx3s-85f", preset("default"), out_dir=tmp_path, placer_density=bad)
    assert preset("default").engine.store_latency == 3


def _rtlil_cells(il: str) -> dict:
    """``{module: {cell: (type, {port: net})}}`` of an RTLIL text (names without the
    leading backslash)."""
    mods, mod, cell = {}, None, None
    for line in il.splitlines():
        t = line.split()
        if not t:
            continue
        if t[0] == "module":
            mod = mods.setdefault(t[1].lstrip("\\"), {})
        elif t[0] == "cell":
            cell = mod[t[2].lstrip("\\")] = (t[1].lstrip("\\"), {})
        elif t[0] == "connect" and cell is not None and line.startswith("    connect"):
            cell[1][t[1].lstrip("\\")] = " ".join(t[2:])
        else:
            cell = None
    return mods


@pytest.mark.parametrize("impl", ["generic", "ecp5"])
def test_board_accelerator_reset_is_one_registered_net(impl):
    """The accelerator, its FIFOs and the collector take their reset from the one
    GlobalReset register (through a DCCA on the ECP5, none in the generic build) whose
    input is the SOFT_RESET command (its register reset by the sync reset), and the
    Accelerator's own soft reset is tied low."""
    from amaranth.back import rtlil

    from proxima.hdl.board import BoardCore
    cfg = preset("tiny").with_(engine={"store_latency": 3})
    lay = board_layout(cfg, BOARDS["ulx3s-85f"], n=64, queues=1)
    core = BoardCore(cfg, lay, clk_hz=20e6, baud=1_000_000, queues=1, impl=impl)
    cells = _rtlil_cells(rtlil.convert(core, name="core"))
    dcca = [(m, c) for m, cs in cells.items() for c, (t, _) in cs.items() if t == "DCCA"]
    assert dcca == ([("core.acc_reset", "dcca")] if impl == "ecp5" else []), dcca
    if impl == "ecp5":
        assert cells["core.acc_reset"]["dcca"][1] == {"CLKI": "\\q [0]", "CE": "1'1",
                                                      "CLKO": "\\o"}
    top = cells["core"]
    conn = top["acc_reset"][1]
    assert conn["i"] != "1'0" and "rst" in conn  # SOFT_RESET, and the sync reset
    (rst,) = [net for port, net in conn.items() if port not in ("clk", "rst", "i")]
    for sub in ("accel", "qfifo", "tfifo", "rfifo", "collector"):
        conn = top[sub][1]
        assert conn["acc_rst"] == rst, (sub, conn)
        assert "rst" not in conn, sub  # nothing of it in the sync domain
    assert "soft_reset" not in top["accel"][1]  # tied low: a constant, not a port


def test_ecp5_pll_domain_reset_is_a_registered_global():
    """The PLL's domain reset comes from the power-on register through a DCCA."""
    from amaranth.back import rtlil
    m = Module()
    ecp5_pll(m, Signal(), 25.0, 100.0)
    cells = _rtlil_cells(rtlil.convert(m, name="top", ports=[]))
    dcca = [(mod, c) for mod, cs in cells.items() for c, (t, _) in cs.items() if t == "DCCA"]
    assert dcca == [("top.por_reset", "dcca")], dcca
    assert cells["top.por_reset"]["dcca"][1]["CLKI"] == "\\q [0]"
