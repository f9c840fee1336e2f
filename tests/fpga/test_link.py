"""Host link: the protocol model (golden/link.py) and its RTL (hdl/link/) in the Amaranth
simulator -- CRC, UART loopback, the frame receiver event by event against
:class:`proxima.golden.link.Receiver` on random and mutated byte streams, the sender's
frames equal to :func:`proxima.golden.link.encode_frame`."""

from __future__ import annotations

import random

import numpy as np

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import crc
from amaranth.sim import Simulator

from proxima.config import preset
from proxima.golden import link as L
from proxima.hdl.link.framing import FrameReceiver, FrameSender
from proxima.hdl.link.uart import UARTError, UARTRx, UARTTx, uart_divisor


def test_crc16_is_the_catalogue_algorithm():
    algo = crc.Algorithm(**L.CRC16_PARAMS)
    assert L.crc16(b"123456789") == 0x29B1  # CRC-16/IBM-3740 check value
    rnd = random.Random(1)
    for n in (0, 1, 7, 100):
        data = bytes(rnd.randrange(256) for _ in range(n))
        assert L.crc16(data) == algo(8).compute(data)
    assert L.crc16(b"6789", L.crc16(b"12345")) == 0x29B1


def test_frame_parser_roundtrip_and_resync():
    frames = [L.encode_frame(0x81, i, bytes(range(i))) for i in range(5)]
    junk = b"\x00\xa5\x01\x02" + frames[0][:-1] + b"\xff"
    p = L.FrameParser()
    got = p.feed(junk + b"".join(frames))
    assert [(f.type, f.seq, f.payload) for f in got][-5:] == \
        [(0x81, i, bytes(range(i))) for i in range(5)]


def test_uart_divisor():
    assert uart_divisor(100e6, 3_000_000) == 33
    assert uart_divisor(12e6, 3_000_000) == 4
    with pytest.raises(UARTError):
        uart_divisor(12e6, 5_000_000)
    with pytest.raises(UARTError):
        uart_divisor(25e6, 2_900_000)  # 8.6 cycles: 3.5 % off at divisor 9


def test_uart_loopback():
    div = 5
    m = Module()
    m.submodules.tx = tx = UARTTx(div)
    m.submodules.rx = rx = UARTRx(div)
    m.d.comb += rx.rx.eq(tx.tx)
    data = [random.Random(2).randrange(256) for _ in range(40)]
    got = []

    async def bench(ctx):
        ctx.set(rx.o.ready, 1)
        i = 0
        for _ in range(40 * 10 * div + 100):
            if i < len(data):
                ctx.set(tx.i.valid, 1)
                ctx.set(tx.i.payload, data[i])
            else:
                ctx.set(tx.i.valid, 0)
            if ctx.get(tx.i.ready) and i < len(data):
                i += 1
            if ctx.get(rx.o.valid):
                got.append(ctx.get(rx.o.payload))
            assert not ctx.get(rx.framing_error)
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == data


def _valid_length(m, ftype, n):
    """Test rule: types 1 (len 0) and 2 (len multiple of 4, > 4) exist."""
    known, ok = Signal(), Signal()
    m.d.comb += [known.eq((ftype == 1) | (ftype == 2)),
                 ok.eq(((ftype == 1) & (n == 0)) | ((ftype == 2) & (n > 4) & (n[:2] == 0)))]
    return known, ok


def _model_length(t, n):
    if t not in (1, 2):
        return None
    return n == 0 if t == 1 else (n > 4 and n % 4 == 0)


