"""UART PHY: 8 data bits, no parity, one stop bit, least significant bit first.

``UARTRx(divisor)`` / ``UARTTx(divisor)``: ``divisor`` clock cycles per bit
(``clk_hz // baud``, at least 4; :func:`uart_divisor` computes it and rejects baud rates
more than 2 % off).

``UARTRx``: ports ``rx`` (``In(1)``, the line, idle high; synchronised by two flip-flops
inside), ``o`` (``Out(stream(8))``: one beat per received byte; a byte not taken before the
next one completes is lost, so put a FIFO behind it) and ``framing_error`` (``Out(1)``, a
one-cycle pulse when a stop bit was low; that byte is dropped).  The start bit is checked
at its middle (a glitch shorter than half a bit is ignored), every data bit sampled at its
middle.  A byte is delivered ``~9.5`` bit times after its start edge.

``UARTTx``: ports ``i`` (``In(stream(8))``) and ``tx`` (``Out(1)``, idle high).  A byte is
taken when the transmitter is idle and sent in ``10 * divisor`` cycles; back-to-back bytes
follow each other without gaps.
"""


from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["UARTRx", "UARTTx", "uart_divisor", "UARTError"]


class UARTError(ValueError):
    """A baud rate the clock cannot produce."""


def uart_divisor(clk_hz: float, baud: int) -> int:
    """Clock cycles per bit for ``baud`` at ``clk_hz`` (error at most 2 %)."""
    div = round(clk_hz / baud)
    if div < 4:
        raise UARTError(f"{baud} baud needs at least 4 clock cycles per bit at "
                        f"{clk_hz / 1e6:g} MHz")
    err = abs(clk_hz / div - baud) / baud
    if err > 0.02:
        raise UARTError(f"{baud} baud is {100 * err:.1f} % off at {clk_hz / 1e6:g} MHz "
                        f"(divisor {div}); choose another baud rate")
    return div


class _UARTPhy(wiring.Component):
    """One direction of the PHY at ``divisor`` clock cycles per bit (at least 4)."""

    def __init__(self, divisor: int):
        if divisor < 4:
            raise UARTError(f"divisor must be >= 4, got {divisor}")
        self.divisor = int(divisor)
        super().__init__()


class UARTRx(_UARTPhy):
    """Receiver: ``rx`` line in, one ``o`` beat per byte, ``framing_error`` pulses (module
    docstring)."""

    rx: In(1, init=1)
    o: Out(stream.Signature(unsigned(8)))
    framing_error: Out(1)

    def elaborate(self, platform):
        m = Module()
        div = self.divisor
        s1, s2 = Signal(init=1), Signal(init=1)
        m.d.sync += [s1.eq(self.rx), s2.eq(s1)]
        timer = Signal(range(div + 1))
        bit = Signal(range(10))
        sh = Signal(8)
        m.d.sync += self.framing_error.eq(0)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~s2):
                    m.d.sync += timer.eq(div // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(s2):
                    m.next = "IDLE"  # a glitch
                with m.Else():
                    m.d.sync += [timer.eq(div - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [timer.eq(div - 1), sh.eq(Cat(sh[1:], s2)), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    with m.If(s2):
                        m.d.sync += [self.o.payload.eq(sh), self.o.valid.eq(1)]
                    with m.Else():
                        m.d.sync += self.framing_error.eq(1)
                    m.next = "WAIT_IDLE"
            with m.State("WAIT_IDLE"):
                with m.If(s2):
                    m.next = "IDLE"
        return m


class UARTTx(_UARTPhy):
    """Transmitter: ``i`` bytes in, the ``tx`` line out (module docstring)."""

    i: In(stream.Signature(unsigned(8)))
    tx: Out(1, init=1)

    def elaborate(self, platform):
        m = Module()
        div = self.divisor
        timer = Signal(range(div))
        sh = Signal(10, init=0x3FF)
        left = Signal(range(11))
        m.d.comb += [self.tx.eq(sh[0]), self.i.ready.eq(left == 0)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [sh.eq(Cat(0, self.i.payload, 1)), left.eq(10), timer.eq(div - 1)]
        with m.Elif(left != 0):
            with m.If(timer == 0):
                m.d.sync += [timer.eq(div - 1), sh.eq(Cat(sh[1:], 1)), left.eq(left - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m
