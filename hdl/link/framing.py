"""Frame receiver and sender of the host link (the spec: :mod:`proxima.golden.link`).

``FrameReceiver(max_payload, timeout, valid_length)``
    ``rx``     ``In(stream(8))``: received bytes (from a FIFO behind the UART).
    ``event``  ``Out(stream{error, type, seq, len})``: one beat per good frame
               (``error == 0``) or per error event, exactly the events of
               :class:`proxima.golden.link.Receiver`.  While an event is offered the receiver
               takes no byte: the consumer reads the payload, answers, and only then takes
               the event, so the payload buffer is stable while it is used.
    ``buf_addr`` / ``buf_data``  read port of the payload buffer (``max_payload`` bytes):
               ``buf_data`` is the byte at ``buf_addr`` of the previous cycle.
    ``garbage_bytes`` ``Out(32)``: count of the bytes skipped while hunting.
    ``valid_length`` is a function ``(m, type, len) -> (known, ok)`` returning two Amaranth
    values (the type is a command, the length is allowed for it): the board supplies it from
    :func:`proxima.golden.link.length_ok`'s rules.  ``timeout`` is in clock cycles: a gap of
    more than ``timeout`` cycles with no byte inside a frame is a truncated frame; in HUNT it
    ends a garbage run.  One byte per cycle at most.

``FrameSender()``
    ``hdr``    ``In(stream{type, seq, len})``: a reply header, taken when the sender is idle.
    ``data``   ``In(stream(8))``: exactly ``len`` payload bytes, after the header.
    ``tx``     ``Out(stream(8))``: the frame's bytes (SOF, header, payload, CRC), one per cycle
               when ``tx.ready``.
The CRC (:func:`proxima.golden.link.crc16`) is computed by :class:`amaranth.lib.crc.Processor`
with :data:`proxima.golden.link.CRC16_PARAMS` in both directions.
"""


from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import crc, data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from proxima.golden.link import (CRC16_PARAMS, ERR_CRC, ERR_GARBAGE, ERR_LENGTH, ERR_OVERSIZE,
                                 ERR_TIMEOUT, ERR_TYPE, MAX_PAYLOAD, SOF)

__all__ = ["FrameReceiver", "FrameSender", "EVENT_LAYOUT", "HDR_LAYOUT", "crc16_processor"]

EVENT_LAYOUT = data.StructLayout({"error": 4, "type": 8, "seq": 8, "len": 16})
HDR_LAYOUT = data.StructLayout({"type": 8, "seq": 8, "len": 16})


def crc16_processor() -> crc.Processor:
    return crc.Processor(crc.Algorithm(**CRC16_PARAMS)(data_width=8))


