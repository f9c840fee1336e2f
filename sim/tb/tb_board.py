"""cocotb testbench of the whole board core (:class:`proxima.hdl.board.BoardCore`, UART PHY
included), driven by the host driver's own code (:class:`proxima.fpga.host.Board`).

A UART model drives ``rx`` and samples ``tx`` (``divisor`` clock cycles per bit); the host
driver runs in a :func:`cocotb.bridge` thread and talks to it through :class:`SimTransport`
(``write`` / ``read`` / ``in_waiting`` like a pyserial port; its timeout is simulated time).

Parameters (``PROXIMA_TB_PARAMS``): ``divisor``; ``image`` (path of an index image) and
``queries`` (path of a ``.npy`` file) for ``board_queries``; ``fuzz_items`` and
``fuzz_seed`` for ``board_fuzz``.

``board_queries``: identify, load the image (each chunk verified by the board's CRC
read-back), stream the queries with several in flight, and compare every result with
:func:`proxima.golden.search.search` (:func:`proxima.fpga.host.check_results`: ids,
distances, counters, reason, accesses by kind); with at least two queries per context,
every context must have served some.  Then, with queries in flight, a store write must be
refused (``ERR_BUSY``) and SOFT_RESET must drop them (nothing queued, no result left), and
one more query is answered exactly.

``board_fuzz``: writes a pattern into the store, then sends random and mutated frames
(bit flips, truncation, wrong lengths, oversize lengths, unknown types, garbage between
frames, good frames in between); after each item the line is left idle longer than the
link timeout and the replies received must equal, one by one, those that the protocol
model (:class:`proxima.golden.link.Receiver`) predicts; at the end the pattern is read back
unchanged and the link still answers.
"""

import copy
import random
import struct
from collections import deque

import cocotb
from cocotb.task import bridge, resume
import numpy as np
from cocotb.triggers import ClockCycles, FallingEdge, Timer

from proxima.golden import link as L
from proxima.sim.runner import tb_params
from proxima.sim.tb.bench import CLOCK_NS, reset

PERIOD_NS = CLOCK_NS


class UartModel:
    """Bit-level UART at ``divisor`` clock cycles per bit on ``dut.rx`` / ``dut.tx``."""

    def __init__(self, dut, divisor: int):
        self.dut, self.div = dut, divisor
        self.bit_ns = divisor * PERIOD_NS
        self.out = deque()  # bytes to send to the board
        self.got = deque()  # bytes received from the board
        self.sending = False
        dut.rx.value = 1

    async def sender(self):
        while True:
            if not self.out:
                self.sending = False
                await Timer(self.bit_ns, unit="ns")
                continue
            self.sending = True
            b = self.out.popleft()
            bits = [0] + [(b >> i) & 1 for i in range(8)] + [1]
            i = 0
            while i < 10:  # one timer per run of equal bits
                j = i
                while j < 10 and bits[j] == bits[i]:
                    j += 1
                self.dut.rx.value = bits[i]
                await Timer((j - i) * self.bit_ns, unit="ns")
                i = j

    async def receiver(self):
        half = self.bit_ns // 2
        while True:
            if int(self.dut.tx.value) == 1:
                await FallingEdge(self.dut.tx)
            await Timer(half, unit="ns")
            b = 0
            for i in range(8):
                await Timer(self.bit_ns, unit="ns")
                b |= int(self.dut.tx.value) << i
            await Timer(self.bit_ns, unit="ns")
            assert int(self.dut.tx.value) == 1, "board sent a byte without a stop bit"
            self.got.append(b)


class SimTransport:
    """A pyserial-like port on the UART model, for code running in a bridge thread."""

    def __init__(self, uart: UartModel, timeout_bits: int):
        self.u = uart
        self.timeout_ns = timeout_bits * uart.bit_ns

    @property
    def in_waiting(self) -> int:
        return len(self.u.got)

    def write(self, data: bytes) -> int:
        self.u.out.extend(data)
        return len(data)

    def read(self, n: int) -> bytes:
        return resume(self._read)(n)

    async def _read(self, n):
        waited = 0
        step = 10 * self.u.bit_ns
        while len(self.u.got) < n and waited < self.timeout_ns:
            await Timer(step, unit="ns")
            waited += step
        k = min(n, len(self.u.got))
        return bytes(self.u.got.popleft() for _ in range(k))

    def quiet(self, idle_bits: int) -> bytes:
        """Wait until everything is sent and nothing arrived for ``idle_bits`` bit times;
        return what arrived."""
        return resume(self._quiet)(idle_bits)

    async def _quiet(self, idle_bits):
        out = bytearray()
        idle = 0
        while idle < idle_bits * self.u.bit_ns or self.u.out or self.u.sending:
            await Timer(8 * self.u.bit_ns, unit="ns")
            if self.u.got or self.u.out or self.u.sending:
                idle = 0
                while self.u.got:
                    out.append(self.u.got.popleft())
            else:
                idle += 8 * self.u.bit_ns
        return bytes(out)


