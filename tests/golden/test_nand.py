"""NAND timing model on hand-computed cases, plus a brute-force cross-check."""

from __future__ import annotations

import numpy as np
import pytest

from proxima.config import preset
from proxima.golden.layout import Layout, reads_for_events
from proxima.golden.nand import (Phase, TimingError, TimingParams, phases_for_events, simulate,
                                 simulate_events)

TINY = preset("tiny")


def params(**kw) -> TimingParams:
    base = dict(tR_cycles=30, transfer_cycles=26, index_cores=1, raw_cores=0,
                pq_codes_per_cycle=2, sorter_cycles=10, exact_cycles=8, cycle_ns=10.0, queues=1)
    base.update(kw)
    return TimingParams(**base)


def test_params_from_presets():
    p = TimingParams.from_cfg(preset("paper"))
    assert (p.tR_cycles, p.transfer_cycles) == (300, 256)  # 128 B at 0.5 B/ns, 1 GHz
    assert p.sorter_cycles == 2 * 73 + 7 + 3  # L = n = 256: one chunk, sorter latency 2*(8*9/2)+1
    assert p.exact_cycles == 128  # D = 128, one MAC
    assert (p.index_cores, p.raw_cores, p.queues) == (512, 128, 256)
    d = TimingParams.from_cfg(preset("default"))
    assert (d.tR_cycles, d.transfer_cycles) == (30, 26)  # 300 ns, 25.6 -> 26 cycles at 100 MHz
    # L = 64 over a 16-input sorter of two stages per register group (latency 2 * 5 + 1):
    # four chunks, 5 * 11 + 7 * 4 + 3
    assert d.sorter_cycles == 86 and d.exact_cycles == 32
    # R = 32 > sorter_n = 16: a full row is merged as two sub-batches of 16
    assert d.sorter_n == 16 and p.sorter_n == 256
    assert d.code_compute(16) == 16 // 4 + 86 and d.code_compute(17) == 5 + 2 * 86
    assert d.code_compute(32) == 8 + 2 * 86 and d.code_compute(1) == 1 + 86


def test_code_compute_without_sorter_n_is_one_merge():
    p = params()
    assert p.sorter_n is None and p.code_compute(300) == 150 + 10


def test_one_core_two_reads():
    p = params()
    r = simulate([[Phase("frame", (0, 0), 0)]], p, nq=1)
    assert r.latency.tolist() == [2 * 56]
    assert r.total_cycles == 112 and r.busy.tolist() == [112]
    assert r.utilisation.tolist() == [1.0] and r.accesses == 2


def test_dependent_phases_and_compute():
    p = params(index_cores=2)
    tr = [Phase("code", (0,), p.code_compute(1)),  # 56 + (1 + 10)
          Phase("frame", (1,), 0),  # issues at 67, done 123
          Phase("code", (0, 1, 1), p.code_compute(3)),  # core1: 123..179..235 -> +2+10
          Phase("raw", (), p.raw_compute(2))]  # no reads: 247 + 16
    r = simulate([tr], p, nq=1)
    assert r.finish.tolist() == [263]
    assert r.busy.tolist() == [112, 168]


def test_fifo_contention_and_slots():
    p = params()
    tr = [[Phase("frame", (0,), 5)], [Phase("frame", (0,), 5)], [Phase("frame", (0,), 5)]]
    r2 = simulate(tr, p, nq=2)
    # q0, q1 issue at 0: core serves q0 0..56, q1 56..112; q2 starts when q0 finishes (61)
    assert r2.start.tolist() == [0, 0, 61]
    assert r2.finish.tolist() == [61, 117, 173]  # q2 waits for the core until 112
    assert r2.latency.tolist() == [61, 117, 112]
    r1 = simulate(tr, p, nq=1)
    assert r1.start.tolist() == [0, 61, 122] and r1.finish.tolist() == [61, 122, 183]
    assert r1.total_cycles == 183
    assert r1.qps == pytest.approx(3 / (183 * 10e-9))
    assert r1.mean_util_index == pytest.approx(168 / 183)


def test_setup_cycles_delay_every_query():
    p = params(setup_cycles=7)
    tr = [[Phase("frame", (0,), 5)], [Phase("frame", (0,), 5)]]
    r = simulate(tr, p, nq=1)
    # q0: setup 0..7, read 7..63, +5 -> 68; q1 starts at 68: read 75..131, +5 -> 136
    assert r.start.tolist() == [0, 68] and r.finish.tolist() == [68, 136]


