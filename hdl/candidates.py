"""Candidate list of one query (Algorithm 1's ``C``): RTL twin of golden.candidates.

Bit-exact twin of :class:`proxima.golden.candidates.CandidateList` (the spec): at most
``L = cfg.search.L`` entries ``(key, expanded)`` in ascending key order, ``key = (pq_dist <<
id_bits) | id`` (``cfg.sort_key_bits`` wide, the all-ones key marks an empty slot).

The list owns no sorter (``sort_req`` / ``sort_resp``), so the engine can share one sorter of
``n = engine.sorter_n`` inputs between its queues; :class:`CandidateListWithSorter` connects
one list to a private :class:`proxima.hdl.sorter.BitonicSorter` (tests, simulation).

Interface of :class:`CandidateListRTL`
--------------------------------------
``cmd``     ``In(stream{op: 2, key, T, last})``, one command per beat (``insert`` takes one
            beat per key):

            ========  ==  =================================================================
            op        #   meaning
            ========  ==  =================================================================
            RESET     0   ``C = [(key, False)]``
            INSERT    1   one new key of a batch; the beat with ``last = 1`` ends the batch
                          and starts the merge (golden ``insert(batch)``).  At most
                          ``R = graph.R`` keys per batch: further keys are dropped and
                          ``error`` is set (the golden model raises).  An empty batch is a
                          no-op and is simply not sent.  When ``R > n`` the beat that
                          fills the request register (the ``n``-th key of a sub-batch)
                          starts a merge too, and the next beat is accepted when it is
                          done (see "Sub-batches").
            SELECT    2   golden ``select(T)``: answers on ``resp`` and sets the flag
            DUMP      3   stream all ``L`` slots on ``dbg`` (debug / verification)
            ========  ==  =================================================================

            ``cmd.ready`` is one register: cleared by every accepted command except a
            non-final INSERT beat, set again when that command is done (merge finished,
            response taken, dump finished, reset applied), so commands take effect strictly
            in order.  The INSERT beats of one batch must not be interleaved with other
            commands (a RESET drops a partial batch).
``resp``    ``Out(stream{found, pos, id, key})``: one beat per SELECT (registered).
            ``found = 0`` (with ``pos = id = key = 0``) when no entry among the first
            ``min(T, len)`` is unexpanded.
``dbg``     ``Out(stream{pos, key, expanded, last})``, registered: slots ``0 .. L-1`` after a
            DUMP (empty slots: ``key`` all ones, ``expanded = 0``), ``last`` on slot ``L-1``.
``length``  ``Out``: entries in the list.  ``error``: ``Out(1)``, sticky batch overflow.
``sort_req``   ``Out(stream(ArrayLayout(unsigned(ext_bits), n)))``: a vector of ``n``
               values to sort (payload straight from a register, ``valid`` too): extended
               keys, or their complements (the batch ``S`` and the maxima ``Y``, see
               "Storage and merge"); the sorter sorts them as numbers.
``sort_resp``  ``In(stream(ArrayLayout(unsigned(ext_bits), n)))``: the sorted vectors,
               element 0 the smallest, one per request and in request order, with any
               latency (a response may even come in the cycle its request is accepted) and
               any gaps.  ``sort_resp.ready`` is high throughout a merge (a register), so the
               list never stalls the sorter; outside a merge no response may arrive.  The
               payload goes straight into registers (the carry, the RAM's write port),
               enabled by ``valid`` through one LUT.

Pieces (each with a unit test against its golden twin): :mod:`proxima.hdl.candidates_select`
(SELECT pipeline), :mod:`proxima.hdl.candidates_merge` (comparators, sorter-request
sequencer), :mod:`proxima.hdl.candidates_dump` (DUMP path and ``dbg`` FIFO); this module
holds the list (LUT-RAM and flags), the carry, the request register, the read port shared
by SELECT, DUMP and the merge, and the commands.

Storage and merge
-----------------
A slot holds the extended key ``(key << 1) | expanded`` (``ext_bits = sort_key_bits + 1``
bits, empty: all ones), so the sorter (:attr:`sort_cfg`: ``id_bits + 1``) carries the flag;
needs ``id_bits <= 31``.  The list is cut into ``j = cfg.list_chunks`` chunks of ``w =
min(L, n)`` slots.  The keys of chunk ``c`` are one word of a LUT-RAM (``w * key_bits``
bits; one asynchronous read port, one write port: ``TRELLIS_DPR16X4`` on the ECP5), of a
pair of words per chunk (``bank[c]`` says which): a merge writes the new chunk into the
other word, so the old one stays readable for the maxima, and flips ``bank[c]``.  The ``L``
expanded flags are flip-flops (SELECT looks at all of them at once).  A slot at or past
``length`` is empty and reads as all ones whatever its word holds (a thermometer code of
``length``), so RESET writes slot 0 only and nothing is ever cleared.

An insert sorts the batch (``S``, the carry ``C``), then per chunk ``t`` requests ``X_t =
min(A_t[i], C[w-1-i])`` (the new chunk ``t``) and, but for the last chunk,
``Y_t = max(A_t[i], C[n-1-i])`` (the next carry): ``cfg.merge_passes = 2 j`` sorter passes;
``len = min(L, len + batch)``.  The responses go straight into registers: ``S`` and ``Y``
into the carry, ``X_t`` into the RAM (its flags a cycle later).  ``S`` and ``Y`` are sent
complemented, so the carry holds ``~C`` in reverse order: the comparators' operands (``a``
from the RAM, ``~b`` from the carry, the keys without the flag, which never decides: a key
of the list and one of the batch are never equal) reach their carry chains with no
inverter (``a > b`` is the carry out of ``a + ~b``), and one LUT per request bit picks
``a``, ``b`` or their complements; the keys a batch leaves empty and the maxima of empty
slots (complemented: 0) come from the request flip-flops' synchronous reset.  A batch of more
than ``n`` keys (``R > n``) is merged as sub-batches of ``n`` (``cfg.insert_merges``): the
beat that fills the request register starts a merge, and the next beat is accepted when it
is done.

Cycles
------
With a sorter of latency ``lat`` that never stalls: one cycle per INSERT beat, then the
next command is accepted ``cfg.insert_cycles_for(lat)`` = ``(j + 1) lat + 7 j + 3`` cycles
after the last INSERT beat (:meth:`CandidateListRTL.merge_cycles`); sorter stalls add one
for one.  A merge that cannot change the list is skipped (golden
:meth:`~proxima.golden.candidates.CandidateList.insert`'s merge plan): when the list holds
``L`` entries and every key of the (sub-)batch is larger than its last key, nothing goes to
the sorter and the next command is accepted ``cfg.insert_skip_cycles`` = 4 cycles after the
last INSERT beat.  Each INSERT beat's key is compared with ``last_key`` (a register: slot
``L - 1`` between merges, loaded from the ``X`` responses) the cycle after it is accepted; the
(sub-)batch's verdict is a register two cycles after its last beat, in time for the
sequencer's first request.  SELECT: ``resp.valid`` ``select_latency`` = 6 cycles after acceptance; the next
command is accepted in the cycle after the response is taken.  RESET: two cycles.  DUMP:
``L`` beats, one per cycle while ``dbg.ready`` is high, the first four cycles after the
command; the next command in the cycle after the last beat is taken.

SELECT and DUMP read one slot through the RAM's read port (the merge's chunk during a
merge): a registered chunk index and one-hot slot within it, one AND-OR level registered
(``rd_key``).  Wide register groups take enables and selects from flip-flops of their own,
one per request key, or ``copies`` per key each driving a slice of its bits (constructor
argument, default from ``engine.clock_mhz``; more than one also splits each comparison
into two registered halves, for clocks above 100 MHz).  Resources and Fmax:
``docs/RESOURCES.md`` (``candidates``).
"""

