"""cocotb testbench of :class:`proxima.hdl.nandctl.NandController` against the cycle model.

Parameters (``PROXIMA_TB_PARAMS``): ``ctl`` (keyword overrides of
:meth:`proxima.golden.nandctl.CtlParams.from_cfg`, the same the DUT was built with),
``image_seed`` (the store image is ``numpy.random.default_rng(image_seed)`` bytes, as in the
pytest side), ``requests``, ``p_valid`` / ``p_ready`` (per-cycle probabilities of starting to
offer the next request / of ``resp.ready``), ``p_bad`` (fraction of bad requests: core, page
or offset out of range), ``external`` (the DUT has the external store port: the
testbench serves it as a synchronous read port from the image), ``skew`` (added to every
expected beat cycle: a non-zero value must make the test fail).

Every request's accept cycle and every response beat's cycle, tag, data and ``last`` are
compared with :meth:`proxima.golden.nandctl.NandControllerModel.run` driven by the same
valid/ready pattern, and so is the final ``error`` flag.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly

from proxima.golden.nandctl import CtlParams, NandControllerModel, Request
from proxima.sim.runner import tb_config, tb_params
from proxima.sim.tb import bench


def store_image(params: CtlParams, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, params.store_bytes, dtype=np.uint8)


def random_requests(params: CtlParams, n: int, rng: np.random.Generator,
                    p_bad: float = 0.0) -> list[Request]:
    """``n`` requests, tags counting modulo ``2**tag_bits``; a ``p_bad`` share is bad (needs
    room in the field widths for the kind of fault drawn, else it stays good)."""
    out = []
    apg = params.page_bytes // params.access_bytes
    for i in range(n):
        tag = i % (1 << params.tag_bits)
        core = int(rng.integers(0, params.cores))
        page = int(rng.integers(0, params.pages))
        off = int(rng.integers(0, apg)) * params.access_bytes
        if rng.random() < p_bad:
            kind = int(rng.integers(0, 3))
            if kind == 0 and params.cores < 1 << params.core_bits:
                core = int(rng.integers(params.cores, 1 << params.core_bits))
            elif kind == 1 and params.pages < 1 << params.page_bits:
                page = int(rng.integers(params.pages, 1 << params.page_bits))
            elif kind == 2 and params.access_bytes > 1:
                off += int(rng.integers(1, params.access_bytes))
        out.append(Request(tag, core, page, off))
    return out


def _pack(layout, req: Request) -> int:
    return bench.pack({n: getattr(req, n) for n in ("tag", "core", "page", "offset")}, layout)


class _Store:
    """The external store port, served as a synchronous read port of ``words``: the word
    addressed in a cycle with ``store_en`` appears after the clock edge."""

    done = True

    def __init__(self, dut, words):
        self.dut, self.words, self.addr = dut, words, None

    def drive(self, rnd, cycle: int) -> None:
        if self.addr is not None:
            self.dut.store_data.value = self.words[self.addr]
            self.addr = None

    def sample(self, cycle: int) -> None:
        if int(self.dut.store_en.value):
            self.addr = int(self.dut.store_addr.value)


@cocotb.test()
async def random_requests_with_stalls(dut):
    """Random requests, valid/ready stalls, store contents: accept and beat cycles, tags,
    data and ``last`` vs the golden cycle model."""
    from proxima.hdl.nandctl import NandController

    cfg = tb_config()
    prm = tb_params()
    kw = dict(prm.get("ctl", {}))
    params = CtlParams.from_cfg(cfg, **kw)
    external = bool(prm.get("external", False))
    req_layout = NandController(cfg, external_store=external, **kw).req_layout
    resp_tag = params.tag_bits
    n = int(prm.get("requests", 1000))
    seed = cocotb.RANDOM_SEED
    rng = np.random.default_rng(seed)
    rnd = random.Random(seed)
    image = store_image(params, int(prm.get("image_seed", 0)))
    reqs = random_requests(params, n, rng, float(prm.get("p_bad", 0.0)))
    packed = [_pack(req_layout, r) for r in reqs]

    model = NandControllerModel(params, image, strict=False)
    pv, pr = float(prm.get("p_valid", 0.7)), float(prm.get("p_ready", 0.7))
    horizon = 1000 + n * (params.service + params.beats) * 8
    offer = [rnd.random() < pv for _ in range(horizon)]
    ready = [rnd.random() < pr for _ in range(horizon)]
    exp = model.run(reqs, offer.__getitem__, ready.__getitem__, max_cycles=horizon)
    skew = int(prm.get("skew", 0))
    exp_beats = [(b.cycle + skew, b.tag, b.data, b.last) for b in exp.beats]

    await bench.reset(dut, inputs=["req"], outputs=["resp"],
                      signals={"store_data": 0} if hasattr(dut, "store_data") else None)
    mask_tag = (1 << resp_tag) - 1
    dshift = resp_tag
    dmask = (1 << params.beat_bits) - 1
    lshift = resp_tag + params.beat_bits
    source = bench.Source(dut, "req", packed, offer.__getitem__)
    sink = bench.Sink(dut, "resp", ready.__getitem__, unpack=lambda v: (
        v & mask_tag, (v >> dshift) & dmask, bool((v >> lshift) & 1)))
    agents = [source, sink] + ([_Store(dut, model.words)] if external else [])
    await bench.run(dut, agents, cycles=exp.cycles + 3)
    await ReadOnly()
    error = bool(int(dut.error.value))
    accept = source.accept_cycles
    beats = [(t, *b) for t, b in zip(sink.cycles, sink.beats)]

    for i, (a, e) in enumerate(zip(accept, exp.accept)):
        if a != e:
            raise AssertionError(f"request {i} {reqs[i]}: accepted in cycle {a}, model {e}")
    assert len(accept) == len(exp.accept) == n, f"{len(accept)} of {n} requests accepted"
    for i, (g, e) in enumerate(zip(beats, exp_beats)):
        if g != e:
            raise AssertionError(f"beat {i}: got (cycle, tag, data, last) = "
                                 f"({g[0]}, {g[1]}, {g[2]:#x}, {g[3]}), model "
                                 f"({e[0]}, {e[1]}, {e[2]:#x}, {e[3]})")
    assert len(beats) == len(exp_beats), f"{len(beats)} beats, model {len(exp_beats)}"
    assert error == exp.error, f"error flag {error}, model {exp.error}"
    dut._log.info("%d requests (%d bad), %d beats, %d cycles, %d completion stalls: all equal "
                  "to the model", n, n - len(exp.done), len(beats), exp.cycles,
                  exp.completion_stalls)
