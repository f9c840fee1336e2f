"""cocotb testbench of :class:`proxima.hdl.pagecache.PageCache` against ``PageCacheModel``.

Parameters (``PROXIMA_TB_PARAMS``): ``accesses`` (addresses in the random test, >= 10k for
sign-off), ``p_valid`` (per-cycle probability of offering an address), ``p_ready``
(per-cycle probability that each of ``resp`` / ``fetch`` / ``prefetch`` accepts),
``window`` (prefetch window; omitted: the model's default), ``addr_bits`` (omitted: the
NAND capacity), ``read_stages`` / ``bank_rows`` (the tag read; omitted: the block's
defaults), ``timing_accesses`` (addresses in the full-rate timing test),
``flip_expected`` (index of a response whose golden ``hit`` is inverted on purpose: the
run must then fail; -1 = off).

The golden twin is :class:`proxima.golden.field.trace.PageCacheModel` built from
``PROXIMA_CFG``.  Every response (all fields), every demand fetch and every prefetch fetch
(line and victim) is compared in order with exact equality, the counts of all three
streams are checked, and the final statistics counters are compared with the model's
``TraceStats``.

The trace helpers (:func:`mixed_trace`, :func:`expected`, :func:`unpack`,
:class:`Checker`) are shared with the Amaranth-simulation unit tests.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly

from proxima.golden.field.trace import PageCacheModel
from proxima.hdl.pagecache import ACTION_CODES, STATS, PageCache, full_rate_schedule
from proxima.sim.runner import tb_params
from proxima.sim.tb import bench

RESP_FIELDS = ("line", "hit", "prefetch_hit", "evicted_valid", "evicted_prefetched",
               "evicted", "prefetches", "stream", "action")


# ---- shared helpers (no simulator needed) ---------------------------------------------
def make_dut(cfg, p: dict) -> PageCache:
    kw = {}
    if p.get("window") is not None:
        kw["window"] = int(p["window"])
    if p.get("addr_bits") is not None:
        kw["addr_bits"] = int(p["addr_bits"])
    for name in ("read_stages", "bank_rows"):
        if p.get(name) is not None:
            kw[name] = int(p[name])
    dut = PageCache(cfg, **kw)
    dut._MustUse__silence = True  # often built only for its geometry and layouts
    return dut


def mixed_trace(dut: PageCache, count: int, rng: np.random.Generator) -> list[int]:
    """Byte addresses: segments of interleaved strided streams (several strides, both
    signs, some beyond the window), random lines in a small region and over the whole
    space, repeats of one address / one line, conflict bursts in one set, and streams
    running down to line 0.  Lines stay below ``2**line_bits - window * depth`` so no
    prefetch target leaves the address space (see the module note in ``pagecache``)."""
    lb, sets, ways = dut.line_bytes, dut.sets, dut.ways
    lines = sets * ways
    top = (1 << dut.line_bits) - dut.window * max(1, dut.depth) - 1
    if top < 8 * lines:
        raise ValueError("address space too small for the mixed trace")
    region = min(top, 16 * lines)
    out: list[int] = []

    def emit(line: int) -> None:
        line = int(min(max(line, 0), top))
        out.append(line * lb + int(rng.integers(0, lb)))

    base = int(rng.integers(0, top - region + 1))
    while len(out) < count:
        kind = rng.choice(["strided", "strided", "strided", "random", "wide", "repeat",
                           "conflict", "down"])
        n = int(rng.integers(8, 120))
        if rng.random() < 0.1:
            base = int(rng.integers(0, top - region + 1))
        if kind == "strided":
            k = int(rng.integers(1, 5))
            heads, strides = [], []
            for _ in range(k):
                heads.append(base + int(rng.integers(0, region)))
                r = rng.random()
                if r < 0.6:
                    s = int(rng.integers(1, 4))
                elif r < 0.9:
                    s = int(rng.integers(1, dut.window + 1))
                else:
                    s = int(rng.integers(dut.window + 1, 2 * dut.window + 2))
                strides.append(s if rng.random() < 0.75 else -s)
            for _ in range(n):
                j = int(rng.integers(0, k)) if rng.random() < 0.5 else len(out) % k
                if rng.random() < 0.1:
                    emit(heads[j])  # an occasional repeat inside a stream
                    continue
                heads[j] += strides[j]
                if not 0 <= heads[j] <= top:
                    heads[j] = base + int(rng.integers(0, region))
                emit(heads[j])
        elif kind == "random":
            for _ in range(n):
                emit(base + int(rng.integers(0, region)))
        elif kind == "wide":
            for _ in range(n // 4):
                emit(int(rng.integers(0, top + 1)))
        elif kind == "repeat":
            line = base + int(rng.integers(0, region))
            for _ in range(n // 4):
                if rng.random() < 0.5:
                    out.append(out[-1] if out else line * lb)
                else:
                    emit(line)
        elif kind == "conflict":
            s0 = base + int(rng.integers(0, sets))
            for _ in range(n):
                emit(s0 + sets * int(rng.integers(0, ways + 3)))
        else:  # down: negative strides that run into line 0
            s = int(rng.integers(1, 4))
            line = s * int(rng.integers(2, 12))
            while line >= 0 and len(out) < count + 64:
                emit(line)
                line -= s
    return out[:count]


def expected(dut: PageCache, trace) -> tuple[list[dict], list[int], list[tuple], dict, list,
                                             PageCacheModel]:
    """Golden streams for ``trace``: responses (dicts of :data:`RESP_FIELDS`), demand
    fetch lines, prefetch fetches ``(line, evicted_valid, evicted)``, final stats, the
    number of prefetch targets the RTL examines per access, one cycle each (on ``confirm``
    the leading ``k = 1..depth`` with ``0 <= line + stride*k < 2**line_bits``) and the
    model after the trace (for final-state comparisons)."""
    model = PageCacheModel(dut.cfg.cache, window=dut.window)
    resp, fetch, pref, examined = [], [], [], []
    limit = 1 << dut.line_bits
    for addr in trace:
        line = int(addr) // dut.line_bytes
        before = dict(model.set_state(line % dut.sets))
        r = model.access(addr)
        ev = r.evicted
        resp.append({
            "line": r.line, "hit": int(r.hit), "prefetch_hit": int(r.prefetch_hit),
            "evicted_valid": int(ev is not None),
            "evicted_prefetched": int(ev is not None and before.get(ev, False)),
            "evicted": 0 if ev is None else ev, "prefetches": len(r.prefetches),
            "stream": r.stream, "action": ACTION_CODES[r.stream_action],
        })
        if r.fill is not None:
            fetch.append(r.fill)
        for t, e in zip(r.prefetches, r.prefetch_evicted):
            pref.append((t, int(e is not None), 0 if e is None else e))
        n = 0
        if r.stream_action == "confirm":
            stride = model.prefetcher.stride[r.stream]
            for k in range(1, dut.depth + 1):
                if not 0 <= r.line + stride * k < limit:
                    break
                n += 1
        examined.append(n)
    return resp, fetch, pref, model.stats.as_dict(), examined, model


def unpack(layout, value: int) -> dict:
    return bench.unpack(value, layout)


class Checker:
    """Compares the three output streams with the golden lists as they arrive."""

    def __init__(self, dut: PageCache, trace, exp_resp, exp_fetch, exp_pref):
        self.dut, self.trace = dut, trace
        self.exp_resp, self.exp_fetch, self.exp_pref = exp_resp, exp_fetch, exp_pref
        self.n_resp = self.n_fetch = self.n_pref = 0
        self.cycle = 0  # set by the driver: the cycle of the current handshakes
        self.resp_cycles: list[int] = []  # cycle in which each response was taken

    def resp(self, value: int) -> None:
        i = self.n_resp
        self.resp_cycles.append(self.cycle)
        if i >= len(self.exp_resp):
            raise AssertionError(f"extra response {unpack(self.dut.resp_layout, value)}")
        got = unpack(self.dut.resp_layout, value)
        exp = self.exp_resp[i]
        if got != exp:
            diff = {k: (got[k], exp[k]) for k in RESP_FIELDS if got[k] != exp[k]}
            raise AssertionError(
                f"access {i} (addr {self.trace[i]:#x}, line {exp['line']}): response "
                f"differs (got, expected): {diff}\n  got {got}\n  exp {exp}")
        self.n_resp += 1

    def fetch(self, value: int) -> None:
        i = self.n_fetch
        if i >= len(self.exp_fetch) or int(value) != self.exp_fetch[i]:
            exp = self.exp_fetch[i] if i < len(self.exp_fetch) else None
            raise AssertionError(f"demand fetch {i}: got line {int(value)}, expected {exp} "
                                 f"(responses so far: {self.n_resp})")
        self.n_fetch += 1

    def prefetch(self, value: int) -> None:
        i = self.n_pref
        g = unpack(self.dut.pf_layout, value)
        got = (g["line"], g["evicted_valid"], g["evicted"])
        exp = self.exp_pref[i] if i < len(self.exp_pref) else None
        if got != exp:
            raise AssertionError(f"prefetch {i}: got (line, evicted_valid, evicted) {got}, "
                                 f"expected {exp} (responses so far: {self.n_resp})")
        self.n_pref += 1

    def done(self) -> bool:
        return self.n_resp == len(self.exp_resp)

    def finish(self, stats_got: dict, stats_exp: dict) -> None:
        assert self.n_fetch == len(self.exp_fetch), \
            f"{self.n_fetch} demand fetches, expected {len(self.exp_fetch)}"
        assert self.n_pref == len(self.exp_pref), \
            f"{self.n_pref} prefetches, expected {len(self.exp_pref)}"
        assert stats_got == stats_exp, f"stats: got {stats_got}, expected {stats_exp}"


# ---- cocotb ---------------------------------------------------------------------------
OUTPUTS = ("resp", "fetch", "prefetch")


async def _reset(dut):
    await bench.reset(dut, inputs=["req"], outputs=OUTPUTS)


async def _drive(dut, trace, chk: Checker, p_valid: float, p_ready: float,
                 rnd: random.Random, max_cycles: int) -> tuple[int, list[int]]:
    """Offer ``trace`` with random stalls, check outputs; return (cycles, accept cycles)."""
    def sinks(p):
        return [bench.Sink(dut, s, p, check=getattr(chk, s), keep=False) for s in OUTPUTS]

    source = bench.Source(dut, "req", trace, p_valid)
    probe = bench.Probe(lambda cycle: setattr(chk, "cycle", cycle))
    cycle = await bench.run(dut, [probe, source, *sinks(p_ready)], rnd, max_cycles=max_cycles,
                            until=chk.done)
    # drain: anything still valid on fetch / prefetch is an extra output
    await bench.run(dut, sinks(1.0), cycles=4)
    return cycle, source.accept_cycles


def _stats(dut) -> dict:
    return {name: int(getattr(dut, name).value) for name in STATS}


async def _run_case(dut, count: int, p_valid: float, p_ready: float, seed_offset: int):
    cfg, p, rnd, rng = bench.setup(seed_offset)
    pc = make_dut(cfg, p)
    trace = mixed_trace(pc, count, rng)
    exp_resp, exp_fetch, exp_pref, stats, examined, _ = expected(pc, trace)
    flip = int(p.get("flip_expected", -1))
    if 0 <= flip < len(exp_resp):
        exp_resp[flip]["hit"] ^= 1
    chk = Checker(pc, trace, exp_resp, exp_fetch, exp_pref)
    await _reset(dut)
    cycles, accepts = await _drive(dut, trace, chk, p_valid, p_ready, rnd,
                                   max_cycles=pc.op_cycles * (1 + pc.depth) * count * 10 + 1000)
    await ReadOnly()
    chk.finish(_stats(dut), stats)
    return pc, cycles, accepts, examined, stats, chk


@cocotb.test()
async def mixed_trace_with_stalls(dut):
    """>= 10k mixed accesses, random valid/ready stalls on every port, all outputs checked."""
    p = tb_params()
    count = int(p.get("accesses", 10_000))
    pc, cycles, _, _, stats, _ = await _run_case(dut, count, float(p.get("p_valid", 0.7)),
                                              float(p.get("p_ready", 0.7)), 0)
    dut._log.info("%d accesses in %d cycles, stats %s", count, cycles, stats)


@cocotb.test()
async def full_rate_cycles_per_access(dut):
    """Valid and ready always high: every request is accepted and every response comes
    exactly in the cycle given by ``full_rate_schedule`` (the documented recurrence:
    ``REQUEST_CYCLES`` per request in the prefetcher, ``op_cycles * (1 + T_i)`` per access
    in the cache operations, ``response_latency + op_cycles * T_0`` for the first)."""
    p = tb_params()
    count = int(p.get("timing_accesses", 2000))
    pc, cycles, accepts, examined, _, chk = await _run_case(dut, count, 1.0, 1.0, 1)
    assert len(accepts) == count
    exp_a, exp_r = full_rate_schedule(examined, pc.op_cycles, pc.request_cycles)
    a0 = accepts[0]  # the schedule counts from the first cycle with busy low
    for i in range(count):
        if accepts[i] - a0 != exp_a[i] or chk.resp_cycles[i] - a0 != exp_r[i]:
            raise AssertionError(
                f"access {i}: accepted in cycle {accepts[i] - a0}, response in cycle "
                f"{chk.resp_cycles[i] - a0}; expected {exp_a[i]} and {exp_r[i]} "
                f"(T = {examined[max(0, i - 1)]}, {examined[i]})")
    dut._log.info("%d accesses, %d cycles at full rate (%.3f cycles/access)",
                  count, exp_r[-1] + 1, (exp_r[-1] + 1) / count)
