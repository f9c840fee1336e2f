"""Gap decoder: Amaranth simulation against golden.layout, cocotb on Verilator."""

from __future__ import annotations

import gc as gcmod
import random
import warnings

import numpy as np
import pytest
from amaranth.hdl import Value

from proxima.config import preset
from proxima.golden.layout import Layout, encode_frame
from proxima.hdl.gapdec import GapDecoder, GapDecoderError, default_word_bits
from proxima.sim.tb.tb_gapdec import Frame, expected_beats, make_frame, make_frames
from tests.hdl.simulate import simulate


def _simulate(cfg, W, frames: list[Frame], p_valid, p_ready, seed, word_bits=None):
    """Drive frames through the RTL; returns (id beats, code beats, cycles, id cycles)."""
    dut = GapDecoder(cfg, word_bits=word_bits)
    wb = dut.word_bits
    words = [w for f in frames for w in f.words]
    n_ids = sum(len(f.ids) for f in frames)
    n_codes = sum(len(f.codes) for f in frames)
    rnd = random.Random(seed)
    got_ids, got_codes, id_cycles = [], [], []
    state = {"cycles": 0}

    async def bench(ctx):
        ctx.set(dut.gap_width, W)
        ipay = Value.cast(dut.i.payload)
        sent, offering, cycle = 0, False, 0
        while len(got_ids) < n_ids or len(got_codes) < n_codes or sent < len(words):
            assert cycle < 100 * (len(words) + n_ids + 10), "timeout"
            if not offering and sent < len(words) and rnd.random() < p_valid:
                offering = True
                data, last, hot = words[sent]
                ctx.set(ipay, data | (last << wb) | (hot << (wb + 1)))
            ctx.set(dut.i.valid, offering)
            ir, cr = rnd.random() < p_ready, rnd.random() < p_ready
            ctx.set(dut.ids.ready, ir)
            ctx.set(dut.codes.ready, cr)
            if offering and ctx.get(dut.i.ready):
                sent += 1
                offering = False
            if ir and ctx.get(dut.ids.valid):
                pl = ctx.get(dut.ids.payload)
                got_ids.append((pl.id, pl.last, pl.empty, pl.corrupt))
                id_cycles.append(cycle)
            if cr and ctx.get(dut.codes.valid):
                pl = ctx.get(dut.codes.payload)
                got_codes.append((tuple(int(b) for b in pl.code), pl.last, pl.empty,
                                  pl.corrupt))
            await ctx.tick()
            cycle += 1
        state["cycles"] = cycle

    simulate(dut, bench)
    return got_ids, got_codes, state["cycles"], id_cycles


def _check(frames, got_ids, got_codes):
    exp_ids = [b for f in frames for b in f.ids]
    exp_codes = [b for f in frames for b in f.codes]
    for k, (g, e) in enumerate(zip(got_ids, exp_ids)):
        assert g == e, f"id beat {k}: got {g}, expected {e}"
    assert len(got_ids) == len(exp_ids)
    for k, (g, e) in enumerate(zip(got_codes, exp_codes)):
        assert g == e, f"code beat {k}: got {g}, expected {e}"
    assert len(got_codes) == len(exp_codes)


def test_worked_example_from_layout_md():
    """LAYOUT.md section 4: tiny, W=3, row [3, 5, 12], code A1 B2 C3 D4."""
    cfg = preset("tiny")
    lay = Layout(cfg, 3000, 0, 3)
    row = [3, 5, 12] + [-1] * 5
    f = make_frame(lay, np.random.default_rng(0), default_word_bits(cfg), hot=False, row=row)
    raw = encode_frame(lay, row, [0xA1, 0xB2, 0xC3, 0xD4])
    ids, codes = expected_beats(lay, raw, False)
    assert ids == [(3, 0, 0, 0), (5, 0, 0, 0), (12, 1, 0, 0)]
    assert codes == [((0xA1, 0xB2, 0xC3, 0xD4), 1, 0, 0)]
    words = [(int.from_bytes(raw[:4], "little"), 0, 0), (int.from_bytes(raw[4:8], "little"), 0, 0),
             (int.from_bytes(raw[8:10] + bytes(2), "little"), 1, 0)]
    frames = [Frame(words, ids, codes, 3), f]
    gi, gc, _, _ = _simulate(cfg, 3, frames, 1.0, 1.0, 0)
    _check(frames, gi, gc)


@pytest.mark.parametrize("W", [16, 0, 5])
def test_tiny_random_frames_with_stalls(W):
    cfg = preset("tiny")
    lay = Layout(cfg, 1 << cfg.id_bits, 0, W)
    rng = np.random.default_rng(W)
    frames = make_frames(lay, rng, default_word_bits(cfg), 150, p_hot=0.3, p_corrupt=0.05,
                         p_truncate=0.05)
    assert any(f.degree == 0 for f in frames) and any(f.hot for f in frames)
    assert any("truncated" in f.info for f in frames)
    assert any(f.hot and f.degree == 0 for f in frames)
    gi, gc, _, _ = _simulate(cfg, W, frames, 0.7, 0.6, seed=W)
    _check(frames, gi, gc)