class FrameReceiver(wiring.Component):
    rx: In(stream.Signature(unsigned(8)))
    event: Out(stream.Signature(EVENT_LAYOUT))
    buf_addr: In(16)
    buf_data: Out(8)
    garbage_bytes: Out(32)

    def __init__(self, valid_length, *, timeout: int, max_payload: int = MAX_PAYLOAD):
        self.valid_length = valid_length
        self.timeout = int(timeout)
        self.max_payload = int(max_payload)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = cp = crc16_processor()
        m.submodules.buf = buf = Memory(shape=8, depth=self.max_payload, init=[])
        wr = buf.write_port()
        rd = buf.read_port()
        m.d.comb += [rd.addr.eq(self.buf_addr), self.buf_data.eq(rd.data)]

        ev = self.event.payload
        ftype, seq, flen = Signal(8), Signal(8), Signal(16)
        idx = Signal(16)
        crc_lo = Signal(8)
        quiet, garbage = Signal(), Signal()
        idle = Signal(range(self.timeout + 2))
        gbytes = Signal(32)
        m.d.comb += self.garbage_bytes.eq(gbytes)
        take = Signal()
        byte = self.rx.payload
        m.d.comb += take.eq(self.rx.valid & self.rx.ready)
        with m.If(take):
            m.d.sync += idle.eq(0)
        with m.Elif(idle <= self.timeout):
            m.d.sync += idle.eq(idle + 1)
        timed_out = Signal()
        m.d.comb += timed_out.eq(~self.rx.valid & (idle == self.timeout))
        m.d.comb += [cp.data.eq(byte), wr.data.eq(byte), wr.addr.eq(idx)]
        known, len_ok = self.valid_length(m, ftype, flen)

        def emit(err, t=0, s=0, ln=0):
            m.d.sync += [self.event.valid.eq(1), ev.error.eq(err), ev.type.eq(t),
                         ev.seq.eq(s), ev.len.eq(ln)]
            m.d.sync += quiet.eq(1 if err else 0)

        def otherwise_time_out(cond):
            """The ``Elif`` after a state's ``take``: an inter-byte timeout ends the frame."""
            with m.Elif(cond):
                emit(ERR_TIMEOUT, ftype, seq)
                m.next = "HUNT"

        with m.If(self.event.valid & self.event.ready):
            m.d.sync += self.event.valid.eq(0)

        with m.FSM():
            with m.State("HUNT"):
                m.d.comb += self.rx.ready.eq(~self.event.valid)
                with m.If(take):
                    with m.If(byte == SOF):
                        m.d.comb += cp.start.eq(1)
                        m.d.sync += [ftype.eq(0), seq.eq(0)]
                        with m.If(garbage):
                            m.d.sync += garbage.eq(0)
                            emit(ERR_GARBAGE)
                        m.next = "TYPE"
                    with m.Else():
                        m.d.sync += gbytes.eq(gbytes + 1)
                        with m.If(~quiet):
                            m.d.sync += garbage.eq(1)
                with m.Elif(timed_out & garbage & ~self.event.valid):
                    m.d.sync += garbage.eq(0)
                    emit(ERR_GARBAGE)
            for st, nxt in (("TYPE", "SEQ"), ("SEQ", "LEN0"), ("LEN0", "LEN1")):
                with m.State(st):
                    m.d.comb += self.rx.ready.eq(~self.event.valid)
                    with m.If(take):
                        m.d.comb += cp.valid.eq(1)
                        if st == "TYPE":
                            m.d.sync += ftype.eq(byte)
                        elif st == "SEQ":
                            m.d.sync += seq.eq(byte)
                        else:
                            m.d.sync += flen[:8].eq(byte)
                        m.next = nxt
                    otherwise_time_out(timed_out & ~self.event.valid)
            with m.State("LEN1"):
                m.d.comb += self.rx.ready.eq(~self.event.valid)
                with m.If(take):
                    m.d.comb += cp.valid.eq(1)
                    m.d.sync += [flen[8:].eq(byte), idx.eq(0)]
                    with m.If(Cat(flen[:8], byte) > self.max_payload):
                        emit(ERR_OVERSIZE, ftype, seq)
                        m.next = "HUNT"
                    with m.Elif(Cat(flen[:8], byte) == 0):
                        m.next = "CRC0"
                    with m.Else():
                        m.next = "PAY"
                otherwise_time_out(timed_out & ~self.event.valid)
            with m.State("PAY"):
                m.d.comb += self.rx.ready.eq(1)  # no event is pending here
                with m.If(take):
                    m.d.comb += [cp.valid.eq(1), wr.en.eq(1)]
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx + 1 == flen):
                        m.next = "CRC0"
                otherwise_time_out(timed_out)
            with m.State("CRC0"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(take):
                    m.d.sync += crc_lo.eq(byte)
                    m.next = "CRC1"
                otherwise_time_out(timed_out)
            with m.State("CRC1"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(take):
                    with m.If(Cat(crc_lo, byte) != cp.crc):
                        emit(ERR_CRC, ftype, seq)
                    with m.Elif(~known):
                        emit(ERR_TYPE, ftype, seq)
                    with m.Elif(~len_ok):
                        emit(ERR_LENGTH, ftype, seq)
                    with m.Else():
                        emit(0, ftype, seq, flen)
                    m.next = "HUNT"
                otherwise_time_out(timed_out)
        return m


class FrameSender(wiring.Component):
    hdr: In(stream.Signature(HDR_LAYOUT))
    data: In(stream.Signature(unsigned(8)))
    tx: Out(stream.Signature(unsigned(8)))

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = cp = crc16_processor()
        h = Signal(HDR_LAYOUT)
        left = Signal(16)
        m.d.comb += cp.data.eq(self.tx.payload)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.hdr.ready.eq(1)
                with m.If(self.hdr.valid):
                    m.d.sync += [h.eq(self.hdr.payload), left.eq(self.hdr.payload.len)]
                    m.next = "SOF"
            with m.State("SOF"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(SOF), cp.start.eq(1)]
                with m.If(self.tx.ready):
                    m.next = "TYPE"
            for st, val, nxt in (("TYPE", h.type, "SEQ"), ("SEQ", h.seq, "LEN0"),
                                 ("LEN0", h.len[:8], "LEN1")):
                with m.State(st):
                    m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(val),
                                 cp.valid.eq(self.tx.ready)]
                    with m.If(self.tx.ready):
                        m.next = nxt
            with m.State("LEN1"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(h.len[8:]),
                             cp.valid.eq(self.tx.ready)]
                with m.If(self.tx.ready):
                    m.next = "PAY"
            with m.State("PAY"):
                with m.If(left == 0):
                    m.next = "CRC0"
                with m.Else():
                    m.d.comb += [self.tx.valid.eq(self.data.valid),
                                 self.tx.payload.eq(self.data.payload),
                                 self.data.ready.eq(self.tx.ready),
                                 cp.valid.eq(self.tx.ready & self.data.valid)]
                    with m.If(self.tx.ready & self.data.valid):
                        m.d.sync += left.eq(left - 1)
            with m.State("CRC0"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(cp.crc[:8])]
                with m.If(self.tx.ready):
                    m.next = "CRC1"
            with m.State("CRC1"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(cp.crc[8:])]
                with m.If(self.tx.ready):
                    m.next = "IDLE"
        return m
