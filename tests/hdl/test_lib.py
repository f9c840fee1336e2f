"""The gateware library (hdl/lib/): every piece against a Python reference in the Amaranth
simulator."""

from __future__ import annotations

import functools
import itertools
import operator
import random

import pytest
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib.fifo import SyncFIFO

from proxima.golden.arbiter import round_robin_pick
from proxima.hdl.lib.arith import (abs_diff_stage, divmod_const, pipelined_tree,
                                   square_pipeline, square_stages, tree_depth)
from proxima.hdl.lib.fifo import Queue, SkidBuffer
from proxima.hdl.lib.logic import (onehot_to_binary, or_tree, prefix_or, register_copies,
                                   rr_pick)
from proxima.hdl.lib.vendor import carry_out
from tests.hdl.simulate import simulate

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


# ---- queues ------------------------------------------------------------------------------
@pytest.mark.parametrize("buffered,depth", [(False, 1), (False, 3), (True, 2), (True, 5)])
def test_queue_order_latency_and_level_under_random_stalls(buffered, depth):
    """Every beat comes out once, in order, whatever the stalls on both sides; a push into
    an empty queue is valid ``latency`` cycles later; ``level`` counts the entries."""
    q = Queue(8, depth, buffered=buffered)
    rnd = random.Random(depth + 10 * buffered)

    async def bench(ctx):
        ctx.set(q.i.valid, 1)
        ctx.set(q.i.payload, 0xA5)
        await ctx.tick()
        ctx.set(q.i.valid, 0)
        for _ in range(q.latency - 1):
            assert not ctx.get(q.o.valid)
            await ctx.tick()
        assert ctx.get(q.o.valid) and ctx.get(q.o.payload) == 0xA5 and ctx.get(q.level) == 1
        ctx.set(q.o.ready, 1)
        await ctx.tick()
        ctx.set(q.o.ready, 0)
        assert not ctx.get(q.o.valid) and ctx.get(q.level) == 0
        out, sent, held = [], 0, 0
        for _ in range(1500):
            if sent >= 300 and len(out) == 300:
                break
            v = sent < 300 and rnd.random() < 0.7
            r = rnd.random() < 0.5
            ctx.set(q.i.valid, v)
            ctx.set(q.i.payload, sent & 0xFF)
            ctx.set(q.o.ready, r)
            assert ctx.get(q.level) == held
            if buffered:  # ready = the storage behind the output register has room
                assert held < depth or not ctx.get(q.i.ready)
            else:
                assert ctx.get(q.i.ready) == (held < depth)
            if r and ctx.get(q.o.valid):
                out.append(ctx.get(q.o.payload))
                held -= 1
            if v and ctx.get(q.i.ready):
                sent += 1
                held += 1
            await ctx.tick()
        assert out == [k & 0xFF for k in range(300)]

    simulate(q, bench)


def test_credited_queue_flags_a_write_past_its_depth():
    q = Queue(4, 3, buffered=True, credited=True)

    async def bench(ctx):
        ctx.set(q.i.valid, 1)
        for _ in range(3):
            await ctx.tick()
        assert not ctx.get(q.overflow)
        await ctx.tick()
        assert ctx.get(q.overflow)

    simulate(q, bench)


def test_queue_rejects_bad_depths():
    with pytest.raises(ValueError, match="depth"):
        Queue(4, 0)
    with pytest.raises(ValueError, match="depth >= 2"):
        Queue(4, 1, buffered=True)


