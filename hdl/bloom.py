"""Visited-set Bloom filter: test-and-set of vertex ids, one id per cycle, O(1) clear.

Bit-exact twin of :class:`proxima.golden.bloom.BloomFilter` (the spec): a *partitioned*
filter of ``k = cfg.bloom.hashes`` banks of ``B = cfg.bloom.bank_bits`` bits.  Hash ``i`` of
an id ``x`` is the H3 hash ``h_i = XOR_{j : x_j = 1} Q[i][j]`` with ``Q`` elaborated from
:func:`proxima.golden.bloom.h3_matrix` (the one definition; every output bit of ``h_i`` is an
XOR of the id bits selected by a constant mask), followed by the multiply-shift range
reduction ``index_i = (h_i * B) >> 32`` (a constant multiplier: a wire shift when ``B`` is a
power of two).  ``hit = all k addressed bits were set``; then the k bits are set.

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

Storage and word format
-----------------------
Bank ``i`` is one :class:`amaranth.lib.memory.Memory` of ``depth = B / word_bits`` words (one
synchronous read port, transparent for the one write port: a simple dual-port RAM).  Bit
``index`` of the bank lives in word ``index // word_bits`` at bit ``index % word_bits``.
``word_bits`` defaults to the largest power of two <= 32 that divides ``B``.  Every word is
``{bits: word_bits, tag: epoch_bits}``.

Pipeline and read-modify-write hazards
--------------------------------------
Every RAM access is an *operation* that walks three stages, one per cycle, all stages
sharing one enable ``advance = ~(stage 2 holds a response that is not taken)``:

* stage 0 issues the read: the hashed addresses of an accepted id, or -- in a cycle where
  no id is accepted -- the scrubber's next word (see below);
* stage 1 waits for the synchronous RAM read (the RAM output goes straight into a
  register: no logic after the slow block-RAM clock-to-out);
* stage 2 holds the word, computes ``hit`` (response ``valid`` comes from this stage) and
  writes the modified word back in the cycle it leaves (for an id: when the response is
  taken).

Only stage 2 writes, at most one write per cycle per bank.  A read issued in the cycle of
a write to the same word sees the new word (the read ports are *transparent* for the write
ports; Yosys adds the bypass when the RAM primitive lacks it).  An operation in stage 1
read the RAM one cycle before the write of the operation ahead of it: when the two address
the same word, the written word is captured into a forwarding register as the operation
moves into stage 2, and stage 2 uses it instead of the RAM data.  Responses therefore equal
the sequential golden model for any sequence of ids.  Throughput: one id per cycle;
latency 2 (the response is valid two cycles after the id is accepted).

Clear without a sweep: epoch tags
---------------------------------
A register ``epoch`` (``epoch_bits`` wide) names the current query.  A word whose ``tag``
differs from ``epoch`` reads as all zero; writes store ``tag = epoch``.  A clear is just
``epoch += 1`` (one cycle, only waiting for the ids in flight to drain).

Wrap-around is made safe by a background *scrubber*: a pointer walks the words of all banks
(same address in every bank).  In every cycle where no id is accepted and the pipeline
advances, a scrub operation for word ``p`` enters stage 0 and ``p`` advances; in stage 2 a
word whose tag is stale is rewritten as ``{tag: epoch, bits: 0}`` (same meaning: empty).
Scrub operations use the otherwise idle slots, never stall and never delay an id.  A visit
leaves the word's tag equal to the epoch of the visit.  Let ``s_P`` be the epoch when
sweep pass ``P`` starts.  After pass ``P-1`` every tag is ``>= s_{P-1}`` (counting epochs
without wrap), so during pass ``P`` a tag can alias the current epoch only after
``2**epoch_bits`` clears since ``s_{P-1}``.  The filter keeps ``s_prev = s_{P-1}`` and
refuses a clear (``clear_ready`` low) that would make ``epoch + 1 == s_prev (mod
2**epoch_bits)``: at most ``2**epoch_bits - 1`` clears happen per two sweep passes, and no
stale word ever reads as current.  A blocked clear also blocks requests (``clear`` high),
so the scrubber then runs at one word per cycle and the clear waits at most ~two passes
(``2 * depth`` cycles).  A pass needs ``depth`` cycles without an accepted id, so with the
defaults (4-bit epochs, 32-bit words, ``cfg.bloom`` default: 256 words per bank) a clear
is only delayed when 15 clears fall within two passes, i.e. within ~512 idle cycles.

After reset the scrubber first makes one unconditional pass writing ``{epoch, 0}`` to every
word (``depth`` cycles; ``req.ready`` and ``clear_ready`` stay low, ``busy`` is high), so a
reset in the middle of operation also leaves an empty filter.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from proxima.config import ProximaConfig
from proxima.golden.bloom import h3_matrix

__all__ = ["BloomError", "BloomFilter", "H3_BITS"]

#: Width of one H3 hash word (the golden model draws 32-bit rows).
H3_BITS = 32

#: Read-to-write distance of a RAM operation in cycles (read address in stage c0, write in
#: stage c4): the operations 1..WINDOW ahead of a read may still write the word it reads.
WINDOW = 4


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
    out_depth : int, optional
        Entries of the response buffer (= the most ids in flight), >= ``latency + 1`` for
        one id per cycle; default: the next power of two >= ``latency + 2``.

    Attributes
    ----------
    k, bank_bits, word_bits, depth (words per bank), epoch_bits, latency (cycles from an
    accepted id to its response, with ``resp.ready`` high), hash_stages (1, or 2 when
    ``bank_bits`` is not a power of two), out_depth, init_cycles (cycles from the end of
    reset to the first cycle with ``req.ready`` high), q (the ``(k, id_bits)`` H3 matrix as
    Python ints), word_layout.
    """

    def __init__(self, cfg: ProximaConfig, *, epoch_bits: int = 4, word_bits: int | None = None,
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
        self.bit_sel_bits = max(1, (w - 1).bit_length())
        self.addr_bits = max(1, (self.depth - 1).bit_length())
        self.pow2 = self.bank_bits & (self.bank_bits - 1) == 0
        self.hash_stages = 1 if self.pow2 else 2
        self.q = [[int(v) for v in row] for row in h3_matrix(cfg)]
        # accept -> stage a -> (m) -> c0 .. c4 (response into the buffer) -> 2 buffer cycles
        self.latency = 1 + self.hash_stages + WINDOW + 2
        self.init_cycles = self.depth + self.hash_stages + WINDOW + 1
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
        sh = self.word_bits.bit_length() - 1
        addr = idx[sh:sh + self.addr_bits] if self.depth > 1 else Const(0, 1)
        bit = idx[:self.bit_sel_bits] if self.word_bits > 1 else Const(0, 1)
        return addr, bit

    def elaborate(self, platform):
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
        names = ["a"] + (["m"] if not self.pow2 else []) + [f"c{j}" for j in range(WINDOW + 1)]

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

        # ---- shared epoch snapshot and response path -----------------------------------
        c3_ep = Signal(eb, reset_less=True)
        c4_ep = Signal(eb, reset_less=True)
        m.d.sync += [c3_ep.eq(epoch), c4_ep.eq(c3_ep)]
        c = [S[f"c{j}"] for j in range(WINDOW + 1)]

        hits = []
        for i in range(k):
            # collisions (a read of the word written in the same cycle) are resolved by
            # forwarding, never by the RAM: no_rw_check keeps Yosys from adding its own
            # bypass logic behind the slow block-RAM output
            mem = Memory(shape=self.word_layout, depth=depth, init=[], attrs={"no_rw_check": 1})
            m.submodules[f"bank{i}"] = mem
            wp = mem.write_port()
            # an asynchronous read port plus a plain register (rd1): Yosys merges the two
            # into the block RAM's synchronous port, and with ``no_rw_check`` the merged
            # port does not promise old data on a collision (no emulation logic)
            rp = mem.read_port(domain="comb")
            rd1 = Signal(self.word_layout, name=f"c1_rd{i}", reset_less=True)
            m.d.sync += rd1.eq(rp.data)

            addr = [Signal(ab, name=f"c{j}_addr{i}", reset_less=True) for j in range(WINDOW + 1)]
            bit = [Signal(bb, name=f"c{j}_bit{i}", reset_less=True) for j in range(WINDOW)]
            # one-hot of the bit an id sets (0 for a scrub), stages c1 .. c4
            oh = [None] + [Signal(w, name=f"c{j}_oh{i}", reset_less=True)
                           for j in range(1, WINDOW + 1)]

            # hash: stage a (and m) -> c0
            if self.pow2:
                lg = self.bank_bits.bit_length() - 1
                idx = self._h3(i, S["a"]["id"], lo=H3_BITS - lg) if lg else Const(0, 1)
                req_h = S["a"]["req"]
            else:
                h = Signal(H3_BITS, name=f"m_h{i}", reset_less=True)
                m.d.sync += h.eq(self._h3(i, S["a"]["id"]))
                idx = (h * Const(self.bank_bits))[H3_BITS:]
                req_h = S["m"]["req"]
            in_addr, in_bit = self._split(idx)
            m.d.sync += [addr[0].eq(Mux(req_h, in_addr, src_ptr)), bit[0].eq(in_bit)]
            for j in range(WINDOW):
                m.d.sync += addr[j + 1].eq(addr[j])
            for j in range(WINDOW - 1):
                m.d.sync += bit[j + 1].eq(bit[j])
            m.d.sync += oh[1].eq(Mux(c[0]["req"], Const(1, w) << bit[0], 0))
            for j in range(1, WINDOW):
                m.d.sync += oh[j + 1].eq(oh[j])

            # c0: read; compare the address with the ops 1..WINDOW ahead (stages c1..c4)
            m.d.comb += rp.addr.eq(addr[0])
            eq1 = [Signal(name=f"c1_eq{i}_{d}", reset_less=True) for d in range(1, WINDOW + 1)]
            m.d.sync += [e.eq(addr[0] == addr[d]) for e, d in zip(eq1, range(1, WINDOW + 1))]

            # c1: bits set by the ids 1..WINDOW-1 ahead (stages c2..c4) in the same word;
            # the op WINDOW ahead writes in the cycle of our read: a collision
            fwd2 = Signal(w, name=f"c2_fwd{i}", reset_less=True)
            coll2 = Signal(name=f"c2_coll{i}", reset_less=True)
            raw2 = Signal(self.word_layout, name=f"c2_raw{i}", reset_less=True)
            terms = [Mux(eq1[d - 1], oh[1 + d], 0) for d in range(1, WINDOW)]
            acc = terms[0]
            for t in terms[1:]:
                acc = acc | t
            m.d.sync += [fwd2.eq(acc), coll2.eq(eq1[WINDOW - 1]), raw2.eq(rd1)]

            # c2: the current bits of the word before this op
            w4 = Signal(self.word_layout, name=f"c4_w{i}", reset_less=True)
            w5 = Signal(self.word_layout, name=f"c5_w{i}", reset_less=True)
            w6 = Signal(self.word_layout, name=f"c6_w{i}", reset_less=True)
            use_raw = Signal(name=f"c2_use_raw{i}")
            use_w = Signal(name=f"c2_use_w{i}")
            m.d.comb += [
                use_raw.eq(~c[2]["init"] & ~coll2 & (raw2.tag == epoch)),
                use_w.eq(~c[2]["init"] & coll2 & (w6.tag == epoch)),
            ]
            cur3 = Signal(w, name=f"c3_cur{i}", reset_less=True)
            m.d.sync += cur3.eq(Mux(use_raw, raw2.bits, 0) | Mux(use_w, w6.bits, 0) | fwd2)

            # c3: hit bit, new word
            hit4 = Signal(name=f"c4_hit{i}", reset_less=True)
            m.d.sync += [
                hit4.eq(cur3.bit_select(bit[3], 1)),
                w4.bits.eq(cur3 | oh[3]),
                w4.tag.eq(c3_ep),
                w5.eq(w4), w6.eq(w5),
            ]
            hits.append(hit4)

            # c4: write back (every op writes its word)
            m.d.comb += [wp.en.eq(1), wp.addr.eq(addr[4]), wp.data.eq(w4)]

        # ---- response buffer ---------------------------------------------------------------
        fifo = m.submodules.out = SyncFIFOBuffered(width=self.resp_layout.size,
                                                   depth=self.out_depth)
        r = Signal(self.resp_layout)
        m.d.comb += [
            fifo.w_en.eq(c[4]["req"]),
            fifo.w_data.eq(Cat(Cat(*hits).all(), c[4]["id"])),
            r.eq(fifo.r_data),
            self.resp.valid.eq(fifo.r_rdy),
            self.resp.payload.eq(r),
            fifo.r_en.eq(self.resp.ready),
            take.eq(fifo.r_rdy & self.resp.ready),
        ]

        # ---- sweep passes and clears ---------------------------------------------------------
        s_cur_new = Mux(c[4]["first"], c4_ep, s_cur)
        m.d.sync += s_cur.eq(s_cur_new)
        with m.If(c[4]["last"]):
            m.d.sync += [s_prev.eq(s_cur_new), init_done.eq(1)]
        busy_ids = S["a"]["req"] | c[0]["req"] | c[1]["req"] | c[2]["req"]
        if not self.pow2:
            busy_ids = busy_ids | S["m"]["req"]
        m.d.comb += self.clear_ready.eq(init_done & ~busy_ids & ((epoch + 1)[:eb] != s_prev))
        with m.If(self.clear & self.clear_ready):
            m.d.sync += epoch.eq(epoch + 1)
        return m
