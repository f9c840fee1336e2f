"""Board core: host link + command decoder + the NAND store in block RAM + the multi-queue
accelerator.

Board-independent: ports ``rx`` (``In(1)``) and ``tx`` (``Out(1)``), the UART lines.  The
per-board tops in :mod:`proxima.fpga.boards` add the clock and pins.  The protocol is
:mod:`proxima.golden.link` (read its docstring); the host driver is :mod:`proxima.fpga.host`.

``BoardCore(cfg, layout, *, clk_hz, baud, divisor=None, queues=None, query_slots=4,
result_slots=4, rx_fifo=512, pq_options=None, engine=True, accel_options=None,
impl="generic")``

* ``divisor``: clock cycles per UART bit (default ``uart_divisor(clk_hz, baud)``; a small
  one such as 4 makes simulations fast).  ``engine=False`` builds the link subset: no
  accelerator, the engine's commands (:data:`proxima.golden.link.ENGINE_COMMANDS`) are
  unknown types, IDENTIFY reports ``k = 0`` and ``queues = 0``.
* ``queues``: search contexts of the :class:`~proxima.hdl.accel.Accelerator` (default
  ``engine.queues``); ``pq_options`` and ``accel_options`` (more keyword arguments) are
  passed to it.  It is built with ``external_store=True``: its NAND controller reads this
  core's store.
* Commands: IDENTIFY (the :data:`~proxima.golden.link.IDENT_FIELDS`, with the queue count,
  the store's pages per core, the PQ code size and the hot copies), CLEAR_STORE (zeroes the
  store, a word per cycle), WRITE_STORE (words from the payload buffer, then read back and
  the CRC-16 of the words read is the reply), READ_STORE, SET_GEOMETRY (``entry`` and the
  geometry registers of :meth:`~proxima.golden.layout.Layout.registers`, host-computed,
  written to the accelerator's ``geom`` when :func:`proxima.golden.link.geometry_fits` holds
  for the store's pages, else ``ERR_GEOMETRY`` and nothing changes; then the entry's PQ
  code, ``code_bytes`` bytes, into the ``entry_code`` register that the contexts use with
  ``layout.hot_copies > 1``), WRITE_CODEBOOK (to every context's PQ
  unit), SUBMIT (tag + query into the query FIFO, ``ERR_FULL`` when no slot is free),
  READ_RESULT (one record, or an empty payload when none is ready), READ_COUNTERS
  (:data:`~proxima.golden.link.LINK_COUNTERS`), SOFT_RESET.  Store commands and
  SET_GEOMETRY / WRITE_CODEBOOK answer ``ERR_BUSY`` while queries are queued, in a context
  or being sent; ranges outside the store or the codebook ``ERR_RANGE``.  A command's reply
  starts within ~20 cycles of its last byte (plus a cycle per payload byte for writes and
  read-backs); the link, not the decoder, sets the pace.

* ``layout``: the nominal image: the store is sized for it
  (:func:`~proxima.golden.link.store_map`, :func:`~proxima.golden.link.store_pages` pages
  per core) and the geometry registers reset to its values; any image of the configuration
  whose geometry fits the store (:func:`~proxima.golden.link.geometry_fits`) can be loaded
  (SET_GEOMETRY writes its registers).
* UART: :class:`~proxima.hdl.link.uart.UARTRx` -> ``rx_fifo``-byte FIFO ->
  :class:`~proxima.hdl.link.framing.FrameReceiver` (timeout ``TIMEOUT_BITS`` bit times);
  replies through :class:`~proxima.hdl.link.framing.FrameSender` -> UART TX.  The host must
  not have more than ``rx_fifo`` bytes of frames unanswered (the host driver keeps to that).
* ``impl``: the implementation of the vendor pieces, the store's
  :class:`~proxima.hdl.lib.vendor.StoreRAM` and the accelerator's reset
  :class:`~proxima.hdl.lib.vendor.GlobalReset` (``"generic"``: an Amaranth memory and a
  register, any simulator; ``"ecp5"``: DP16KD instances and a DCCA, the ULX3S build); same
  cycles.
* Resets: the link runs in the ``sync`` domain.  The accelerator, the query and result
  FIFOs and the collector run in a local domain on the same clock whose reset is one
  registered net (:class:`~proxima.hdl.lib.vendor.GlobalReset`): high the cycle after the
  ``sync`` reset or a SOFT_RESET command, so that one net, not a LUT per flip-flop group,
  reaches their reset pins (``Accelerator.soft_reset`` is tied low).
* Store: one memory of the NAND controller's ``store_data`` words (``len(acc.store_data)``
  bits, the controller's beat, which may be wider than a context's), laid out as the
  controller's store (:mod:`proxima.golden.nandctl`, "Backing store": index cores then
  raw-vector cores, each :meth:`~proxima.hdl.accel.Accelerator.store_pages` pages).  One
  write port (the link) and one read port: the controller's ``store_addr`` / ``store_en``
  / ``store_data`` (the RAM's read port with enable, the data held while ``store_en``
  is low; with ``engine.store_latency`` 2 the controller registers the address; with 3
  (the ECP5 build, :mod:`proxima.fpga.boards`) the data register is the RAM's own second
  read cycle -- a :class:`~proxima.hdl.lib.vendor.StoreRAM` of latency 2, the controller
  built with ``store_port_latency=2`` -- so on the ECP5 it is each DP16KD's output
  register, ahead of the depth cascade's multiplexer; with 1 or 2 the RAM has read
  latency 1), or the link's read-back while the accelerator is idle (store commands are
  refused with ``ERR_BUSY`` otherwise); the read-back takes the RAM's data two cycles
  after the address (through a register behind a latency-1 RAM).
* Queries: a FIFO of ``query_slots`` queries (``dim`` bytes each) and one of their 16-bit
  tags feed ``Accelerator.query`` (the tag at the tag FIFO's head with every element); the
  accelerator runs up to ``queues`` of them at once, so ``query_slots + queues`` queries
  can be on the board.  Each finished query (result beats, then its statistics beat)
  becomes a result record (``result_record_bytes(k)``: tag, top-k, the engine counters,
  the accesses by kind, count, flags, context) in a FIFO of ``result_slots`` records, read
  by READ_RESULT in the order the queries finish.  The accelerator stalls on a full result
  FIFO; nothing is lost.
* READ_COUNTERS ``status``: bit 0 busy (as for ``ERR_BUSY``), bit 1 a query reported an
  error or the controller got a bad request since the last SOFT_RESET, bit 2 a query is
  in a context.
* SOFT_RESET resets the accelerator (contexts, controller, queries in flight), the query
  and result FIFOs and the collector, at the end of the cycle after the command's (the
  store, the codebook, the geometry registers and the link counters are kept).
"""