def test_skid_buffer_is_a_two_entry_fifo_cycle_for_cycle():
    """SkidBuffer against amaranth's SyncFIFO(depth=2) driven identically: the same ready,
    valid and payload in every cycle under random valid / ready."""
    m = Module()
    m.submodules.skid = skid = SkidBuffer(8)
    m.submodules.ref = ref = SyncFIFO(width=8, depth=2)
    valid, ready, data = Signal(), Signal(), Signal(8)
    m.d.comb += [skid.i.valid.eq(valid), skid.i.payload.eq(data), skid.o.ready.eq(ready),
                 ref.w_en.eq(valid), ref.w_data.eq(data), ref.r_en.eq(ready)]
    rnd = random.Random(4)

    async def bench(ctx):
        taken = 0
        for t in range(2000):
            ctx.set(valid, rnd.random() < 0.6)
            ctx.set(ready, rnd.random() < (0.2 if (t // 100) % 2 else 0.9))
            ctx.set(data, rnd.randrange(256))
            assert ctx.get(skid.i.ready) == ctx.get(ref.w_rdy), t
            assert ctx.get(skid.o.valid) == ctx.get(ref.r_rdy), t
            if ctx.get(ref.r_rdy):
                assert ctx.get(skid.o.payload) == ctx.get(ref.r_data), t
                taken += ctx.get(ready)
            await ctx.tick()
        assert taken > 500

    simulate(m, bench)


# ---- logic ---------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [0, 1, 2, 5, 8, 13])
def test_or_tree_equals_python_reduce(count):
    m = Module()
    ins = [Signal(6, name=f"x{k}") for k in range(count)]
    out = Signal(6)
    m.d.comb += out.eq(or_tree(ins, 6))
    rnd = random.Random(count)

    async def bench(ctx):
        for _ in range(200):
            vals = [rnd.randrange(64) & rnd.randrange(64) for _ in ins]
            for s, v in zip(ins, vals):
                ctx.set(s, v)
            assert ctx.get(out) == functools.reduce(operator.or_, vals, 0)

    simulate(m, bench, clock=False)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_rr_pick_equals_golden_round_robin_exhaustively(n):
    """prefix_or / rr_pick / onehot_to_binary against golden round_robin_pick for every
    valid vector and every last grant (the thermometer of bits above it)."""
    m = Module()
    v, above = Signal(n), Signal(n)
    pv, anyv = prefix_or(m, v, "pv")
    oh, ab = rr_pick(m, v, above, pv, "rr")
    idx = Signal(max(1, (n - 1).bit_length()))
    m.d.comb += idx.eq(onehot_to_binary(oh, len(idx)))

    async def bench(ctx):
        for bits in range(1 << n):
            valid = [(bits >> k) & 1 for k in range(n)]
            ctx.set(v, bits)
            for last in range(n):
                ctx.set(above, ((1 << n) - 1) & ~((1 << (last + 1)) - 1))
                want = round_robin_pick([bool(x) for x in valid], last)
                assert ctx.get(anyv) == (want is not None)
                assert ctx.get(pv) == sum(1 << k for k in range(n) if bits & ((1 << k) - 1))
                if want is None:
                    continue
                assert ctx.get(oh) == 1 << want, (valid, last)
                assert ctx.get(idx) == want
                assert ctx.get(ab) == ((1 << n) - 1) & ~((1 << (want + 1)) - 1)

    simulate(m, bench, clock=False)


def test_rr_pick_serves_every_requester_within_n_grants():
    """Fairness: repeated picks with ``last`` fed back serve a requester that stays valid
    after at most ``n - 1`` grants to others (the golden arbiter's bound), in the golden
    order."""
    n = 6
    m = Module()
    v, above = Signal(n), Signal(n)
    pv, _ = prefix_or(m, v, "pv")
    oh, ab = rr_pick(m, v, above, pv, "rr")
    rnd = random.Random(1)

    async def bench(ctx):
        last, waits = n - 1, [0] * n
        ctx.set(above, 0)
        for _ in range(400):
            valid = [rnd.random() < 0.5 for _ in range(n)]
            valid[2] = True  # a requester that never lets go
            ctx.set(v, sum(int(x) << k for k, x in enumerate(valid)))
            g = (ctx.get(oh)).bit_length() - 1
            assert g == round_robin_pick(valid, last)
            for k in range(n):
                waits[k] = 0 if k == g else waits[k] + valid[k]
            assert waits[2] <= n - 1
            ctx.set(above, ctx.get(ab))
            last = g

    simulate(m, bench, clock=False)


@pytest.mark.parametrize("guard", [None, 1])
def test_register_copies_follow_their_input(guard):
    """guard=None: both copies (initial values 0 and 1) hold the last loaded value once
    loaded; with a guard, copy k loads ``nxt & ~(q_k & guard)``."""
    m = Module()
    nxt, en = Signal(), Signal()
    copies = register_copies(m, "cp", nxt, 2, guard, enable=en)
    assert [c.init for c in copies] == ([0, 1] if guard is None else [0, 0])
    rnd = random.Random(2)

    async def bench(ctx):
        held = None
        for _ in range(300):
            x, e = int(rnd.random() < 0.5), rnd.random() < 0.7
            before = [ctx.get(c) for c in copies]
            ctx.set(nxt, x)
            ctx.set(en, e)
            await ctx.tick()
            got = [ctx.get(c) for c in copies]
            if guard is None:
                held = x if e else held
                if held is not None:
                    assert got == [held, held]
            else:
                assert got == [(x & (1 - q)) if e else q for q in before]

    simulate(m, bench)
    with pytest.raises(ValueError, match="at most two"):
        register_copies(Module(), "x", nxt, 3)


# ---- arithmetic ---------------------------------------------------------------------------
@pytest.mark.parametrize("d", [1, 3, 4, 7, 16])
def test_divmod_const(d):
    m = Module()
    x = Signal(10)
    q, r = Signal(10), Signal(10)
    dq, dr = divmod_const(x, d)
    m.d.comb += [q.eq(dq), r.eq(dr)]

    async def bench(ctx):
        for v in range(1024):
            ctx.set(x, v)
            assert (ctx.get(q), ctx.get(r)) == divmod(v, d)

    simulate(m, bench, clock=False)


def test_pipelined_tree_sums_and_stage_counts():
    m = Module()
    ins = [Signal(5, name=f"a{k}") for k in range(7)]
    total, stages = pipelined_tree(m, ins, "t", levels_per_stage=2)
    assert stages == 2 and tree_depth(7) == 3 and tree_depth(1) == 0
    rnd = random.Random(5)

    async def bench(ctx):
        sent = []
        for t in range(100):
            vals = [rnd.randrange(32) for _ in ins]
            sent.append(sum(vals))
            for s, v in zip(ins, vals):
                ctx.set(s, v)
            await ctx.tick()
            if t + 1 >= stages:
                assert ctx.get(total) == sent[t + 1 - stages]

    simulate(m, bench)


def test_square_and_abs_diff_pipelines_exhaustive():
    """|x - q| and its LUT square for 8-bit values (and the stage counts)."""
    m = Module()
    x, q = Signal(8), Signal(8)
    sq = square_pipeline(m, abs_diff_stage(m, x, q, 8, "d"), 8, "s")
    lat = 1 + square_stages(8)
    assert square_stages(8) == 3 and square_stages(1) == 1 and square_stages(3) == 2
    pairs = [(i, j) for i in range(256) for j in range(256)]
    random.Random(9).shuffle(pairs)
    pairs = pairs[:6000] + [(0, 255), (255, 0), (0, 0), (255, 255), (128, 127), (15, 16)]

    async def bench(ctx):
        got = []
        for t in range(len(pairs) + lat):
            if t < len(pairs):
                ctx.set(x, pairs[t][0])
                ctx.set(q, pairs[t][1])
            await ctx.tick()
            if t + 1 >= lat:
                got.append(ctx.get(sq))
        for (i, j), g in zip(pairs, got[:len(pairs)]):
            assert g == (i - j) ** 2, f"({i} - {j})**2: got {g}"

    simulate(m, bench)


def test_carry_out_is_less_than_exhaustive():
    m = Module()
    a, b = Signal(4), Signal(4)
    lt, le = Signal(), Signal()
    m.d.comb += [lt.eq(carry_out(b, ~a)), le.eq(carry_out(Cat(1, b), Cat(1, ~a)))]

    async def bench(ctx):
        for x, y in itertools.product(range(16), repeat=2):
            ctx.set(a, x)
            ctx.set(b, y)
            assert (ctx.get(lt), ctx.get(le)) == (int(x < y), int(x <= y))

    simulate(m, bench, clock=False)
    with pytest.raises(ValueError, match="same width"):
        carry_out(Signal(3), Signal(4))