def _stream(rnd: random.Random, items: int, max_payload: int):
    """(chunks of bytes, each followed by an idle period or not)."""
    out = []
    for _ in range(items):
        kind = rnd.randrange(7)
        good = L.encode_frame(rnd.choice([1, 2, 2, 3]), rnd.randrange(256),
                              bytes(rnd.randrange(256) for _ in range(rnd.choice([0, 4, 8, 9, 12]))))
        if kind == 0:
            b = good
        elif kind == 1:
            f = bytearray(good)
            f[rnd.randrange(1, len(f))] ^= 1 << rnd.randrange(8)
            b = bytes(f)
        elif kind == 2:
            b = good[:rnd.randrange(1, len(good))]
        elif kind == 3:
            b = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 12)))
        elif kind == 4:
            b = bytes([L.SOF, 2, 7]) + (max_payload + 1 + rnd.randrange(100)).to_bytes(2, "little")
        elif kind == 5:
            b = bytes([L.SOF] * rnd.randrange(1, 4))
        else:
            b = bytes([0x11, 0x22]) + good
        out.append((b, rnd.random() < 0.6))
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_receiver_matches_model(seed):
    rnd = random.Random(seed)
    maxp, timeout = 16, 12
    dut = FrameReceiver(_valid_length, timeout=timeout, max_payload=maxp)
    chunks = _stream(rnd, 120, maxp)
    model = L.Receiver(_model_length, max_payload=maxp)
    expect = []
    for b, idle in chunks:
        expect += model.feed(b)
        if idle:
            expect += model.idle()
    expect += model.idle()
    got = []

    async def bench(ctx):
        async def take_event():
            e = dut.event.payload
            ev = (ctx.get(e.error), ctx.get(e.type), ctx.get(e.seq), ctx.get(e.len))
            payload = b""
            if ev[0] == 0:
                for i in range(ev[3]):
                    ctx.set(dut.buf_addr, i)
                    await ctx.tick()
                    payload += bytes([ctx.get(dut.buf_data)])
            got.append(L.Event(ev[0], ev[1], ev[2], payload))
            ctx.set(dut.event.ready, 1)
            await ctx.tick()
            ctx.set(dut.event.ready, 0)

        for b, idle in chunks + [(b"", True)]:
            i = 0
            while i < len(b):
                ctx.set(dut.rx.valid, 1)
                ctx.set(dut.rx.payload, b[i])
                if ctx.get(dut.rx.ready):
                    i += 1
                if ctx.get(dut.event.valid):
                    ctx.set(dut.rx.valid, 0)
                    await take_event()
                    continue
                await ctx.tick()
            ctx.set(dut.rx.valid, 0)
            for _ in range(timeout + 4 if idle else 1):
                if ctx.get(dut.event.valid):
                    await take_event()
                await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == expect
    assert sum(e.error == 0 for e in got) > 5 and sum(e.error != 0 for e in got) > 20


