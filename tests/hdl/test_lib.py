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
from tests.hdl.simulate import refused, simulate

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
    refused(ValueError, "depth", lambda: Queue(4, 0))
    refused(ValueError, "depth >= 2", lambda: Queue(4, 1, buffered=True))


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


# ---- the board store (StoreRAM) -----------------------------------------------------------
def _store_model(depth, cycles, seed, latency):
    """Random stimulus (writes, reads with a random enable, never the word being written)
    and the reference read data after each edge (None: not yet defined)."""
    rnd = random.Random(seed)
    mem = [0] * depth
    port, out = None, None  # the latency-1 port's data; the latency-2 register
    steps = []
    for _ in range(cycles):
        we, wa, wd = rnd.random() < 0.4, rnd.randrange(depth), rnd.randrange(1 << 20)
        en = rnd.random() < 0.6
        ra = rnd.randrange(depth)
        if we and ra == wa:
            ra = (wa + 1) % depth
        if en:
            out, port = port, mem[ra]
        if we:
            mem[wa] = wd
        steps.append((we, wa, wd, en, ra, port if latency == 1 else out))
    return steps


@pytest.mark.parametrize("latency", [1, 2])
def test_store_ram_generic_against_a_model(latency):
    """The generic StoreRAM: read data after every edge as the model (a read port with
    enable, plus a register loaded with the enable at latency 2)."""
    from proxima.hdl.lib.vendor import StoreRAM
    width, depth = 20, 300
    dut = StoreRAM(width, depth, latency=latency)
    steps = _store_model(depth, 800, latency, latency)

    async def bench(ctx):
        checked = 0
        for we, wa, wd, en, ra, expect in steps:
            ctx.set(dut.w_en, we)
            ctx.set(dut.w_addr, wa)
            ctx.set(dut.w_data, wd)
            ctx.set(dut.r_en, en)
            ctx.set(dut.r_addr, ra)
            await ctx.tick()
            if expect is not None:
                assert ctx.get(dut.r_data) == expect
                checked += 1
        assert checked > 700
    simulate(dut, bench)


def test_global_reset_generic_timing():
    """GlobalReset: ``o`` after an edge is ``i | rst`` before it, 1 until the first edge;
    the generic twin has no DCCA, the ECP5 one drives ``o`` from one (CLKI the register)."""
    from amaranth.back import rtlil
    from amaranth.hdl import ClockDomain

    from proxima.hdl.lib.vendor import GlobalReset
    m = Module()
    m.domains.sync = cd = ClockDomain()
    m.submodules.r = dut = GlobalReset()
    rng = random.Random(3)
    steps = [(rng.random() < 0.2, rng.random() < 0.1) for _ in range(300)]

    async def bench(ctx):
        assert ctx.get(dut.o) == 1
        ones = 0
        for i, rst in steps:
            ctx.set(dut.i, i)
            ctx.set(cd.rst, rst)
            await ctx.tick()
            assert ctx.get(dut.o) == int(i or rst)
            ones += ctx.get(dut.o)
        assert 0 < ones < len(steps)
    simulate(m, bench)
    gen = rtlil.convert(GlobalReset(), name="r")
    ecp5 = rtlil.convert(GlobalReset(impl="ecp5"), name="r")
    assert "DCCA" not in gen
    assert ecp5.count("cell \\DCCA") == 1
    assert "connect \\CLKO \\o" in ecp5 and "connect \\CLKI \\q" in ecp5
    refused(ValueError, "impl", lambda: GlobalReset(impl="xilinx"))


def test_store_ram_shapes_and_errors():
    from proxima.hdl.lib.vendor import BramError, StoreRAM, store_dp16kd_shape
    # the ULX3S store of the default preset: 5,120 words of 256 bits in x18, 5 deep
    assert store_dp16kd_shape(256, 5120) == (18, 5, 15)
    assert store_dp16kd_shape(64, 1024) == (18, 1, 4)
    assert store_dp16kd_shape(4, 16384) == (1, 1, 4)
    assert StoreRAM(256, 5120, impl="ecp5").primitives == 75
    with pytest.raises(BramError, match="latency"):
        StoreRAM(8, 8, latency=3)
    with pytest.raises(BramError, match="impl"):
        StoreRAM(8, 8, impl="xilinx")
    with pytest.raises(BramError, match="width and depth"):
        store_dp16kd_shape(0, 8)


