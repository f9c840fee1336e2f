"""Registry of the engine's RTL blocks: ``BLOCKS[name](cfg) -> wiring.Component``.

Adding a block is one line in :data:`BLOCKS` (a factory taking the one
:class:`~proxima.config.ProximaConfig`).  The CLI (``proxima hdl verilog <block>``) and the
resource report (``python -m proxima.fpga.resources``) list and build blocks from here.
"""

from __future__ import annotations

import importlib
from typing import Callable

from amaranth.lib import wiring

from proxima.config import ProximaConfig

__all__ = ["BLOCKS", "FPGA_OPTIONS", "UnknownBlockError", "build_block", "block_names",
           "fpga_options"]


class UnknownBlockError(KeyError):
    """A block name that is not in :data:`BLOCKS`."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def _lazy(module: str, attr: str) -> Callable[[ProximaConfig], wiring.Component]:
    """Factory that imports ``module`` and calls ``attr`` (dotted, e.g. ``Cls.from_config``)."""

    def factory(cfg: ProximaConfig, **options) -> wiring.Component:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj(cfg, **options)

    factory.__qualname__ = f"{module}.{attr}"
    return factory


#: name -> factory(cfg).  One line per block: a ``_lazy(module, callable)`` or any callable.
BLOCKS: dict[str, Callable[[ProximaConfig], wiring.Component]] = {
    "sorter": _lazy("proxima.hdl.sorter", "BitonicSorter"),
    "arbiter": _lazy("proxima.hdl.arbiter", "RoundRobinArbiter.from_config"),
    "bloom": _lazy("proxima.hdl.bloom", "BloomFilter.from_config"),
    "pq": _lazy("proxima.hdl.pq", "PQUnit.from_config"),
    "exact": _lazy("proxima.hdl.exact", "ExactDistanceUnit"),
    "gapdec": _lazy("proxima.hdl.gapdec", "GapDecoder"),
    "candidates": _lazy("proxima.hdl.candidates", "CandidateListRTL.from_config"),
    "pagecache": _lazy("proxima.hdl.pagecache", "PageCache.from_config"),
    "nandctl": _lazy("proxima.hdl.nandctl", "NandController.from_config"),
    # the search engine top, for the preset's nominal image geometry (see its docstring)
    "engine": _lazy("proxima.hdl.engine", "SearchEngine.from_config"),
}


#: name -> constructor options that the FPGA measurement (``python -m proxima.fpga.resources``)
#: uses unless ``--option`` gives them: the implementation choices meant for the ECP5 device.
#: :func:`build_block` (simulation, Verilog export, cocotb) does not apply them, so those keep
#: the portable defaults (e.g. the PQ unit's generic Amaranth RAM, which any simulator runs).
FPGA_OPTIONS: dict[str, dict] = {
    # DP16KD with its output register (proxima.hdl.lib.vendor.BlockRAM); docs/RESOURCES.md
    "pq": {"bram": "ecp5"},
    "engine": {"pq_options": {"bram": "ecp5"}},
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


def build_block(name: str, cfg: ProximaConfig, **options) -> wiring.Component:
    """Elaborate-ready component for block ``name`` under configuration ``cfg``.

    ``options`` go to the block's constructor as keyword arguments (implementation
    choices that are not part of the configuration, e.g. the sorter's ``stages_per_reg``).
    Only these are applied: the FPGA defaults of :data:`FPGA_OPTIONS` are added by the
    measurement (:func:`fpga_options`), not here.
    """
    try:
        factory = BLOCKS[name]
    except KeyError:
        raise UnknownBlockError(
            f"unknown HDL block {name!r}; registered blocks: {', '.join(block_names())}"
        ) from None
    return factory(cfg, **options)