def test_parallel_cores():
    p = params(index_cores=4, raw_cores=2)
    r = simulate([[Phase("raw", (0, 1, 2, 3, 4, 5), 0)]], p, nq=1)
    assert r.total_cycles == 56
    assert r.mean_util_index == 1.0 and r.mean_util_raw == 1.0


def test_bad_input():
    with pytest.raises(TimingError, match="in flight"):
        simulate([], params(), nq=0)
    with pytest.raises(TimingError, match="core 3"):
        simulate([[Phase("frame", (3,), 0)]], params(), nq=1)
    empty = simulate([[], []], params(), nq=1)
    assert empty.total_cycles == 0 and empty.latency.tolist() == [0, 0]


def test_phases_follow_the_read_rules():
    lay = Layout(TINY, 3000, 10, 3)
    p = TimingParams.from_cfg(TINY)
    ev = [("code", 0), ("frame", 0), ("code", 11), ("code", 12), ("frame", 20),
          ("code", 13), ("code", 14), ("raw", 5), ("raw", 6), ("frame", 21)]
    ph = phases_for_events(ev, lay, p)
    assert [x.kind for x in ph] == ["code", "frame", "code", "frame", "code", "raw", "frame"]
    assert ph[0] == Phase("code", (0,), p.code_compute(1))
    assert ph[1] == Phase("frame", (0,), 0)  # hot frame: one chunk
    assert ph[2] == Phase("code", (), p.code_compute(2))  # carried by the hot frame
    assert ph[4] == Phase("code", (1, 2), p.code_compute(2))
    assert ph[5] == Phase("raw", (5, 4), p.raw_compute(2))
    reads = reads_for_events(ev, lay)
    assert [c for x in ph for c in x.cores] == [r.core for r in reads]


def _brute_force(traces, p, nq):
    """Cycle-stepped reference: every cycle, start queries in free slots, issue due phases,
    let each core start its queue head when idle."""
    Q = len(traces)
    svc = p.service_cycles
    queues = [[] for _ in range(p.total_cores)]  # FIFO of (query, phase)
    core_done = [None] * p.total_cores  # (finish cycle, query, phase) in service
    pending = {}  # (q, i) -> outstanding reads
    due = {}  # q -> (cycle, phase index) when it issues next
    start, finish = [None] * Q, [None] * Q
    running, nxt, t = 0, 0, 0
    while any(f is None for f in finish):
        while running < nq and nxt < Q:  # slots free at t
            start[nxt], due[nxt] = t, (t, 0)
            running, nxt = running + 1, nxt + 1
        progressed = True
        while progressed:
            progressed = False
            for c in range(p.total_cores):  # completions at t
                if core_done[c] and core_done[c][0] == t:
                    _, q, i = core_done[c]
                    core_done[c] = None
                    pending[(q, i)] -= 1
                    if pending[(q, i)] == 0:
                        due[q] = (t + traces[q][i].compute, i + 1)
            now = [q for q in due if due[q][0] == t]
            if not now:
                continue
            q = min(now)  # same-cycle phases in increasing query index
            _, i = due.pop(q)
            progressed = True
            if i == len(traces[q]):
                finish[q] = t
                running -= 1
                if nxt < Q:
                    start[nxt], due[nxt] = t, (t, 0)
                    running, nxt = running + 1, nxt + 1
                continue
            ph = traces[q][i]
            if not ph.cores:
                due[q] = (t + ph.compute, i + 1)
                continue
            pending[(q, i)] = len(ph.cores)
            for c in ph.cores:
                queues[c].append((q, i))
        for c in range(p.total_cores):  # idle cores start their queue heads at t
            if core_done[c] is None and queues[c]:
                q, i = queues[c].pop(0)
                core_done[c] = (t + svc, q, i)
        t += 1
    return start, finish