from contextlib import contextmanager
from types import SimpleNamespace

from amaranth.hdl import Cat, ClockDomain, ClockSignal, Const, DomainRenamer, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from proxima.config import ProximaConfig
from proxima.golden import link as L
from proxima.golden.layout import GEOMETRY_FIELDS, Layout, geometry_bounds
from proxima.hdl.accel import STAT_COUNTERS, Accelerator
from proxima.hdl.lib.vendor import GlobalReset, StoreRAM
from proxima.hdl.nandctl import frame_location, geometry_init, hot_chunk_location, raw_location
from proxima.hdl.link.framing import FrameReceiver, FrameSender, crc16_processor
from proxima.hdl.link.uart import UARTRx, UARTTx, uart_divisor

__all__ = ["BoardCore", "BoardError"]

assert tuple(STAT_COUNTERS) == L.RECORD_COUNTERS


class BoardError(ValueError):
    """A board configuration that cannot be built."""


def _pow2(n):
    return n > 0 and n & (n - 1) == 0


class _Collector(wiring.Component):
    """Accelerator results + statistics -> result record bytes (``result_record_bytes``).

    Takes one query's result beats (top-k, ``last`` on the final one; unused entries padded
    with all-ones bytes), then sends the query's statistics beat's counters from the
    Accelerator's (registered) ``stats`` payload and takes that beat after the last byte."""

    def __init__(self, acc: Accelerator, k: int):
        self.acc, self.k = acc, k
        super().__init__({"w_data": Out(8), "w_en": Out(1), "w_rdy": In(1),
                          "idle": Out(1), "rec_done": Out(1), "error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        a, k = self.acc, self.k
        res, stp = a.result.payload, a.stats.payload
        sh = Signal(64)
        bi = Signal(range(64))
        cnt = Signal(range(k + 1))
        n_res = Signal(8)  # result entries of the query (before the padding)
        ctr = Cat(*[getattr(stp, n)[:32] for n in STAT_COUNTERS])
        ctx = stp.context
        tail = Cat(n_res, stp.converged, stp.error, Const(0, 6),
                   ctx[:8], Const(0, max(0, 8 - len(ctx))))
        push = Signal()
        m.d.comb += [self.w_en.eq(push & self.w_rdy)]

        def send(value, n: int, then: str, *at_last):
            """Push byte ``bi`` of ``value`` (``n`` bytes, least significant first); after
            the last one ``bi`` returns to 0, ``at_last`` is asserted and ``then`` follows."""
            m.d.comb += [push.eq(1),
                         self.w_data.eq(value.word_select(bi[:max(1, ceil_log2(n))], 8))]
            with m.If(self.w_rdy):
                m.d.sync += bi.eq(bi + 1)
                with m.If(bi == n - 1):
                    m.d.sync += bi.eq(0)
                    m.d.comb += list(at_last)
                    m.next = then

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(1)
                with m.If(a.result.valid):
                    m.d.sync += [sh.eq(res.tag), bi.eq(0), cnt.eq(0)]
                    m.next = "TAG"
            with m.State("TAG"):
                send(sh, 2, "BEAT")
            with m.State("BEAT"):
                m.d.comb += a.result.ready.eq(1)
                with m.If(a.result.valid):
                    m.d.sync += [sh.eq(Cat(res.id, Const(0, 32 - len(res.id)), res.dist)),
                                 bi.eq(0), cnt.eq(cnt + 1)]
                    with m.If(res.last):
                        m.d.sync += n_res.eq(cnt + 1)
                        m.next = "ENTRY_LAST"
                    with m.Else():
                        m.next = "ENTRY"
            for st, nxt in (("ENTRY", "BEAT"), ("ENTRY_LAST", "PAD")):
                with m.State(st):
                    send(sh, 8, nxt)
            with m.State("PAD"):
                with m.If(cnt == k):
                    m.next = "WAIT_STATS"
                with m.Else():
                    m.d.comb += [push.eq(1), self.w_data.eq(0xFF)]
                    with m.If(self.w_rdy):
                        m.d.sync += bi.eq(bi + 1)
                        with m.If(bi == 7):
                            m.d.sync += [bi.eq(0), cnt.eq(cnt + 1)]
            with m.State("WAIT_STATS"):
                with m.If(a.stats.valid):
                    m.d.sync += bi.eq(0)
                    m.next = "COUNTERS"
            with m.State("COUNTERS"):
                send(ctr, len(ctr) // 8, "TAIL")
            with m.State("TAIL"):
                send(tail, 3, "IDLE", self.rec_done.eq(1), a.stats.ready.eq(1),
                     self.error.eq(stp.error))
        return m


class BoardCore(wiring.Component):
    rx: In(1, init=1)
    tx: Out(1, init=1)

    def __init__(self, cfg: ProximaConfig, layout: Layout, *, clk_hz: float, baud: int,
                 divisor: int | None = None, queues: int | None = None,
                 query_slots: int = 4, result_slots: int = 4, rx_fifo: int = 512,
                 pq_options: dict | None = None, engine: bool = True,
                 accel_options: dict | None = None, impl: str = "generic"):
        self.cfg, self.layout = cfg, layout
        self.impl = impl
        # the store's read latency: 2 (the data register inside the RAM) unless the
        # controller reads it with store_latency 1 or 2
        self.store_latency = 2 if not engine or cfg.engine.store_latency == 3 else 1
        self.clk_hz, self.baud = int(clk_hz), int(baud)
        self.divisor = uart_divisor(clk_hz, baud) if divisor is None else int(divisor)
        if not _pow2(cfg.nand.page_bytes):
            raise BoardError("nand.page_bytes must be a power of two")
        if engine:
            self.acc = Accelerator(cfg, layout, queues=queues, external_store=True,
                                   pq_options=pq_options,
                                   store_port_latency=self.store_latency,
                                   **(accel_options or {}))
            self.queues = self.acc.queues
            self.beat_bits = len(self.acc.store_data)
            assert self.acc.pages == L.store_pages(layout)
        else:
            from proxima.hdl.gapdec import default_word_bits
            self.acc, self.beat_bits = None, default_word_bits(cfg)
            self.queues = 0
            query_slots = result_slots = 0
        self.bb = self.beat_bits // 8
        if self.beat_bits < 16:
            raise BoardError("the store's words must be at least 2 bytes")
        self.base, self.store_words = L.store_map(layout, self.bb)
        if engine:
            p = self.acc.ctl.params
            assert (p.store_words, p.beat_bytes) == (self.store_words, self.bb)
            self.store_addr_bits = p.addr_bits
        self.code_bytes = cfg.pq_code_bytes
        self.query_slots, self.result_slots = int(query_slots), int(result_slots)
        self.rx_fifo = int(rx_fifo)
        self.rec_bytes = L.result_record_bytes(cfg.search.k)
        self.timeout = L.TIMEOUT_BITS * self.divisor
        self.ident = {
            "magic": L.MAGIC, "version": L.PROTOCOL_VERSION, "config_hash": L.config_hash(cfg),
            "store_words": self.store_words, "beat_bytes": self.bb,
            "max_payload": L.MAX_PAYLOAD, "query_slots": self.query_slots,
            "result_slots": self.result_slots, "n_max": layout.n, "hot": layout.hot,
            "gap_width": layout.gap_width, "dim": cfg.vec.dim, "k": cfg.search.k if engine else 0,
            "clock_hz": self.clk_hz, "baud": self.baud, "queues": self.queues,
            "store_pages": L.store_pages(layout), "code_bytes": self.code_bytes,
            "hot_copies": layout.hot_copies,
        }
        super().__init__()

    # ---------------------------------------------------------------------------------
    def _valid_length(self, m, ftype, n):
        """(known, ok) of ``golden.link.length_ok`` as logic."""
        cfg, bb = self.cfg, self.bb
        known, ok = Signal(), Signal()
        with m.Switch(ftype):
            for t in (L.T_IDENTIFY, L.T_READ_COUNTERS, L.T_SOFT_RESET) + \
                    ((L.T_READ_RESULT,) if self.acc is not None else ()):
                with m.Case(t):
                    m.d.comb += [known.eq(1), ok.eq(n == 0)]
            with m.Case(L.T_WRITE_STORE):
                m.d.comb += [known.eq(1), ok.eq((n > 4) & ((n - 4) & (bb - 1) == 0))]
            with m.Case(L.T_READ_STORE):
                m.d.comb += [known.eq(1), ok.eq(n == 8)]
            with m.Case(L.T_CLEAR_STORE):
                m.d.comb += [known.eq(1), ok.eq(n == 0)]
            if self.acc is None:
                return known, ok
            with m.Case(L.T_SET_GEOMETRY):
                m.d.comb += [known.eq(1),
                             ok.eq(n == L.geometry_payload_bytes(self.code_bytes))]
            with m.Case(L.T_WRITE_CODEBOOK):
                # (n - 2) % dsub == 0 for n <= MAX_PAYLOAD: a table of the allowed lengths
                allowed = [2 + j * cfg.dsub for j in range(1, (L.MAX_PAYLOAD - 2) // cfg.dsub + 1)]
                m.d.comb += [known.eq(1), ok.eq(0)]
                with m.Switch(n):
                    with m.Case(*allowed):
                        m.d.comb += ok.eq(1)
            with m.Case(L.T_SUBMIT):
                m.d.comb += [known.eq(1), ok.eq(n == 2 + cfg.vec.dim)]
        return known, ok

    def elaborate(self, platform):
        m = Module()
        cfg, lay, bb = self.cfg, self.layout, self.bb
        dim, k = cfg.vec.dim, cfg.search.k
        soft_rst = Signal()

        # ---- link ---------------------------------------------------------------------
        m.submodules.uart_rx = urx = UARTRx(self.divisor)
        m.submodules.uart_tx = utx = UARTTx(self.divisor)
        m.submodules.rx_fifo = rxf = SyncFIFOBuffered(width=8, depth=self.rx_fifo)
        m.submodules.rcv = rcv = FrameReceiver(self._valid_length, timeout=self.timeout)
        m.submodules.snd = snd = FrameSender()
        # a register between the FIFO's block RAM and the receiver: the RAM's clock-to-out
        # is not followed by logic in the same cycle (docs/RESOURCES.md, "Boards")
        rx_v, rx_d, rx_take = Signal(), Signal(8), Signal()
        m.d.comb += [rx_take.eq(~rx_v | rcv.rx.ready), rcv.rx.valid.eq(rx_v),
                     rcv.rx.payload.eq(rx_d)]
        with m.If(rx_take):
            m.d.sync += [rx_v.eq(rxf.r_rdy), rx_d.eq(rxf.r_data)]
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx),
                     rxf.w_data.eq(urx.o.payload), rxf.w_en.eq(urx.o.valid),
                     urx.o.ready.eq(rxf.w_rdy),
                     rxf.r_en.eq(rx_take),
                     utx.i.payload.eq(snd.tx.payload), utx.i.valid.eq(snd.tx.valid),
                     snd.tx.ready.eq(utx.i.ready)]

        acc = self.acc
        host_sel = Signal()
        entry = Signal(cfg.id_bits)
        entry_code = Signal(8 * self.code_bytes)
        if acc is not None:  # the geometry registers (SET_GEOMETRY) and their staging
            gshape = acc.geom.shape()
            geom = Signal(gshape, init=geometry_init(lay))
            gst = Signal(32 * len(GEOMETRY_FIELDS))  # payload words 1.. (u32 each)
            gwords = {f: gst.word_select(i, 32) for i, f in enumerate(GEOMETRY_FIELDS)}
            gview = SimpleNamespace(**{f: gwords[f][:len(getattr(geom, f))]
                                       for f in GEOMETRY_FIELDS})
            g_bad = Signal()
        # ---- store ----------------------------------------------------------------------
        m.submodules.store = store = StoreRAM(self.beat_bits, self.store_words,
                                              latency=self.store_latency,
                                              impl=self.impl)
        swr = SimpleNamespace(addr=store.w_addr, data=store.w_data, en=store.w_en)
        srd = SimpleNamespace(addr=store.r_addr, data=store.r_data, en=store.r_en)
        h_addr = Signal(range(self.store_words + 1))
        busy = Signal()
        rec_ready = Signal(range(self.result_slots + 2))
        rec_take = Signal()
        cnt = {n: Signal(32, name=f"c_{n}") for n in L.LINK_COUNTERS}
        # the link's read-back: the store's read data two cycles after the address (the
        # RAM's own output register, or one behind a latency-1 RAM; docs/RESOURCES.md,
        # "Boards")
        if self.store_latency == 2:
            sq = srd.data
        else:
            sq = Signal(self.beat_bits)
            with m.If(host_sel):
                m.d.sync += sq.eq(srd.data)
        if acc is None:
            m.d.comb += [srd.addr.eq(h_addr), srd.en.eq(1)]
        else:
            # ---- accelerator, queries, results ----------------------------------------------
            # the controller's store port is the RAM's read port (read latency one cycle,
            # data held while store_en is low); the link takes the port only while the
            # accelerator is idle (store commands answer ERR_BUSY otherwise)
            # the accelerator's domain: the sync clock, reset by one registered net (the
            # sync reset or SOFT_RESET, a cycle later; on the ECP5 a global network)
            cd_acc = ClockDomain("acc", local=True)
            m.domains += cd_acc
            m.submodules.acc_reset = arst = GlobalReset(impl=self.impl)
            m.d.comb += [cd_acc.clk.eq(ClockSignal("sync")), arst.i.eq(soft_rst),
                         cd_acc.rst.eq(arst.o), acc.soft_reset.eq(0)]
            # (the acc clock is the sync clock assigned combinationally: in the Amaranth
            # simulator acc registers update a delta cycle after sync ones, so an acc
            # statement must not read a sync register directly, only acc signals, inputs
            # or comb signals; none does)
            to_acc = DomainRenamer("acc")
            m.submodules.accel = to_acc(acc)
            m.d.comb += acc.store_data.eq(srd.data)
            with m.If(host_sel):
                m.d.comb += [srd.addr.eq(h_addr), srd.en.eq(1)]
            with m.Else():
                m.d.comb += [srd.addr.eq(acc.store_addr), srd.en.eq(acc.store_en)]
            m.submodules.qfifo = qf = to_acc(
                SyncFIFOBuffered(width=8, depth=self.query_slots * dim))
            m.submodules.tfifo = tf = to_acc(SyncFIFOBuffered(width=16, depth=self.query_slots))
            m.submodules.rfifo = rf = to_acc(
                SyncFIFOBuffered(width=8, depth=self.result_slots * self.rec_bytes))
            col = _Collector(acc, k)
            m.submodules.collector = to_acc(col)
            q_idx = Signal(range(dim))
            # a query's elements go to the accelerator with the tag at the tag FIFO's head
            m.d.comb += [acc.query.payload.data.eq(qf.r_data),
                         acc.query.payload.tag.eq(tf.r_data),
                         acc.query.valid.eq(qf.r_rdy & tf.r_rdy),
                         qf.r_en.eq(acc.query.ready & tf.r_rdy),
                         rf.w_data.eq(col.w_data), rf.w_en.eq(col.w_en), col.w_rdy.eq(rf.w_rdy)]
            with m.If(acc.query.valid & acc.query.ready):
                m.d.acc += q_idx.eq(Mux(q_idx == dim - 1, 0, q_idx + 1))
                with m.If(q_idx == dim - 1):
                    m.d.comb += tf.r_en.eq(1)
            m.d.comb += [acc.entry.eq(entry), acc.entry_code.eq(entry_code),
                         acc.geom.eq(geom), acc.cb_wr.valid.eq(0)]

        # ---- link counters ------------------------------------------------------------------
        m.d.comb += [cnt["garbage_bytes"].eq(rcv.garbage_bytes)]
        if acc is not None:
            err_seen = Signal()  # sticky until SOFT_RESET: a query's error flag was sent
            with m.If(col.rec_done & col.error):
                m.d.acc += err_seen.eq(1)
            m.d.acc += rec_ready.eq(rec_ready + col.rec_done - rec_take)
            with m.If(col.rec_done):
                m.d.sync += cnt["completed"].eq(cnt["completed"] + 1)
            m.d.comb += busy.eq(~acc.idle | qf.r_rdy | tf.r_rdy | ~col.idle)
            m.d.comb += [cnt["queued"].eq(tf.level), cnt["results_ready"].eq(rec_ready),
                         cnt["status"].eq(Cat(busy, err_seen | acc.ctl.error, ~acc.idle))]
            with m.If(tf.w_en & tf.w_rdy):
                m.d.sync += cnt["submitted"].eq(cnt["submitted"] + 1)

        # ---- command decoder ------------------------------------------------------------
        ev = rcv.event.payload
        prm = Signal(8 * 16)
        pi = Signal(range(L.MAX_PAYLOAD + 2))
        rreg = Signal(8 * 64)
        h = snd.hdr.payload
        hdr_type, hdr_len = Signal(8), Signal(16)
        src = Signal(2)  # 0 register, 1 store bytes, 2 result FIFO
        rd_crc_only = Signal()
        w_cnt = Signal(range(L.MAX_PAYLOAD + 1))  # words of the command
        w_i = Signal(range(L.MAX_PAYLOAD + 1))
        b_i = Signal(range(bb))
        word = Signal(self.beat_bits)
        m.submodules.rb_crc = rcrc = crc16_processor()
        m.d.comb += rcv.buf_addr.eq(pi)
        addr32 = prm[:32]
        count32 = prm[32:64]
        dsub, eb = cfg.dsub, cfg.vec.elem_bits
        cb = acc.cb_wr.payload if acc is not None else None
        cb_addr = Signal(16)
        cen = Signal(dsub * eb)
        c_j = Signal(range(dsub))
        nw = (ev.len - 4) >> (bb - 1).bit_length()  # words of a WRITE_STORE
        n_cb = cfg.pq.M * cfg.pq.ksub
        wr_bad, rd_bad, cb_bad, geo_bad = Signal(), Signal(), Signal(), Signal()
        ident_bits = Cat(*[Const(self.ident[n], 8 * w) for n, w in L.IDENT_FIELDS])
        ctr_bits = Cat(*[cnt[n] for n in L.LINK_COUNTERS])

        def reply(rtype, length, source=0):
            m.d.sync += [hdr_type.eq(rtype), hdr_len.eq(length), src.eq(source), pi.eq(0)]
            m.next = "HDR"

        def error(code):
            m.d.sync += [rreg.eq(Cat(Const(code, 8), ev.type)),
                         cnt["errors"].eq(cnt["errors"] + 1)]
            reply(L.T_ERROR, 2)

        @contextmanager
        def accepted(*refusals):
            """``with accepted((cond, code), ...):`` -- the first true ``cond`` answers with
            error ``code``; the body runs when none holds."""
            for k, (cond, code) in enumerate(refusals):
                with (m.Elif if k else m.If)(cond):
                    error(code)
            with m.Else():
                yield

        m.d.comb += [h.type.eq(hdr_type), h.seq.eq(ev.seq), h.len.eq(hdr_len)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(rcv.event.valid):
                    m.d.sync += pi.eq(0)
                    with m.If(ev.error != 0):
                        with m.If(ev.error == L.ERR_CRC):
                            m.d.sync += cnt["crc_errors"].eq(cnt["crc_errors"] + 1)
                        m.d.sync += [rreg.eq(Cat(ev.error, Const(0, 4), ev.type)),
                                     cnt["errors"].eq(cnt["errors"] + 1)]
                        reply(L.T_ERROR, 2)
                    with m.Else():
                        m.d.sync += cnt["frames_ok"].eq(cnt["frames_ok"] + 1)
                        m.next = "LOADP"
            with m.State("LOADP"):  # the first 16 payload bytes into prm
                m.d.sync += pi.eq(pi + 1)
                with m.If(pi != 0):
                    m.d.sync += prm.word_select((pi - 1)[:4], 8).eq(rcv.buf_data)
                with m.If(pi == 16):
                    m.next = "CHECK"
            with m.State("CHECK"):  # the range checks, registered (timing)
                m.d.sync += [
                    wr_bad.eq(addr32 + nw > self.store_words),
                    rd_bad.eq((count32 == 0) | (count32 > L.MAX_PAYLOAD // bb) |
                              (addr32 + count32 > self.store_words)),
                ]
                if acc is not None:
                    n, hot, gw, ent = prm[32:64], prm[64:96], prm[96:128], prm[:32]
                    m.d.sync += [
                        cb_bad.eq(prm[:16] * dsub + ev.len - 2 > n_cb * dsub),
                        geo_bad.eq((n == 0) | (n > cfg.engine.max_vertices) | (hot > n) |
                                   (gw > cfg.id_bits) | (ent >= n)),
                    ]
                m.next = "EXEC"
            with m.State("EXEC"):
                with m.Switch(ev.type):
                    with m.Case(L.T_IDENTIFY):
                        m.d.sync += rreg.eq(ident_bits)
                        reply(L.reply_type(L.T_IDENTIFY), len(ident_bits) // 8)
                    with m.Case(L.T_READ_COUNTERS):
                        m.d.sync += rreg.eq(ctr_bits)
                        reply(L.reply_type(L.T_READ_COUNTERS), len(ctr_bits) // 8)
                    with m.Case(L.T_SOFT_RESET):
                        m.d.comb += soft_rst.eq(1)
                        reply(L.reply_type(L.T_SOFT_RESET), 0)
                    if acc is not None:
                        with m.Case(L.T_READ_RESULT):
                            with m.If(rec_ready != 0):
                                m.d.comb += rec_take.eq(1)
                                reply(L.reply_type(L.T_READ_RESULT), self.rec_bytes, 2)
                            with m.Else():
                                reply(L.reply_type(L.T_READ_RESULT), 0)
                        with m.Case(L.T_SET_GEOMETRY):
                            with accepted((busy, L.ERR_BUSY), (geo_bad, L.ERR_GEOMETRY)):
                                m.d.sync += pi.eq(4)
                                m.next = "GEO_REGS"
                        with m.Case(L.T_SUBMIT):
                            with m.If((qf.level > self.query_slots * dim - dim) | ~tf.w_rdy):
                                error(L.ERR_FULL)
                            with m.Else():
                                m.d.comb += [tf.w_en.eq(1), tf.w_data.eq(prm[:16])]
                                m.d.sync += pi.eq(2)
                                m.next = "SUBMIT"
                    with m.Case(L.T_WRITE_STORE):
                        with accepted((busy, L.ERR_BUSY), (wr_bad, L.ERR_RANGE)):
                            m.d.sync += [w_cnt.eq(nw), w_i.eq(0), b_i.eq(0), pi.eq(4),
                                         h_addr.eq(addr32)]
                            m.next = "WRITE"
                    with m.Case(L.T_READ_STORE):
                        with accepted((busy, L.ERR_BUSY), (rd_bad, L.ERR_RANGE)):
                            m.d.sync += [w_cnt.eq(count32), h_addr.eq(addr32),
                                         rd_crc_only.eq(0)]
                            reply(L.reply_type(L.T_READ_STORE), count32 * bb, 1)
                    if acc is not None:
                        with m.Case(L.T_WRITE_CODEBOOK):
                            with accepted((busy, L.ERR_BUSY), (cb_bad, L.ERR_RANGE)):
                                m.d.sync += [cb_addr.eq(prm[:16]), pi.eq(2), c_j.eq(0)]
                                m.next = "CODEBOOK"
                    with m.Case(L.T_CLEAR_STORE):
                        with accepted((busy, L.ERR_BUSY)):
                            m.d.sync += h_addr.eq(0)
                            m.next = "CLEAR"
            with m.State("CLEAR"):
                m.d.comb += [host_sel.eq(1), swr.addr.eq(h_addr), swr.data.eq(0), swr.en.eq(1)]
                m.d.sync += h_addr.eq(h_addr + 1)
                with m.If(h_addr == self.store_words - 1):
                    reply(L.reply_type(L.T_CLEAR_STORE), 0)
            if acc is not None:
                with m.State("SUBMIT"):  # payload bytes 2 .. 2 + dim - 1 into the query FIFO
                    # buffer read latency 1: pi addresses, the byte arrives a cycle later
                    m.d.sync += pi.eq(pi + 1)
                    m.d.comb += [qf.w_data.eq(rcv.buf_data), qf.w_en.eq(pi > 2)]
                    with m.If(pi == 2 + dim):
                        m.d.sync += rreg.eq(prm[:16])
                        reply(L.reply_type(L.T_SUBMIT), 2)
            if acc is not None:
                g_end = 4 + 4 * len(GEOMETRY_FIELDS)  # the code's first payload byte
                with m.State("GEO_REGS"):  # payload bytes 4 .. g_end - 1 into the staging
                    m.d.sync += pi.eq(pi + 1)
                    with m.If(pi > 4):
                        m.d.sync += gst.eq(Cat(gst[8:], rcv.buf_data))
                    with m.If(pi == g_end):
                        m.d.sync += pi.eq(g_end)
                        m.next = "GEO_CHECK"
                with m.State("GEO_CHECK"):  # golden.link.geometry_fits, registered
                    bnd = geometry_bounds(cfg)
                    pages = self.acc.pages
                    nm1 = (gwords["n"][:cfg.id_bits + 1] - 1)[:cfg.id_bits + 1]
                    over = Cat(*[gwords[f] > getattr(bnd, f) for f in GEOMETRY_FIELDS]).any()
                    zero = Cat(*[gwords[f] == 0 for f in (
                        "hot_accesses", "stride", "frames_per_page", "frame_accesses",
                        "code_accesses")]).any()
                    f_page = frame_location(cfg, gview, nm1)[1]
                    r_page = raw_location(cfg, nm1)[1]
                    X = cfg.layout.hot_copies
                    last = gview.hot * gview.hot_accesses
                    h_page = hot_chunk_location(cfg, gview, 0, (last - 1)[:len(last)], X - 1)[1]
                    c_end = gview.code_copy_page + (X - 1) * gview.code_copy_pages
                    m.d.sync += g_bad.eq(over | zero | (gwords["n"] != prm[32:64]) |
                                         (gwords["hot"] != prm[64:96]) |
                                         (gwords["gap_width"] != prm[96:128]) |
                                         (f_page >= pages) | (r_page >= pages) |
                                         ((gview.hot != 0) & (h_page >= pages)) |
                                         (c_end > pages) |
                                         (gview.code_copy_count > gview.n))
                    m.next = "GEO_SET"
                with m.State("GEO_SET"):
                    with m.If(g_bad):
                        error(L.ERR_GEOMETRY)
                    with m.Else():
                        m.d.sync += [entry.eq(prm[:32]),
                                     geom.eq(Cat(*[gview.__dict__[f]
                                                   for f in GEOMETRY_FIELDS]))]
                        m.next = "GEO_CODE"
                with m.State("GEO_CODE"):  # payload bytes g_end .. g_end + code_bytes - 1
                    m.d.sync += pi.eq(pi + 1)
                    with m.If(pi > g_end):
                        m.d.sync += entry_code.eq(Cat(entry_code[8:], rcv.buf_data))
                    with m.If(pi == g_end + self.code_bytes):
                        reply(L.reply_type(L.T_SET_GEOMETRY), 0)
            with m.State("WRITE"):
                # pi: next buffer byte to address; bytes arrive a cycle later
                m.d.comb += host_sel.eq(1)
                m.d.sync += pi.eq(pi + 1)
                with m.If(pi > 4):
                    m.d.sync += [word.eq(Cat(word[8:], rcv.buf_data)), b_i.eq(b_i + 1)]
                    with m.If(b_i == bb - 1):
                        m.d.sync += pi.eq(pi)  # hold one cycle to write
                        m.next = "WRITE_WORD"
            with m.State("WRITE_WORD"):
                m.d.comb += [host_sel.eq(1), swr.addr.eq(h_addr), swr.data.eq(word),
                             swr.en.eq(1)]
                m.d.sync += [h_addr.eq(h_addr + 1), w_i.eq(w_i + 1), pi.eq(pi + 1)]
                with m.If(w_i + 1 == w_cnt):
                    m.d.sync += [h_addr.eq(addr32), rd_crc_only.eq(1)]
                    m.next = "RB_ISSUE"
                with m.Else():
                    m.next = "WRITE"
            if acc is not None:
                with m.State("CODEBOOK"):
                    m.d.sync += pi.eq(pi + 1)
                    with m.If(pi > 2):
                        m.d.sync += [cen.eq(Cat(cen[eb:], rcv.buf_data)), c_j.eq(c_j + 1)]
                        with m.If(c_j == dsub - 1):
                            m.d.sync += [c_j.eq(0), pi.eq(pi)]
                            m.next = "CB_PUSH"
                with m.State("CB_PUSH"):
                    m.d.comb += [acc.cb_wr.valid.eq(1), cb.addr.eq(cb_addr),
                                 cb.centroid.as_value().eq(cen)]
                    with m.If(acc.cb_wr.ready):
                        m.d.sync += [cb_addr.eq(cb_addr + 1), pi.eq(pi + 1)]
                        with m.If(pi == ev.len):
                            reply(L.reply_type(L.T_WRITE_CODEBOOK), 0)
                        with m.Else():
                            m.next = "CODEBOOK"
            # read-back: words h_addr.. (w_cnt of them) -> CRC only (write reply) or bytes
            with m.State("RB_ISSUE"):
                m.d.comb += host_sel.eq(1)
                m.d.sync += [w_i.eq(0), b_i.eq(0)]
                m.d.comb += rcrc.start.eq(1)
                m.next = "RB_WAIT"
            with m.State("RB_WAIT"):  # RAM read, then sq
                m.d.comb += host_sel.eq(1)
                m.next = "RB_LATCH"
            with m.State("RB_LATCH"):
                # sq holds the word at h_addr (a word's bytes take >= 2 cycles, so the next
                # word's read, started here, reaches sq before the next RB_LATCH)
                m.d.comb += host_sel.eq(1)
                m.d.sync += [word.eq(sq), h_addr.eq(h_addr + 1), b_i.eq(0)]
                m.next = "RB_BYTES"
            with m.State("RB_BYTES"):
                m.d.comb += host_sel.eq(1)
                byte = word.word_select(b_i, 8)
                go = Signal()
                m.d.comb += go.eq(rd_crc_only | snd.data.ready)
                m.d.comb += [rcrc.data.eq(byte), rcrc.valid.eq(go)]
                with m.If(~rd_crc_only):
                    m.d.comb += [snd.data.valid.eq(1), snd.data.payload.eq(byte)]
                with m.If(go):
                    m.d.sync += b_i.eq(b_i + 1)
                    with m.If(b_i == bb - 1):
                        m.d.sync += w_i.eq(w_i + 1)
                        with m.If(w_i + 1 == w_cnt):
                            with m.If(rd_crc_only):
                                m.next = "RB_CRC"
                            with m.Else():
                                m.next = "IDLE_WAIT"
                        with m.Else():
                            m.next = "RB_LATCH"
            with m.State("RB_CRC"):
                m.d.sync += rreg.eq(rcrc.crc)
                reply(L.reply_type(L.T_WRITE_STORE), 2)
            # reply: header, then the payload from the selected source
            with m.State("HDR"):
                m.d.comb += snd.hdr.valid.eq(1)
                with m.If(snd.hdr.ready):
                    with m.If(src == 1):
                        m.next = "RB_ISSUE"
                    with m.Else():
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                with m.If(pi == hdr_len):
                    m.next = "IDLE_WAIT"
                with m.Elif(src == 2):
                    if acc is not None:
                        m.d.comb += [snd.data.valid.eq(rf.r_rdy),
                                     snd.data.payload.eq(rf.r_data),
                                     rf.r_en.eq(snd.data.ready)]
                        with m.If(snd.data.ready & rf.r_rdy):
                            m.d.sync += pi.eq(pi + 1)
                with m.Else():
                    m.d.comb += [snd.data.valid.eq(1),
                                 snd.data.payload.eq(rreg.word_select(pi[:6], 8))]
                    with m.If(snd.data.ready):
                        m.d.sync += pi.eq(pi + 1)
            with m.State("IDLE_WAIT"):
                # the sender has taken the whole payload: release the event (and the buffer)
                m.d.comb += rcv.event.ready.eq(1)
                m.next = "IDLE"
        return m


