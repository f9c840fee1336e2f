"""Frame format, gap encoding, hot frames, address mapping and events -> reads."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxima.config import preset
from proxima.golden.layout import (Layout, LayoutError, Read, decode_frame, decode_frames,
                                   decode_hot_frame, decode_hot_frames, encode_frame,
                                   encode_frames, encode_hot_frame, encode_hot_frames,
                                   gap_widths, reads_for_events, row_gap_width, _round_stride)

TINY = preset("tiny")  # R=8, id_bits=16, M=4 (C=4), 4 index cores, 2 raw cores, A=128, P=4096
PAPER = preset("paper")


def _rows(draw_ids, R):
    row = np.full(R, -1, dtype=np.int32)
    row[:len(draw_ids)] = sorted(draw_ids)
    return row


@st.composite
def graph_rows(draw, max_rows=12):
    """(cfg, n, rows (m, R), codes (n, C)) with random R, id_bits and degrees."""
    R = draw(st.integers(2, 24))
    id_bits = draw(st.integers(4, 24))
    cfg = TINY.with_(graph={"R": R, "build_L": max(R, 16)},
                     engine={"id_bits": id_bits, "sorter_n": max(16, 1 << (R - 1).bit_length())},
                     nand={"pages_per_core": 1 << 24})
    n = draw(st.integers(1, 1 << id_bits))
    m = draw(st.integers(1, max_rows))
    rows = np.full((m, R), -1, dtype=np.int32)
    for i in range(m):
        d = draw(st.integers(0, R))
        ids = draw(st.lists(st.integers(0, n - 1), min_size=d, max_size=d))
        rows[i, :d] = sorted(ids)
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    # codes of every vertex a row can name (ids above 4095 share codes: the arrays stay small)
    codes = rng.integers(0, 256, (min(n, 4096), cfg.pq_code_bytes), dtype=np.uint8)
    own = rng.integers(0, 256, (m, cfg.pq_code_bytes), dtype=np.uint8)
    return cfg, n, rows, codes, own


class _CodeView:
    """codes[v] = small[v % len(small)] for any id array v (a code table for up to 2**24 ids)."""

    def __init__(self, small, n):
        self.small = small
        self.shape = (n, small.shape[1])

    def __getitem__(self, v):
        return self.small[np.asarray(v) % len(self.small)]


@settings(max_examples=100, deadline=None)
@given(graph_rows())
def test_round_trip_scalar_and_vectorised(data):
    cfg, n, rows, small_codes, own = data
    W = int(gap_widths(rows).max(initial=0))
    lay = Layout(cfg, n, min(n, len(rows)), W)
    codes = _CodeView(small_codes, n)
    frames = encode_frames(lay, rows, own)
    hot = encode_hot_frames(lay, rows, codes)
    for i, row in enumerate(rows):
        f = encode_frame(lay, row, own[i])
        assert len(f) == lay.frame_bytes
        assert f == frames[i].tobytes()
        r, c = decode_frame(lay, f)
        assert np.array_equal(r, row) and np.array_equal(c, own[i])
        h = encode_hot_frame(lay, row, codes)
        assert len(h) == lay.hot_accesses * lay.access
        assert h == hot[i].tobytes()
        hr, hc = decode_hot_frame(lay, h)
        d = int((row >= 0).sum())
        assert np.array_equal(hr, row)
        assert np.array_equal(hc[:d], codes[row[:d]]) and not hc[d:].any()
    r2, c2 = decode_frames(lay, frames)
    assert np.array_equal(r2, rows) and np.array_equal(c2, own)
    h2, hc2 = decode_hot_frames(lay, hot)
    assert np.array_equal(h2, rows)
    live = rows >= 0
    assert np.array_equal(hc2[live], codes[rows[live]])


def test_gap_width_examples():
    assert row_gap_width([]) == 0
    assert row_gap_width([7]) == 0
    assert row_gap_width([3, 3]) == 0
    assert row_gap_width([3, 5, 12]) == 3  # gaps 2, 7
    assert row_gap_width([0, 8]) == 4
    nb = np.array([[3, 5, 12, -1], [0, 8, -1, -1], [1, -1, -1, -1], [-1] * 4], dtype=np.int32)
    assert gap_widths(nb).tolist() == [3, 4, 0, 0]


def test_frame_bits_by_hand():
    """tiny: DB = bitlen(8) = 4, WB = bitlen(16) = 5, B = 16; row [3, 5, 12], W = 3."""
    lay = Layout(TINY, 100, 0, 3)
    assert (lay.deg_bits, lay.width_bits, lay.header_bits) == (4, 5, 9)
    assert lay.id_region_bits == 9 + 16 + 7 * 3 == 46
    assert lay.code_offset == 6 and lay.frame_bytes == 10 and lay.stride == 16
    row = [3, 5, 12] + [-1] * 5
    f = encode_frame(lay, row, [0xA1, 0xB2, 0xC3, 0xD4])
    expect = 3 | (3 << 4) | (3 << 9) | (2 << 25) | (7 << 28)
    assert int.from_bytes(f[:6], "little") == expect
    assert f[6:] == bytes([0xA1, 0xB2, 0xC3, 0xD4])


def test_hot_frame_bits_by_hand():
    lay = Layout(TINY, 100, 1, 3)
    codes = np.zeros((100, 4), dtype=np.uint8)
    codes[3] = [1, 2, 3, 4]
    codes[5] = [5, 6, 7, 8]
    row = [3, 5] + [-1] * 6
    f = encode_hot_frame(lay, row, codes)
    acc = int.from_bytes(f, "little")
    c3, c5 = int.from_bytes(bytes([1, 2, 3, 4]), "little"), int.from_bytes(bytes([5, 6, 7, 8]),
                                                                          "little")
    # header (d=2, w=2) | id 3 at bit 9 | code(3) at 25 | gap 2 at 57 | code(5) at 59
    expect = 2 | (2 << 4) | (3 << 9) | (c3 << 25) | (2 << 57) | (c5 << 59)
    assert acc == expect
    assert lay.hot_frame_bits == 9 + 16 + 32 + 7 * (3 + 32)


def test_paper_frame_sizes():
    lay = Layout(PAPER, 1_000_000, 30_000, 20)
    assert lay.id_region_bits == 7 + 5 + 27 + 63 * 20  # 1299 bits
    assert lay.id_region_bytes == 163 and lay.code_offset == 163
    assert lay.frame_bytes == 195 and lay.stride == 256  # two 128 B accesses
    assert len(lay.frame_reads(40_000)) == 2 and len(lay.code_reads(40_000)) == 1
    assert lay.code_reads(40_000)[0].offset % 256 == 128
    assert lay.hot_frame_bits == 12 + 27 + 256 + 63 * (20 + 256)
    assert lay.hot_accesses == 18
    assert len({r.core for r in lay.frame_reads(7)}) == 18  # striped over 18 cores


def test_code_never_straddles_an_access():
    # R = 32, W = 27: id region 12+27+31*27 = 876 bits = 110 B; 110 + 32 > 128 so the 32 B code
    # moves to the next access
    cfg = PAPER.with_(graph={"R": 32, "build_L": 128})
    lay = Layout(cfg, 1000, 0, 27)
    assert lay.id_region_bytes == 110
    assert lay.code_offset == 128 and lay.frame_bytes == 160 and lay.stride == 256
    assert len(lay.code_reads(5)) == 1


def test_stride_rounding():
    assert [_round_stride(b, 128) for b in (1, 3, 15, 16, 17, 100, 128, 129, 256, 300)] == \
        [1, 4, 16, 16, 32, 128, 128, 256, 256, 384]


def test_bad_rows_and_frames():
    lay = Layout(TINY, 100, 0, 6)
    code = [0] * 4
    with pytest.raises(LayoutError, match="sorted"):
        encode_frame(lay, [5, 3] + [-1] * 6, code)
    with pytest.raises(LayoutError, match="padding"):
        encode_frame(lay, [3, -1, 5] + [-1] * 5, code)
    with pytest.raises(LayoutError, match=">= N"):
        encode_frame(lay, [3, 100] + [-1] * 6, code)
    with pytest.raises(LayoutError, match="slot width"):
        encode_frame(lay, [0, 64] + [-1] * 6, code)  # gap 64 needs 7 bits > W = 6
    with pytest.raises(LayoutError, match="slots"):
        encode_frame(lay, [1, 2], code)
    with pytest.raises(LayoutError, match="PQ code"):
        encode_frame(lay, [1] + [-1] * 7, [0] * 3)
    with pytest.raises(LayoutError, match="slot width"):
        encode_frames(lay, np.array([[0, 64] + [-1] * 6], dtype=np.int32),
                      np.zeros((1, 4), np.uint8))
    with pytest.raises(LayoutError, match="padding"):
        encode_frames(lay, np.array([[-1, 3] + [-1] * 6], dtype=np.int32),
                      np.zeros((1, 4), np.uint8))
    good = bytearray(encode_frame(lay, [1, 2] + [-1] * 6, code))
    bad = bytearray(good)
    bad[0] = (bad[0] & 0xF0) | 9  # degree 9 > R
    with pytest.raises(LayoutError, match="degree"):
        decode_frame(lay, bytes(bad))
    with pytest.raises(LayoutError, match="degree"):
        decode_frames(lay, np.frombuffer(bytes(bad), np.uint8)[None, :])
    bad = bytearray(good)
    bad[0] |= 0xF0  # width field low bits -> w = 15 + ... > 6
    with pytest.raises(LayoutError, match="width"):
        decode_frame(lay, bytes(bad))
    bad = bytearray(good)
    bad[3] |= 0x80  # a bit in gap slot 3 while degree is 2
    with pytest.raises(LayoutError, match="padding"):
        decode_frames(lay, np.frombuffer(bytes(bad), np.uint8)[None, :])


def test_layout_geometry_errors():
    with pytest.raises(LayoutError, match="id_bits"):
        Layout(TINY, 10, 0, 17)
    with pytest.raises(LayoutError, match="hot"):
        Layout(TINY, 10, 11, 3)
    with pytest.raises(LayoutError, match="N ="):
        Layout(TINY, 0, 0, 3)
    small = TINY.with_(nand={"pages_per_core": 1, "raw_vector_cores": 4})
    with pytest.raises(LayoutError, match="pages per core"):
        Layout(small, 4 * 256 + 1, 0, 3)  # 257 frames of 16 B on a core: 2 pages
    Layout(small, 4 * 256, 0, 3)


def test_mapping_arithmetic_by_hand():
    # tiny: Ci = 4, Cr = 2, A = 128, P = 4096, W = 3 -> stride 16, 256 frames per page
    lay = Layout(TINY, 3000, 10, 3)
    assert lay.hot_accesses == 1  # 9+16+32+7*35 = 302 bits -> 38 B -> 1 access
    assert lay.hot_pages == 1  # 10 chunks over 4 cores: 3 per core, 32 per page
    assert lay.frame_address(0) == (0, 1, 0)
    assert lay.frame_address(5) == (1, 1, 16)
    assert lay.frame_address(4 * 256 + 7) == (3, 2, 16 * 1)  # slot 257 -> page 1+1, slot 1
    assert lay.hot_chunk_address(9, 0) == (1, 0, 2 * 128)  # chunk 9 -> core 1, local 2
    assert lay.raw_address(5) == (4 + 1, 0, 2 * 16)  # vector 16 B: raw core 1, slot 2
    assert lay.raw_address(2 * 256) == (4, 1, 0)
    with pytest.raises(LayoutError, match="not hot"):
        lay.hot_chunk_address(10, 0)
    with pytest.raises(LayoutError, match="out of range"):
        lay.frame_address(3000)


def test_mapping_is_injective_and_round_robin():
    cfg = PAPER.with_(nand={"cores": 8, "raw_vector_cores": 3, "page_bytes": 1024})
    lay = Layout(cfg, 2000, 37, 11)
    K = lay.hot_accesses
    assert K > 1
    used: dict[tuple[int, int], int] = {}
    P = cfg.nand.page_bytes

    def mark(core, page, off, nbytes, who):
        assert 0 <= off and off + nbytes <= P
        for b in range(off, off + nbytes, 8):
            key = (core, page * P + b)
            assert key not in used, (who, used.get(key))
            used[key] = who

    for v in range(lay.n):
        c, p, o = lay.frame_address(v)
        assert c == v % 8
        assert p >= lay.hot_pages
        mark(c, p, o, lay.stride, ("f", v))
    for v in range(lay.hot):
        cores = [lay.hot_chunk_address(v, a)[0] for a in range(K)]
        assert cores == [(v * K + a) % 8 for a in range(K)]
        for a in range(K):
            c, p, o = lay.hot_chunk_address(v, a)
            assert p < lay.hot_pages
            mark(c, p, o, lay.access, ("h", v, a))
    raw = set()
    for u in range(lay.n):
        c, p, o = lay.raw_address(u)
        assert c == 8 + u % 3
        assert (c, p, o) not in raw
        raw.add((c, p, o))
    # vectorised addresses agree with the scalar ones
    vs = np.arange(lay.n)
    core, addr = lay.frame_byte_addresses(vs)
    assert all((int(core[v]), int(addr[v])) ==
               (lay.frame_address(v)[0], lay.frame_address(v)[1] * P + lay.frame_address(v)[2])
               for v in range(0, lay.n, 7))


def test_reads_for_events():
    lay = Layout(TINY, 3000, 10, 3)
    A = 128
    ev = [("code", 0), ("frame", 0), ("code", 11), ("code", 12), ("frame", 20),
          ("code", 13), ("raw", 5), ("raw", 6)]
    reads = reads_for_events(ev, lay)
    assert reads == [
        Read(0, 1, 0, A, "code"),  # entry's code: normal frame of 0, code at byte 6 of 16
        Read(0, 0, 0, A, "frame"),  # hot frame of 0: chunk 0 on core 0
        # codes 11, 12 came with the hot frame: no reads
        Read(0, 1, 0, A, "frame"),  # frame 20: core 0, slot 5, byte 80 of access 0
        Read(1, 1, 0, A, "code"),  # code 13: core 1, slot 3 -> byte 48 + 6
        Read(5, 0, 0, A, "raw"),  # raw 5: raw core 1 (global 5), slot 2
        Read(4, 0, 0, A, "raw"),  # raw 6: raw core 0, slot 3
    ]
    with pytest.raises(LayoutError, match="unknown event"):
        reads_for_events([("bogus", 1)], lay)


def test_access_counts_are_the_same_for_every_vertex():
    for cfg, W in ((TINY, 3), (PAPER, 20), (PAPER.with_(nand={"page_bytes": 1024}), 7)):
        lay = Layout(cfg, 5000, 40, W)
        for v in range(40, 5000, 37):
            assert len(lay.frame_reads(v)) == lay.frame_access_count
            assert len(lay.code_reads(v)) == lay.code_access_count
            assert len(lay.raw_reads(v)) == lay.raw_access_count


def test_hot_copies_addresses_image_and_timing(tmp_path):
    """``layout.hot_copies``: copy c of every hot chunk sits on copy 0's core rotated by
    c * S, in its own pages; the image holds every copy (a disagreeing copy is refused); the
    timing model's cores are the reads' cores of the query's copy."""
    from proxima.golden.image import ImageError, read_image, write_image
    from proxima.golden.layout import encode_hot_frames, reads_for_events
    from proxima.golden.nand import TimingParams, phases_for_events

    from .test_image import _refresh_crcs, _table, make_index

    cfg = TINY.with_(layout={"hot_copies": 2}, graph={"R": 16},
                     nand={"access_bytes": 16, "page_bytes": 512, "cores": 5})
    ix = make_index(n=300, hot=9, seed=4, cfg=cfg)
    lay = write_image(tmp_path / "c", ix)
    assert (lay.hot_copies, lay.copy_shift) == (2, 2)
    assert lay.hot_pages == 2 * lay.hot_copy_pages
    im = read_image(tmp_path / "c")
    assert np.array_equal(im.index.neighbors, ix.neighbors)
    hot = encode_hot_frames(lay, ix.neighbors[:9], ix.codes)
    P, A = cfg.nand.page_bytes, lay.access
    for c in range(2):
        for v in range(9):
            for a in range(lay.hot_accesses):
                core, page, off = lay.hot_chunk_address(v, a, c)
                assert core == (v * lay.hot_accesses + a + 2 * c) % 5
                got = im.frames[core, page * P + off:page * P + off + A]
                assert np.array_equal(got, hot[v, a * A:(a + 1) * A])
    with pytest.raises(LayoutError, match="hot copy 2"):
        lay.hot_chunk_address(0, 0, 2)
    ev = [("code", 0), ("frame", 0), ("code", 5), ("frame", 40), ("code", 7), ("raw", 3)]
    p = TimingParams.from_cfg(cfg)
    assert reads_for_events(ev[:1], lay) == []  # the entry's code: held by the engine
    assert len(reads_for_events(ev[:1], Layout(TINY, 300, 9, 5))) == 1  # one copy: read
    for c in range(2):
        ph = phases_for_events(ev, lay, p, copy=c)
        assert [x for f in ph for x in f.cores] == [r.core for r in reads_for_events(ev, lay, c)]
    data = bytearray((tmp_path / "c").read_bytes())
    off = _table(bytes(data))["frames"][0]
    core, page, o = lay.hot_chunk_address(3, 0, 1)
    data[off + core * lay.index_core_bytes + page * P + o] ^= 1
    _refresh_crcs(data)
    (tmp_path / "c").write_bytes(bytes(data))
    with pytest.raises(ImageError, match="hot copy 1"):
        read_image(tmp_path / "c")


