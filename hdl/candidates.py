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
               extended keys to sort (payload straight from a register, ``valid`` too).
``sort_resp``  ``In(stream(ArrayLayout(unsigned(ext_bits), n)))``: the sorted vectors,
               element 0 the smallest, one per request and in request order, with any
               latency (a response may even come in the cycle its request is accepted) and
               any gaps.  ``sort_resp.ready`` is high throughout a merge (a register), so the
               list never stalls the sorter; outside a merge no response may arrive.  The
               payload is registered before use.

Pieces (each with a unit test against its golden twin): :mod:`proxima.hdl.candidates_select`
(SELECT pipeline), :mod:`proxima.hdl.candidates_merge` (comparators, sorter-request
sequencer), :mod:`proxima.hdl.candidates_dump` (DUMP path and ``dbg`` FIFO); this module
holds the list, the carry, the request register, the shared read port and the commands.

Storage and merge
-----------------
The list is ``L`` registers of ``ext_bits = sort_key_bits + 1`` bits, the extended key
``(key << 1) | expanded`` (empty: all ones), so the sorter (:attr:`sort_cfg`: ``id_bits +
1``) carries the flag; needs ``id_bits <= 31``.  It is cut into ``j = cfg.list_chunks``
chunks of ``w = min(L, n)`` slots.  An insert sorts the batch (``S``, the carry ``C``), then
per chunk ``t`` requests ``X_t = min(A_t[i], C[w-1-i])`` (the new chunk) and, but for the
last chunk, ``Y_t = max(A_t[i], C[n-1-i])`` (the next carry): ``cfg.merge_passes = 2 j``
sorter passes; ``len = min(L, len + batch)``.  A batch of more than ``n`` keys (``R > n``)
is merged as sub-batches of ``n`` (``cfg.insert_merges``): the beat that fills the request
register starts a merge, and the next beat is accepted when it is done.

Cycles
------
With a sorter of latency ``lat`` that never stalls: one cycle per INSERT beat, then the
next command is accepted ``cfg.insert_cycles_for(lat)`` = ``(j + 1) lat + 7 j + 3`` cycles
after the last INSERT beat (:meth:`CandidateListRTL.merge_cycles`); sorter stalls add one
for one.  SELECT: ``resp.valid`` ``select_latency`` = 6 cycles after acceptance; the next
command is accepted in the cycle after the response is taken.  RESET: two cycles.  DUMP:
``L`` beats, one per cycle while ``dbg.ready`` is high, the first four cycles after the
command; the next command in the cycle after the last beat is taken.

