"""Visited-set Bloom filter: test-and-set of vertex ids, one id per cycle, O(1) clear.

Bit-exact twin of :class:`proxima.golden.bloom.BloomFilter` (the spec): a *partitioned*
filter of ``k = cfg.bloom.hashes`` banks of ``B = cfg.bloom.bank_bits`` bits.  Hash ``i`` of
an id ``x`` is the H3 hash ``h_i = XOR_{j : x_j = 1} Q[i][j]`` with ``Q`` elaborated from
:func:`proxima.golden.bloom.h3_matrix` (the one definition; every output bit of ``h_i`` is an
XOR of the id bits selected by a constant mask), followed by the multiply-shift range
reduction ``index_i = (h_i * B) >> 32``.  ``hit = all k addressed bits were set``; then the
k bits are set.

Interface
---------
``req``   ``In(stream.Signature(unsigned(id_bits)))``: ids to test-and-set, in order.
``resp``  ``Out(stream.Signature(StructLayout({"hit": 1, "id": id_bits})))``: one response
          per request, same order.  ``hit`` equals ``golden.test_and_set(id)`` applied to
          the requests (and clears) in their accepted order.
``busy``  ``Out(1)``: the post-reset initialisation pass is running.
``clear`` ``In(1)`` with ``clear_ready`` ``Out(1)``: a valid/ready handshake without payload.
          The filter is emptied in the cycle where ``clear & clear_ready``: every request
          accepted before that cycle belongs to the previous query, every later one to the
          new query.  While ``clear`` is high no request is accepted (``req.ready`` is low),
          so the order of clears and requests is always unambiguous.

Throughput one id per cycle (also back to back on the same id or the same RAM word), as
long as ``resp`` is taken.  ``latency`` = ``1 + hash_stages + window + 2`` cycles from the
cycle an id is accepted to the first cycle its response is valid (``window = ram_regs + 3``;
9 with the defaults).  ``resp.ready`` low never stalls the pipeline: responses wait in a
buffer of ``out_depth`` entries (default 16) and ``req.ready`` falls only when ``out_depth``
accepted ids are not answered yet (a credit counter), so with ``out_depth >= latency + 1`` a
consumer that takes one response per cycle sees one id per cycle.  ``req.ready`` depends
combinationally only on ``clear`` and on registers (not on ``resp.ready``).

Storage and word format
-----------------------
Bank ``i`` holds ``depth = B / word_bits`` words of ``{bits: word_bits, tag: epoch_bits}``
(``word_bits`` defaults to the largest power of two <= 32 that divides ``B``).  Bit ``index``
of the bank lives in word ``index // word_bits`` at bit ``index % word_bits``.  Each bank is
built from :class:`amaranth.lib.memory.Memory` (one asynchronous read port whose output goes
straight into a plain register -- Yosys merges the two into a synchronous RAM port -- and one
write port), marked ``no_rw_check`` (see the hazards below):

* ``ram="lut"`` (default): sub-banks of ``LUT_DEPTH = 16`` words (one ECP5 TRELLIS_DPR16X4
  deep), each with its own output register; the sub-bank mux is the next stage's logic.
* ``ram="block"``: one block RAM per bank (default preset: 4 x 256 words x 36 bits, one
  DP16KD each).  The ECP5 block RAM as yosys maps it has no output register, so this
  variant is limited by the block RAM's clock-to-output (``docs/RESOURCES.md``).

Clear without a sweep: epoch tags
---------------------------------
A register ``epoch`` (``epoch_bits`` wide) names the current query.  A word whose ``tag``
differs from ``epoch`` reads as all zero; writes store the tag of the epoch the operation
checked in stage chk-1.  A clear is just ``epoch += 1`` (one cycle, waiting only for the ids
in flight as described above).

Wrap-around is made safe by the background *scrubber*: a pointer walks the words of all banks
(same address in every bank); in every cycle without an accepted id a scrub operation of
word ``ptr`` enters and ``ptr`` advances.  Since every operation writes its word with the
epoch it checked, and epochs only grow (counting without wrap), a sweep pass leaves every
tag ``>=`` the epoch ``s`` that the pass's first operation (word 0) checked.  When the last
operation of a pass (word ``depth-1``) is written, ``s_prev`` takes the ``s`` of that pass;
a clear that would make ``epoch + 1 == s_prev (mod 2**epoch_bits)`` is refused
(``clear_ready`` low), so every tag in the RAM or in flight lies in ``[s_prev, epoch]``, a
range of fewer than ``2**epoch_bits`` epochs: no stale word ever reads as current.  A blocked
clear also blocks requests (``clear`` high), so the scrubber then runs at one word per cycle
and the clear waits at most ~two passes (``2 * depth`` cycles).  With the defaults (4-bit
epochs, 256 words per bank) a clear is only delayed when 15 clears fall within two passes.

After reset the scrubber first makes one unconditional pass writing ``{epoch, 0}`` to every
word (``req.ready`` and ``clear_ready`` stay low, ``busy`` is high; ``init_cycles`` =
``depth + hash_stages + window + 1`` cycles), so a reset in the middle of operation also leaves an
empty filter.

Resources and clock rate per ``ram`` option: ``docs/RESOURCES.md``.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from proxima.config import ProximaConfig
from proxima.golden.bloom import h3_matrix
from proxima.hdl.lib.fifo import Queue

__all__ = ["BloomError", "BloomFilter", "H3_BITS"]

#: Width of one H3 hash word (the golden model draws 32-bit rows).
H3_BITS = 32

#: Words per LUT-RAM sub-bank with ``ram="lut"`` (the depth of one ECP5 TRELLIS_DPR16X4).
LUT_DEPTH = 16


class BloomError(ValueError):
    """Impossible parameters for the Bloom filter block."""


def _default_word_bits(bank_bits: int, limit: int = 32) -> int:
    w = 1
    while w * 2 <= limit and bank_bits % (w * 2) == 0:
        w *= 2
    return w


class BloomFilter(wiring.Component):
    """Partitioned Bloom filter with test-and-set requests and an O(1) clear.

    Parameters
    ----------
    cfg : ProximaConfig
        ``cfg.bloom`` (bits, hashes, seed) and ``cfg.id_bits``.
    epoch_bits : int
        Width of the per-word epoch tag (>= 1).  More bits allow more clears per sweep.
    word_bits : int, optional
        Filter bits per RAM word, a power of two dividing ``bank_bits``.
    ram : str
        ``"lut"`` (default): each bank is made of 16-word LUT-RAM sub-banks, each with its
        own output register; ``"block"``: one block RAM per bank (see "Storage").
    ram_regs : int
        Registers after the RAM output register before the tag check (>= 2, default 2):
        the first holds the sub-bank mux (``"lut"``) or sits next to the block RAM
        (``"block"``), the last one feeds the registered tag check.
    out_depth : int, optional
        Entries of the response buffer (= the most ids in flight), >= ``latency + 1`` for
        one id per cycle; default: the next power of two >= ``latency + 2``.

    Attributes
    ----------
    k, bank_bits, word_bits, depth (words per bank), epoch_bits, latency (cycles from an
    accepted id to its response, with ``resp.ready`` high), ram, sub_depth (words per RAM
    instance), ram_regs, chk_stage, window (read-to-write distance in cycles), hash_stages
    (1, or 2 when ``bank_bits`` is not a power of two), out_depth, init_cycles (cycles from
    the end of reset to the first cycle with ``req.ready`` high), q (the ``(k, id_bits)`` H3
    matrix as Python ints), word_layout.
    """

    def __init__(self, cfg: ProximaConfig, *, epoch_bits: int = 4, word_bits: int | None = None,
                 ram: str = "lut", ram_regs: int = 2,
                 out_depth: int | None = None):
        b = cfg.bloom
        self.cfg = cfg
        self.k = b.hashes
        self.bank_bits = b.bank_bits
        self.id_bits = cfg.id_bits
        if int(epoch_bits) < 1:
            raise BloomError(f"epoch_bits must be >= 1, got {epoch_bits}")
        self.epoch_bits = int(epoch_bits)
        w = _default_word_bits(self.bank_bits) if word_bits is None else int(word_bits)
        if w < 1 or w & (w - 1) or self.bank_bits % w:
            raise BloomError(
                f"word_bits must be a power of two dividing bloom.bank_bits "
                f"({self.bank_bits}), got {word_bits}")
        self.word_bits = w
        self.depth = self.bank_bits // w
        self.bit_sel_bits = max(1, ceil_log2(w))
        self.addr_bits = max(1, ceil_log2(self.depth))
        self.pow2 = self.bank_bits & (self.bank_bits - 1) == 0
        self.hash_stages = 1 if self.pow2 else 2
        self.q = [[int(v) for v in row] for row in h3_matrix(cfg)]
        if ram not in ("block", "lut"):
            raise BloomError(f"ram must be 'block' or 'lut', got {ram!r}")
        self.ram = ram
        self.sub_depth = (LUT_DEPTH if ram == "lut" and self.depth > LUT_DEPTH
                          and self.depth % LUT_DEPTH == 0 else self.depth)
        if int(ram_regs) < 2:
            raise BloomError(f"ram_regs must be >= 2, got {ram_regs}")
        self.ram_regs = int(ram_regs)
        # c0 reads, c1 is the RAM output register, then ram_regs registers; the tag check
        # is registered into stage chk, the current bits into chk+1, the write is in
        # chk+2 = window (the read-to-write distance)
        self.chk_stage = 1 + self.ram_regs
        self.window = self.chk_stage + 2
        # accept -> stage a -> (m) -> c0 .. c<window> (response into the buffer)
        # -> 2 buffer cycles
        self.latency = 1 + self.hash_stages + self.window + 2
        self.init_cycles = self.depth + self.hash_stages + self.window + 1
        if out_depth is None:
            out_depth = 1
            while out_depth < self.latency + 2:
                out_depth *= 2
        if int(out_depth) < 2:
            raise BloomError(f"out_depth must be >= 2, got {out_depth}")
        self.out_depth = int(out_depth)
        self.word_layout = data.StructLayout({"bits": unsigned(w),
                                              "tag": unsigned(self.epoch_bits)})
        self.resp_layout = data.StructLayout({"hit": unsigned(1),
                                              "id": unsigned(self.id_bits)})
        super().__init__({
            "req": In(stream.Signature(unsigned(self.id_bits))),
            "resp": Out(stream.Signature(self.resp_layout)),
            "clear": In(1),
            "clear_ready": Out(1),
            "busy": Out(1),
        })

    @classmethod
    def from_config(cls, cfg: ProximaConfig, **options) -> "BloomFilter":
        return cls(cfg, **options)

    # ---- hashing -------------------------------------------------------------------------
    def _h3(self, i: int, x, lo: int = 0):
        """Bits ``lo .. H3_BITS-1`` of the H3 hash ``i`` of ``x``: XORs of masked id bits."""
        row = self.q[i]
        bits = []
        for b in range(lo, H3_BITS):
            mask = sum(1 << j for j in range(self.id_bits) if (row[j] >> b) & 1)
            bits.append((x & Const(mask, self.id_bits)).xor() if mask else Const(0, 1))
        return Cat(*bits)

    def _split(self, idx):
        """(word address, bit in word) of a bank-local bit index."""
        sh = exact_log2(self.word_bits)
        addr = idx[sh:sh + self.addr_bits] if self.depth > 1 else Const(0, 1)
        bit = idx[:self.bit_sel_bits] if self.word_bits > 1 else Const(0, 1)
        return addr, bit

    def elaborate(self, platform):
        """Structure (the contract is the module docstring).

        Pipeline (free running: every stage advances every cycle)
        ---------------------------------------------------------
        Every cycle one *operation* enters: the accepted id, or -- in a cycle without an accepted id
        -- a scrub of word ``ptr`` (see below).  Every operation is a read-modify-write of one word
        per bank and writes its word back (a scrub writes the word's unchanged meaning).  Stages:

        * ``a``:  the id register.  The H3 XOR trees (<= ``id_bits`` inputs) and the mux with the
          scrub pointer feed the registered word address and bit of stage c0.  When ``B`` is not a
          power of two an extra stage ``m`` registers ``h_i`` and the constant multiply (registered
          on both sides) runs from ``m`` to c0 (``hash_stages = 2``).
        * ``c0``: the word address drives the RAM read address; the address is compared with the
          addresses of the ``window`` operations ahead (stages c1..c<window>), results registered.
        * ``c1``: the RAM output register.  The one-hot bits set by the ids 1..window-1 ahead in the
          same word are ORed into a registered forwarding mask.
        * ``c2 .. c<chk>`` (``chk = 1 + ram_regs``, ``ram_regs >= 2``, default 2): c2 registers
          the sub-bank mux (``ram="lut"``) or is a plain register (``ram="block"``: it can sit
          next to the slow RAM output); later ones are plain registers.
        * ``c<chk-1>``: the tag checks ``raw.tag == epoch`` and (for a collision, see below)
          ``written.tag == epoch``, registered with the epoch they used (``ep``, written back
          later as the word's tag).
        * ``c<chk>``: the word's current bits: ``raw.bits`` if its tag matched (or, on a
          collision, the bits of the word written by the operation ``window`` ahead), OR the
          forwarding mask: one LUT level per bit, registered.
        * ``c<chk+1>``: the hit bit (a ``word_bits``:1 mux) and the new word ``{epoch, bits |
          onehot}``, both registered.
        * ``c<window>``: the RAM write; the AND of the k bank hits goes with the id into the
          response buffer (a buffered :class:`proxima.hdl.lib.fifo.Queue`, 2 cycles to its output
          register).

        Read-modify-write hazards, exactly: an operation reads its word in c0 and the operations
        1..window ahead of it write theirs in its cycles c<window-1>..c0, i.e. not before its read.
        Within one epoch the only change an operation makes to a word is to set one bit (a scrub
        changes nothing), so the word an operation must see is ``current(raw) | onehot_1 | ... |
        onehot_<window-1>`` over the ids ahead that address the same word: the forwarding mask.
        The operation ``window`` ahead writes in the very cycle of the read; the RAM's answer is
        then undefined (hence ``no_rw_check``: Yosys adds no bypass logic of its own), and the
        written word itself -- kept in a ``chk``-cycle delay line -- replaces the RAM word.  A mask
        holds bits of ids up to ``chk + window - 2`` stages ahead of c0, and is checked against the
        epoch only in stage chk-1; so a clear waits until no id of the old query is in stages
        a..c<chk + window - 2> (a conservative bound; 8 stages with the defaults), and a word
        carried across a clear by a scrub keeps the tag of the epoch it was checked under and reads
        as empty afterwards.
        """
        m = Module()
        k, w, depth, eb = self.k, self.word_bits, self.depth, self.epoch_bits
        ab, bb, ib = self.addr_bits, self.bit_sel_bits, self.id_bits

        epoch = Signal(eb)
        s_prev = Signal(eb)          # epoch at the start of the last completed sweep pass
        s_cur = Signal(eb)           # epoch at the start of the current sweep pass
        init_done = Signal()         # the post-reset unconditional pass has finished
        ptr = Signal(range(depth))   # scrubber pointer (next word to visit)
        outstanding = Signal(range(self.out_depth + 1))  # accepted ids not yet answered

        accept = Signal()
        take = Signal()
        m.d.comb += [
            self.req.ready.eq(init_done & ~self.clear & (outstanding != self.out_depth)),
            accept.eq(self.req.valid & self.req.ready),
            self.busy.eq(~init_done),
        ]
        m.d.sync += outstanding.eq(outstanding + accept - take)
        with m.If(~accept):
            m.d.sync += ptr.eq(Mux(ptr == depth - 1, 0, ptr + 1))

        # ---- per-operation control, one register set per stage (every slot is an op:
        # an accepted id, else a scrub of word ``ptr``) ---------------------------------
        W, chk = self.window, self.chk_stage
        names = ["a"] + (["m"] if not self.pow2 else []) + [f"c{j}" for j in range(W + 1)]

        def ctl(st):
            return {
                "req": Signal(name=f"{st}_req"),
                # ops injected before the end of the init pass write an empty word
                "init": Signal(name=f"{st}_init", init=1),
                "first": Signal(name=f"{st}_first"),   # scrub of word 0
                "last": Signal(name=f"{st}_last"),     # scrub of word depth-1
                "id": Signal(ib, name=f"{st}_id", reset_less=True),
            }
        S = {st: ctl(st) for st in names}
        m.d.sync += [
            S["a"]["req"].eq(accept),
            S["a"]["init"].eq(~init_done),
            S["a"]["first"].eq(~accept & (ptr == 0)),
            S["a"]["last"].eq(~accept & (ptr == depth - 1)),
        ]
        with m.If(accept):
            m.d.sync += S["a"]["id"].eq(self.req.payload)
        a_ptr = Signal(ab, reset_less=True)
        m.d.sync += a_ptr.eq(ptr)
        for prev, nxt in zip(names, names[1:]):
            for f in S[prev]:
                m.d.sync += S[nxt][f].eq(S[prev][f])
        src_ptr = a_ptr
        if not self.pow2:
            m_ptr = Signal(ab, reset_less=True)
            m.d.sync += m_ptr.eq(a_ptr)
            src_ptr = m_ptr
        c = [S[f"c{j}"] for j in range(W + 1)]

        # ---- epoch snapshot: the epoch checked in stage chk, carried to the write --------
        ep = {j: Signal(eb, name=f"c{j}_ep", reset_less=True) for j in range(chk, W + 1)}
        m.d.sync += ep[chk].eq(epoch)
        for j in range(chk, W):
            m.d.sync += ep[j + 1].eq(ep[j])

        hits = []
        for i in range(k):
            addr = [Signal(ab, name=f"c{j}_addr{i}", reset_less=True) for j in range(W + 1)]
            bit = [Signal(bb, name=f"c{j}_bit{i}", reset_less=True) for j in range(W)]
            # one-hot of the bit an id sets (0 for a scrub), stages c1 .. c<W>
            oh = [None] + [Signal(w, name=f"c{j}_oh{i}", reset_less=True)
                           for j in range(1, W + 1)]

            # written words, stage cW (the write) .. c<W+chk> (the op W ahead of stage chk)
            wd = {j: Signal(self.word_layout, name=f"c{j}_w{i}", reset_less=True)
                  for j in range(W, W + chk + 1)}

            # hash: stage a (and m) -> c0
            if self.pow2:
                lg = exact_log2(self.bank_bits)
                idx = self._h3(i, S["a"]["id"], lo=H3_BITS - lg)
                req_h = S["a"]["req"]
            else:
                h = Signal(H3_BITS, name=f"m_h{i}", reset_less=True)
                m.d.sync += h.eq(self._h3(i, S["a"]["id"]))
                idx = (h * Const(self.bank_bits))[H3_BITS:]
                req_h = S["m"]["req"]
            in_addr, in_bit = self._split(idx)
            m.d.sync += [addr[0].eq(Mux(req_h, in_addr, src_ptr)), bit[0].eq(in_bit)]
            m.d.sync += [addr[j + 1].eq(addr[j]) for j in range(W)]
            m.d.sync += [bit[j + 1].eq(bit[j]) for j in range(W - 1)]
            m.d.sync += oh[1].eq(Mux(c[0]["req"], Const(1, w) << bit[0], 0))
            m.d.sync += [oh[j + 1].eq(oh[j]) for j in range(1, W)]

            # ---- the bank's RAM ----------------------------------------------------------
            # collisions (a read of the word written in the same cycle) are resolved by
            # forwarding, never by the RAM: no_rw_check keeps Yosys from adding its own
            # bypass logic behind the RAM output.  Each read port is asynchronous and
            # followed by a plain register (c1_rd): Yosys merges the two into the block
            # RAM's synchronous port (with no_rw_check: without collision emulation).
            # ram="lut": sub-banks of LUT_DEPTH words (one TRELLIS_DPR16X4 deep), each with
            # its own output register in c1; the sub-bank mux is the c1 -> c2 logic.
            sub = self.sub_depth
            attrs = {"no_rw_check": 1}
            if self.ram == "lut":
                attrs["ram_style"] = "distributed"
            lo_bits = max(1, ceil_log2(sub)) if sub > 1 else 0
            rd1 = []
            for s_ in range(depth // sub):
                mem = Memory(shape=self.word_layout, depth=sub, init=[], attrs=attrs)
                m.submodules[f"bank{i}_{s_}" if sub < depth else f"bank{i}"] = mem
                wp = mem.write_port()
                rp = mem.read_port(domain="comb")
                r1 = Signal(self.word_layout, name=f"c1_rd{i}_{s_}", reset_less=True)
                m.d.sync += r1.eq(rp.data)
                rd1.append(r1)
                m.d.comb += [rp.addr.eq(addr[0][:lo_bits] if lo_bits else 0),
                             wp.addr.eq(addr[W][:lo_bits] if lo_bits else 0), wp.data.eq(wd[W])]
                if sub < depth:
                    m.d.comb += wp.en.eq(addr[W][lo_bits:] == s_)
                else:
                    m.d.comb += wp.en.eq(1)
            raw = [None, rd1[0], Signal(self.word_layout, name=f"c2_raw{i}", reset_less=True)]
            if len(rd1) > 1:
                m.d.sync += raw[2].eq(Array(rd1)[addr[1][lo_bits:]])
            else:
                m.d.sync += raw[2].eq(rd1[0])
            for j in range(3, chk + 1):
                raw.append(Signal(self.word_layout, name=f"c{j}_raw{i}", reset_less=True))
                m.d.sync += raw[j].eq(raw[j - 1])

            # c0: read; compare the address with the ops 1..W ahead (stages c1..cW)
            eq1 = [None] + [Signal(name=f"c1_eq{i}_{d}", reset_less=True) for d in range(1, W + 1)]
            m.d.sync += [eq1[d].eq(addr[0] == addr[d]) for d in range(1, W + 1)]

            # c1: bits set by the ids 1..W-1 ahead (stages c2..cW) in the same word
            # (the forwarding mask); the op W ahead writes in the cycle of our read: a
            # collision.  Both are carried to stage chk.
            acc = Const(0, w)
            for d in range(1, W):
                acc = acc | Mux(eq1[d], oh[1 + d], 0)
            fwd = [None, None, Signal(w, name=f"c2_fwd{i}", reset_less=True)]
            coll = [None, None, Signal(name=f"c2_coll{i}", reset_less=True)]
            m.d.sync += [fwd[2].eq(acc), coll[2].eq(eq1[W])]
            for j in range(3, chk + 1):
                fwd.append(Signal(w, name=f"c{j}_fwd{i}", reset_less=True))
                coll.append(Signal(name=f"c{j}_coll{i}", reset_less=True))
                m.d.sync += [fwd[j].eq(fwd[j - 1]), coll[j].eq(coll[j - 1])]

            for j in range(W, W + chk):
                m.d.sync += wd[j + 1].eq(wd[j])
            col_w = wd[W + chk]

            # chk-1: the tag checks, registered (same epoch for both words, snapshot in ep)
            pre = chk - 1
            init_p = c[pre]["init"]
            use_raw = Signal(name=f"c{chk}_use_raw{i}", reset_less=True)
            use_w = Signal(name=f"c{chk}_use_w{i}", reset_less=True)
            m.d.sync += [
                use_raw.eq(~init_p & ~coll[pre] & (raw[pre].tag == epoch)),
                use_w.eq(~init_p & coll[pre] & (wd[W + pre].tag == epoch)),
            ]
            # chk: the current bits of the word before this op
            cur = Signal(w, name=f"c{chk + 1}_cur{i}", reset_less=True)
            m.d.sync += cur.eq(Mux(use_raw, raw[chk].bits, 0) | Mux(use_w, col_w.bits, 0)
                               | fwd[chk])

            # chk+1: hit bit, new word
            hit = Signal(name=f"c{W}_hit{i}", reset_less=True)
            m.d.sync += [
                hit.eq(cur.bit_select(bit[chk + 1], 1)),
                wd[W].bits.eq(cur | oh[chk + 1]),
                wd[W].tag.eq(ep[chk + 1]),
            ]
            hits.append(hit)

            # cW: write back (every op writes its word; port wiring above)

        # ---- response buffer ---------------------------------------------------------------
        fifo = m.submodules.out = Queue(self.resp_layout, self.out_depth, buffered=True,
                                        credited=True)
        wiring.connect(m, fifo.o, wiring.flipped(self.resp))
        m.d.comb += [
            fifo.i.valid.eq(c[W]["req"]),
            fifo.i.payload.eq(Cat(Cat(*hits).all(), c[W]["id"])),
            take.eq(self.resp.valid & self.resp.ready),
        ]

        # ---- sweep passes and clears ---------------------------------------------------------
        s_cur_new = Mux(c[W]["first"], ep[W], s_cur)
        m.d.sync += s_cur.eq(s_cur_new)
        with m.If(c[W]["last"]):
            m.d.sync += [s_prev.eq(s_cur_new), init_done.eq(1)]
        # no id of the old query may be in flight up to its write: an operation's
        # forwarding mask holds bits of the ids ahead of it, and it is checked against the
        # epoch only later
        # (the mask of an op in stage j, 2 <= j < chk, holds bits of ids up to stage
        # c<chk + W - 2>): the req flags are carried that far
        busy = [S[st]["req"] for st in names]
        for j in range(W + 1, chk + W - 1):
            t = Signal(name=f"c{j}_req")
            m.d.sync += t.eq(busy[-1])
            busy.append(t)
        busy_ids = Cat(*busy).any()
        m.d.comb += self.clear_ready.eq(init_done & ~busy_ids & ((epoch + 1)[:eb] != s_prev))
        with m.If(self.clear & self.clear_ready):
            m.d.sync += epoch.eq(epoch + 1)
        return m
