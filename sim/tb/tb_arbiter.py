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


class _ModelCheck:
    """Steps the golden model with the requesters' valids and payloads and the output's
    ``ready`` of each cycle, and compares the DUT's grants (``i[k].ready``, one-hot per leaf),
    ``o.valid`` and every output transfer; counts the waits of valid requesters in grants to
    others.  Sampled before the requesters, which then retire the granted beats."""

    done = True

    def __init__(self, dut, model, requesters, out, data_bits, lookahead, group):
        n = len(requesters)
        self.dut, self.model, self.req, self.out = dut, model, requesters, out
        self.data_bits, self.lookahead = data_bits, lookahead
        tree = isinstance(model, TreeArbiterModel)
        self.leaves = ([range(j * group, min(n, (j + 1) * group))
                        for j in range(len(tree_groups(n, group)))] if tree else [range(n)])
        self.bound = model.wait_bound if tree else n - 1
        self.waited = [0] * n  # grants to others while k was waiting
        self.max_wait = self.outputs = 0

    def drive(self, rnd, cycle: int) -> None:
        pass

    def sample(self, cycle: int) -> None:
        n, model = len(self.req), self.model
        valid = [r.offering for r in self.req]
        payload = [r.current or 0 for r in self.req]
        ready = [int(r.ready_h.value) for r in self.req]
        assert all(sum(ready[k] for k in leaf) <= 1 for leaf in self.leaves), \
            f"cycle {cycle}: ready {ready} is not one-hot (per leaf)"
        if self.lookahead:  # ready may be offered to a requester that is not valid
            ready = [r & int(v) for r, v in zip(ready, valid)]
        o_valid = int(self.dut.o__valid.value)
        o_payload = int(self.dut.o__payload.value) if o_valid else None
        assert o_valid == int(model.out_valid), \
            f"cycle {cycle}: o.valid {o_valid}, model {model.out_valid}"
        step = model.step(valid, payload, self.out.ready)
        want = [int(k in step.granted) for k in range(n)]
        assert ready == want, (f"cycle {cycle}: valid {[int(v) for v in valid]} "
                               f"o_ready {int(self.out.ready)}: DUT ready {ready}, model {want} "
                               f"(last grant {model.last})")
        if step.output is not None:
            g, d = step.output
            mask = (1 << self.data_bits) - 1
            got = (o_payload >> self.data_bits, o_payload & mask)
            assert got == (g, d), f"cycle {cycle}: output {got}, model {(g, d)}"
            self.outputs += 1
        for k in range(n):
            if valid[k] and k not in step.granted:
                self.waited[k] += len(step.granted)
                self.max_wait = max(self.max_wait, self.waited[k])
        for k in step.granted:
            self.waited[k] = 0


async def _run(dut, n, data_bits, transactions, rnd, phases, lookahead=True,
               group=DEFAULT_GROUP, flat_max=DEFAULT_FLAT_MAX):
    """Requesters with endless random payloads and the output, their stall probabilities
    ``phases[(cycle // 500) % len(phases)] = (p_valid per requester, p_ready)`` (bursts of
    saturation, output stall, trickle ...), checked against the model until ``transactions``
    output transfers; returns (cycles, longest wait in grants)."""
    def phase(cycle):
        return phases[(cycle // 500) % len(phases)]

    requesters = [bench.Source(dut, f"i__{k}", iter(lambda: rnd.getrandbits(data_bits), None),
                               lambda c, k=k: rnd.random() < phase(c)[0][k])
                  for k in range(n)]
    out = bench.Sink(dut, "o", lambda c: rnd.random() < phase(c)[1], keep=False)
    check = _ModelCheck(dut, make_model(n, lookahead, group, flat_max), requesters, out,
                        data_bits, lookahead, group)
    cycles = await bench.run(dut, [check, *requesters, out], rnd,
                             max_cycles=50 * transactions + 1000,
                             until=lambda: check.outputs >= transactions)
    assert check.max_wait <= check.bound, \
        f"a requester waited {check.max_wait} grants (> bound {check.bound})"
    return cycles, check.max_wait


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
    cycles, max_wait = await _run(dut, n, data_bits, transactions, rnd, phases, lookahead,
                                  group, _flat_max(p))
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