@pytest.mark.rtl
@pytest.mark.parametrize("width,depth,latency", [(40, 3000, 2), (20, 1024, 2), (9, 2500, 1),
                                                 (36, 5120, 2)])
def test_store_ram_ecp5_matches_the_model(tmp_path, width, depth, latency):
    """The DP16KD StoreRAM (Icarus, the behavioural DP16KD model) gives the model's read
    data after every edge: the depth cascade's write decode and output multiplexer, the
    output register as the second cycle (OCE = r_en); and the check sees a wrong word."""
    import shutil
    import subprocess

    from amaranth.back import verilog

    from proxima.hdl.lib.vendor import StoreRAM, write_dp16kd_model
    if shutil.which("iverilog") is None or shutil.which("vvp") is None:
        pytest.fail("Icarus Verilog is required: apt-get install iverilog")
    dut = StoreRAM(width, depth, latency=latency, impl="ecp5")
    assert dut.deep > 1 or depth <= 1024
    (tmp_path / "store.v").write_text(verilog.convert(dut, name="store", emit_src=False))
    model = write_dp16kd_model(tmp_path / "dp16kd.v")
    steps = _store_model(depth, 3000, width, latency)
    mask = (1 << width) - 1
    lines = []
    for we, wa, wd, en, ra, expect in steps:
        lines.append(f"{int(we):x} {wa:x} {wd & mask:x} {int(en):x} {ra:x} "
                     f"{int(expect is not None):x} {(expect or 0) & mask:x}")

    def run(vectors):
        (tmp_path / "vec.txt").write_text("\n".join(vectors) + "\n")
        n = len(vectors)
        (tmp_path / "tb.v").write_text(f"""`timescale 1ns/1ps
module tb;
  reg clk = 0, rst = 0, w_en = 0, r_en = 0;
  reg [31:0] w_addr = 0, r_addr = 0;
  reg [{width - 1}:0] w_data = 0;
  wire [{width - 1}:0] r_data;
  store dut(.clk(clk), .rst(rst), .w_addr(w_addr), .w_en(w_en), .w_data(w_data),
            .r_addr(r_addr), .r_en(r_en), .r_data(r_data));
  reg [63:0] v [0:{7 * n - 1}];
  integer i, bad = 0, checked = 0, fd, c;
  reg [63:0] a, b, d, e, f, g, h;
  always #5 clk = ~clk;
  initial begin
    fd = $fopen("vec.txt", "r");
    for (i = 0; i < {n}; i = i + 1) begin
      c = $fscanf(fd, "%h %h %h %h %h %h %h", a, b, d, e, f, g, h);
      @(negedge clk);
      w_en = a; w_addr = b; w_data = d; r_en = e; r_addr = f;
      @(posedge clk); #1;
      if (g) begin
        checked = checked + 1;
        if (r_data !== h[{width - 1}:0]) bad = bad + 1;
      end
    end
    $display("CHECKED %0d MISMATCHES %0d", checked, bad);
    $finish;
  end
endmodule
""")
        subprocess.run(["iverilog", "-g2012", "-o", "sim", "tb.v", "store.v", str(model)],
                       cwd=tmp_path, check=True, capture_output=True)
        out = subprocess.run(["vvp", "-n", "sim"], cwd=tmp_path, check=True,
                             capture_output=True, text=True).stdout
        line = [ln for ln in out.splitlines() if ln.startswith("CHECKED")]
        assert line, out
        return int(line[0].split()[1]), int(line[0].split()[3])

    checked, bad = run(lines)
    assert checked > 2900 and bad == 0
    # a wrong expectation is seen
    k = max(i for i, s in enumerate(steps) if s[5] is not None)
    parts = lines[k].split()
    parts[6] = f"{(int(parts[6], 16) ^ 1):x}"
    wrong = lines[:k] + [" ".join(parts)] + lines[k + 1:]
    assert run(wrong)[1] == 1
