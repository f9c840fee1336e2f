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
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from proxima.config import ProximaConfig
from proxima.golden.bloom import h3_matrix

__all__ = ["BloomError", "BloomFilter", "H3_BITS"]

#: Width of one H3 hash word (the golden model draws 32-bit rows).
H3_BITS = 32


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

    Attributes
    ----------
    k, bank_bits, word_bits, depth (words per bank), epoch_bits, latency (= 2),
    q (the ``(k, id_bits)`` H3 matrix as Python ints), word_layout.
    """

    def __init__(self, cfg: ProximaConfig, *, epoch_bits: int = 4, word_bits: int | None = None):
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
        self.q = [[int(v) for v in row] for row in h3_matrix(cfg)]
        self.latency = 2
        self.word_layout = data.StructLayout({"bits": unsigned(w),
                                              "tag": unsigned(self.epoch_bits)})
        super().__init__({
            "req": In(stream.Signature(unsigned(self.id_bits))),
            "resp": Out(stream.Signature(data.StructLayout({
                "hit": unsigned(1), "id": unsigned(self.id_bits)}))),
            "clear": In(1),
            "clear_ready": Out(1),
            "busy": Out(1),
        })

    @classmethod
    def from_config(cls, cfg: ProximaConfig) -> "BloomFilter":
        return cls(cfg)

    # ---- hashing -------------------------------------------------------------------------
    def _hash(self, i: int, x):
        """Bank-local bit index of hash ``i`` of id ``x`` (a Value)."""
        row = self.q[i]
        bits = []
        for b in range(H3_BITS):
            mask = sum(1 << j for j in range(self.id_bits) if (row[j] >> b) & 1)
            bits.append((x & Const(mask, self.id_bits)).xor() if mask else Const(0, 1))
        h = Cat(*bits)
        return (h * Const(self.bank_bits))[H3_BITS:]

    def elaborate(self, platform):
        m = Module()
        k, w, depth = self.k, self.word_bits, self.depth
        eb = self.epoch_bits

        epoch = Signal(eb)
        s_prev = Signal(eb)          # epoch at the start of the previous sweep pass
        s_cur = Signal(eb)           # epoch at the start of the current sweep pass
        init_done = Signal()         # the post-reset unconditional pass has finished
        ptr = Signal(range(depth))   # scrubber pointer (next word to visit)

        # stage 1 / stage 2 operation registers ("req": an id, else a scrub op)
        s1_valid, s1_req = Signal(), Signal()
        s2_valid, s2_req = Signal(), Signal()
        s1_id = Signal(self.id_bits, reset_less=True)
        s2_id = Signal(self.id_bits, reset_less=True)
        s1_addr = [Signal(range(depth), name=f"s1_addr{i}", reset_less=True) for i in range(k)]
        s2_addr = [Signal(range(depth), name=f"s2_addr{i}", reset_less=True) for i in range(k)]
        s1_bit = [Signal(self.bit_sel_bits, name=f"s1_bit{i}", reset_less=True) for i in range(k)]
        s2_bit = [Signal(self.bit_sel_bits, name=f"s2_bit{i}", reset_less=True) for i in range(k)]

        advance = Signal()
        accept = Signal()
        scrub = Signal()
        m.d.comb += [
            advance.eq(~(s2_valid & s2_req & ~self.resp.ready)),
            self.req.ready.eq(advance & ~self.clear & init_done),
            accept.eq(self.req.valid & self.req.ready),
            scrub.eq(advance & ~accept),
            self.busy.eq(~init_done),
            self.clear_ready.eq(init_done & ~(s1_valid & s1_req) & ~(s2_valid & s2_req)
                                & ((epoch + 1)[:eb] != s_prev)),
        ]

        with m.If(advance):
            m.d.sync += [
                s1_valid.eq(accept | scrub), s1_req.eq(accept),
                s2_valid.eq(s1_valid), s2_req.eq(s1_req), s2_id.eq(s1_id),
            ]
            m.d.sync += [a.eq(b) for a, b in zip(s2_addr, s1_addr)]
            m.d.sync += [a.eq(b) for a, b in zip(s2_bit, s1_bit)]
        with m.If(accept):
            m.d.sync += s1_id.eq(self.req.payload)
        with m.If(scrub):
            m.d.sync += ptr.eq(Mux(ptr == depth - 1, 0, ptr + 1))

        hits = []
        for i in range(k):
            mem = Memory(shape=self.word_layout, depth=depth, init=[])
            m.submodules[f"bank{i}"] = mem
            wp = mem.write_port()
            rp = mem.read_port(transparent_for=(wp,))

            idx = Signal(range(self.bank_bits), name=f"idx{i}")
            m.d.comb += idx.eq(self._hash(i, self.req.payload))
            in_addr = idx >> (w.bit_length() - 1) if w > 1 else idx
            in_bit = idx[:self.bit_sel_bits] if w > 1 else Const(0, 1)
            op_addr = Mux(accept, in_addr, ptr)
            m.d.comb += [rp.en.eq(advance), rp.addr.eq(op_addr)]
            with m.If(advance):
                m.d.sync += [s1_addr[i].eq(op_addr), s1_bit[i].eq(in_bit)]

            # stage 2 word: the RAM data registered, or the word forwarded from the write
            # that happened while this operation was in stage 1
            raw = Signal(self.word_layout, name=f"s2_raw{i}", reset_less=True)
            fwd = Signal(name=f"s2_fwd{i}", reset_less=True)
            fwd_word = Signal(self.word_layout, name=f"s2_fwd_word{i}", reset_less=True)
            word = Signal(self.word_layout, name=f"s2_word{i}")
            m.d.comb += word.eq(Mux(fwd, fwd_word, raw))
            with m.If(advance):
                m.d.sync += [
                    raw.eq(rp.data),
                    fwd.eq(wp.en & (wp.addr == s1_addr[i])),
                    fwd_word.eq(wp.data),
                ]

            cur_bits = Signal(w, name=f"cur_bits{i}")
            m.d.comb += cur_bits.eq(Mux(word.tag == epoch, word.bits, 0))
            hit = Signal(name=f"hit{i}")
            m.d.comb += hit.eq(cur_bits.bit_select(s2_bit[i], 1))
            hits.append(hit)
            with m.If(s2_valid & advance):
                with m.If(s2_req):
                    m.d.comb += [
                        wp.en.eq(1),
                        wp.data.bits.eq(cur_bits | (Const(1, w) << s2_bit[i])),
                    ]
                with m.Elif((word.tag != epoch) | ~init_done):
                    m.d.comb += [wp.en.eq(1), wp.data.bits.eq(0)]
            m.d.comb += [wp.addr.eq(s2_addr[i]), wp.data.tag.eq(epoch)]

        m.d.comb += [
            self.resp.valid.eq(s2_valid & s2_req),
            self.resp.payload.id.eq(s2_id),
            self.resp.payload.hit.eq(Cat(*hits).all()),
        ]

        # end of a sweep pass: the scrub op of the last word leaves stage 2
        with m.If(s2_valid & ~s2_req & advance & (s2_addr[0] == depth - 1)):
            m.d.sync += [s_prev.eq(s_cur), s_cur.eq(epoch), init_done.eq(1)]
        with m.If(self.clear & self.clear_ready):
            m.d.sync += epoch.eq(epoch + 1)
        return m