def test_matches_cycle_stepped_reference():
    rng = np.random.default_rng(5)
    p = params(index_cores=3, raw_cores=1, tR_cycles=3, transfer_cycles=2)
    for trial in range(6):
        traces = []
        for _ in range(int(rng.integers(1, 7))):
            tr = []
            for _ in range(int(rng.integers(0, 5))):
                k = int(rng.integers(0, 4))
                tr.append(Phase("code", tuple(rng.integers(0, 4, k).tolist()),
                                int(rng.integers(0, 4))))
            traces.append(tr)
        nq = int(rng.integers(1, 4))
        r = simulate(traces, p, nq)
        s, f = _brute_force(traces, p, nq)
        assert r.start.tolist() == s and r.finish.tolist() == f, trial


def test_simulate_events_counts_every_read():
    lay = Layout(TINY, 3000, 10, 3)
    rng = np.random.default_rng(0)
    evs = []
    for _ in range(20):
        ev = [("code", 0)]
        for _ in range(5):
            ev.append(("frame", int(rng.integers(0, 40))))
            ev += [("code", int(u)) for u in rng.integers(0, 3000, 6)]
            ev += [("raw", int(u)) for u in rng.integers(0, 3000, 2)]
        evs.append(ev)
    r = simulate_events(evs, lay, nq=4)
    assert r.accesses == sum(len(reads_for_events(e, lay)) for e in evs)
    assert r.busy.sum() == r.accesses * TimingParams.from_cfg(TINY).service_cycles
    more = simulate_events(evs, lay, nq=16)
    assert more.total_cycles <= r.total_cycles


def test_search_time_overrides_change_the_model():
    """The effective configuration (image config + --set) drives the timing, not the image's."""
    lay = Layout(TINY, 3000, 10, 3)
    rng = np.random.default_rng(4)
    evs = [[("code", 0)] + [e for u in rng.integers(0, 3000, 8)
                            for e in (("frame", int(u)), ("code", int(u)), ("raw", int(u)))]
           for _ in range(12)]
    base = simulate_events(evs, lay)
    assert base.nq == TINY.engine.queues
    assert simulate_events(evs, lay, cfg=TINY.with_(engine={"queues": 8})).nq == 8
    slow = simulate_events(evs, lay, cfg=TINY.with_(nand={"tR_ns": 4 * TINY.nand.tR_ns}))
    assert slow.total_cycles > base.total_cycles
    fast = simulate_events(evs, lay,
                           cfg=TINY.with_(engine={"clock_mhz": 2 * TINY.engine.clock_mhz}))
    assert fast.params.cycle_ns == base.params.cycle_ns / 2
    with pytest.raises(TimingError, match="nand.cores"):
        simulate_events(evs, lay, cfg=TINY.with_(nand={"cores": 8}))


def test_phase_cores_equal_read_cores_on_paper_layout():
    lay = Layout(preset("paper"), 100_000, 3000, 17)
    rng = np.random.default_rng(2)
    ev = [("code", 0)]
    for _ in range(30):
        ev.append(("frame", int(rng.integers(0, 6000))))
        ev += [("code", int(u)) for u in rng.integers(0, 100_000, 9)]
        ev += [("raw", int(u)) for u in rng.integers(0, 100_000, int(rng.integers(0, 3)))]
    ph = phases_for_events(ev, lay)
    assert [c for x in ph for c in x.cores] == [r.core for r in reads_for_events(ev, lay)]
    assert sum(len(x.cores) for x in ph if x.kind == "frame") == sum(
        lay.hot_accesses if v < 3000 else lay.frame_access_count for k, v in ev if k == "frame")


def test_beam_phases_codes_in_ram_and_parallel_rounds():
    from proxima.golden.nand import beam_phases_for_events

    lay = Layout(TINY, 3000, 10, 3)
    p = TimingParams.from_cfg(TINY)
    Ci = TINY.nand.cores
    ev = [("code", 0), ("frame", 1), ("raw", 1), ("frame", 2), ("raw", 2), ("code", 5),
          ("code", 6), ("frame", 3), ("raw", 3)]
    ph = beam_phases_for_events(ev, lay, p)
    assert [x.kind for x in ph] == ["code", "frame", "code", "frame"]
    assert ph[0].cores == () and ph[0].compute == p.code_compute(1)
    assert ph[1].cores == (1 % Ci, Ci + 1 % 2, 2 % Ci, Ci + 2 % 2)  # hot vertex 1: normal frame
    assert ph[1].compute == p.raw_compute(2) and ph[2].compute == p.code_compute(2)
    r = simulate_events([ev] * 3, lay, nq=1, algo="beam")
    assert r.accesses == 3 * 6
