"""Gap decoder: NAND frame words in, neighbour ids and PQ codes out.

Bit-exact twin of :func:`proxima.golden.layout.decode_frame` (normal frames) and
:func:`proxima.golden.layout.decode_hot_frame` (hot frames); the frame format is specified
bit by bit in ``docs/LAYOUT.md`` (sections 2-5).  Every width comes from the configuration:
``R = graph.R``, ``B = engine.id_bits``, ``C = cfg.pq_code_bytes``, ``DB = bitlen(R)``,
``WB = bitlen(B)``; the byte offset of a normal frame's code for a slot width ``W`` is taken
from :class:`proxima.golden.layout.Layout` at elaboration (one table entry per ``W = 0..B``).

Interface
---------
``gap_width`` ``In(WB)``: the image's slot width ``W`` (a configuration register loaded when an
           image is mounted; keep it constant while frames flow).
``i``      ``In(stream{data: word_bits, last: 1, hot: 1})``: one frame as a sequence of
           *access words*.  Word ``t`` holds frame bytes ``[t*word_bytes, (t+1)*word_bytes)``,
           byte ``b`` of the word in bits ``8b .. 8b+7`` (the little-endian bit string of
           LAYOUT.md section 2: frame bit ``p`` is word ``p // word_bits`` bit
           ``p % word_bits``).  The producer sends at least the bytes the frame occupies
           (``frame_bytes`` of a normal frame, ``hot_frame_bytes`` of a hot frame; e.g. the
           whole access or stride is fine: bytes past the frame are ignored) and sets
           ``last`` on the final word.  ``hot`` is sampled on the first word of a frame:
           1 = a hot frame (ids interleaved with the neighbours' codes).
``ids``    ``Out(stream{id: B, last, empty, corrupt})``: the ``d`` neighbour ids in row order
           (ascending), ``last`` on the ``d``-th.  A frame with ``d = 0`` gives exactly one
           beat with ``empty = last = 1``.
``codes``  ``Out(stream{code: ArrayLayout(8, C), last, empty, corrupt})``: normal frame: one
           beat, the vertex's own code (byte ``m`` = subspace ``m``), ``last = 1``.  Hot
           frame: ``d`` beats, the code of the ``j``-th id (pair them in order with the
           ``ids`` beats), ``last`` on the ``d``-th; a hot frame with ``d = 0`` gives one
           beat with ``empty = last = 1`` (code 0).

Every frame therefore ends each of the two streams with exactly one ``last`` beat.

Bad frames never hang the decoder and are never passed on silently: a *corrupt header*
(``d > R`` or ``w > W``, which ``decode_frame`` rejects) and a *truncated frame* (its ``last``
word arrives before the bits the next field needs) *close* the frame: each stream that has
not had its ``last`` beat for this frame gets one beat with ``empty = last = corrupt = 1``
(ids / codes already emitted stay valid; the consumer drops the frame).  The rest of the
frame's words are discarded.  No range check of the ids against ``N`` is made
(``decode_frame`` does one; the scheduler knows ``N``).

Word width
----------
``word_bits`` (default: the smallest power of two ``>= 2 * B``, at most ``8 * A``; 32 bits in
``tiny``, 64 in ``default`` and ``paper``; any power of two ``>= B`` works) is the NAND
controller's data-bus width.  One word is accepted per cycle at most.

Micro-architecture and throughput
---------------------------------
A window of two input words holds the not yet consumed frame bits from the bit read pointer
``rp`` (``0 .. word_bits-1``) of its low word on; ``cnt = nwords * word_bits - rp`` counts
them and ``view = (window >> rp)[:word_bits]`` (a funnel shifter) shows the next bits.  Each
cycle the state machine consumes ``take`` bits (a field, or a skip) from ``view``; ``rp +
take`` tells how many whole words (0..2) are used up and drop out of the window, and the next
input word is accepted into the first free slot when the window held fewer than two words
at the start of the cycle (``i.ready`` depends on registers only).  States:

``HDR``   (``cnt >= HB``) read ``d``, ``w``; check them.                 1 cycle per frame
``FIRST`` emit ``n_0`` (``B`` bits) or the ``empty`` beat.
``GAP``   emit ``id += gap`` (``w`` bits).                               1 id per cycle
``SKIP``  normal frames: drop the bits up to byte ``code_off`` (the tail of the id region;
          a register ``left`` counts them down from ``8 * code_off - HB``), up to ``cnt``
          bits per cycle: in practice one input word per cycle.
``CODE``  gather the ``8C`` code bits in chunks of ``word_bits`` into the ``codes`` output
          register (``ceil(8C / word_bits)`` cycles); hot frames go back to ``GAP`` after
          each code.
``CLOSE`` the closing ``empty`` / ``corrupt`` beats described above.
``DRAIN`` drop the rest of the frame up to and including its ``last`` word.

Ids come out at one per cycle after the header whenever ``ids.ready`` is high and the words
arrive at one per cycle (``w <= B <= word_bits / 2``).  A normal frame of degree ``d`` thus
takes about ``2 + d`` cycles plus the skip to the code (``~ (code_off*8 - used) /
word_bits``) plus ``ceil(8C / word_bits)``; a hot frame ``2 + d * (1 + ceil(8C /
word_bits))`` cycles, plus up to one cycle per code chunk while the buffer refills (a
chunk of ``word_bits`` bits needs a full word in the window) and one bubble per code when
``codes`` is the bottleneck.  Measured: 41.7 cycles per degree-32 normal frame at full rate
(``default``, W = 20, 64-bit words; ``tests/hdl/test_gapdec.py``).  ECP5-85F (``python -m
proxima.fpga.resources gapdec --preset default``, 2026-11-22): 1844 LUT4 (incl. 54 CCU2C),
724 FF, no BRAM/DSP, Fmax 80.9 MHz after place and route (below the 100 MHz ``default``
clock; the critical path runs from the window through the funnel shifter and the id adder
into the state register: registering the ``ids`` output is the next step).
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from proxima.config import ProximaConfig
from proxima.golden.layout import Layout, LayoutError, bitlen

__all__ = ["GapDecoder", "GapDecoderError", "default_word_bits"]


class GapDecoderError(ValueError):
    """Impossible parameters for the gap decoder."""


def default_word_bits(cfg: ProximaConfig) -> int:
    """Smallest power of two ``>= 2 * id_bits``, capped at one access (``8 * access_bytes``)."""
    wb = 1 << (2 * cfg.id_bits - 1).bit_length()
    return min(wb, 8 * cfg.nand.access_bytes)


class GapDecoder(wiring.Component):
    """Decoder of normal and hot NAND frames (see the module docstring)."""

    def __init__(self, cfg: ProximaConfig, *, word_bits: int | None = None):
        wb = default_word_bits(cfg) if word_bits is None else int(word_bits)
        B = cfg.id_bits
        if wb < 8 or wb & (wb - 1):
            raise GapDecoderError(f"word_bits must be a power of two >= 8, got {wb}")
        if wb < B:
            raise GapDecoderError(f"word_bits ({wb}) must be >= id_bits ({B})")
        self.cfg = cfg
        self.word_bits = wb
        self.R, self.B, self.C = cfg.graph.R, B, cfg.pq_code_bytes
        self.deg_bits, self.width_bits = bitlen(self.R), bitlen(B)
        self.header_bits = self.deg_bits + self.width_bits
        self.cap = 2 * wb
        # code byte offset of a normal frame per slot width W (None: W not mountable)
        self.code_offsets: list[int | None] = []
        max_bits = 0
        for W in range(B + 1):
            try:
                lay = Layout(cfg, 1, 0, W)
            except LayoutError:
                self.code_offsets.append(None)
                continue
            self.code_offsets.append(lay.code_offset)
            max_bits = max(max_bits, 8 * lay.frame_bytes, 8 * lay.hot_accesses * lay.access)
        if self.code_offsets[0] is None:
            raise GapDecoderError("no frame fits a page even with slot width 0")
        self.pos_bits = bitlen(max_bits + self.cap)
        self.in_layout = data.StructLayout({"data": wb, "last": 1, "hot": 1})
        self.id_layout = data.StructLayout({"id": B, "last": 1, "empty": 1, "corrupt": 1})
        self.code_layout = data.StructLayout({"code": data.ArrayLayout(unsigned(8), self.C),
                                              "last": 1, "empty": 1, "corrupt": 1})
        super().__init__({
            "gap_width": In(self.width_bits),
            "i": In(stream.Signature(self.in_layout)),
            "ids": Out(stream.Signature(self.id_layout)),
            "codes": Out(stream.Signature(self.code_layout)),
        })

    @classmethod
    def from_config(cls, cfg: ProximaConfig) -> "GapDecoder":
        return cls(cfg)

    def elaborate(self, platform):
        m = Module()
        wb, cap, B, R, C = self.word_bits, self.cap, self.B, self.R, self.C
        DB, HB = self.deg_bits, self.header_bits
        cbits = 8 * C
        nchunks = -(-cbits // wb)

        lw = (wb - 1).bit_length()             # log2(word_bits)
        win = Signal(cap)                      # two-word window; frame bits from rp on
        nwords = Signal(range(3))              # valid words in the window
        rp = Signal(lw)                        # read pointer (bit) into the low word
        cnt = Signal(range(cap + 1))           # unconsumed bits = nwords*wb - rp
        left = Signal(self.pos_bits)           # normal frames: bits to skip to the code
        view = Signal(wb)                      # the next wb unconsumed bits
        m.d.comb += view.eq((win >> rp)[:wb])
        buf = view
        deg = Signal(DB)
        w = Signal(self.width_bits)
        hot = Signal()
        j = Signal(range(R + 2))              # ids emitted so far in this frame
        cur = Signal(B)                       # last id emitted
        chunk = Signal(range(nchunks + 1))
        seen_last = Signal()                  # the frame's last word is in the buffer
        frame_start = Signal(init=1)          # next accepted word is a frame's first
        ids_done = Signal()                   # this frame's ids stream has had its `last`
        codes_done = Signal()                 # ... and its codes stream
        abort = Signal()                      # CLOSE: the frame is corrupt / truncated
        code_reg = Signal(cbits)
        code_valid = Signal()
        code_last = Signal()
        code_empty = Signal()
        code_corrupt = Signal()

        take = Signal(range(cap + 1))
        flush = Signal()
        hdr_fire = Signal()                    # the header is consumed this cycle

        # ---- code byte offset of the mounted slot width (table from golden Layout) -------
        target = Signal(self.pos_bits)
        with m.Switch(self.gap_width):
            for W, off in enumerate(self.code_offsets):
                if off is not None:
                    with m.Case(W):
                        m.d.comb += target.eq(8 * off)

        # ---- id field and the next id ------------------------------------------------
        gap_mask = Signal(B)
        m.d.comb += gap_mask.eq((~(Const((1 << B) - 1, B) << w))[:B])
        gap = Signal(B)
        m.d.comb += gap.eq(buf[:B] & gap_mask)

        ids_p = self.ids.payload
        m.d.comb += self.codes.valid.eq(code_valid)
        m.d.comb += [self.codes.payload.last.eq(code_last),
                     self.codes.payload.empty.eq(code_empty),
                     self.codes.payload.corrupt.eq(code_corrupt),
                     self.codes.payload.code.as_value().eq(code_reg)]
        with m.If(self.codes.valid & self.codes.ready):
            m.d.sync += code_valid.eq(0)
        with m.If(self.ids.valid & self.ids.ready & ids_p.last):
            m.d.sync += ids_done.eq(1)

        def truncated(need):
            """The frame's last word is in and fewer than `need` bits are left: close."""
            with m.If(seen_last & (cnt < need)):
                m.d.sync += abort.eq(1)
                m.next = "CLOSE"

        with m.FSM(init="HDR"):
            with m.State("HDR"):
                with m.If(cnt >= HB):
                    m.d.comb += [take.eq(HB), hdr_fire.eq(1)]
                    d_new = buf[:DB]
                    w_new = buf[DB:HB]
                    m.d.sync += [deg.eq(d_new), w.eq(w_new), j.eq(0), chunk.eq(0),
                                 ids_done.eq(0), codes_done.eq(0), abort.eq(0)]
                    with m.If((d_new > R) | (w_new > self.gap_width)):
                        m.d.sync += abort.eq(1)
                        m.next = "CLOSE"
                    with m.Else():
                        m.next = "FIRST"
                with m.Else():
                    m.d.sync += [ids_done.eq(0), codes_done.eq(0)]
                    truncated(HB)
            with m.State("FIRST"):
                with m.If(deg == 0):
                    m.d.comb += [self.ids.valid.eq(1), ids_p.empty.eq(1), ids_p.last.eq(1)]
                    with m.If(self.ids.ready):
                        with m.If(hot):
                            m.next = "CLOSE"   # no codes either: one empty codes beat
                        with m.Else():
                            m.next = "SKIP"
                with m.Else():
                    m.d.comb += [self.ids.valid.eq(cnt >= B), ids_p.id.eq(buf[:B]),
                                 ids_p.last.eq(deg == 1)]
                    with m.If(self.ids.valid & self.ids.ready):
                        m.d.comb += take.eq(B)
                        m.d.sync += [cur.eq(buf[:B]), j.eq(1)]
                        with m.If(hot):
                            m.next = "CODE"
                        with m.Elif(deg == 1):
                            m.next = "SKIP"
                        with m.Else():
                            m.next = "GAP"
                    truncated(B)
            with m.State("GAP"):
                nxt = (cur + gap)[:B]
                m.d.comb += [
                    self.ids.valid.eq(cnt >= w),
                    ids_p.id.eq(nxt),
                    ids_p.last.eq(j == deg - 1),
                ]
                with m.If(self.ids.valid & self.ids.ready):
                    m.d.comb += take.eq(w)
                    m.d.sync += [cur.eq(nxt), j.eq(j + 1)]
                    with m.If(hot):
                        m.next = "CODE"
                    with m.Elif(j == deg - 1):
                        m.next = "SKIP"
                truncated(w)
            with m.State("SKIP"):
                with m.If(cnt >= left):
                    m.d.comb += take.eq(left)
                    m.next = "CODE"
                with m.Else():
                    m.d.comb += take.eq(cnt)
                    with m.If(seen_last):
                        m.d.sync += abort.eq(1)
                        m.next = "CLOSE"
            with m.State("CODE"):
                with m.Switch(chunk):
                    for k in range(nchunks):
                        size = min(wb, cbits - k * wb)
                        with m.Case(k):
                            with m.If(~code_valid & (cnt >= size)):
                                m.d.comb += take.eq(size)
                                m.d.sync += code_reg[k * wb:k * wb + size].eq(buf[:size])
                                if k < nchunks - 1:
                                    m.d.sync += chunk.eq(k + 1)
                                else:
                                    fin = ~hot | (j == deg)
                                    m.d.sync += [chunk.eq(0), code_valid.eq(1),
                                                 code_last.eq(fin), code_empty.eq(0),
                                                 code_corrupt.eq(0), codes_done.eq(fin)]
                                    with m.If(fin):
                                        m.next = "DRAIN"
                                    with m.Else():
                                        m.next = "GAP"
                            truncated(size)
            with m.State("CLOSE"):
                # close each stream of this frame that has not had its `last` yet:
                # corrupt header or truncated frame (abort = 1), or a hot frame of degree 0
                with m.If(~ids_done):
                    m.d.comb += [self.ids.valid.eq(1), ids_p.empty.eq(1), ids_p.last.eq(1),
                                 ids_p.corrupt.eq(abort)]
                with m.Elif(~codes_done):
                    with m.If(~code_valid):
                        m.d.sync += [code_reg.eq(0), code_valid.eq(1), code_last.eq(1),
                                     code_empty.eq(1), code_corrupt.eq(abort),
                                     codes_done.eq(1)]
                with m.Else():
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.comb += flush.eq(1)
                with m.If(seen_last):
                    m.d.sync += [seen_last.eq(0), frame_start.eq(1)]
                    m.next = "HDR"
                with m.Elif(self.i.valid & self.i.payload.last):
                    m.d.sync += frame_start.eq(1)
                    m.next = "HDR"

        # ---- window: drop consumed words, append one word ------------------------------
        # i.ready depends on registers only (nwords, seen_last, state).
        load = Signal()
        with m.If(flush):
            m.d.comb += self.i.ready.eq(~seen_last)
        with m.Else():
            m.d.comb += [self.i.ready.eq(~seen_last & (nwords < 2)),
                         load.eq(self.i.valid & self.i.ready)]
        adv = Signal(range(2 * cap + 1))
        m.d.comb += adv.eq(rp + take)
        drop = adv[lw:]                        # words fully consumed this cycle (0..2)
        kept = Signal(range(3))
        m.d.comb += kept.eq(nwords - drop)
        lo, hi = win[:wb], win[wb:]
        lo_d = Mux(drop == 0, lo, Mux(drop == 1, hi, 0))
        hi_d = Mux(drop == 0, hi, 0)
        data = self.i.payload.data
        with m.If(flush):
            m.d.sync += [win.eq(0), nwords.eq(0), rp.eq(0), cnt.eq(0)]
        with m.Else():
            m.d.sync += [
                win[:wb].eq(Mux(load & (kept == 0), data, lo_d)),
                win[wb:].eq(Mux(load & (kept == 1), data, hi_d)),
                nwords.eq(kept + load),
                rp.eq(adv[:lw]),
                cnt.eq(cnt + Mux(load, wb, 0) - take),
                # normal frames reach the code after target - HB bits past the header
                left.eq(Mux(hdr_fire, target - HB, left - take)),
            ]
            with m.If(load):
                m.d.sync += seen_last.eq(self.i.payload.last)
                with m.If(frame_start):
                    m.d.sync += [hot.eq(self.i.payload.hot), frame_start.eq(0)]
        return m
