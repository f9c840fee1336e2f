"""cocotb testbench of :class:`proxima.hdl.arbiter.RoundRobinArbiter` against the cycle model.

Parameters (``PROXIMA_TB_PARAMS``): ``n`` (requesters), ``data_bits`` (payload width),
``transactions`` (output transfers to observe), ``p_valid`` (per-cycle probability that an
idle requester raises ``valid``; each requester gets its own, scaled by its index so the
load is uneven), ``p_ready`` (probability of ``o.ready``), ``lookahead`` (the DUT variant,
default true), ``group`` and ``flat_max`` (the DUT's tree options, defaults
:data:`~proxima.golden.arbiter.DEFAULT_GROUP` and
:data:`~proxima.golden.arbiter.DEFAULT_FLAT_MAX`; ``group`` ``None``: never a tree).  The spec of each
variant is :func:`proxima.golden.arbiter.arbiter_model`: the golden cycle model
(``lookahead=False``), :class:`~proxima.golden.arbiter.LookaheadArbiterModel` (the golden
model driven with the requester offered the grant, decided one cycle ahead) or, for
a tree (:func:`~proxima.golden.arbiter.uses_tree`),
:class:`~proxima.golden.arbiter.TreeArbiterModel`.

Every cycle the DUT's ``i[k].ready`` vector must be one-hot or zero (in a tree: per leaf)
and equal the model's grants (with ``lookahead``: the transfer vector ``ready & valid``,
since the registered grant may be offered to a requester that is not valid), ``o.valid``
the model's state, and every output transfer ``(grant, data)`` the model's.  A requester
holds ``valid`` and its payload until accepted (stream rule), so waits are measured too, in
input transfers of other requesters: none may exceed ``n - 1`` (flat) or the tree's
:attr:`~proxima.golden.arbiter.TreeArbiterModel.wait_bound` (no starvation).
"""

from __future__ import annotations

import random

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from proxima.golden.arbiter import TreeArbiterModel, arbiter_model, tree_groups
from proxima.hdl.arbiter import DEFAULT_FLAT_MAX, DEFAULT_GROUP
from proxima.sim.runner import tb_params
from proxima.sim.tb import bench


def _ports(dut, n):
    return ([getattr(dut, f"i__{k}__valid") for k in range(n)],
            [getattr(dut, f"i__{k}__payload") for k in range(n)],
            [getattr(dut, f"i__{k}__ready") for k in range(n)])


async def _reset(dut, n):
    await bench.reset(dut, inputs=[f"i__{k}" for k in range(n)], outputs=["o"])


def make_model(n: int, lookahead: bool, group: int | None = DEFAULT_GROUP,
               flat_max: int = DEFAULT_FLAT_MAX):
    """The spec of the DUT variant."""
    return arbiter_model(n, lookahead=lookahead, group=group, flat_max=flat_max)


def _group(p):
    g = p.get("group", DEFAULT_GROUP)
    return None if g is None else int(g)


def _flat_max(p):
    return int(p.get("flat_max", DEFAULT_FLAT_MAX))