Wide register groups take enables and selects from replicated flip-flops of their own
(``REQ_COPIES``, ``RD_COPIES``, ``LT_COPIES``), each copy distinct so that yosys keeps it.
Resources and Fmax: ``docs/RESOURCES.md`` (``candidates``).
"""

from __future__ import annotations

from amaranth.hdl import C, Cat, Module, Mux, ResetSignal, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out, connect

from proxima.config import ConfigError, ProximaConfig
from proxima.golden.layout import bitlen
from proxima.hdl.candidates_dump import DumpReader, dump_layout
from proxima.hdl.candidates_merge import MergeCompare, MergeControl
from proxima.hdl.candidates_select import ListSelect
from proxima.hdl.lib.logic import or_tree, register_copies as _copies

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
    #: slots per group of the read port's first level (one registered OR per group)
    RD_GROUP = 8
    #: registered copies of each merge decision (each drives a slice of the key bits)
    LT_COPIES = 4
    #: copies of the one-hot read select (each drives the AND gates of a slice of the bits)
    RD_COPIES = 4
    #: copies of each request key's enable and source selects (each drives a slice of bits)
    REQ_COPIES = 2

    def __init__(self, cfg: ProximaConfig):
        self.cfg = cfg
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
    def from_config(cls, cfg: ProximaConfig) -> "CandidateListRTL":
        """The list alone (no sorter): what the resource report measures."""
        return cls(cfg)

    def merge_cycles(self, sorter_latency: int) -> int:
        """Cycles from the last INSERT beat to the next accepted command with a sorter of
        latency ``sorter_latency`` that never stalls (module docstring, "Cycles")."""
        return self.cfg.insert_cycles_for(sorter_latency)

    def elaborate(self, platform):
        m = Module()
        L, R, n, w, j = self.L, self.R, self.n, self.w, self.chunks
        EB = self.ext_bits
        ones = (1 << EB) - 1

        # phys[c * w + i]: slot i of physical chunk c.  Outside a merge physical chunk c is
        # list chunk c; during a merge the chunks rotate (see "merge" below).
        # slots 1 .. L-1 are cleared by lst_clr (also after the domain reset), not by the
        # domain reset itself: see "list" below
        lst = [Signal(EB, name=f"lst{i}", init=ones, reset_less=i > 0) for i in range(L)]
        # the merge comparators read a copy of chunk 0 of their own, held inverted (so that
        # yosys does not merge it with the list; the inversion is free in the carry chain's
        # LUTs) and written by every write of slots 0 .. w-1: the placer can then put it at
        # the comparators
        cmpn = [Signal(EB, name=f"cmpn{i}", init=0, reset_less=i > 0) for i in range(w)]
        carry = [Signal(EB, name=f"carry{i}", reset_less=True) for i in range(n)]
        req = [Signal(EB, name=f"req{i}", init=ones) for i in range(n)]
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
        rst_pend = Signal()                   # RESET accepted: clear the other slots
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

        # ---- select pipeline: the chosen slot's flag is set in s3 ------------------------
        m.submodules.select = sel = ListSelect(L, self.t_bits)
        m.d.comb += [sel.go.eq(acc_select), sel.T.eq(cmd.T),
                     sel.unexpanded.eq(Cat(~lst[i][0] for i in range(L)))]
        s2, s3, s5, first = sel.s2, sel.s3, sel.s5, sel.first
        sel_pos, sel_found = sel.pos, sel.found
        resp_valid = Signal()
        m.d.comb += self.resp.valid.eq(resp_valid)
        with m.If(self.resp.valid & self.resp.ready):
            m.d.sync += resp_valid.eq(0)
            m.d.comb += idle_nx.eq(1)
        with m.If(s3):
            for i in range(L):
                with m.If(first[i]):
                    m.d.sync += lst[i][0].eq(1)
                    if i < w:
                        m.d.sync += cmpn[i][0].eq(0)

        # ---- one read port shared by SELECT and DUMP: one-hot select, two AND-OR levels ---
        # rd_oh (one bit per slot, a register) selects the slot: `first` for a SELECT (all
        # zero when nothing was found, so the key reads as 0), a shifting one-hot for a
        # DUMP.  Level 1: per group of RD_GROUP slots, the OR of the selected slots
        # (registered, rd_grp, zero in the other groups); level 2: the OR of the groups.
        # No index is decoded anywhere: rd_oh[i] drives only slot i's AND gates.
        GR = self.RD_GROUP
        ngr = -(-L // GR)
        # RD_COPIES copies of the one-hot select, each driving the AND gates of a slice of
        # the bits.  yosys merges flip-flops with the same inputs and reset value, so every
        # other copy is held inverted and copies 2 and 3 reset to the opposite value of 0
        # and 1: the select is never read before a SELECT or a DUMP loads it.
        nrd = self.RD_COPIES
        rd_cuts = [EB * c // nrd for c in range(nrd + 1)]
        rd_ohs = [Signal(L, name=f"rd_oh{c}" + ("n" if c % 2 else ""),
                         init=(1 << L) - 1 if (c % 2) ^ (c // 2 % 2) else 0)
                  for c in range(nrd)]
        rd_grp = [Signal(EB, name=f"rd_grp{g}", reset_less=True) for g in range(ngr)]
        rd_out = Signal(EB)
        m.d.comb += rd_out.eq(or_tree(rd_grp))
        # the dump path: its slot counter, per group the level-1 load and the select shift
        # (registers computed a cycle early), and the dbg FIFO
        m.submodules.dump = dump = DumpReader(L, ngr, EB, self.dbg_layout)
        m.d.comb += [dump.start.eq(acc_dump), dump.s3.eq(s3), dump.rd_key.eq(rd_out),
                     dump.length.eq(length)]
        connect(m, dump.dbg, wiring.flipped(self.dbg))
        dump_go = dump.go
        lvl1_sh, grp_en = dump.shift, dump.load
        oh_s3 = _copies(m, "rd_s3_", s2, ngr, 1)        # s3, one copy per group
        # the one-hot select: loaded with `first` (SELECT), set to slot 0 (DUMP), shifted
        # up one slot per dump beat while the group's level 1 is active (after the last
        # beat it is all zero, and it is reloaded before the next read)
        for g in range(ngr):
            lo, hi = g * GR, min(L, (g + 1) * GR)
            for c, oh in enumerate(rd_ohs):
                inv = (1 << (hi - lo)) - 1 if c % 2 else 0   # XOR: the copy's polarity
                shifted = oh[lo - 1:hi - 1] if lo else Cat(C(c % 2, 1), oh[:hi - 1])
                with m.If(oh_s3[g]):
                    m.d.sync += oh[lo:hi].eq(first[lo:hi] ^ inv)
                with m.If(lvl1_sh[g]):
                    m.d.sync += oh[lo:hi].eq(shifted)
                with m.If(dump_go):
                    m.d.sync += oh[lo:hi].eq(C(1 if g == 0 else 0, hi - lo) ^ inv)
        for g in range(ngr):
            members = range(g * GR, min(L, (g + 1) * GR))
            with m.If(grp_en[g]):
                m.d.sync += rd_grp[g].eq(Cat(*(
                    or_tree([lst[i][lo_:hi_]
                              & (~oh[i] if c % 2 else oh[i]).replicate(hi_ - lo_)
                              for i in members])
                    for c, (oh, lo_, hi_) in enumerate(zip(rd_ohs, rd_cuts, rd_cuts[1:]))
                    if hi_ > lo_)))

        with m.If(s5):
            m.d.sync += [
                resp_valid.eq(1),
                self.resp.payload.found.eq(sel_found),
                self.resp.payload.pos.eq(sel_pos),
                self.resp.payload.key.eq(rd_out[1:]),
                self.resp.payload.id.eq(rd_out[1:1 + self.id_bits]),
            ]

        with m.If(dump.done):
            m.d.comb += idle_nx.eq(1)

        # ---- merge: physical chunk 0 against the reversed carry, and the sequencer ---------
        m.submodules.compare = cmp = MergeCompare(w, EB, self.LT_COPIES)
        m.d.comb += [cmp.a[i].eq(lst[i]) for i in range(w)]
        m.d.comb += [cmp.an[i].eq(cmpn[i]) for i in range(w)]
        m.d.comb += [cmp.b[i].eq(carry[w - 1 - i]) for i in range(w)]
        mins, maxs = cmp.mins, cmp.maxs
        m.submodules.control = ctl = MergeControl(j)
        merge_go = Signal()                   # the accepted INSERT beat starts a merge
        m.d.comb += [ctl.go.eq(merge_go), ctl.req_ready.eq(self.sort_req.ready),
                     ctl.resp_valid.eq(self.sort_resp.valid)]
        c_fresh, c_cmp, fin = ctl.c_fresh, ctl.c_cmp, ctl.fin
        # every wide register update below is enabled by a register (no logic between the
        # enable's flip-flop and its fan-out): INSERT beats and sorter responses are
        # registered first and applied one cycle later
        # INSERT beat accepted in cycle a: registered in a + 1 (ins_key, ins_fresh, rc),
        # shifted into the request register at the end of a + 2 (ins_key_d, req_en*)
        ins_fresh = Signal(reset_less=True)   # first key of a batch: the rest all ones
        ins_key = Signal(EB, reset_less=True)
        ins_key_d = Signal(EB, reset_less=True)
        # rc: (INSERT beat registered) | c_fresh, one register: the request enables see
        # one LUT behind a flip-flop or the sorter's ready, not the command decode
        rc = Signal()
        rr = [Signal(EB, name=f"rr{k}", reset_less=True) for k in range(n)]
        m.d.comb += [
            self.sort_req.valid.eq(ctl.req_valid),
            self.sort_resp.ready.eq(ctl.merging),
        ]
        m.d.comb += [self.sort_req.payload[k].eq(req[k]) for k in range(n)]

        # request register: every key has its own registered enable (one copy per key,
        # computed a cycle early, no logic between it and its 41 bits) and its own
        # registered source selects (Y maxima, X minima, else the INSERT shift)
        m.d.sync += [ins_key_d.eq(ins_key), rc.eq(ins_go | c_fresh)]
        y_due_next = ctl.y_due_next
        # guard c_fresh: in a cycle with c_fresh = 1 none of rc, y_due_next, ins_fresh
        # matters (no INSERT beat during a merge; c_fresh is followed by c_cmp, never
        # preceded by it; an X is offered only after c_fresh), so every copy is exactly
        # its input registered (INSERT beats do give consecutive enables)
        # REQ_COPIES copies of each per key, each for a slice of its bits
        nq = self.REQ_COPIES
        q_cuts = [EB * c // nq for c in range(nq + 1)]
        # the enable of key k is req_en | req_ysel: req_en copies rc, so that the sorter's
        # ready (through y_due_next) reaches only the req_ysel copies
        req_en = _copies(m, "req_en", rc, n * nq, c_fresh)
        # (y_due_next and c_cmp are one-cycle pulses: guard 1)
        req_ysel = _copies(m, "req_ysel", y_due_next, n * nq, 1)
        req_xsel = _copies(m, "req_xsel", c_cmp, n * nq, 1)
        # ins_fresh: nzero when the beat was accepted (a register, no compare in front)
        req_fresh = _copies(m, "req_fresh", ins_fresh, (n - 1) * nq, c_fresh)  # not the last key
        for k in range(n):
            for c, (lo_, hi_) in enumerate(zip(q_cuts, q_cuts[1:])):
                if hi_ == lo_:
                    continue
                kc = k * nq + c
                shift = (Mux(req_fresh[kc], ones, req[k + 1]) if k < n - 1
                         else ins_key_d)[lo_:hi_]
                val = Mux(req_xsel[kc], (mins[k] if k < w else C(ones, EB))[lo_:hi_], shift)
                if k < w and j > 1:
                    val = Mux(req_ysel[kc], maxs[k][lo_:hi_], val)
                with m.If(req_en[kc] | (req_ysel[kc] if k < w and j > 1 else 0)):
                    m.d.sync += req[k][lo_:hi_].eq(val)
        # response side: register, then apply.  X_t (the new chunk t) enters the last
        # physical chunk while the others move down one: physical chunk 0 is always the
        # chunk being merged, and after the j-th X the order is the list order again.
        m.d.sync += [r.eq(self.sort_resp.payload[k]) for k, r in enumerate(rr)]
        # carry and list: one registered enable per key / slot (a response and a RESET are
        # never applied in two consecutive cycles, hence the guard 1)
        rr_c_next, rr_x_next = ctl.rr_c_next, ctl.rr_x_next
        car_en = _copies(m, "car_en", rr_c_next, n, 1)
        for k in range(n):
            with m.If(car_en[k]):
                m.d.sync += carry[k].eq(rr[k])
        # list: X_t rotates in (rr_x, the enable); slots 1 .. L-1 are set to all ones by a
        # registered clear of their own (lst_clr, two cycles after a RESET command, from
        # rst_pend, or a cycle after the domain reset), written last so that it wins: yosys
        # maps it to the flip-flops' synchronous set (LSR), with the enable on CE, and no
        # LUT in the data path.  Slot 0 is written by the RESET itself and keeps the domain
        # reset.
        lst_en = _copies(m, "lst_en", rr_x_next, L, 1)
        clr_next = rst_pend | ResetSignal("sync", allow_reset_less=True)
        lst_clr = _copies(m, "lst_clr", clr_next, L - 1, 1, reset_less=True)
        for i in range(L):
            src = lst[i + w] if i < L - w else rr[i - (L - w)]
            with m.If(lst_en[i]):
                m.d.sync += lst[i].eq(src)
                if i < w:
                    m.d.sync += cmpn[i].eq(~src)
            if i:
                with m.If(lst_clr[i - 1]):
                    m.d.sync += lst[i].eq(ones)
                    if i < w:
                        m.d.sync += cmpn[i].eq(0)
        with m.If(fin):
            total = length + ncount
            m.d.sync += [length.eq(Mux(total > L, L, total)), ncount.eq(0), nzero.eq(1),
                         nlast.eq(n == 1)]
            m.d.comb += idle_nx.eq(1)
            with m.If(~sub):
                m.d.sync += bcount.eq(0)
                m.d.comb += room_nx.eq(1)

        # ---- commands -----------------------------------------------------------------
        m.d.sync += rst_pend.eq(0)
        with m.If(rst_pend):
            m.d.comb += idle_nx.eq(1)
        # ins_key registers the command's key in every cycle (no enable from the command
        # decode); RESET writes slot 0 from it a cycle after it is accepted, by enables of
        # their own (rst_w, registered acc_reset).  No command is accepted in that cycle
        # (cmd.ready is low), and nothing else reads the list then.
        m.d.sync += ins_key.eq(cmd.key << 1)
        rst_w = _copies(m, "rst_w", acc_reset, 2, 1)    # acc_reset is a one-cycle pulse
        with m.If(rst_w[0]):
            m.d.sync += lst[0].eq(ins_key)
        with m.If(rst_w[1]):
            m.d.sync += cmpn[0].eq(~ins_key)
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

    Same ``cmd`` / ``resp`` / ``dbg`` / ``length`` / ``error`` ports as the list.  Keyword
    arguments other than ``cfg`` go to the sorter (``stages_per_reg``, ``enable_keys``, ``read_keys``).
    Attributes: ``list``, ``sorter``, ``sorter_latency``, ``merge_cycles`` (cycles from the
    last INSERT beat to the next accepted command), ``select_latency``.
    """

    def __init__(self, cfg: ProximaConfig, **sorter_options):
        from proxima.hdl.sorter import BitonicSorter, SorterError
        self.cfg = cfg
        self.list = CandidateListRTL(cfg)
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
    def from_config(cls, cfg: ProximaConfig, **sorter_options) -> "CandidateListWithSorter":
        return cls(cfg, **sorter_options)

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