def test_rtl_hot_chunk_location_follows_the_copies():
    """hdl/nandctl.hot_chunk_location(copy=) is the RTL twin of hot_chunk_address(copy)."""
    from amaranth import Module, Signal
    from amaranth.sim import Simulator

    from proxima.hdl.nandctl import hot_chunk_location

    lay = Layout(TINY.with_(layout={"hot_copies": 3}, nand={"cores": 5}), 300, 9, 5)
    m = Module()
    v, a, c = Signal(16), Signal(8), Signal(4)
    outs = [Signal(16) for _ in range(3)]
    m.d.comb += [o.eq(e) for o, e in zip(outs, hot_chunk_location(lay.cfg, lay, v, a, c))]
    got, want = [], []

    async def tb(ctx):
        for vv in range(9):
            for aa in range(lay.hot_accesses):
                for cc in range(3):
                    ctx.set(v, vv)
                    ctx.set(a, aa)
                    ctx.set(c, cc)
                    got.append(tuple(ctx.get(o) for o in outs))
                    want.append(lay.hot_chunk_address(vv, aa, cc))

    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()
    assert got == want


# ---- run-time geometry registers ---------------------------------------------------------
def _reachable_fpps(cfg):
    """Frames per page of every slot width the configuration allows."""
    out = set()
    for w in range(cfg.id_bits + 1):
        try:
            out.add(Layout(cfg, 1, 0, w).frames_per_page)
        except LayoutError:
            pass
    return out


