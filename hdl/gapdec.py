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
``tiny``, 64 in ``default`` and ``paper``; any power of two ``>= B`` and ``>= HB``, the header
being read from the frame's first word) is the NAND controller's data-bus width.  One word is
accepted per cycle at most.

Latency and throughput
----------------------
A beat leaves ``PIPE_LATENCY = 4`` cycles after it is issued: the first id of a frame is
valid 6 cycles after the frame's first word is accepted.  Throughput is set by stage 0
alone: ids of a frame come out on consecutive cycles whenever the words arrive at one per
cycle and ``ids.ready`` stays high (``w <= B <=
word_bits / 2``; checked in the tests).  A normal frame of degree ``d`` takes about ``3 +
d`` cycles plus the skip to the code's word plus ``ceil(8C / word_bits)`` code chunks plus
the drain (a producer that sends the whole stride pays one cycle per word past the code);
a hot frame about ``3 + d * (1 + ceil(8C / word_bits))`` cycles.  Measured cycles per frame,
resources and clock rate: ``docs/RESOURCES.md``.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from proxima.config import ProximaConfig
from proxima.golden.layout import Layout, LayoutError, bitlen
from proxima.golden.nandctl import default_word_bits
from proxima.hdl.lib.fifo import Queue

__all__ = ["GapDecoder", "GapDecoderError", "default_word_bits"]


class GapDecoderError(ValueError):
    """Impossible parameters for the gap decoder."""