async def _run(dut, n, data_bits, transactions, p_valid, p_ready, rnd, phases=None,
               lookahead=True, group=DEFAULT_GROUP, flat_max=DEFAULT_FLAT_MAX):
    valid_h, payload_h, ready_h = _ports(dut, n)
    model = make_model(n, lookahead, group, flat_max)
    tree = isinstance(model, TreeArbiterModel)
    leaves = ([range(j * group, min(n, (j + 1) * group))
               for j in range(len(tree_groups(n, group)))] if tree else [range(n)])
    bound = model.wait_bound if tree else n - 1
    valid = [False] * n
    payload = [0] * n
    waited = [0] * n  # grants to others while k was waiting
    max_wait = 0
    outputs = 0
    cycles = 0
    while outputs < transactions:
        assert cycles < 50 * transactions + 1000, "timeout"
        pv, pr = p_valid, p_ready
        if phases:  # alternate bursts: saturation, output stall, trickle
            pv, pr = phases[(cycles // 500) % len(phases)]
        for k in range(n):
            if not valid[k] and rnd.random() < pv[k]:
                valid[k] = True
                payload[k] = rnd.getrandbits(data_bits)
                payload_h[k].value = payload[k]
            valid_h[k].value = int(valid[k])
        o_ready = rnd.random() < pr
        dut.o__ready.value = int(o_ready)
        await ReadOnly()
        ready = [int(h.value) for h in ready_h]
        assert all(sum(ready[k] for k in leaf) <= 1 for leaf in leaves), \
            f"cycle {cycles}: ready {ready} is not one-hot (per leaf)"
        if lookahead:  # ready may be offered to a requester that is not valid
            ready = [r & int(v) for r, v in zip(ready, valid)]
        o_valid = int(dut.o__valid.value)
        o_payload = int(dut.o__payload.value) if o_valid else None
        assert o_valid == int(model.out_valid), \
            f"cycle {cycles}: o.valid {o_valid}, model {model.out_valid}"
        step = model.step(valid, payload, o_ready)
        want = [int(k in step.granted) for k in range(n)]
        assert ready == want, (f"cycle {cycles}: valid {[int(v) for v in valid]} "
                               f"o_ready {int(o_ready)}: DUT ready {ready}, model {want} "
                               f"(last grant {model.last})")
        if step.output is not None:
            g, d = step.output
            got = (o_payload >> data_bits, o_payload & ((1 << data_bits) - 1))
            assert got == (g, d), f"cycle {cycles}: output {got}, model {(g, d)}"
            outputs += 1
        for k in range(n):
            if valid[k] and k not in step.granted:
                waited[k] += len(step.granted)
                max_wait = max(max_wait, waited[k])
        for k in step.granted:
            waited[k] = 0
            valid[k] = False
        await RisingEdge(dut.clk)
        cycles += 1
    assert max_wait <= bound, f"a requester waited {max_wait} grants (> bound {bound})"
    return cycles, max_wait


@cocotb.test()
async def random_requests_with_stalls(dut):
    """>= 10k output transfers, random valids and o.ready stalls, cycle-exact vs the model."""
    p = tb_params()
    n, data_bits = int(p["n"]), int(p["data_bits"])
    lookahead = bool(p.get("lookahead", True))
    group = _group(p)
    transactions = int(p.get("transactions", 10_000))
    rnd = random.Random(cocotb.RANDOM_SEED)
    base = float(p.get("p_valid", 0.5))
    pv = [min(1.0, base * (0.4 + 1.2 * k / max(1, n - 1))) for k in range(n)]
    phases = [([1.0] * n, 1.0), (pv, float(p.get("p_ready", 0.6))), ([1.0] * n, 0.3),
              ([0.05] * n, 1.0)]
    await _reset(dut, n)
    cycles, max_wait = await _run(dut, n, data_bits, transactions, pv, 0.6, rnd, phases,
                                  lookahead, group, _flat_max(p))
    dut._log.info("%d transfers in %d cycles, longest wait %d grants", transactions, cycles,
                  max_wait)


@cocotb.test()
async def saturated_rotation(dut):
    """All requesters always valid, output always ready: one output per cycle once the
    pipeline is full.  Flat: grants rotate 0, 1, ..., n-1, 0 ... (with lookahead the first
    ready comes one cycle after the valids).  Tree: the leaves take turns, each leaf in
    index order (the model's order), first output ``latency`` cycles after the valids."""
    p = tb_params()
    n = int(p["n"])
    lookahead = bool(p.get("lookahead", True))
    group = _group(p)
    model = make_model(n, lookahead, group, _flat_max(p))
    await _reset(dut, n)
    valid_h, payload_h, ready_h = _ports(dut, n)
    for k in range(n):
        valid_h[k].value = 1
        payload_h[k].value = k + 1
    dut.o__ready.value = 1
    if isinstance(model, TreeArbiterModel):
        outs, first = [], None
        for cycle in range(model.latency + 3 * n):
            await ReadOnly()
            if int(dut.o__valid.value):
                first = cycle if first is None else first
                outs.append(int(dut.o__payload.value))
            step = model.step([True] * n, [k + 1 for k in range(n)], True)
            if step.output is not None:
                g, d = step.output
                assert outs and outs[-1] == (g << int(p["data_bits"])) | d, cycle
            await RisingEdge(dut.clk)
        assert first == model.latency and len(outs) == 3 * n, (first, len(outs))
        return
    grants = []
    if lookahead:
        await ReadOnly()
        assert not any(int(h.value) for h in ready_h), "granted before the valids were seen"
        await RisingEdge(dut.clk)
    for _ in range(3 * n):
        await ReadOnly()
        ready = [int(h.value) for h in ready_h]
        assert sum(ready) == 1
        grants.append(ready.index(1))
        await RisingEdge(dut.clk)
    assert grants == [k % n for k in range(3 * n)], grants