@pytest.mark.parametrize("name", ["tiny", "default", "paper"])
def test_reciprocal_division_is_exact_over_the_capacity(name):
    """``j // fpp == (j * fpp_recip) >> s`` for every slot ``j`` of the configuration and
    every ``fpp`` (all of 1..P for tiny and default, every reachable one for paper), and
    ``Layout.registers()`` carries that reciprocal."""
    from proxima.golden.layout import div_by_reciprocal, fpp_reciprocal, slot_bits
    cfg = preset(name)
    j = np.arange(1 << slot_bits(cfg), dtype=np.int64)
    fpps = range(1, cfg.nand.page_bytes + 1) if name != "paper" else sorted(_reachable_fpps(cfg))
    for fpp in fpps:
        r = fpp_reciprocal(cfg, fpp)
        if name == "paper":  # products beyond int64: Python integers on a sample + the ends
            js = list(range(0, 1 << 12)) + list(range((1 << slot_bits(cfg)) - 4096,
                                                     1 << slot_bits(cfg)))
            assert all(div_by_reciprocal(cfg, x, r) == x // fpp for x in js), fpp
        else:
            assert np.array_equal(div_by_reciprocal(cfg, j, r), j // fpp), fpp
    lay = Layout(cfg, 1000, 10, 7)
    assert lay.registers().fpp_recip == fpp_reciprocal(cfg, lay.frames_per_page)
    with pytest.raises(LayoutError, match="frames per page"):
        fpp_reciprocal(cfg, 0)


def test_geometry_registers_and_bounds():
    """The register record is the layout's own numbers; the bounds hold every image's."""
    from proxima.golden.layout import GEOMETRY_FIELDS, geometry_bounds
    cfg = preset("tiny")
    b = geometry_bounds(cfg)
    rng = np.random.default_rng(1)
    for _ in range(50):
        n = int(rng.integers(1, cfg.engine.max_vertices + 1))
        lay = Layout(cfg, n, int(rng.integers(0, n + 1)), int(rng.integers(0, cfg.id_bits + 1)))
        g = lay.registers()
        assert (g.n, g.hot, g.gap_width, g.hot_accesses, g.hot_pages, g.code_offset, g.stride,
                g.frames_per_page, g.frame_accesses, g.code_accesses) == (
            lay.n, lay.hot, lay.gap_width, lay.hot_accesses, lay.hot_pages, lay.code_offset,
            lay.stride, lay.frames_per_page, lay.frame_access_count, lay.code_access_count)
        assert all(getattr(g, f) <= getattr(b, f) for f in GEOMETRY_FIELDS)


@pytest.mark.parametrize("changes", [
    {},
    {"nand": {"access_bytes": 8, "cores": 3, "raw_vector_cores": 3}, "pq": {"M": 8}},
    {"layout": {"hot_copies": 2}, "nand": {"cores": 6}},
])
def test_rtl_locations_from_registers_match_layout(changes):
    """hdl/nandctl.frame_location / hot_chunk_location / raw_location with the geometry as
    run-time registers (one elaboration) equal Layout's addresses over random geometries
    and vertices (power-of-two and other frames per page, hot copies)."""
    from amaranth import Module, Signal
    from amaranth.lib import data
    from amaranth.sim import Simulator

    from proxima.hdl.nandctl import (frame_location, geometry_init, geometry_layout,
                                     hot_chunk_location, raw_location)

    cfg = TINY.with_(**changes)
    X = cfg.layout.hot_copies
    m = Module()
    g = data.View(geometry_layout(cfg), Signal(geometry_layout(cfg)))
    v, a, c = Signal(cfg.id_bits), Signal(8), Signal(4)
    exprs = (list(frame_location(cfg, g, v)) + list(hot_chunk_location(cfg, g, v, a, c))
             + list(raw_location(cfg, v)))
    outs = [Signal(32) for _ in exprs]
    m.d.comb += [o.eq(e) for o, e in zip(outs, exprs)]
    got, want = [], []
    rng = np.random.default_rng(5)
    fpps = set()

    async def tb(ctx):
        for _ in range(12):
            n = int(rng.integers(1, 20_000))
            hot = int(rng.integers(0, min(n, 500) + 1))
            lay = Layout(cfg, n, hot, int(rng.integers(0, cfg.id_bits + 1)))
            fpps.add(lay.frames_per_page)
            ctx.set(g, geometry_init(lay))
            for _ in range(40):
                vv = int(rng.integers(0, hot if hot and rng.random() < 0.5 else n))
                cc = int(rng.integers(0, X))
                aa = int(rng.integers(0, lay.hot_accesses))
                ctx.set(v, vv)
                ctx.set(a, aa)
                ctx.set(c, cc)
                got.append(tuple(ctx.get(o) for o in outs))
                h = lay.hot_chunk_address(vv, aa, cc) if vv < hot else None
                want.append(lay.frame_address(vv) + (h or tuple(got[-1][3:6]))
                            + lay.raw_address(vv))

    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()
    assert got == want
    assert len(fpps) > 1


# ---- code copies (hot vertices' normal frames, core-rotated per hot copy) -----------------
def _copies_cfg(X=3, frac=1.0):
    return TINY.with_(layout={"hot_copies": X, "code_copy_fraction": frac}, graph={"R": 16},
                      nand={"access_bytes": 16, "page_bytes": 128, "cores": 5})


@pytest.mark.parametrize("frac,Hc", [(1.0, 300), (0.08, 24), (0.0, 0)])
def test_code_copies_addresses_image_reads_and_timing(tmp_path, frac, Hc):
    """With X hot copies the image holds copies 1..X-1 of the normal frames of vertices
    0..Hc-1 (Hc = ceil(code_copy_fraction * N)) after the normal region, copy c on core
    (u + c*S) % Ci; the code of a u < Hc is read from the search's own copy (others: from
    the normal frame), by the scalar, vectorised, read and timing rules alike; search
    results do not depend on the copy."""
    from proxima.golden.engine_timing import EngineCosts, query_program
    from proxima.golden.image import read_image, write_image
    from proxima.golden.layout import encode_frames
    from proxima.golden.nand import TimingParams, phases_for_events
    from proxima.golden.search import search

    from .test_image import make_index

    X, Ci, H, n = 3, 5, 23, 300
    cfg = _copies_cfg(X, frac)
    ix = make_index(n=n, hot=H, seed=4, cfg=cfg)
    lay = write_image(tmp_path / "c", ix)
    S, P, fpp = lay.copy_shift, cfg.nand.page_bytes, lay.frames_per_page
    cp = -(-(-(-Hc // Ci)) // fpp)
    assert lay.code_copy_count == Hc
    assert Hc == 0 or (fpp < -(-Hc // Ci) and cp > 1)  # a copy spans several pages
    assert (lay.code_copy_pages, lay.code_copies_pages) == (cp, (X - 1) * cp)
    assert lay.code_copy_page == lay.hot_pages + lay.normal_pages_per_core
    assert lay.index_pages_per_core == lay.code_copy_page + (X - 1) * cp
    g = lay.registers()
    assert (g.code_copy_count, g.code_copy_page, g.code_copy_pages) == (
        Hc, lay.code_copy_page, cp)
    assert lay.summary()["code_copy_pages"] == cp
    im = read_image(tmp_path / "c")
    frames = encode_frames(lay, ix.neighbors, ix.codes)
    C, off0 = lay.code_bytes, lay.code_offset
    us = np.arange(n)
    for c in range(X):
        vc, va = lay.code_byte_addresses(us, c)
        for u in range(n):
            core, page, off = lay.code_address(u, c)
            fc, fp, fo = lay.frame_address(u)
            if c and u < Hc:  # the copy's page and core, the normal frame's offset
                j = u // Ci
                assert (core, page, off) == ((u + c * S) % Ci, lay.code_copy_page
                                             + (c - 1) * cp + j // fpp, fo + off0)
                # the whole normal frame is copied, byte for byte
                got = im.frames[core, page * P + fo:page * P + fo + lay.frame_bytes]
                assert np.array_equal(got, frames[u])
            else:
                assert (core, page, off) == (fc, fp, fo + off0)
            a = page * P + off
            assert np.array_equal(im.frames[core, a:a + C], ix.codes[u])
            assert (vc[u], va[u]) == (core, a)
            assert lay.code_reads(u, c) == lay._span(core, page, off, C, "code")
    with pytest.raises(LayoutError, match="hot copy 3"):
        lay.code_address(0, 3)
    # reads and the timing models: a hot neighbour's code on its copy's core
    p = TimingParams.from_cfg(cfg)
    q = np.asarray(ix.vectors[7], dtype=np.uint8)
    ref = search(ix, q, cfg)
    ev = ref.events
    hot_codes = 0
    for c in range(X):
        rd = reads_for_events(ev, lay, c)
        assert [r.core for r in rd] == [x for f in phases_for_events(ev, lay, p, copy=c)
                                        for x in f.cores]
        prog = query_program(ev, ref.counters, lay, EngineCosts.from_cfg(cfg), c)
        assert [a[0] for s in prog for a in s.accesses] == [r.core for r in rd]
        codes = [r for r in rd if r.kind == "code"]
        in_copy = [r for r in codes if r.page >= lay.code_copy_page]
        assert (len(in_copy) > 0) == (c > 0 and Hc > 0)
        assert len(in_copy) == sum(1 for r, b in zip(codes, (x for x in reads_for_events(
            ev, lay, 0) if x.kind == "code")) if r != b)
        hot_codes = max(hot_codes, len(in_copy))
        base = reads_for_events(ev, lay, 0)
        assert len(rd) == len(base)  # the same accesses, only addresses move
    assert (hot_codes > 0) == (Hc > 0)
    assert search(im.index, q, cfg).ids.tolist() == ref.ids.tolist()


def test_code_copies_one_copy_is_the_original_layout():
    """X = 1: no code-copy region, no new metadata, every code read from the normal frame
    (the layout, image bytes and reads of images without copies are unchanged)."""
    for cfg in (TINY, preset("default"), _copies_cfg(1)):
        lay = Layout(cfg, 3000, 90, 5)
        assert lay.code_copy_count == lay.code_copy_pages == lay.code_copies_pages == 0
        assert lay.index_pages_per_core == lay.hot_pages + lay.normal_pages_per_core
        assert "code_copy_page" not in lay.summary()
        for u in (0, 1, 89, 90, 2999):
            c, p, o = lay.frame_address(u)
            assert lay.code_address(u) == (c, p, o + lay.code_offset)
        # the configuration (an image's config section) is what it was before the field
        assert "code_copy_fraction" not in cfg.to_json()
    half = _copies_cfg(2, 0.5)
    assert '"code_copy_fraction": 0.5' in half.to_json()
    assert type(half).from_json(half.to_json()) == half
    assert type(half).from_json(_copies_cfg(2).to_json()).layout.code_copy_fraction == 1.0


def test_code_copies_capacity():
    """The code-copy region counts against nand.pages_per_core (a clear LayoutError)."""
    cfg = _copies_cfg(3)
    lay = Layout(cfg, 300, 23, 5)
    need = lay.index_pages_per_core
    assert Layout(cfg.with_(nand={"pages_per_core": need}), 300, 23, 5).code_copy_pages > 0
    with pytest.raises(LayoutError, match=r"index needs \d+ pages per core .* code copies"):
        Layout(cfg.with_(nand={"pages_per_core": need - 1}), 300, 23, 5)


def test_rtl_code_location_follows_the_copies():
    """hdl/nandctl.code_location is the RTL twin of Layout.code_address: constants (a
    Layout) and run-time registers, hot and other vertices, every copy."""
    from amaranth import Module, Signal
    from amaranth.lib import data
    from amaranth.sim import Simulator

    from proxima.hdl.nandctl import code_location, geometry_init, geometry_layout

    cfg = _copies_cfg(3, 0.3)
    lays = [Layout(cfg, 300, 23, 5), Layout(cfg, 1000, 97, 9), Layout(cfg, 40, 0, 3),
            Layout(_copies_cfg(3, 0.0), 200, 5, 4)]
    assert [lay.code_copy_count for lay in lays] == [90, 300, 12, 0]
    m = Module()
    g = data.View(geometry_layout(cfg), Signal(geometry_layout(cfg)))
    v, c = Signal(cfg.id_bits), Signal(2)
    exprs = list(code_location(cfg, g, v, c)) + list(code_location(cfg, lays[0], v, c))
    outs = [Signal(32) for _ in exprs]
    m.d.comb += [o.eq(e) for o, e in zip(outs, exprs)]
    got, want = [], []

    async def tb(ctx):
        for i, lay in enumerate(lays):
            ctx.set(g, geometry_init(lay))
            for vv in list(range(min(lay.n, 120))) + [lay.n - 1]:
                for cc in range(3):
                    ctx.set(v, vv)
                    ctx.set(c, cc)
                    r = tuple(ctx.get(o) for o in outs)
                    got.append(r[:3] + (r[3:] if i == 0 else ()))
                    a = lay.code_address(vv, cc)
                    want.append(a + (a if i == 0 else ()))

    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()
    assert got == want
