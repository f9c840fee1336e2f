"""Registry of the engine's RTL blocks: the one place that lists them.

:data:`BLOCKS` maps each block's name to a :class:`Block`: its factory (``factory(cfg,
**options) -> wiring.Component`` from the one :class:`~proxima.config.ProximaConfig`), its
golden twin (the functions or classes of ``golden/`` it must equal bit for bit), its cocotb
testbench, and whether the replay of real search traffic (:mod:`proxima.sim.replay`, used
by ``proxima demo``) drives it.  Users:

* ``proxima hdl verilog <block>`` (:mod:`proxima.cli_hdl`): Verilog export;
* ``python -m proxima.fpga.resources``: resource and Fmax reports (with
  :data:`FPGA_OPTIONS`);
* :mod:`proxima.sim.replay`: the blocks with ``replay=True``, built by :func:`build_block`;
* ``docs/ARCHITECTURE.md``: the block table (kept equal to this registry by a test).

Adding a block is one entry in :data:`BLOCKS`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from amaranth.lib import wiring

from proxima.config import ProximaConfig

__all__ = ["BLOCKS", "Block", "FPGA_OPTIONS", "UnknownBlockError", "build_block", "block_names",
           "fpga_options", "golden_twin", "replay_blocks"]


class UnknownBlockError(KeyError):
    """A block name that is not in :data:`BLOCKS`."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def _resolve(path: str) -> Any:
    """``"package.module:attr.attr"`` -> the object."""
    module, _, attr = path.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


def _lazy(module: str, attr: str) -> Callable[..., wiring.Component]:
    """Factory that imports ``module`` and calls ``attr`` (dotted, e.g. ``Cls.from_config``)
    with ``(cfg, **options)``."""

    def factory(cfg: ProximaConfig, **options) -> wiring.Component:
        return _resolve(f"{module}:{attr}")(cfg, **options)

    factory.__qualname__ = f"{module}.{attr}"
    return factory


@dataclass(frozen=True)
class Block:
    """One registered block.

    ``factory(cfg, **options)``: the component (``options`` are implementation choices that
    are not part of the configuration).  ``golden``: its golden twin, as
    ``"module:name"`` paths (:func:`golden_twin` imports them).  ``testbench``: the cocotb
    module that checks its Verilog against the twin.  ``replay``: :mod:`proxima.sim.replay`
    drives it with the traffic of real searches."""

    factory: Callable[..., wiring.Component]
    golden: tuple[str, ...]
    testbench: str
    replay: bool = False


_G = "proxima.golden"
_TB = "proxima.sim.tb"