def test_sender_frames_equal_encode_frame():
    dut = FrameSender()
    rnd = random.Random(3)
    frames = [(rnd.randrange(256), rnd.randrange(256),
               bytes(rnd.randrange(256) for _ in range(rnd.choice([0, 1, 5, 40]))))
              for _ in range(12)]
    out = bytearray()

    async def bench(ctx):
        ctx.set(dut.tx.ready, 1)
        for t, s, p in frames:
            ctx.set(dut.hdr.valid, 1)
            ctx.set(dut.hdr.payload, {"type": t, "seq": s, "len": len(p)})
            i = 0
            sent_hdr = False
            for _ in range(len(p) * 3 + 40):
                if not sent_hdr and ctx.get(dut.hdr.ready):
                    sent_hdr = True
                    await ctx.tick()
                    ctx.set(dut.hdr.valid, 0)
                    continue
                stall = rnd.random() < 0.3
                ctx.set(dut.tx.ready, int(not stall))
                if i < len(p):
                    ctx.set(dut.data.valid, 1)
                    ctx.set(dut.data.payload, p[i])
                if ctx.get(dut.data.ready) and ctx.get(dut.data.valid):
                    i += 1
                if ctx.get(dut.tx.valid) and ctx.get(dut.tx.ready):
                    out.append(ctx.get(dut.tx.payload))
                await ctx.tick()
                if i >= len(p):
                    ctx.set(dut.data.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert bytes(out) == b"".join(L.encode_frame(t, s, p) for t, s, p in frames)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_store_map_is_the_controllers(tmp_path):
    """The host's placement of an image in the board's store (IDENTIFY of a BoardCore on
    the Accelerator) equals the NAND controller's store words of
    ``Accelerator.store_image``, for a store word wider than a byte pair."""
    import numpy as np

    from proxima.config import preset
    from proxima.fpga.host import Board
    from proxima.golden.image import read_image, write_image
    from proxima.golden.index import Index
    from proxima.golden.nandctl import store_words
    from proxima.golden.pq import encode, train_codebook
    from proxima.hdl.accel import Accelerator
    from proxima.hdl.board import BoardCore
    from tests.golden.conftest import clustered_u8, knn_plus_random_graph
    cfg = preset("tiny")
    x = clustered_u8(120, cfg.vec.dim, seed=3)
    book = train_codebook(cfg, x, seed=3)
    write_image(tmp_path / "i.pxi", Index(cfg, x, knn_plus_random_graph(x, cfg.graph.R, seed=3),
                                          0, book, encode(cfg, x, book),
                                          hot=np.arange(120) < 5))
    img = read_image(tmp_path / "i.pxi")
    core = BoardCore(cfg, img.layout, clk_hz=100e6, baud=25e6, divisor=4, queues=2)
    b = Board(object())
    b.info = dict(core.ident)
    bb = b.info["beat_bytes"]
    store = bytearray(b.info["store_words"] * bb)
    for addr, data in b.store_words_of(img):
        store[addr * bb:addr * bb + len(data)] = data
    want = store_words(core.acc.ctl.params, Accelerator.store_image(img))
    got = [int.from_bytes(store[i:i + bb], "little") for i in range(0, len(store), bb)]
    assert got == want and any(want)
    import gc
    del core  # never elaborated: collected while the warning filter holds
    gc.collect()


def test_result_record_roundtrip():
    import struct
    k = 3
    counters = list(range(1, len(L.RECORD_COUNTERS) + 1))
    rec = struct.pack("<H", 77) + struct.pack("<4I", 5, 100, 9, 200) + b"\xff" * 8 + \
        struct.pack(f"<{len(counters)}I", *counters) + bytes([2, 0b11, 1])
    assert len(rec) == L.result_record_bytes(k)
    r = L.decode_result(rec, k)
    assert r["tag"] == 77 and r["ids"] == [5, 9] and r["dists"] == [100, 200]
    assert r["context"] == 1 and r["converged"] and r["error"]
    assert r["reads"] == dict(zip(L.READ_KIND_COUNTERS, counters[len(L.ENGINE_COUNTERS):]))
    assert r["counters"]["hops"] == 1
    with pytest.raises(ValueError):
        L.decode_result(rec[:-1], k)


def test_set_geometry_carries_the_registers_and_the_entry_code():
    from proxima.golden.layout import GEOMETRY_FIELDS, Layout
    kw = dict(beat_bytes=8, dim=16, dsub=2, code_bytes=4)
    n = 4 + 4 * len(GEOMETRY_FIELDS) + 4
    assert L.length_ok(L.T_SET_GEOMETRY, n, **kw)
    assert not L.length_ok(L.T_SET_GEOMETRY, 20, **kw)
    assert "queues" in dict(L.IDENT_FIELDS) and L.PROTOCOL_VERSION == 3
    lay = Layout(preset("tiny"), 300, 12, 9)
    pl = L.geometry_payload(lay, 7, b"\x01\x02")
    assert len(pl) == L.geometry_payload_bytes(lay.cfg.pq_code_bytes)
    assert L.parse_geometry_payload(pl) == (7, lay.registers())
    assert pl.endswith(b"\x01\x02\0\0")


@pytest.mark.parametrize("copies", [1, 2])
def test_geometry_fits_the_store(copies):
    """geometry_fits (the board's SET_GEOMETRY check): every image whose pages fit is
    accepted (with hot copies: their code-copy region too), larger ones, registers out of
    range or zero, and bad entries refused."""
    from proxima.golden.layout import Layout
    cfg = preset("tiny").with_(layout={"hot_copies": copies, "code_copy_fraction": 0.5})
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(1, cfg.engine.max_vertices + 1))
        lay = Layout(cfg, n, int(rng.integers(0, min(n, 3000) + 1)),
                     int(rng.integers(0, cfg.id_bits + 1)))
        need = max(lay.index_pages_per_core, lay.raw_pages_per_core)
        for pages in (need - 1, need, 2 * need):
            assert L.geometry_fits(cfg, pages, n - 1, lay.registers()) == (pages >= need), \
                (lay, pages)
    g = Layout(cfg, 300, 12, 9).registers()
    assert not L.geometry_fits(cfg, 8, 300, g)  # entry >= n
    assert not L.geometry_fits(cfg, 8, 0, g._replace(frames_per_page=0))
    assert not L.geometry_fits(cfg, 8, 0, g._replace(gap_width=cfg.id_bits + 1))
    assert not L.geometry_fits(cfg, 8, 0, g._replace(hot=301))
    assert not L.geometry_fits(cfg, 8, 0, g._replace(code_copy_count=301))