async def _start(dut, divisor):
    uart = UartModel(dut, divisor)  # the line idle high from the start
    await reset(dut, cycles=4)
    await ClockCycles(dut.clk, 4)
    cocotb.start_soon(uart.sender())
    cocotb.start_soon(uart.receiver())
    return uart


@cocotb.test()
async def board_queries(dut):
    """Load an image and answer queries through the host driver, checked against golden."""
    p = tb_params()
    if "image" not in p:
        return
    from proxima.fpga.host import Board, BoardError, check_results
    from proxima.golden.image import read_image
    uart = await _start(dut, int(p["divisor"]))
    img = read_image(p["image"])
    queries = np.load(p["queries"])
    # a query takes up to ~15k cycles, CLEAR_STORE a cycle per store word: a generous
    # simulated reply timeout
    tr = SimTransport(uart, timeout_bits=20000)
    log = dut._log

    def host():
        b = Board(tr, retries=0)
        info = b.identify()
        log.info("identify: %s", info)
        nbytes = b.load(img)
        log.info("loaded %d bytes", nbytes)
        if p.get("refuse_geometry"):
            # a geometry that does not fit the store: ERR_GEOMETRY, the registers unchanged
            # (the queries below run on the loaded image's)
            from proxima.golden.layout import Layout
            cfg, lay = img.layout.cfg, img.layout
            big = Layout(cfg, cfg.engine.max_vertices, 0, lay.gap_width)
            assert not L.geometry_fits(cfg, info["store_pages"], 0, big.registers())
            try:
                b.command(L.T_SET_GEOMETRY, L.geometry_payload(big, 0))
                raise AssertionError("a geometry beyond the store was accepted")
            except BoardError as e:
                assert "geometry" in str(e), e
        arrived = []
        res = b.search_many(list(queries), on_result=arrived.append)
        ctr = b.counters()
        # queries in flight: the store refuses writes; SOFT_RESET drops them, then a new
        # query is answered exactly
        word = b.read_store(0, 1)
        for i in range(min(3, len(queries))):
            b.submit(queries[i], 1000 + i)
            if i == 0:
                try:
                    b.write_store(0, word)
                    raise AssertionError("a store write was accepted while a query ran")
                except BoardError as e:
                    assert "busy" in str(e), e
        b.soft_reset()
        after = b.counters()
        assert (after["queued"], after["results_ready"], after["busy"]) == (0, 0, False), after
        assert b.read_result() is None
        again = b.search(queries[-1])
        return info, res, ctr, arrived, again

    info, res, ctr, res_order, again = await bridge(host)()
    bad = check_results(img, queries, res) + check_results(img, queries[-1:], [again])
    assert not bad, "\n".join(bad[:10])
    refused = 1 if p.get("refuse_geometry") else 0  # the ERR_GEOMETRY reply
    assert ctr["completed"] == len(queries) and ctr["errors"] == refused, ctr
    assert not ctr["busy"] and not ctr["engine_error"], ctr
    ctxs = [r["context"] for r in res]
    if len(queries) >= 2 * info["queues"]:  # several in flight: every context served some
        assert set(ctxs) == set(range(info["queues"])), ctxs
    order = [r["tag"] for r in res_order]
    cyc = [r["counters"]["cycles"] for r in res]
    log.info("%d queries equal to golden (%d contexts, queries per context %s, %d results "
             "returned out of submission order); engine cycles per query: mean %.0f, max %d",
             len(res), info["queues"], [ctxs.count(c) for c in range(info["queues"])],
             sum(a > b for a, b in zip(order, order[1:])), sum(cyc) / len(cyc), max(cyc))