def test_default_preset_random_frames():
    cfg = preset("default")
    lay = Layout(cfg, 1 << cfg.id_bits, 0, cfg.id_bits)
    rng = np.random.default_rng(3)
    frames = make_frames(lay, rng, default_word_bits(cfg), 60, p_hot=0.2, p_corrupt=0.05,
                         p_truncate=0.05)
    assert any("corrupt" in f.info for f in frames) and any("truncated" in f.info for f in frames)
    gi, gc, _, _ = _simulate(cfg, cfg.id_bits, frames, 0.8, 0.7, seed=3)
    _check(frames, gi, gc)


def _full_rate_run(count: int, hot: bool, seed: int):
    """``count`` degree-R frames of the default preset (W = id_bits) at full rate, outputs
    checked against the golden decoder: (cfg, cycles, cycle of every id beat)."""
    cfg = preset("default")
    R, B = cfg.graph.R, cfg.id_bits
    lay = Layout(cfg, 1 << B, 0, B)
    rng = np.random.default_rng(seed)
    frames = [make_frame(lay, rng, 64, hot=hot,
                         row=sorted(int(x) for x in rng.choice(1 << B, R, replace=False)))
              for _ in range(count)]
    gi, gc, cycles, idc = _simulate(cfg, B, frames, 1.0, 1.0, seed=seed)
    _check(frames, gi, gc)
    return cfg, cycles, idc


def test_default_full_rate_one_id_per_cycle():
    cfg, cycles, idc = _full_rate_run(6, hot=False, seed=4)
    R = cfg.graph.R
    for t in range(6):
        assert idc[(t + 1) * R - 1] - idc[t * R] == R - 1
    # the first word is accepted in cycle 0; header, first id, then the pipeline
    assert idc[0] == 2 + GapDecoder.PIPE_LATENCY
    # per frame: first word + header + R ids + skip to the code's word + ceil(8C/64)
    # code chunks + drain (13-16 words per frame); measured 39 cycles from one frame's
    # first id to the next's and 237 cycles in all (W = 20, 64-bit words)
    nchunks = -(-8 * cfg.pq_code_bytes // 64)
    for t in range(5):
        period = idc[(t + 1) * R] - idc[t * R]
        assert period <= R + 3 + nchunks + 2, f"frame {t}: {period} cycles"
    assert cycles <= 6 * (R + 7) + GapDecoder.PIPE_LATENCY, f"{cycles} cycles for 6 frames"


def test_default_hot_frames_full_rate():
    """Hot frames: one id and its code every 1 + ceil(8C / word_bits) cycles."""
    cfg, cycles, idc = _full_rate_run(4, hot=True, seed=6)
    R = cfg.graph.R
    step = 1 + -(-8 * cfg.pq_code_bytes // 64)
    for t in range(4):
        span = idc[t * R:(t + 1) * R]
        assert all(b - a == step for a, b in zip(span, span[1:])), span
    # measured 406 cycles (98-103 per frame)
    assert cycles <= 4 * (3 + R * step + 3) + GapDecoder.PIPE_LATENCY


@pytest.mark.parametrize("p_valid,p_ready", [(1.0, 0.15), (0.25, 1.0)])
def test_tiny_backpressure_and_starved_input(p_valid, p_ready):
    """Output FIFOs full most of the time (credits), or the ring nearly empty (the
    registered exact fill test, truncation decided on it)."""
    cfg = preset("tiny")
    lay = Layout(cfg, 1 << cfg.id_bits, 0, 9)
    frames = make_frames(lay, np.random.default_rng(7), default_word_bits(cfg), 80, p_hot=0.4,
                         p_corrupt=0.05, p_truncate=0.1)
    gi, gc, _, _ = _simulate(cfg, 9, frames, p_valid, p_ready, seed=7)
    _check(frames, gi, gc)


def test_word_width_32_on_default_and_bad_parameters():
    cfg = preset("default")
    lay = Layout(cfg, 1 << cfg.id_bits, 0, 12)
    frames = make_frames(lay, np.random.default_rng(5), 32, 40, p_hot=0.3)
    gi, gc, _, _ = _simulate(cfg, 12, frames, 0.9, 0.9, seed=5, word_bits=32)
    _check(frames, gi, gc)
    with warnings.catch_warnings():  # the refused objects are never elaborated
        warnings.filterwarnings("ignore", message=".*created but never used")
        with pytest.raises(GapDecoderError, match="power of two"):
            GapDecoder(cfg, word_bits=48)
        with pytest.raises(GapDecoderError, match=">= id_bits"):
            GapDecoder(cfg, word_bits=16)
        small = preset("tiny").override(["engine.id_bits=8", "graph.R=16"])  # 9 header bits
        with pytest.raises(GapDecoderError, match="header bits"):
            GapDecoder(small, word_bits=8)
        gcmod.collect()


# ---- cocotb on the generated Verilog ---------------------------------------------------
@pytest.mark.rtl
def test_cocotb_gapdec_verilator():
    from proxima.sim.runner import run_cocotb
    cfg = preset("tiny")
    res = run_cocotb(lambda: GapDecoder(cfg), "proxima_gapdec", "proxima.sim.tb.tb_gapdec",
                     cfg=cfg, build_name="gapdec_tiny",
                     parameters={"word_bits": default_word_bits(cfg), "frames": 10_000,
                                 "segments": 5})
    assert res.tests == 2 and res.failed == 0