#: name -> :class:`Block`.  The golden twins whose module does not carry the block's name:
#: exact -> ``golden/distance``, gapdec -> ``golden/layout``, pagecache ->
#: ``golden/field/trace``, engine -> ``golden/search``.
BLOCKS: dict[str, Block] = {
    "sorter": Block(_lazy("proxima.hdl.sorter", "BitonicSorter"),
                    (f"{_G}.sorter:sort_keys",), f"{_TB}.tb_sorter", replay=True),
    "arbiter": Block(_lazy("proxima.hdl.arbiter", "RoundRobinArbiter.from_config"),
                     (f"{_G}.arbiter:arbiter_model",), f"{_TB}.tb_arbiter"),
    "bloom": Block(_lazy("proxima.hdl.bloom", "BloomFilter.from_config"),
                   (f"{_G}.bloom:BloomFilter",), f"{_TB}.tb_bloom", replay=True),
    "pq": Block(_lazy("proxima.hdl.pq", "PQUnit.from_config"),
                (f"{_G}.pq:build_adt", f"{_G}.pq:pq_distances"), f"{_TB}.tb_pq", replay=True),
    "exact": Block(_lazy("proxima.hdl.exact", "ExactDistanceUnit"),
                   (f"{_G}.distance:exact_distances",), f"{_TB}.tb_exact", replay=True),
    "gapdec": Block(_lazy("proxima.hdl.gapdec", "GapDecoder"),
                    (f"{_G}.layout:decode_frame", f"{_G}.layout:decode_hot_frame"),
                    f"{_TB}.tb_gapdec", replay=True),
    "candidates": Block(_lazy("proxima.hdl.candidates", "CandidateListRTL.from_config"),
                        (f"{_G}.candidates:CandidateList",), f"{_TB}.tb_candidates"),
    "pagecache": Block(_lazy("proxima.hdl.pagecache", "PageCache"),
                       (f"{_G}.field.trace:PageCacheModel",), f"{_TB}.tb_pagecache",
                       replay=True),
    "nandctl": Block(_lazy("proxima.hdl.nandctl", "NandController.from_config"),
                     (f"{_G}.nandctl:NandControllerModel",), f"{_TB}.tb_nandctl"),
    # the search engine top, for the preset's nominal image geometry (see its docstring)
    "engine": Block(_lazy("proxima.hdl.engine", "SearchEngine.from_config"),
                    (f"{_G}.search:search",), f"{_TB}.tb_engine"),
    # many queries in flight over the shared NAND path (nominal geometry, empty store)
    "accel": Block(_lazy("proxima.hdl.accel", "Accelerator.from_config"),
                   (f"{_G}.search:search", f"{_G}.nandctl:NandControllerModel"),
                   f"{_TB}.tb_accel"),
}


#: name -> constructor options that the FPGA measurement (``python -m proxima.fpga.resources``)
#: uses unless ``--option`` gives them: the implementation choices meant for the ECP5 device.
#: :func:`build_block` (simulation, Verilog export, cocotb) does not apply them, so those keep
#: the portable defaults (e.g. the PQ unit's generic Amaranth RAM, which any simulator runs).
FPGA_OPTIONS: dict[str, dict] = {
    # DP16KD with its output register (proxima.hdl.lib.vendor.BlockRAM); docs/RESOURCES.md
    "pq": {"bram": "ecp5"},
    # the Bloom filter's banks in block RAM (cycle-identical to the LUT-RAM banks)
    "engine": {"pq_options": {"bram": "ecp5"}, "bloom_options": {"ram": "block"}},
    "accel": {"pq_options": {"bram": "ecp5"}, "bloom_options": {"ram": "block"}},
}


def fpga_options(name: str, options: dict | None = None) -> dict:
    """The constructor options of block ``name`` on the FPGA-measurement path: ``options``
    (explicit, they win) completed with :data:`FPGA_OPTIONS`."""
    effective = dict(options or {})
    for key, value in FPGA_OPTIONS.get(name, {}).items():
        effective.setdefault(key, value)
    return effective


def block_names() -> list[str]:
    return sorted(BLOCKS)


def replay_blocks() -> tuple[str, ...]:
    """The blocks the replay of search traffic drives, in registry order."""
    return tuple(name for name, b in BLOCKS.items() if b.replay)


def _block(name: str) -> Block:
    try:
        return BLOCKS[name]
    except KeyError:
        raise UnknownBlockError(
            f"unknown HDL block {name!r}; registered blocks: {', '.join(block_names())}"
        ) from None


def golden_twin(name: str) -> list[Any]:
    """The golden functions / classes of block ``name`` (imported)."""
    return [_resolve(path) for path in _block(name).golden]


def build_block(name: str, cfg: ProximaConfig, **options) -> wiring.Component:
    """Elaborate-ready component for block ``name`` under configuration ``cfg``.

    ``options`` go to the block's constructor as keyword arguments (implementation
    choices that are not part of the configuration, e.g. the sorter's ``stages_per_reg``).
    Only these are applied: the FPGA defaults of :data:`FPGA_OPTIONS` are added by the
    measurement (:func:`fpga_options`), not here.
    """
    return _block(name).factory(cfg, **options)