def _fuzz_items(rnd: random.Random, region: int, bb: int, pattern: bytes, dim: int):
    """Random fuzz items: (bytes, description)."""
    def frame(t, payload, seq=None):
        return L.encode_frame(t, rnd.randrange(256) if seq is None else seq, payload)

    def good_write():
        return frame(L.T_WRITE_STORE, struct.pack("<I", 0) + pattern[:region * bb])

    kind = rnd.choice(["flip", "flip", "trunc", "len", "oversize", "type", "garbage",
                       "garbage_frame", "good", "random", "sof_noise"])
    if kind == "good":
        t = rnd.choice([L.T_IDENTIFY, L.T_READ_COUNTERS, L.T_READ_RESULT])
        return frame(t, b""), kind
    # a write of random data to the pattern's region: must never land
    bad = bytes(rnd.randrange(256) for _ in range(region * bb))
    f = bytearray(frame(L.T_WRITE_STORE, struct.pack("<I", 0) + bad))
    if kind == "flip":
        i = rnd.randrange(1, len(f))
        f[i] ^= 1 << rnd.randrange(8)
        return bytes(f), kind
    if kind == "trunc":
        return bytes(f[:rnd.randrange(1, len(f))]), kind
    if kind == "len":  # a well-formed frame (good CRC) whose length the type does not allow
        return frame(L.T_WRITE_STORE, struct.pack("<I", 0) + bad[:bb - 1 or 1]), kind
    if kind == "oversize":
        n = rnd.randrange(L.MAX_PAYLOAD + 1, 0x10000)
        return bytes([L.SOF, L.T_WRITE_STORE, rnd.randrange(256)]) + struct.pack("<H", n) + \
            bad[:rnd.randrange(len(bad))], kind
    if kind == "type":
        t = rnd.choice([x for x in range(256) if x not in L.COMMANDS.values()])
        return frame(t, bad[:rnd.randrange(8)]), kind
    if kind == "garbage":
        return bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 40))), kind
    if kind == "garbage_frame":
        g = bytes(rnd.choice([x for x in range(256) if x != L.SOF])
                  for _ in range(rnd.randrange(1, 10)))
        return g + frame(L.T_IDENTIFY, b""), kind
    if kind == "sof_noise":
        return bytes([L.SOF] * rnd.randrange(1, 6)), kind
    return bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 300))), kind


def _expected(events):
    out = []
    for e in events:
        if e.error:
            out.append((L.T_ERROR, e.seq, bytes([e.error, e.type])))
        else:
            out.append((L.reply_type(e.type), e.seq, None))
    return out


@cocotb.test()
async def board_fuzz(dut):
    """Random and mutated frames: every reply as the protocol model predicts, the store
    never written by a bad frame, the link alive at the end."""
    p = tb_params()
    if "fuzz_items" not in p:
        return
    from proxima.fpga.host import Board
    uart = await _start(dut, int(p["divisor"]))
    # a reply comes after the whole frame is in: allow a maximal frame (10 bits a byte) and more
    tr = SimTransport(uart, timeout_bits=10 * (L.MAX_PAYLOAD + 16) + 2000)
    rnd = random.Random(int(p.get("fuzz_seed", 1)))
    n_items = int(p["fuzz_items"])
    log = dut._log
    stats = {}

    def host():
        b = Board(tr, retries=0)
        info = b.identify()
        bb, dim = info["beat_bytes"], info["dim"]
        region = min(16, (L.MAX_PAYLOAD - 4) // bb)  # store words in one WRITE_STORE
        pattern = bytes(rnd.randrange(256) for _ in range(region * bb))
        b.write_store(0, pattern)
        cfg_dsub = int(p["dsub"])

        def valid_length(t, n):
            if t not in L.COMMANDS.values() or (info["k"] == 0 and t in L.ENGINE_COMMANDS):
                return None
            return L.length_ok(t, n, beat_bytes=bb, dim=dim, dsub=cfg_dsub,
                               code_bytes=info["code_bytes"])

        model = L.Receiver(valid_length)
        for it in range(n_items):
            item, kind = _fuzz_items(rnd, region, bb, pattern, dim)
            trial = copy.deepcopy(model)
            evs = trial.feed(item) + trial.idle()
            if any(e.error == 0 and e.type not in (L.T_IDENTIFY, L.T_READ_COUNTERS,
                                                   L.T_READ_RESULT) for e in evs):
                continue  # random bytes that happen to form a state-changing command
            model = trial
            stats[kind] = stats.get(kind, 0) + 1
            tr.write(item)
            got = L.FrameParser().feed(tr.quiet(L.TIMEOUT_BITS + 40))
            got = [(f.type, f.seq, f.payload if f.type == L.T_ERROR else None) for f in got]
            exp = _expected(evs)
            assert got == exp, f"item {it} ({kind}, {item[:24].hex()}...): replies {got}, model {exp}"
        back = b.read_store(0, region)
        assert back == pattern, "the store changed: a bad frame was executed"
        return b.identify(), b.counters()

    info, ctr = await bridge(host)()
    log.info("fuzz: %d items %s; board counters %s", n_items, stats, ctr)
