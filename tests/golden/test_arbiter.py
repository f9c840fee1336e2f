"""Golden models of the tree arbiter: structure, cycle rules, throughput, no starvation."""

from __future__ import annotations

import random

import pytest

from proxima.golden.arbiter import (
    ArbiterError, LookaheadArbiterModel, QueuedArbiterNodeModel, RoundRobinArbiterModel,
    TreeArbiterModel, arbiter_model, check_group, round_robin_pick, tree_groups,
)


def test_groups_and_levels():
    assert tree_groups(32, 16) == [16, 16]
    assert tree_groups(17, 4) == [4, 4, 4, 4, 1]
    t = TreeArbiterModel(256, 16)
    assert t.sizes == [16] * 16 and t.levels == 2 and t.latency == 4
    assert isinstance(t.upper, QueuedArbiterNodeModel)
    t = TreeArbiterModel(17, 4)  # 5 leaves > 4: the upper arbiter is itself a tree
    assert t.levels == 3 and t.latency == 6 and isinstance(t.upper, TreeArbiterModel)
    assert t.upper.sizes == [4, 1]
    assert isinstance(arbiter_model(16), LookaheadArbiterModel)  # flat up to flat_max
    assert arbiter_model(17).sizes == [8, 8, 1]
    assert arbiter_model(256).levels == 3 and arbiter_model(256).latency == 6
    assert arbiter_model(64).levels == 2 and arbiter_model(64).latency == 4
    assert isinstance(arbiter_model(64, group=None), LookaheadArbiterModel)
    assert isinstance(arbiter_model(64, lookahead=False), RoundRobinArbiterModel)
    assert isinstance(arbiter_model(24, group=32), LookaheadArbiterModel)  # one leaf
    assert isinstance(arbiter_model(5, group=2, flat_max=1), TreeArbiterModel)


def test_bad_arguments():
    for bad in (0, 1, 3, 12, -4, 2.0, True, "16"):
        with pytest.raises(ArbiterError, match="power of two"):
            check_group(bad)
    with pytest.raises(ArbiterError, match="single node"):
        TreeArbiterModel(16, 16)
    for bad in (0, 2.0, True, None):
        with pytest.raises(ArbiterError, match="flat_max"):
            arbiter_model(32, flat_max=bad)
    with pytest.raises(ArbiterError, match="at least one"):
        QueuedArbiterNodeModel(0)
    t = TreeArbiterModel(9, 4)
    with pytest.raises(ArbiterError, match="valid flags"):
        t.step([0] * 8, [0] * 9, True)
    with pytest.raises(ArbiterError, match="payloads"):
        t.step([0] * 9, [0] * 8, True)


def test_node_queue_cycle_by_cycle():
    """Offer one cycle after the request, queue of two with a registered ready (a pop does
    not make room in its own cycle), stale re-offer used up, pop and push together."""
    m = QueuedArbiterNodeModel(3)
    s = m.step([0, 1, 1], [0, 11, 22], out_ready=False)  # nothing offered yet: pick 1
    assert s.grant is None and m.offered == 1 and m.ready() == [0, 1, 0]
    s = m.step([0, 1, 1], [0, 11, 22], out_ready=False)  # 1 transfers; 2 offered next
    assert s.grant == 1 and m.queue == [(1, 11)] and m.ready() == [0, 0, 1]
    s = m.step([0, 0, 1], [0, 0, 22], out_ready=False)  # 2 transfers: queue full
    assert s.grant == 2 and len(m.queue) == 2 and m.ready() == [0, 0, 0]
    assert m.offered == 2  # lone requester re-offered (it may drop valid: stale offer)
    s = m.step([1, 0, 0], [33, 0, 0], out_ready=True)  # pop; full at the start: no push
    assert s.grant is None and s.output == (1, 11) and m.queue == [(2, 22)]
    assert m.offered == 2  # held while the queue was full
    s = m.step([1, 0, 0], [33, 0, 0], out_ready=False)  # stale offer used up, 0 picked
    assert s.grant is None and s.output is None and m.offered == 0
    s = m.step([1, 0, 0], [33, 0, 0], out_ready=True)  # pop 2 and push 0 together
    assert s.grant == 0 and s.output == (2, 22) and m.queue == [(0, 33)]
    with pytest.raises(ArbiterError, match="dropped valid"):
        m2 = QueuedArbiterNodeModel(2)
        m2.step([1, 1], [0, 0], True)
        m2.step([1, 1], [0, 0], True)  # 0 transfers, 1 offered (waiting)
        m2.step([1, 0], [0, 0], True)  # 1 dropped its valid before its transfer


