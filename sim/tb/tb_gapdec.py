"""cocotb testbench of :class:`proxima.hdl.gapdec.GapDecoder` against golden.layout.

Frames are made with :func:`proxima.golden.layout.encode_frame` /
:func:`~proxima.golden.layout.encode_hot_frame` and the expected output beats with
:func:`~proxima.golden.layout.decode_frame` / :func:`~proxima.golden.layout.decode_hot_frame`
(a frame those reject gives one ``corrupt`` beat).  The frame generator below is shared with
the Amaranth-simulator tests (``tests/hdl/test_gapdec.py``).

Parameters (``PROXIMA_TB_PARAMS``): ``word_bits``, ``frames`` (>= 10k for sign-off),
``segments`` (the slot width ``W`` register changes between segments, while the decoder is
idle), ``p_valid`` / ``p_ready`` (per-cycle probability of offering a word / accepting an
output beat), ``p_hot``, ``p_corrupt``, ``p_truncate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from proxima.golden.layout import (
    Layout, LayoutError, decode_frame, decode_hot_frame, encode_frame, encode_hot_frame,
    row_gap_width,
)


# ---------------------------------------------------------------------------------------
# Frame generation (no cocotb needed)
# ---------------------------------------------------------------------------------------
@dataclass
class Frame:
    words: list[tuple[int, int, int]]            # (data, last, hot) per beat
    ids: list[tuple[int, int, int, int]]         # (id, last, empty, corrupt)
    codes: list[tuple[tuple[int, ...], int, int, int]]  # (code bytes, last, empty, corrupt)
    degree: int = 0
    hot: bool = False
    info: dict = field(default_factory=dict)


def random_row(rng: np.random.Generator, R: int, n: int, W: int) -> list[int]:
    """A padded row of ``d`` ascending ids (d uniform in 0..R) with gap width <= ``W``;
    gaps of every width 0..W occur, first ids span the whole range 0..n-1."""
    d = int(rng.integers(0, R + 1))
    if d == 0:
        return [-1] * R
    tw = int(rng.integers(0, W + 1))
    widths = rng.integers(0, tw + 1, size=d - 1)
    gaps = [int(rng.integers(0, 1 << int(b))) if b else 0 for b in widths]
    if d > 1 and tw > 0:
        gaps[int(rng.integers(0, d - 1))] = int(rng.integers(1 << (tw - 1), 1 << tw))
    while sum(gaps) >= n:
        big = max(range(len(gaps)), key=lambda t: gaps[t])
        gaps = [g if t == big else g // 2 for t, g in enumerate(gaps)]
        if sum(gaps) >= n:
            gaps[big] //= 2
    first = int(rng.integers(0, n - sum(gaps)))
    ids = [first]
    for g in gaps:
        ids.append(ids[-1] + g)
    return ids + [-1] * (R - d)


def _words(frame: bytes, nbytes: int, word_bits: int, hot: int) -> list[tuple[int, int, int]]:
    wbytes = word_bits // 8
    nwords = -(-nbytes // wbytes)
    buf = bytes(frame[:nbytes]) + bytes(nwords * wbytes - min(nbytes, len(frame)))
    out = []
    for t in range(nwords):
        out.append((int.from_bytes(buf[t * wbytes:(t + 1) * wbytes], "little"),
                    int(t == nwords - 1), hot))
    return out


def expected_beats(layout: Layout, frame: bytes, hot: bool, nbits: int | None = None):
    """Golden output beats of one frame as the RTL must emit them: ``(ids, codes)`` with
    id beats ``(id, last, empty, corrupt)`` and code beats ``(bytes, last, empty, corrupt)``.

    ``nbits``: bits the producer actually delivered (``None``: the whole frame).  Fields are
    emitted in frame order while they lie within the delivered bits; a frame the golden
    decoder rejects, or one cut short, closes each unfinished stream with a corrupt beat
    (the contract in :mod:`proxima.hdl.gapdec`)."""
    C = layout.code_bytes
    zero = tuple([0] * C)
    closing_ids, closing_code = (0, 1, 1, 1), (zero, 1, 1, 1)
    try:
        if hot:
            row, codes = decode_hot_frame(layout, frame)
        else:
            row, code = decode_frame(layout, frame)
    except LayoutError:
        return [closing_ids], [closing_code]
    ids = [int(x) for x in row if x >= 0]
    d = len(ids)
    w = row_gap_width(ids)
    B, HB, cb = layout.id_bits, layout.header_bits, 8 * C
    nbits = 1 << 62 if nbits is None else nbits
    # (kind, end bit, beat) in frame order
    items = []
    if hot:
        for t in range(d):
            id_end = HB + B if t == 0 else HB + B + cb + (t - 1) * (w + cb) + w
            items.append(("id", id_end, (ids[t], int(t == d - 1), 0, 0)))
            items.append(("code", id_end + cb,
                          (tuple(int(b) for b in codes[t]), int(t == d - 1), 0, 0)))
        if d == 0:
            items = [("id", HB, (0, 1, 1, 0)), ("code", HB, (zero, 1, 1, 0))]
    else:
        items = [("id", HB + B + t * w, (ids[t], int(t == d - 1), 0, 0))
                 for t in range(d)] or [("id", HB, (0, 1, 1, 0))]
        items.append(("code", 8 * (layout.code_offset + C),
                      (tuple(int(b) for b in code), 1, 0, 0)))
    id_beats, code_beats = [], []
    for kind, end, beat in items:
        if end > nbits:
            break
        (id_beats if kind == "id" else code_beats).append(beat)
    if not id_beats or not id_beats[-1][1]:
        id_beats.append(closing_ids)
    if not code_beats or not code_beats[-1][1]:
        code_beats.append(closing_code)
    return id_beats, code_beats


def make_frame(layout: Layout, rng: np.random.Generator, word_bits: int, *, hot: bool,
               corrupt: bool = False, truncate: bool = False,
               row: list[int] | None = None) -> Frame:
    """One random frame (normal or hot) as input words, with its golden output beats.

    The producer sends either just the words covering the frame or the whole stride /
    access chunk (random), as a NAND controller may.  ``corrupt`` overwrites the header
    with a degree > R or a gap width > W when the field can hold one; ``truncate`` sends
    only the first 1 .. (words covering the frame) - 1 words."""
    R, n, C = layout.R, layout.n, layout.code_bytes
    row = random_row(rng, R, n, layout.gap_width) if row is None else list(row)
    d = sum(1 for x in row if x >= 0)
    if hot:
        ids = [x for x in row if x >= 0]
        codes = {v: rng.integers(0, 256, C, dtype=np.uint8) for v in ids}
        raw = encode_hot_frame(layout, row, codes)
        need = layout.hot_frame_bytes
        full = len(raw)
    else:
        code = rng.integers(0, 256, C, dtype=np.uint8)
        raw = encode_frame(layout, row, code)
        need = layout.frame_bytes
        full = layout.stride
    info = {"row": row}
    if corrupt:
        acc = bytearray(raw)
        hdr = int.from_bytes(acc[:2], "little")
        DB, WB = layout.deg_bits, layout.width_bits
        choices = []
        if (1 << DB) - 1 > R:
            choices.append(("d", int(rng.integers(R + 1, 1 << DB))))
        if (1 << WB) - 1 > layout.gap_width:
            choices.append(("w", int(rng.integers(layout.gap_width + 1, 1 << WB))))
        if choices:
            kind, val = choices[int(rng.integers(0, len(choices)))]
            if kind == "d":
                hdr = (hdr & ~((1 << DB) - 1)) | val
            else:
                hdr = (hdr & ~(((1 << WB) - 1) << DB)) | (val << DB)
            acc[:2] = hdr.to_bytes(2, "little")
            raw = bytes(acc)
            info["corrupt"] = kind
    nbytes = need if rng.random() < 0.5 else full
    frame_bytes = bytes(raw) + bytes(max(0, nbytes - len(raw)))
    nbits = None
    wbytes = word_bits // 8
    if truncate and -(-need // wbytes) > 1:
        nbytes = int(rng.integers(1, -(-need // wbytes))) * wbytes
        nbits = 8 * nbytes
        info["truncated"] = nbytes
    ids, code_beats = expected_beats(layout, frame_bytes, hot, nbits)
    return Frame(_words(frame_bytes, nbytes, word_bits, int(hot)), ids, code_beats, d, hot, info)


def make_frames(layout: Layout, rng: np.random.Generator, word_bits: int, count: int,
                p_hot: float = 0.25, p_corrupt: float = 0.02,
                p_truncate: float = 0.02) -> list[Frame]:
    out = []
    for _ in range(count):
        hot = bool(rng.random() < p_hot)
        out.append(make_frame(layout, rng, word_bits, hot=hot,
                              corrupt=bool(rng.random() < p_corrupt),
                              truncate=bool(rng.random() < p_truncate)))
    return out


# ---------------------------------------------------------------------------------------
# cocotb
# ---------------------------------------------------------------------------------------
try:
    import cocotb
    from cocotb.triggers import RisingEdge

    from proxima.sim.tb import bench
except ImportError:  # pragma: no cover - the generator above is usable without cocotb
    cocotb = None


def _flags(v: int, at: int) -> tuple[int, int, int]:
    """``(last, empty, corrupt)`` above the value field of an output beat."""
    return (v >> at) & 1, (v >> (at + 1)) & 1, (v >> (at + 2)) & 1


def _unpack_id(v: int, B: int):
    return (v & ((1 << B) - 1), *_flags(v, B))


def _unpack_code(v: int, C: int):
    return (tuple((v >> (8 * m)) & 0xFF for m in range(C)), *_flags(v, 8 * C))


def _pack_word(word: tuple[int, int, int], word_bits: int) -> int:
    data, last, hot = word
    return data | (last << word_bits) | (hot << (word_bits + 1))


async def _reset(dut):
    await bench.reset(dut, inputs=["i"], outputs=["ids", "codes"])


async def _run_segment(dut, frames: list[Frame], word_bits: int, B: int, C: int,
                       p_valid: float, p_ready: float, rnd, max_cycles: int):
    """Stream ``frames`` in, every id and code beat checked in order against the golden
    beats; returns (cycles, id beats, code beats)."""
    words = [_pack_word(w, word_bits) for f in frames for w in f.words]
    ids = bench.Scoreboard([b for f in frames for b in f.ids], "id beat")
    codes = bench.Scoreboard([b for f in frames for b in f.codes], "code beat")
    agents = [bench.Source(dut, "i", words, p_valid),
              bench.Sink(dut, "ids", p_ready, check=ids, unpack=lambda v: _unpack_id(v, B),
                         keep=False),
              bench.Sink(dut, "codes", p_ready, check=codes,
                         unpack=lambda v: _unpack_code(v, C), keep=False)]
    cycles = await bench.run(dut, agents, rnd, max_cycles=max_cycles)
    return cycles, ids.count, codes.count


if cocotb is not None:
    @cocotb.test()
    async def random_frames_with_stalls(dut):
        """>= 10k random normal/hot/corrupt frames, W changed between segments, stalls."""
        cfg, p, rnd, rng = bench.setup()
        wb = int(p["word_bits"])
        B, C = cfg.id_bits, cfg.pq_code_bytes
        total = int(p.get("frames", 10_000))
        segments = int(p.get("segments", 5))
        await _reset(dut)
        widths = [B] + [int(rng.integers(0, B + 1)) for _ in range(segments - 1)]
        stats = {"frames": 0, "ids": 0, "codes": 0, "cycles": 0, "hot": 0, "corrupt": 0,
                 "truncated": 0, "deg0": 0}
        for s, W in enumerate(widths):
            layout = Layout(cfg, 1 << B, 0, W)
            count = total // segments + (s < total % segments)
            frames = make_frames(layout, rng, wb, count, float(p.get("p_hot", 0.25)),
                                 float(p.get("p_corrupt", 0.02)),
                                 float(p.get("p_truncate", 0.02)))
            dut.gap_width.value = W
            await RisingEdge(dut.clk)
            cyc, ni, nc = await _run_segment(
                dut, frames, wb, B, C, float(p.get("p_valid", 0.7)),
                float(p.get("p_ready", 0.7)), rnd, 200 * sum(len(f.words) + f.degree + 4
                                                            for f in frames))
            stats["frames"] += count
            stats["ids"] += ni
            stats["codes"] += nc
            stats["cycles"] += cyc
            stats["hot"] += sum(f.hot for f in frames)
            stats["corrupt"] += sum("corrupt" in f.info for f in frames)
            stats["truncated"] += sum("truncated" in f.info for f in frames)
            stats["deg0"] += sum(f.degree == 0 for f in frames)
        assert stats["frames"] >= total and stats["hot"] > 0 and stats["deg0"] > 0
        assert stats["corrupt"] > 0 and stats["truncated"] > 0
        dut._log.info("gap decoder: %s", stats)

    @cocotb.test()
    async def full_rate_one_id_per_cycle(dut):
        """Degree-R rows, valid/ready always high: ids of a frame on consecutive cycles."""
        from proxima.sim.runner import tb_config, tb_params
        cfg = tb_config()
        p = tb_params()
        wb = int(p["word_bits"])
        B, R = cfg.id_bits, cfg.graph.R
        rng = np.random.default_rng(cocotb.RANDOM_SEED + 1)
        layout = Layout(cfg, 1 << B, 0, B)
        await _reset(dut)
        dut.gap_width.value = B
        frames = []
        for _ in range(20):
            ids = sorted(int(x) for x in rng.choice(1 << B, R, replace=False))
            frames.append(make_frame(layout, rng, wb, hot=False, row=ids))
        words = [_pack_word(w, wb) for f in frames for w in f.words]
        source = bench.Source(dut, "i", words)
        ids = bench.Sink(dut, "ids", unpack=lambda v: _unpack_id(v, B), limit=20 * R)
        codes = bench.Sink(dut, "codes", keep=False)
        cycle = await bench.run(dut, [source, ids, codes], max_cycles=40 * len(words),
                                until=lambda: ids.done)
        got, id_cycles = ids.beats, ids.cycles
        assert got == [b for f in frames for b in f.ids]
        for t in range(20):
            span = id_cycles[t * R:(t + 1) * R]
            assert span[-1] - span[0] == R - 1, f"frame {t}: ids not on consecutive cycles {span}"
        dut._log.info("full rate: %d frames of degree %d in %d cycles", 20, R, cycle)