class GapDecoder(wiring.Component):
    """Decoder of normal and hot NAND frames (see the module docstring)."""

    #: input words the ring buffer holds
    RING_WORDS = 4
    #: cycles from issuing a field (reader) to its beat on an output stream
    PIPE_LATENCY = 4

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
        if wb < self.header_bits:
            raise GapDecoderError(f"word_bits ({wb}) must be >= the header bits "
                                  f"({self.header_bits}): the header is read from the first word")
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
        self.max_words = -(-max_bits // wb)
        # output FIFOs: ids sustain one beat per cycle through the issue->output->credit loop
        self.ids_depth = 1 << ceil_log2(self.PIPE_LATENCY + 1)
        self.codes_depth = 2
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

    def elaborate(self, platform):
        """Structure (the contract is the module docstring).

        Micro-architecture
        ------------------------------------------------------
        Five stages; only stage 0 has a feedback loop, and it never looks at frame data:

        0. *Reader* (control only).  A ring of ``RING_WORDS = 4`` input words (``head``: the slot
           of the low word, ``nwords``) and a bit read pointer ``rp`` (``0 .. word_bits-1``) into
           the low word.  The header is decoded from the frame's first word *when it is accepted*
           (``d``, ``w``, ``d > R or w > W``, ``hot``), so the state machine never reads frame data
           (only these registered flags): each cycle it *issues* at most one field of registered width ``need`` (header,
           ``B``, ``w``, a code chunk of ``<= word_bits`` bits) with a small tag (kind, ``last`` /
           ``empty`` / ``corrupt`` flags, ``w``), advancing ``rp`` by ``need`` (the sum ``rp + need``
           is computed from registers; its carry drops the low word).  A field is in the ring when
           ``nwords >= 2`` (always enough for ``need <= word_bits``); with fewer words the exact
           test ``rp + need <= nwords * word_bits`` is registered and used the cycle after (a
           one-cycle wait only while the ring is nearly empty, e.g. at a frame's tail).  ``SKIP``
           drops whole words until the code's word (``8 * code_off // word_bits``), then sets ``rp``
           to the code's bit.  An id or code beat is issued only with a *credit* (a free entry
           in its output FIFO, counting beats in flight), so back-pressure never reaches the
           pipeline combinationally.  ``i.ready`` depends on registers only.
        1. *Word select*: the two ring words from ``head`` on, with ``rp`` and the tag.
        2. *Byte shift* of that pair by ``rp // 8`` (an 8:1 mux per bit) and the id-field mask
           (``B`` ones for the first id, ``w`` ones for a gap).
        3. *Bit shift* by ``rp % 8``: the field, left-aligned; the id field masked.
        4. *Id adder* ``id = cur + field`` (``cur`` is zeroed when a first id is next) and the code
           assembler (chunks of ``word_bits`` bits), written straight into the output queues
           (:class:`proxima.hdl.lib.fifo.Queue`; ``ids``: ``ids_depth = 8`` entries, enough
           to cover the issue-to-credit loop at one
           id per cycle; ``codes``: 2 entries).  ``empty`` beats carry id / code 0.

        States of stage 0:

        ``HDR``   (first word in the ring) consume the header, or close a corrupt one.  1 cycle
        ``FIRST`` issue ``n_0`` (``B`` bits) or the ``empty`` id beat.                   1 cycle
        ``GAP``   issue ``id += gap`` (``w`` bits).                                 1 id per cycle
        ``SKIP``  normal frames: drop whole words up to the code's word.     1 word per cycle
        ``CODE``  issue the ``8C`` code bits in chunks of ``word_bits`` (``ceil(8C / word_bits)``
                  cycles); hot frames go back to ``GAP`` after each code.
        ``CLOSE`` issue the closing ``empty`` / ``corrupt`` beats described above (both streams
                  in the same cycle).
        ``DRAIN`` flush the ring and drop the rest of the frame up to and including its ``last``
                  word; once that word is in, the word accepted in this state is the next
                  frame's first (written to the emptied ring, its header decoded): 1 cycle when
                  the frame's last word is already in the ring.
        """
        m = Module()
        wb, B, R, C = self.word_bits, self.B, self.R, self.C
        DB, HB, WB = self.deg_bits, self.header_bits, self.width_bits
        NS = self.RING_WORDS
        cbits = 8 * C
        nchunks = -(-cbits // wb)
        sizes = [min(wb, cbits - k * wb) for k in range(nchunks)]
        lw = exact_log2(wb)

        # ================= output FIFOs (stage 4) ===========================================
        m.submodules.idq = idq = Queue(self.id_layout, self.ids_depth, credited=True)
        m.submodules.cdq = cdq = Queue(self.code_layout, self.codes_depth, credited=True)
        id_pop, cd_pop = Signal(), Signal()
        m.d.comb += [self.ids.valid.eq(idq.o.valid), idq.o.ready.eq(self.ids.ready),
                     id_pop.eq(self.ids.valid & self.ids.ready),
                     self.codes.valid.eq(cdq.o.valid), cdq.o.ready.eq(self.codes.ready),
                     cd_pop.eq(self.codes.valid & self.codes.ready)]
        id_push, id_pdata, id_head = idq.i.valid, idq.i.payload, idq.o.payload
        cd_push, cd_pdata, cd_head = cdq.i.valid, cdq.i.payload, cdq.o.payload
        m.d.comb += [
            self.ids.payload.id.eq(Mux(id_head.empty, 0, id_head.id)),
            self.ids.payload.last.eq(id_head.last),
            self.ids.payload.empty.eq(id_head.empty),
            self.ids.payload.corrupt.eq(id_head.corrupt),
            self.codes.payload.code.as_value().eq(
                Mux(cd_head.empty, 0, cd_head.code.as_value())),
            self.codes.payload.last.eq(cd_head.last),
            self.codes.payload.empty.eq(cd_head.empty),
            self.codes.payload.corrupt.eq(cd_head.corrupt),
        ]

        # ================= stage 0: the reader (control only) ===============================
        ring = [Signal(wb, name=f"ring{k}") for k in range(NS)]
        head = Signal(range(NS))               # ring slot of the window's low word
        wptr = Signal(range(NS))               # ring slot the next word goes to
        nwords = Signal(range(NS + 1))         # words in the ring
        rp = Signal(lw)                        # read pointer (bit) into the low word
        wi = Signal(range(self.max_words + 2))  # frame word index of the low word
        wi1 = Signal(range(self.max_words + 2), init=1)  # wi + 1
        need = Signal(range(wb + 1), init=HB)  # width of the field the state reads next
        seen_last = Signal()                   # the frame's last word is in the ring
        frame_start = Signal(init=1)           # the next accepted word is a frame's first
        # header of the current frame, decoded when its first word is accepted
        hdr_d = Signal(DB)
        hdr_w = Signal(WB)
        hdr_bad = Signal()
        hot = Signal()
        w = Signal(WB)
        rem = Signal(range(R + 1))             # ids still to issue
        rem_last = Signal()                    # rem == 1
        deg_zero = Signal()
        chunk = Signal(range(max(2, nchunks)))
        ids_done = Signal()                    # this frame's ids `last` beat is issued
        codes_done = Signal()                  # ... and its codes `last` beat
        abort = Signal()                       # CLOSE: corrupt / truncated frame
        id_cred = Signal(range(self.ids_depth + 1), init=self.ids_depth)
        cd_cred = Signal(range(self.codes_depth + 1), init=self.codes_depth)
        id_ok = Signal(init=1)                 # id_cred != 0 (registered)
        cd_ok = Signal(init=1)                 # cd_cred != 0

        # code position of a normal frame for the mounted slot width: word cw, bit cr
        cw = Signal(range(self.max_words + 2))
        cr = Signal(lw)
        with m.Switch(self.gap_width):
            for W, off in enumerate(self.code_offsets):
                if off is not None:
                    with m.Case(W):
                        m.d.sync += [cw.eq((8 * off) >> lw), cr.eq((8 * off) & (wb - 1))]

        # field issued this cycle (travels down the data pipeline)
        tag_layout = data.StructLayout({
            "id": 1, "first": 1, "id_empty": 1, "id_last": 1, "id_corrupt": 1,
            "chunk": 1, "k": range(max(2, nchunks)), "push": 1, "code_empty": 1,
            "code_last": 1, "code_corrupt": 1, "w": WB})
        tag = Signal(tag_layout)

        take = Signal()                        # consume `need` bits
        skipword = Signal()                    # drop the low word (rp = 0)
        setrp = Signal()                       # rp = cr (the code of a normal frame)
        flush = Signal()                       # empty the ring

        adv = Signal(lw + 1)
        m.d.comb += adv.eq(rp + need)
        adv_hi, adv_lo = adv[lw], adv[:lw]
        # the `need` bits from rp on are in the ring (rp + need <= nwords * wb).  Kept out
        # of the control loop: two words or more always hold a field (need <= wb); with
        # fewer, the exact test is registered and used one cycle later if nothing moved.
        exact = Signal()
        m.d.comb += exact.eq(Mux(adv_hi,
                                 (nwords >= 2) | ((nwords == 1) & (adv_lo == 0)),
                                 (nwords != 0) | (adv_lo == 0)))
        exact_q = Signal()
        stable_q = Signal()                    # rp, need, nwords unchanged since exact_q
        moved = Signal()                       # the state changes this cycle
        load = Signal()
        plenty = Signal()                      # nwords >= 2 (registered)
        has_bits = Signal()
        short = Signal()                       # the field is known not to be in the ring
        m.d.comb += [has_bits.eq(plenty | (exact_q & stable_q)),
                     short.eq(~plenty & stable_q & ~exact_q)]
        m.d.sync += [exact_q.eq(exact),
                     stable_q.eq(~(take | skipword | setrp | flush | moved | load))]

        def goto(state, nxt_need=None):
            m.next = state
            m.d.comb += moved.eq(1)
            if nxt_need is not None:
                m.d.sync += need.eq(nxt_need)

        def finish():
            """The frame's two `last` beats are issued: drop the rest of the frame."""
            goto("DRAIN", HB)

        def close_if_truncated():
            with m.If(short & seen_last):
                m.d.sync += abort.eq(1)
                goto("CLOSE")

        def take_id(first: bool):
            m.d.comb += [take.eq(1), tag.id.eq(1), tag.first.eq(first),
                         tag.id_last.eq(rem_last), tag.w.eq(w)]
            m.d.sync += [rem.eq(rem - 1), rem_last.eq(rem == 2)]
            with m.If(rem_last):
                m.d.sync += ids_done.eq(1)
            with m.If(hot):
                goto("CODE", sizes[0])
            with m.Elif(rem_last):
                goto("SKIP")
            with m.Else():
                goto("GAP", w)

        with m.FSM(init="HDR"):
            with m.State("HDR"):
                # ring flushed; the header (decoded on arrival) is in the first word
                m.d.sync += [ids_done.eq(0), codes_done.eq(0), abort.eq(0), chunk.eq(0)]
                with m.If(nwords != 0):
                    with m.If(hdr_bad):
                        m.d.sync += abort.eq(1)
                        goto("CLOSE")
                    with m.Else():
                        m.d.comb += take.eq(1)
                        m.d.sync += [w.eq(hdr_w), rem.eq(hdr_d), rem_last.eq(hdr_d == 1),
                                     deg_zero.eq(hdr_d == 0)]
                        goto("FIRST", B)
            with m.State("FIRST"):
                with m.If(deg_zero):
                    with m.If(id_ok):
                        m.d.comb += [tag.id.eq(1), tag.id_empty.eq(1), tag.id_last.eq(1)]
                        m.d.sync += ids_done.eq(1)
                        with m.If(hot):
                            goto("CLOSE")      # no codes either: one empty codes beat
                        with m.Else():
                            goto("SKIP")
                with m.Else():
                    with m.If(has_bits & id_ok):
                        take_id(True)
                    close_if_truncated()
            with m.State("GAP"):
                with m.If(has_bits & id_ok):
                    take_id(False)
                close_if_truncated()
            with m.State("SKIP"):
                with m.If(nwords != 0):
                    with m.If(wi == cw):
                        m.d.comb += setrp.eq(1)
                        goto("CODE", sizes[0])
                    with m.Else():
                        m.d.comb += skipword.eq(1)
                with m.Elif(seen_last):
                    m.d.sync += abort.eq(1)
                    goto("CLOSE")
            with m.State("CODE"):
                fin = ~hot | ids_done
                with m.Switch(chunk):
                    for k in range(nchunks):
                        with m.Case(k):
                            if k < nchunks - 1:
                                with m.If(has_bits):
                                    m.d.comb += [take.eq(1), tag.chunk.eq(1), tag.k.eq(k)]
                                    m.d.sync += chunk.eq(k + 1)
                                    goto("CODE", sizes[k + 1])
                            else:
                                with m.If(has_bits & cd_ok):
                                    m.d.comb += [take.eq(1), tag.chunk.eq(1), tag.k.eq(k),
                                                 tag.push.eq(1), tag.code_last.eq(fin)]
                                    m.d.sync += [chunk.eq(0), codes_done.eq(fin)]
                                    with m.If(fin):
                                        finish()
                                    with m.Else():
                                        goto("GAP", w)
                close_if_truncated()
            with m.State("CLOSE"):
                # close each stream of this frame that has not had its `last` yet:
                # corrupt header or truncated frame (abort = 1), or a hot frame of degree 0
                id_now = ~ids_done & id_ok
                cd_now = ~codes_done & cd_ok
                with m.If(id_now):
                    m.d.comb += [tag.id.eq(1), tag.id_empty.eq(1), tag.id_last.eq(1),
                                 tag.id_corrupt.eq(abort)]
                    m.d.sync += ids_done.eq(1)
                with m.If(cd_now):
                    m.d.comb += [tag.push.eq(1), tag.code_empty.eq(1), tag.code_last.eq(1),
                                 tag.code_corrupt.eq(abort)]
                    m.d.sync += codes_done.eq(1)
                with m.If((ids_done | id_now) & (codes_done | cd_now)):
                    finish()
            with m.State("DRAIN"):
                # flush the ring; once the frame's last word is in, a word accepted now is
                # the next frame's first (it goes to slot 0, see below)
                m.d.comb += flush.eq(1)
                with m.If(seen_last):
                    m.d.sync += [seen_last.eq(0), frame_start.eq(1)]
                    goto("HDR", HB)
                with m.Elif(self.i.valid & self.i.payload.last):
                    m.d.sync += frame_start.eq(1)
                    goto("HDR", HB)

        # ---- credits: an id / code beat is issued only with room for it in its FIFO -------
        for cred, ok, dec, inc in ((id_cred, id_ok, tag.id, id_pop),
                                   (cd_cred, cd_ok, tag.push, cd_pop)):
            with m.If(dec & ~inc):
                m.d.sync += [cred.eq(cred - 1), ok.eq(cred >= 2)]
            with m.Elif(inc & ~dec):
                m.d.sync += [cred.eq(cred + 1), ok.eq(1)]

        # ---- ring: drop consumed words, append one word ----------------------------------
        # i.ready depends on registers only (state, nwords, seen_last).  DRAIN (= flush)
        # accepts every word: the current frame's are dropped unseen, and once its last
        # word is in, the next frame's first word goes to slot 0 of the emptied ring.
        with m.If(flush):
            m.d.comb += [self.i.ready.eq(1),
                         load.eq(self.i.valid & seen_last)]
        with m.Else():
            m.d.comb += [self.i.ready.eq(~seen_last & (nwords != NS)),
                         load.eq(self.i.valid & self.i.ready)]
        drop = Signal()
        m.d.comb += drop.eq(Mux(take, adv_hi, skipword))
        data_in = self.i.payload.data
        # The free slot a word would go to is written every cycle, valid or not (the word
        # counts only if accepted), and so are the header registers until a frame's first
        # word is accepted: their enables depend on registers only.
        wslot = Signal(range(NS))
        m.d.comb += wslot.eq(Mux(flush, 0, wptr))
        with m.If(flush | (nwords != NS)):
            for k in range(NS):
                with m.If(wslot == k):
                    m.d.sync += ring[k].eq(data_in)
        with m.If(frame_start | flush):
            d_new = data_in[:DB]
            w_new = data_in[DB:HB]
            m.d.sync += [hot.eq(self.i.payload.hot), hdr_d.eq(d_new), hdr_w.eq(w_new),
                         hdr_bad.eq((d_new > R) | (w_new > self.gap_width))]
        with m.If(load):
            m.d.sync += [seen_last.eq(self.i.payload.last), frame_start.eq(0)]
        with m.If(flush):
            m.d.sync += [head.eq(0), wptr.eq(load), nwords.eq(load), rp.eq(0), wi.eq(0),
                         wi1.eq(1), plenty.eq(0)]
        with m.Else():
            with m.If(load & ~drop):
                m.d.sync += plenty.eq(nwords >= 1)
            with m.Elif(drop & ~load):
                m.d.sync += plenty.eq(nwords >= 3)
            # increments computed from registers in parallel, selected by load / drop
            with m.If(load):
                m.d.sync += wptr.eq(wptr + 1)
            with m.If(drop):
                m.d.sync += [head.eq(head + 1), wi.eq(wi1), wi1.eq(wi1 + 1)]
            with m.If(load & ~drop):
                m.d.sync += nwords.eq(nwords + 1)
            with m.Elif(drop & ~load):
                m.d.sync += nwords.eq(nwords - 1)
            m.d.sync += rp.eq(Mux(take, adv_lo, Mux(skipword, 0, Mux(setrp, cr, rp))))

        # ================= stages 1-3: the field extractor (data only) ======================
        # 1: the two words from the low one on; 2: shift by whole bytes; 3: by 0..7 bits
        s1_lo, s1_hi = Signal(wb), Signal(wb)
        s1_rp = Signal(lw)
        s1_tag = Signal(tag_layout)
        m.d.sync += [s1_lo.eq(Array(ring)[head]), s1_hi.eq(Array(ring)[(head + 1)[:len(head)]]),
                     s1_rp.eq(rp), s1_tag.eq(tag)]
        pair = Cat(s1_lo, s1_hi)
        s2 = Signal(wb + 7)
        s2_bit = Signal(3)
        s2_tag = Signal(tag_layout)
        nbytes = wb // 8
        m.d.sync += [s2.eq(Array([pair[8 * k:8 * k + wb + 7] for k in range(nbytes)])[
                         s1_rp[3:]] if nbytes > 1 else pair[:wb + 7]),
                     s2_bit.eq(s1_rp[:3]), s2_tag.eq(s1_tag)]
        s2_mask = Signal(B)                    # the id field: B bits (first id) or w (gap)
        m.d.sync += s2_mask.eq(Mux(s1_tag.first, Const((1 << B) - 1, B),
                                   ~(Const((1 << B) - 1, B) << s1_tag.w)))
        s3 = Signal(wb)
        s3_id = Signal(B)                      # the id field, masked to its width
        s3_tag = Signal(tag_layout)
        shifted = Signal(wb)
        m.d.comb += shifted.eq(Array([s2[k:k + wb] for k in range(8)])[s2_bit])
        m.d.sync += [s3.eq(shifted), s3_id.eq(shifted[:B] & s2_mask), s3_tag.eq(s2_tag)]

        # ================= stage 4: the id adder and the code assembler =====================
        # cur: the frame's last id, or 0 when a first id is next (n_0 = 0 + field)
        cur = Signal(B)
        nxt = Signal(B)
        m.d.comb += nxt.eq(cur + s3_id)
        with m.If(s2_tag.first):
            m.d.sync += cur.eq(0)
        with m.Elif(s3_tag.id & ~s3_tag.id_empty):
            m.d.sync += cur.eq(nxt)
        m.d.comb += [id_push.eq(s3_tag.id),
                     id_pdata.id.eq(nxt), id_pdata.last.eq(s3_tag.id_last),
                     id_pdata.empty.eq(s3_tag.id_empty),
                     id_pdata.corrupt.eq(s3_tag.id_corrupt)]
        code_acc = Signal(max(1, (nchunks - 1) * wb))
        with m.If(s3_tag.chunk):
            with m.Switch(s3_tag.k):
                for k in range(nchunks - 1):
                    with m.Case(k):
                        m.d.sync += code_acc[k * wb:(k + 1) * wb].eq(s3)
        m.d.comb += [cd_push.eq(s3_tag.push),
                     cd_pdata.code.as_value().eq(
                         Cat(code_acc[:(nchunks - 1) * wb], s3[:sizes[-1]])),
                     cd_pdata.last.eq(s3_tag.code_last),
                     cd_pdata.empty.eq(s3_tag.code_empty),
                     cd_pdata.corrupt.eq(s3_tag.code_corrupt)]
        return m