def _drive(model, n, cycles, rnd, phases, check_order=True):
    """Random requesters obeying the stream rule; returns (outputs, longest wait in input
    transfers of others, cycles with a saturated output, outputs in them)."""
    valid, payload = [False] * n, [0] * n
    waited = [0] * n
    max_wait = 0
    sent = {k: [] for k in range(n)}
    got = {k: [] for k in range(n)}
    outs = sat_cycles = sat_outs = 0
    seq = 0
    lat = getattr(model, "latency", 2)
    for cycle in range(cycles):
        pv, pr = phases[(cycle // 300) % len(phases)]
        for k in range(n):
            if not valid[k] and rnd.random() < pv[k]:
                valid[k], payload[k] = True, seq
                seq += 1
        o_ready = rnd.random() < pr
        st = model.step(valid, payload, o_ready)
        for k in st.granted:
            sent[k].append(payload[k])
        others = len(st.granted)
        for k in range(n):
            if valid[k] and k not in st.granted:
                waited[k] += others
                max_wait = max(max_wait, waited[k])
        for k in st.granted:
            waited[k] = 0
            valid[k] = False
        if st.output is not None:
            g, d = st.output
            got[g].append(d)
            outs += 1
        saturated = pr == 1.0 and min(pv) == 1.0 and cycle % 300 >= 2 * lat + 2
        sat_cycles += saturated
        sat_outs += saturated and st.output is not None
    if check_order:  # every transfer leaves once, in order, tagged with its requester
        for k in range(n):
            assert got[k] == sent[k][:len(got[k])] and len(sent[k]) - len(got[k]) <= 8
    return outs, max_wait, sat_cycles, sat_outs


@pytest.mark.parametrize("n,group", [(32, 16), (17, 4), (5, 2), (9, 8), (40, 8), (256, 8)])
def test_tree_throughput_order_and_wait_bound(n, group):
    rnd = random.Random(n * 100 + group)
    model = TreeArbiterModel(n, group)
    skew = [min(1.0, 0.05 + 0.9 * k / (n - 1)) for k in range(n)]
    phases = [([1.0] * n, 1.0), (skew, 0.5), ([1.0] * n, 0.2), ([0.03] * n, 1.0),
              ([0.3] * n, 0.9)]
    outs, max_wait, sat_cycles, sat_outs = _drive(model, n, 15_000 if n < 100 else 4000,
                                                  rnd, phases)
    assert outs > 1000
    assert sat_cycles > 0 and sat_outs == sat_cycles  # one output per cycle under load
    assert max_wait <= model.wait_bound, (max_wait, model.wait_bound)


def test_tree_lone_request_latency_and_rotation():
    n, G = 32, 16
    model = TreeArbiterModel(n, G)
    # a lone request in an idle tree: transfer in t + 1, output in t + latency
    v = [k == 21 for k in range(n)]
    out_at = None
    for t in range(8):
        st = model.step(v, list(range(n)), True)
        if st.granted:
            assert st.granted == (21,) and t == 1
            v = [False] * n
        if st.output is not None:
            assert st.output == (21, 21)
            out_at = t
    assert out_at == model.latency == 4
    # everyone always valid: leaves alternate, each leaf in index order, one per cycle
    model = TreeArbiterModel(n, G)
    outs = []
    for t in range(4 + 3 * n):
        st = model.step([True] * n, list(range(n)), True)
        if st.output is not None:
            outs.append(st.output[0])
    assert outs[:2 * n] == [(c % 2) * G + (c // 2) % G for c in range(2 * n)], outs


def test_tree_wait_bound_holds_against_a_hot_neighbourhood():
    """Requester 0 asks once in a while; everybody else (and its own leaf) always asks,
    with output stalls: its wait stays within the bound (and is of the order of n)."""
    n, G = 64, 16
    model = TreeArbiterModel(n, G)
    rnd = random.Random(3)
    pv = [0.02] + [1.0] * (n - 1)
    _, max_wait, _, _ = _drive(model, n, 8000, rnd, [(pv, 0.7), (pv, 1.0)])
    assert n - 1 <= max_wait <= model.wait_bound, (max_wait, model.wait_bound)


def test_pick_unchanged():
    assert round_robin_pick([0, 1, 0, 1], 1) == 3