from __future__ import annotations

from amaranth.hdl import C, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out, connect

from proxima.config import ConfigError, ProximaConfig
from proxima.golden.layout import bitlen
from proxima.hdl.candidates_dump import DumpReader, dump_layout
from proxima.hdl.candidates_merge import MergeCompare, MergeControl
from proxima.hdl.candidates_select import ListSelect
from proxima.hdl.lib.logic import (onehot_to_binary, or_tree, register_copies as _copies,
                                   thermometer)

__all__ = ["CandidateListRTL", "CandidateListWithSorter", "CandidateListError", "Op"]


class CandidateListError(ValueError):
    """Impossible parameters for the candidate-list block."""


class Op(enum.Enum, shape=2):
    RESET = 0
    INSERT = 1
    SELECT = 2
    DUMP = 3


class CandidateListRTL(wiring.Component):
    """Per-query sorted candidate list with select / insert / dump commands and sorter
    request / response ports (see the module docstring)."""

    #: cycles from an accepted SELECT to ``resp.valid``
    select_latency = 6
    #: the highest ``engine.clock_mhz`` for which the default ``copies`` is 1 (one register
    #: per request key's enable and source selects, one carry chain per comparison);
    #: above it 2 (each key's bits in slices, each comparison in two registered halves)
    SINGLE_COPY_MHZ = 100.0

    def __init__(self, cfg: ProximaConfig, copies: int | None = None):
        """``copies``: registered copies of each request key's enable and source selects,
        each driving a slice of the key's bits; more than one also splits each merge
        comparison into two registered halves.  Default 1 up to :attr:`SINGLE_COPY_MHZ`,
        else 2."""
        self.cfg = cfg
        if copies is None:
            copies = 1 if cfg.engine.clock_mhz <= self.SINGLE_COPY_MHZ else 2
        if int(copies) < 1:
            raise CandidateListError(f"copies must be >= 1, got {copies}")
        #: copies of each request key's enable and source selects (each drives a slice of
        #: its bits); more than one copy also splits the merge comparison in halves
        self.req_copies = int(copies)
        self.halves = self.req_copies > 1
        self.L, self.R, self.n = cfg.search.L, cfg.graph.R, cfg.engine.sorter_n
        if self.L > self.n and self.L % self.n:
            raise CandidateListError(f"L ({self.L}) must fit the sorter or be a multiple of "
                                     f"it (sorter_n = {self.n})")
        #: chunks of the list, slots per chunk
        self.chunks = cfg.list_chunks
        #: a batch of more than ``n`` keys is merged as consecutive sub-batches of ``n``
        self.split = self.R > self.n
        self.w = min(self.L, self.n)
        assert self.chunks * self.w == self.L and cfg.merge_passes == 2 * self.chunks
        try:
            #: configuration of the sorter this list needs: keys one bit wider (the flag)
            self.sort_cfg = cfg.with_(engine={"id_bits": cfg.id_bits + 1})
        except ConfigError as e:
            raise CandidateListError(
                f"the expanded flag widens the sorter key by one bit: {e}") from None
        self.key_bits = cfg.sort_key_bits
        self.ext_bits = self.key_bits + 1
        assert self.sort_cfg.sort_key_bits == self.ext_bits
        self.id_bits = cfg.id_bits
        self.t_bits = bitlen(self.L)
        self.cmd_layout = data.StructLayout({"op": Op, "key": self.key_bits,
                                             "T": self.t_bits, "last": 1})
        self.resp_layout = data.StructLayout({"found": 1, "pos": range(self.L),
                                              "id": self.id_bits, "key": self.key_bits})
        self.dbg_layout = dump_layout(self.L, self.key_bits)
        self.vector_layout = data.ArrayLayout(unsigned(self.ext_bits), self.n)
        super().__init__({
            "cmd": In(stream.Signature(self.cmd_layout)),
            "resp": Out(stream.Signature(self.resp_layout)),
            "dbg": Out(stream.Signature(self.dbg_layout)),
            "length": Out(range(self.L + 1)),
            "error": Out(1),
            "sort_req": Out(stream.Signature(self.vector_layout)),
            "sort_resp": In(stream.Signature(self.vector_layout)),
        })

    @classmethod
    def from_config(cls, cfg: ProximaConfig, copies: int | None = None) -> "CandidateListRTL":
        """The list alone (no sorter): what the resource report measures."""
        return cls(cfg, copies)

    def merge_cycles(self, sorter_latency: int) -> int:
        """Cycles from the last INSERT beat to the next accepted command with a sorter of
        latency ``sorter_latency`` that never stalls (module docstring, "Cycles")."""
        return self.cfg.insert_cycles_for(sorter_latency)

    def elaborate(self, platform):
        m = Module()
        L, R, n, w, j = self.L, self.R, self.n, self.w, self.chunks
        EB, KB = self.ext_bits, self.key_bits
        ones = (1 << EB) - 1

        # ---- storage ------------------------------------------------------------------
        # keys: chunk c of the list (slots c*w .. c*w+w-1, their keys without the flag) is
        # word Cat(c, bank[c]) of a LUT-RAM (one asynchronous read port, one write port): a
        # merge writes the new chunk into the other word of the pair, so the old one stays
        # readable until the maxima are taken.  flags: slot i's expanded flag (empty slots
        # 1), flip-flops (SELECT reads all L at once).  A slot at or past `length` is empty
        # and reads as all ones, whatever its word holds (so RESET writes slot 0 only).
        cb = len(Signal(range(j)))            # bits of a chunk index
        keys = Memory(shape=unsigned(KB * w), depth=2 << cb, init=[],
                      attrs={"ram_style": "distributed"})
        m.submodules.keys = keys
        rport = keys.read_port(domain="comb")
        wport = keys.write_port()
        flags = Signal(L, init=(1 << L) - 1)
        bank = Signal(j)

        def bank_of(c):
            return bank.bit_select(c, 1) if j > 1 else bank[0]
        carry = [Signal(EB, name=f"carry{i}", reset_less=True) for i in range(n)]
        # (no reset: the first key of a batch clears the others; an initial value equal
        # to that clear lets yosys map it to the flip-flops' synchronous reset)
        req = [Signal(EB, name=f"req{i}", reset_less=True) for i in range(n)]
        length = Signal(range(L + 1))
        # ncount: keys in the request register (this sub-batch); bcount: keys of the batch
        # (all its sub-batches; only kept when R > n, else it equals ncount)
        ncount = Signal(range(min(R, n) + 1))
        bcount = Signal(range(R + 1)) if self.split else ncount
        room = Signal(init=1)                 # bcount < R, as a register of its own
        room_nx = Signal()                    # its next state (comb), see ins_ok
        m.d.comb += room_nx.eq(room)
        nzero = Signal(init=1)                # ncount == 0, as a register of its own
        nlast = Signal(init=n == 1)           # ncount == n - 1 (R > n: the next key fills it)
        sub = Signal()                        # the merge running is a sub-batch: keys follow
        error = Signal()
        m.d.comb += [self.length.eq(length), self.error.eq(error)]

        cmd = self.cmd.payload
        # cmd.ready is one register: cleared by every command but a non-final INSERT beat,
        # set again when that command is done (merge, dump, response taken, reset applied)
        # idle and room are written through their next states idle_nx / room_nx (comb, the
        # same priorities as sync statements), so that ins_ok = idle & room can be a register
        # of its own: an INSERT beat that goes in is then one LUT of the command input
        idle = Signal(init=1)
        idle_nx = Signal()
        ins_ok = Signal(init=1)
        m.d.comb += idle_nx.eq(idle)
        rst_pend = Signal()                   # RESET accepted: done a cycle later
        accept = Signal()
        m.d.comb += [self.cmd.ready.eq(idle), accept.eq(self.cmd.valid & idle)]
        # an INSERT beat clears it when it starts a merge: the last beat of a batch (unless
        # the batch overflowed and its last sub-batch is empty: nothing to merge) or, when
        # R > n, the beat that fills the request register (a sub-batch merge)
        if self.split:
            starts_merge = Mux(cmd.last, room | ~nzero, room & nlast)
        else:
            starts_merge = cmd.last
        with m.If(accept & ((cmd.op != Op.INSERT) | starts_merge)):
            m.d.comb += idle_nx.eq(0)
        acc_reset, acc_insert, acc_select, acc_dump = Signal(), Signal(), Signal(), Signal()
        ins_go = Signal()                     # an INSERT beat that goes in (acc_insert & room)
        m.d.comb += ins_go.eq(self.cmd.valid & ins_ok & (cmd.op == Op.INSERT))
        m.d.comb += [
            acc_reset.eq(accept & (cmd.op == Op.RESET)),
            acc_insert.eq(accept & (cmd.op == Op.INSERT)),
            acc_select.eq(accept & (cmd.op == Op.SELECT)),
            acc_dump.eq(accept & (cmd.op == Op.DUMP)),
        ]

        # ---- the read port: the merge's chunk during a merge, else SELECT / DUMP's --------
        m.submodules.control = ctl = MergeControl(j)
        # raddr, a register: during a merge the chunk of the request side a cycle late (it
        # moves on when Y_t is accepted, at least two cycles before chunk t + 1 is compared
        # and after Y_t was loaded), else the chunk of the slot SELECT / DUMP reads
        # (rbank: bank[raddr] registered with it, a cycle late after a merge flips it)
        raddr = Signal(range(j))
        rbank = Signal()
        m.d.comb += rport.addr.eq(Cat(raddr, rbank))
        with m.If(ctl.merging):
            m.d.sync += [raddr.eq(ctl.chunk), rbank.eq(bank_of(ctl.chunk))]
        word = [rport.data[i * KB:(i + 1) * KB] for i in range(w)]
        fword = Signal(w)                     # the flags of chunk raddr
        m.d.comb += fword.eq(flags.word_select(raddr, w) if j > 1 else flags)
        # empty[i]: slot i of chunk raddr is at or past the length (reads as all ones)
        occ = Signal(L)
        m.d.comb += occ.eq(thermometer(length, L))
        empty = Signal(w)
        m.d.comb += empty.eq(~(occ.word_select(raddr, w) if j > 1 else occ))

        # ---- select pipeline: the chosen slot's flag is set in s3 ------------------------
        m.submodules.select = sel = ListSelect(L, self.t_bits)
        m.d.comb += [sel.go.eq(acc_select), sel.T.eq(cmd.T), sel.unexpanded.eq(~flags)]
        s3, s5, first = sel.s3, sel.s5, sel.first
        sel_pos, sel_found = sel.pos, sel.found
        resp_valid = Signal()
        m.d.comb += self.resp.valid.eq(resp_valid)
        with m.If(self.resp.valid & self.resp.ready):
            m.d.sync += resp_valid.eq(0)
            m.d.comb += idle_nx.eq(1)

        # ---- SELECT and DUMP read one slot: (raddr, rd_slot one-hot in the chunk) ----------
        # loaded from `first` in s3 (all zero when nothing was found, so the key reads as
        # 0), set to slot 0 by a DUMP and moved up one slot per dump beat.  The read level
        # rd_key (the AND-OR of the chunk's slots with rd_slot) loads on the dump reader's
        # `load`.  A SELECT never reads an empty slot (its flag is set); the dump reader
        # reports the slots past the length as empty.
        rd_slot = Signal(w)
        rd_key = Signal(EB, reset_less=True)
        m.submodules.dump = dump = DumpReader(L, 1, EB, self.dbg_layout)
        m.d.comb += [dump.start.eq(acc_dump), dump.s3.eq(s3), dump.rd_key.eq(rd_key),
                     dump.length.eq(length)]
        connect(m, dump.dbg, wiring.flipped(self.dbg))
        with m.If(s3):
            m.d.sync += rd_slot.eq(or_tree([first[c * w:(c + 1) * w] for c in range(j)], w))
            sc = onehot_to_binary(Cat(first[c * w:(c + 1) * w].any() for c in range(j)),
                                  cb) if j > 1 else C(0, 0)
            m.d.sync += [raddr.eq(sc), rbank.eq(bank_of(sc))]
        with m.If(dump.shift[0]):
            m.d.sync += rd_slot.eq(Cat(rd_slot[w - 1], rd_slot[:w - 1]))
            if j > 1:
                with m.If(rd_slot[w - 1]):
                    nc = Mux(raddr == j - 1, 0, raddr + 1)[:cb]
                    m.d.sync += [raddr.eq(nc), rbank.eq(bank_of(nc))]
        with m.If(dump.go):
            m.d.sync += [rd_slot.eq(1), raddr.eq(0), rbank.eq(bank[0])]
        with m.If(dump.load[0]):
            m.d.sync += rd_key.eq(
                Cat(or_tree([fword[i] & rd_slot[i] for i in range(w)]),
                    or_tree([word[i] & rd_slot[i].replicate(KB) for i in range(w)], KB)))

        with m.If(s5):
            m.d.sync += [
                resp_valid.eq(1),
                self.resp.payload.found.eq(sel_found),
                self.resp.payload.pos.eq(sel_pos),
                self.resp.payload.key.eq(rd_key[1:]),
                self.resp.payload.id.eq(rd_key[1:1 + self.id_bits]),
            ]

        with m.If(dump.done):
            m.d.comb += idle_nx.eq(1)

        # ---- merge: chunk ctl.chunk against the reversed carry, and the sequencer ---------
        # S and Y are sent to the sorter inverted (the keys' complements, so the response
        # is the keys in descending order, complemented): the carry register then holds
        # ~C reversed, and the comparators' operands (a from the RAM, ~b from the carry)
        # reach the carry chains with no inverter; X is sent as it is (the new chunk).
        # The comparators see the keys without the flag: a key of the list and one of the
        # batch or carry are never equal (golden: an id is inserted once), so the flag never
        # decides, and the chains take their operands straight from the RAM and the carry.
        m.submodules.compare = cmp = MergeCompare(w, KB, halves=self.halves)
        for i in range(w):
            m.d.comb += [cmp.a[i].eq(word[i]), cmp.bn[i].eq(carry[n - w + i][1:])]
        m.d.comb += cmp.a_ones.eq(empty)
        gt = cmp.gt
        merge_go = Signal()                   # the accepted INSERT beat starts a merge
        m.d.comb += [ctl.go.eq(merge_go), ctl.req_ready.eq(self.sort_req.ready),
                     ctl.resp_valid.eq(self.sort_resp.valid)]
        c_fresh, c_cmp, fin = ctl.c_fresh, ctl.c_cmp, ctl.fin
        # every wide register update below is enabled by a register (no logic between the
        # enable's flip-flop and its fan-out): INSERT beats and sorter responses are
        # registered first and applied one cycle later
        # INSERT beat accepted in cycle a: registered in a + 1 (ins_key, ins_fresh, rc),
        # shifted into the request register (complemented) at the end of a + 2 (ins_key_d,
        # req_en*)
        ins_fresh = Signal(reset_less=True)   # first key of a batch: the rest empty
        ins_key = Signal(EB, reset_less=True)
        ins_key_d = Signal(EB, reset_less=True)
        # rc: (INSERT beat registered) | c_fresh, one register: the request enables see
        # one LUT behind a flip-flop or the sorter's ready, not the command decode
        rc = Signal()
        m.d.comb += [
            self.sort_req.valid.eq(ctl.req_valid),
            self.sort_resp.ready.eq(ctl.merging),
        ]
        m.d.comb += [self.sort_req.payload[k].eq(req[k]) for k in range(n)]

        # request register: every key has its own registered enable and its own registered
        # source selects, computed a cycle early (no logic between them and its bits).
        # Key k < w loads, per bit, one LUT of (sel_a, inv, a, ~b) -- X: the minimum, a if
        # not a > b, else b; Y (inv): the maximum, complemented -- or the INSERT shift
        # (an empty key, complemented: 0, after the first key of a batch).
        m.d.sync += [ins_key_d.eq(~ins_key), rc.eq(ins_go | c_fresh)]
        y_due_next = ctl.y_due_next
        # guard c_fresh: in a cycle with c_fresh = 1 none of rc, ins_fresh matters (no
        # INSERT beat during a merge; c_fresh is followed by c_cmp, never preceded by it;
        # an X is offered only after c_fresh), so every copy is exactly its input
        # registered (INSERT beats do give consecutive enables)
        # req_copies copies of each per key, each for a slice of its bits
        nq = self.req_copies
        q_cuts = [EB * c // nq for c in range(nq + 1)]
        # the enable of key k is req_en | req_ysel: req_en copies rc, so that the sorter's
        # ready (through y_due_next) reaches only the req_ysel copies
        req_en = _copies(m, "req_en", rc, n * nq, c_fresh)
        # (y_due_next and c_cmp are one-cycle pulses, never in consecutive cycles: guard 1)
        req_ysel = _copies(m, "req_ysel", y_due_next, n * nq, 1)
        req_ld = _copies(m, "req_ld", c_cmp | y_due_next, n * nq, 1)
        # req_clr: the first key of a batch is shifted in (ins_fresh: nzero when the beat
        # was accepted, ins_d: the beat registered): the other keys are cleared (an empty
        # key, complemented) by the flip-flops' synchronous reset, not a LUT
        ins_d = Signal()
        m.d.sync += ins_d.eq(ins_go)
        # and Y of an empty slot (the maximum is all ones, complemented 0) the same way
        first_key = ins_d & ins_fresh
        req_clr = [_copies(m, f"req_clr{k}_",
                           (first_key if k < n - 1 else 0)
                           | (y_due_next & empty[k] if k < w and j > 1 else 0), nq, 1)
                   if k < n - 1 or (k < w and j > 1) else None for k in range(n)]
        # sel_a: take a (X: not a > b; Y: a > b), per key
        req_sela = [_copies(m, f"req_sela{k}_", (c_cmp & ~gt[k]) | (y_due_next & gt[k]),
                            nq, 1) for k in range(w)]
        for k in range(n):
            for c, (lo_, hi_) in enumerate(zip(q_cuts, q_cuts[1:])):
                if hi_ == lo_:
                    continue
                kc = k * nq + c
                shift = (req[k + 1] if k < n - 1 else ins_key_d)[lo_:hi_]
                if k < w:
                    inv = req_ysel[kc].replicate(hi_ - lo_)
                    aw = Cat(fword[k], word[k])[lo_:hi_]
                    bnw = carry[n - w + k][lo_:hi_]
                    cmpv = Mux(req_sela[k][c], aw ^ inv, bnw ^ ~inv)
                else:
                    cmpv = C(ones, EB)[lo_:hi_]       # X: beyond the list, empty
                val = Mux(req_ld[kc], cmpv, shift)
                with m.If(req_en[kc] | (req_ysel[kc] if k < w and j > 1 else 0)):
                    m.d.sync += req[k][lo_:hi_].eq(val)
                if req_clr[k] is not None:
                    with m.If(req_clr[k][c]):
                        m.d.sync += req[k][lo_:hi_].eq(0)
        # response side: S and Y go straight into the carry, X_t (the new chunk t) straight
        # into the other word of chunk t's pair (bank[t] flips; the read address follows a
        # cycle later, after Y_t was loaded); the chunk's flags a cycle later (Y_t may
        # still read the old ones then).  A RESET writes its key into slot 0 of chunk 0 a
        # cycle after it is accepted (rst_w): no response arrives outside a merge.
        resp = self.sort_resp.payload
        with m.If(ctl.rr_c_next):
            m.d.sync += [carry[k].eq(resp[k]) for k in range(n)]
        rst_w = Signal()
        m.d.sync += rst_w.eq(acc_reset)
        x_now, xc = ctl.rr_x_next, ctl.rchunk
        m.d.comb += [
            wport.en.eq(x_now | rst_w),
            wport.addr.eq(Mux(rst_w, Cat(C(0, cb), bank[0]), Cat(xc, ~bank_of(xc)))),
            wport.data.eq(Cat(Mux(rst_w, ins_key[1:], resp[0][1:]),
                              *(resp[i][1:] for i in range(1, w)))),
        ]
        fl_we = Signal()
        fl_c = Signal(range(j), reset_less=True)
        fl_new = Signal(w, reset_less=True)
        m.d.sync += [fl_we.eq(x_now), fl_c.eq(xc), fl_new.eq(Cat(resp[i][0] for i in range(w)))]
        with m.If(x_now):
            if j > 1:
                m.d.sync += bank.bit_select(xc, 1).eq(~bank_of(xc))
            else:
                m.d.sync += bank[0].eq(~bank[0])
        for c in range(j):
            with m.If(fl_we & (fl_c == c)):
                m.d.sync += flags[c * w:(c + 1) * w].eq(fl_new)
        with m.If(s3):
            m.d.sync += flags.eq(flags | first)
        with m.If(rst_w):
            # slot 0 unexpanded, the rest empty (flag set)
            m.d.sync += flags.eq(~C(1, L))
        with m.If(fin):
            total = length + ncount
            m.d.sync += [length.eq(Mux(total > L, L, total)), ncount.eq(0), nzero.eq(1),
                         nlast.eq(n == 1)]
            m.d.comb += idle_nx.eq(1)
            with m.If(~sub):
                m.d.sync += bcount.eq(0)
                m.d.comb += room_nx.eq(1)

        # ---- skipped merges: the list is full and every key of the (sub-)batch is larger
        # than its last key (slot L - 1), so the merge cannot change it -------------------
        last_key = Signal(KB, reset_less=True)
        full = Signal()                       # length == L, as a register of its own
        rej = Signal()                        # every key of the (sub-)batch so far > last_key
        # every X response loads it (one LUT of the response's valid, as the other response
        # registers); the last chunk's X is a merge's last response, so from then on it
        # holds slot L - 1 (the skip verdict is taken before a merge's first response)
        with m.If(x_now):
            m.d.sync += last_key.eq(resp[w - 1][1:])
        with m.If(rst_w):
            m.d.sync += last_key.eq(ins_key[1:])  # slot 0 (slot L - 1 only when L = 1)
        with m.If(ins_d):
            m.d.sync += rej.eq((ins_key[1:] > last_key) & (ins_fresh | rej))
        m.d.comb += ctl.skip.eq(full & rej)
        with m.If(fin):
            m.d.sync += full.eq(length + ncount >= L)
        with m.If(acc_reset):
            m.d.sync += full.eq(L == 1)

        # ---- commands -----------------------------------------------------------------
        m.d.sync += rst_pend.eq(0)
        with m.If(rst_pend):
            m.d.comb += idle_nx.eq(1)
        # ins_key registers the command's key in every cycle (no enable from the command
        # decode); RESET writes it into slot 0 a cycle after it is accepted (rst_w).  No
        # command is accepted in that cycle (cmd.ready is low).
        m.d.sync += ins_key.eq(cmd.key << 1)
        with m.If(acc_reset):
            m.d.sync += [length.eq(1), ncount.eq(0), bcount.eq(0), nzero.eq(1),
                         nlast.eq(n == 1), rst_pend.eq(1)]
            m.d.comb += room_nx.eq(1)
        with m.If(ins_go):
            m.d.sync += [ins_fresh.eq(nzero),
                         ncount.eq(ncount + 1), nzero.eq(0)]
            m.d.comb += room_nx.eq(bcount != R - 1)
            if self.split:
                m.d.sync += [bcount.eq(bcount + 1), nlast.eq(ncount == n - 2)]
        with m.If(acc_insert & ~room):
            m.d.sync += error.eq(1)
        with m.If(acc_insert):
            if self.split:
                with m.If(cmd.last):
                    with m.If(room | ~nzero):
                        m.d.sync += sub.eq(0)
                        m.d.comb += merge_go.eq(1)
                    with m.Else():
                        # an overflowed batch whose keys were all merged: it just ends
                        m.d.sync += bcount.eq(0)
                        m.d.comb += room_nx.eq(1)
                with m.Elif(room & nlast):
                    m.d.sync += sub.eq(1)
                    m.d.comb += merge_go.eq(1)
            else:
                m.d.comb += merge_go.eq(cmd.last)
        m.d.sync += [idle.eq(idle_nx), room.eq(room_nx), ins_ok.eq(idle_nx & room_nx)]
        return m


class CandidateListWithSorter(wiring.Component):
    """A :class:`CandidateListRTL` wired to its own :class:`~proxima.hdl.sorter.BitonicSorter`
    of ``n = engine.sorter_n`` extended keys (tests, simulation, replay).

    Same ``cmd`` / ``resp`` / ``dbg`` / ``length`` / ``error`` ports as the list.  ``copies``
    goes to the list; the other keyword arguments go to the sorter (``stages_per_reg``,
    ``enable_keys``, ``read_keys``).
    Attributes: ``list``, ``sorter``, ``sorter_latency``, ``merge_cycles`` (cycles from the
    last INSERT beat to the next accepted command), ``select_latency``.
    """

    def __init__(self, cfg: ProximaConfig, copies: int | None = None, **sorter_options):
        from proxima.hdl.sorter import BitonicSorter, SorterError
        self.cfg = cfg
        self.list = CandidateListRTL(cfg, copies)
        try:
            self.sorter = BitonicSorter(self.list.sort_cfg, n=self.list.n, **sorter_options)
        except SorterError as e:
            raise CandidateListError(f"sorter of the candidate list: {e}") from None
        self.sorter_latency = self.sorter.latency
        self.merge_cycles = self.list.merge_cycles(self.sorter.latency)
        self.select_latency = self.list.select_latency
        for attr in ("L", "R", "n", "chunks", "cmd_layout", "resp_layout", "dbg_layout"):
            setattr(self, attr, getattr(self.list, attr))
        # the list's own ports, without the sorter ports that are wired inside
        super().__init__({name: member for name, member in self.list.signature.members.items()
                          if name not in ("sort_req", "sort_resp")})

    @classmethod
    def from_config(cls, cfg: ProximaConfig, copies: int | None = None,
                    **sorter_options) -> "CandidateListWithSorter":
        return cls(cfg, copies, **sorter_options)

    def elaborate(self, platform):
        m = Module()
        m.submodules.list = lst = self.list
        m.submodules.sorter = srt = self.sorter
        connect(m, lst.sort_req, srt.i)
        connect(m, srt.o, lst.sort_resp)
        connect(m, wiring.flipped(self.cmd), lst.cmd)
        connect(m, lst.resp, wiring.flipped(self.resp))
        connect(m, lst.dbg, wiring.flipped(self.dbg))
        m.d.comb += [self.length.eq(lst.length), self.error.eq(lst.error)]
        return m
