"""Stride prefetcher of the page cache: the stream table and its rule pipeline.

Golden twin: :class:`proxima.golden.field.policy.StridePrefetcher` (the spec), one to one:
the same state per entry (``valid``, ``last``, ``stride``, and the LRU order kept as a
``rank`` per entry: ``order.index(i)``, 0 = least recently used, entry ``i`` starts at rank
``i``), the same four rules in the same priority (repeat, confirm, train, alloc) and the same
result for each observed line: ``(stream, action, stride)`` of ``observe_raw``.  Tested
access by access against the model in ``tests/hdl/test_prefetch.py``.

Parameters
----------
``streams`` (N), ``line_bits`` (L), ``window`` (largest ``|line - last|`` that trains;
capped at ``2**L - 1``), ``stride_bits`` (signed, ``|stride| <= window``) and ``split``
(one more pipeline stage, P1b, for the page cache's two-cycle tag read).

Interface
---------
``line``     ``In(L)``: the observed line; loaded into the key registers in every cycle with
             ``load`` high (the accepting cycle, P0).  The key must not be reloaded between
             an observation's P0 and its push.
``load``     ``In(1)``.
``push``     ``In(1)``: apply the decision to the table (P4); only in the cycle
             ``latency`` after the observation's P0 or later (the outputs hold).
``stream``, ``action``, ``stride``, ``key``  ``Out``: the decision (entry, action code of
             ``observe_raw``, the entry's stride before this update -- the stride of the
             confirm targets; meaningful on confirm only) and the observed line, valid from
             ``latency`` cycles after P0 until the push.
``valid``, ``last``, ``table_stride``, ``rank``: ``Out`` per entry (the table, for
             comparison with ``StridePrefetcher.state()`` and ``order``).

Timing: ``latency`` = 4 (5 with ``split``) cycles from P0 to the decision; the next
observation may load in the push cycle (the table is written at that edge; the ranks a cycle
later, read no earlier than the next observation's P3), so one observation per ``latency``
cycles.  Every pipeline register is free running.

Stages: P1 per entry ``line - last`` both ways, the distance (``|line - last|``, top bit set
for an invalid entry) and its complement, and ``line == last``, ``line == last + stride``
in pieces of ``CONF_CHUNK`` bits (half with ``split``); P1b (``split``) the distance, "in
window", confirm and repeat; P2 in window, confirm, repeat, the pairwise distance order
(``N (N - 1) / 2`` carry-chain comparators) and each entry's next ``last + stride``; P3 rule
priority: one-hot entry and action code; P4 push and table update.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from proxima.hdl.lib.vendor import carry_out

__all__ = ["StridePrefetcher", "ACTION_CODES", "CONF_CHUNK"]

#: Action codes (those of :meth:`StridePrefetcher.observe_raw` in the golden model).
ACTION_CODES = {"repeat": 0, "confirm": 1, "train": 2, "alloc": 3}

CONF_CHUNK = 8
"""Bits per registered piece of the ``line == last`` and ``line == last + stride`` compares
(P1); half as many with ``split``."""


class StridePrefetcher(wiring.Component):
    """Stream table with the golden model's four rules (see the module docstring)."""

    def __init__(self, *, streams: int, line_bits: int, window: int, stride_bits: int,
                 split: bool = False):
        self.streams, self.line_bits = int(streams), int(line_bits)
        self.window, self.stride_bits, self.split = int(window), int(stride_bits), bool(split)
        self.latency = 4 + int(self.split)
        N, L = self.streams, self.line_bits
        super().__init__({
            "line": In(L), "load": In(1), "push": In(1),
            "stream": Out(range(max(N, 2))), "action": Out(2),
            "stride": Out(signed(self.stride_bits)), "key": Out(L),
            "valid": Out(N),
            "last": Out(L).array(N),
            "table_stride": Out(signed(self.stride_bits)).array(N),
            "rank": Out(bits_for(N - 1)).array(N),
        })

    def elaborate(self, platform):
        m = Module()
        N, L, split = self.streams, self.line_bits, self.split
        # the observed line in four registers, each for some of its many loads: the
        # subtractions ``key - last``, ``last - key`` (from the complement), the pieces of
        # ``key == last`` (a copy with another reset value, so yosys keeps it) and those of
        # ``key == pred`` (the complement, with the other reset value)
        key = Signal(L, name="p_key")
        nkey = Signal(L, init=(1 << L) - 1, name="p_nkey")
        key_p = Signal(L, init=(1 << L) - 1, name="p_key_pieces")
        nkey_p = Signal(L, name="p_nkey_pieces")
        with m.If(self.load):
            m.d.sync += [key.eq(self.line), nkey.eq(~self.line),
                         key_p.eq(self.line), nkey_p.eq(~self.line)]
        # ``key`` registered again for P2, the table and the job (constant to the push)
        key1 = Signal(L, name="p_key1")
        m.d.sync += key1.eq(key)
        valid = [Signal(name=f"st_valid{i}") for i in range(N)]
        last = [Signal(L, name=f"st_last{i}") for i in range(N)]
        stride = [Signal(signed(self.stride_bits), name=f"st_stride{i}") for i in range(N)]
        rank = [Signal(bits_for(N - 1), init=i, name=f"st_rank{i}") for i in range(N)]
        # ``last + stride`` per entry modulo ``2**(L + 1)``: bit L set when it is no line
        pred = [Signal(L + 1, name=f"st_pred{i}") for i in range(N)]
        m.d.comb += [self.valid.eq(Cat(*valid)), self.key.eq(key1)]
        m.d.comb += [self.last[i].eq(last[i]) for i in range(N)]
        m.d.comb += [self.table_stride[i].eq(stride[i]) for i in range(N)]
        m.d.comb += [self.rank[i].eq(rank[i]) for i in range(N)]

        # P1 (and P1b with ``split``): differences, distance, its complement, in window
        win = min(self.window, (1 << L) - 1)
        dist, ndist, diff = [], [], []
        inwin = [Signal(name=f"p2_win{i}") for i in range(N)]
        dom = m.d.sync if split else m.d.comb
        nwin = Const(~win & ((1 << (L + 1)) - 1), L + 1)   # ``x > win``: carry of x + ~win
        for i in range(N):
            up = Signal(L + 1, name=f"p1_up{i}")      # key - last (borrow in the top bit)
            down = Signal(L + 1, name=f"p1_down{i}")  # last - key + 2**L
            dom += [up.eq(key - last[i]), down.eq(Cat(last[i], 1) + nkey + 1)]
            d = Signal(L + 1, name=f"p1_dist{i}")
            df = Signal(signed(L + 1), name=f"p1_diff{i}")
            nd = Signal(L + 1, name=f"p1_ndist{i}")
            dv = Cat(Mux(up[L], down[:L], up[:L]), ~valid[i])
            m.d.sync += [d.eq(dv), df.eq(up.as_signed())]
            if i:                                     # (entry 0 is never the right operand)
                m.d.sync += nd.eq(~dv)
            if split:
                m.d.sync += inwin[i].eq(valid[i] & ~(carry_out(up, nwin)
                                                     & carry_out(down, nwin)))
            else:
                m.d.sync += inwin[i].eq(~carry_out(d, nwin))
            dist.append(d), ndist.append(nd), diff.append(df)
        chunk = CONF_CHUNK // 2 if split else CONF_CHUNK

        def pieces(mine, other, tag):
            e = Signal(-(-L // chunk), name=tag)
            m.d.sync += [e[c].eq(mine[k:k + chunk] == other[k:min(k + chunk, L)])
                         for c, k in enumerate(range(0, L, chunk))]
            return e
        req = [pieces(key_p, last[i], f"p1_req{i}") for i in range(N)]
        peq = [pieces(~nkey_p, pred[i], f"p1_peq{i}") for i in range(N)]

        def first(flags, tag):
            """One-hot of the lowest set flag, and whether any."""
            oh = Signal(N, name=f"p_{tag}_oh")
            for i in range(N):
                m.d.comb += oh[i].eq(flags[i] & ~Cat(*flags[:i]).any() if i else flags[i])
            return oh, Cat(*flags).any()

        # table-only registers (the table changes only at a push, >= latency apart): the
        # alloc choice (lowest invalid, else rank 0), "can confirm", the rank order
        inval_oh_c, inval_any_c = first([~v for v in valid], "inval")
        alloc_oh = Signal(N, name="p_alloc_oh")
        m.d.sync += alloc_oh.eq(Mux(inval_any_c, inval_oh_c, Cat(*[r == 0 for r in rank])))
        plive = [Signal(name=f"p_plive{i}") for i in range(N)]
        m.d.sync += [plive[i].eq(valid[i] & (stride[i] != 0) & ~pred[i][L])
                     for i in range(N)]
        older = {}                                    # older[i, j]: rank[i] > rank[j]
        for i in range(N):
            for j in range(N):
                if i != j:
                    older[i, j] = Signal(name=f"p_older{i}_{j}")
                    m.d.sync += older[i, j].eq(rank[i] > rank[j])

        # P2: confirm, the pairwise order (``closer[i, j]``: j strictly closer than i, i <
        # j), the next ``pred`` for either outcome, repeat (at most one entry: valid
        # entries never share ``last``)
        conf = []
        for i in range(N):
            cf = Signal(name=f"p2_conf{i}")
            m.d.sync += cf.eq(plive[i] & peq[i].all())
            conf.append(cf)
        closer = {}
        for i in range(N):
            for j in range(i + 1, N):
                closer[i, j] = Signal(name=f"p2_closer{j}_{i}")
                m.d.sync += closer[i, j].eq(carry_out(dist[i], ndist[j]))
        pred_train = [Signal(L + 1, name=f"p2_pred_train{i}") for i in range(N)]
        pred_keep = [Signal(L + 1, name=f"p2_pred_keep{i}") for i in range(N)]
        for i in range(N):
            m.d.sync += [pred_train[i].eq(key1 + diff[i][:self.stride_bits].as_signed()),
                         pred_keep[i].eq(key1 + stride[i])]
        rep_c = [valid[i] & req[i].all() for i in range(N)]
        rep_oh = Signal(N, name="p2_rep_oh")
        m.d.sync += rep_oh.eq(Cat(*rep_c))
        if split:
            rep_any = rep_oh.any()
        else:
            rep_any = Signal(name="p2_rep_any")
            m.d.sync += rep_any.eq(Cat(*rep_c).any())

        # P3: rule priority.  Train: entry i in the window beating every other by distance
        # (ties to the lower index; out of the window counts as farther)
        def beats(i, j):
            return ~closer[i, j] if i < j else closer[j, i]

        conf_oh, conf_any = first(conf, "p3_conf")
        rc_any_c = rep_any | conf_any
        best_any_c = Cat(*inwin).any()
        terms = {"rc_oh": (N, Mux(rep_any, rep_oh, conf_oh)),
                 "rc_any": (1, rc_any_c),
                 "rc_code": (2, Mux(rep_any, ACTION_CODES["repeat"], ACTION_CODES["confirm"])),
                 "best_any": (1, best_any_c),
                 "use_train": (1, ~rc_any_c & best_any_c),
                 "use_alloc": (1, ~rc_any_c & ~best_any_c)}
        t = {}
        for name, (width, value) in terms.items():   # (P2 registers with ``split``)
            t[name] = Signal(width, name=f"p2_{name}")
            m.d[("sync" if split else "comb")] += t[name].eq(value)
        best_oh = Signal(N, name="p3_best_oh")
        for i in range(N):
            m.d.comb += best_oh[i].eq(Cat(inwin[i], *[beats(i, j) for j in range(N)
                                                       if j != i]).all())
        sel_oh = Signal(N, name="p3_sel_oh")
        code = Signal(2, name="p3_code")
        ts_oh = Signal(N, name="p3_ts_oh")            # entry whose stride is rewritten
        ts_c = ((best_oh & t["use_train"].replicate(N))
                | (alloc_oh & t["use_alloc"].replicate(N)))
        m.d.sync += [
            sel_oh.eq((t["rc_oh"] & t["rc_any"].replicate(N)) | ts_c),
            code.eq(Mux(t["rc_any"], t["rc_code"],
                        Mux(t["best_any"], ACTION_CODES["train"], ACTION_CODES["alloc"]))),
            ts_oh.eq(ts_c)]

        # P4: the decision; the table update with ``push``
        sel = Signal(range(max(N, 2)), name="p4_sel")
        m.d.comb += sel.eq(Cat(*[Cat(*[sel_oh[i] for i in range(N) if (i >> b) & 1]).any()
                                 for b in range(len(sel))]))
        tgt_stride = Signal(signed(self.stride_bits), name="p4_tgt_stride")
        sacc = Const(0, self.stride_bits)
        for i in range(N):
            sacc = sacc | Mux((t["rc_oh"] if split else sel_oh)[i], stride[i].as_unsigned(), 0)
        m.d[("sync" if split else "comb")] += tgt_stride.eq(sacc)
        m.d.comb += [self.stream.eq(sel), self.action.eq(code), self.stride.eq(tgt_stride)]
        is_train = code == ACTION_CODES["train"]
        for i in range(N):
            with m.If(self.push & sel_oh[i]):
                m.d.sync += [valid[i].eq(1), last[i].eq(key1),
                             pred[i].eq(Mux(is_train, pred_train[i], pred_keep[i]))]
            with m.If(self.push & ts_oh[i]):
                m.d.sync += stride[i].eq(Mux(is_train, diff[i], 0))
        # the ranks a cycle after the push (the chosen entry becomes the most recent)
        pushed = Signal(name="p4_pushed")
        m.d.sync += pushed.eq(self.push)
        with m.If(pushed):
            for i in range(N):
                with m.If(sel_oh[i]):
                    m.d.sync += rank[i].eq(N - 1)
                with m.Elif(Cat(*[sel_oh[j] & older[i, j] for j in range(N) if j != i])
                            .any()):
                    m.d.sync += rank[i].eq(rank[i] - 1)
        return m
