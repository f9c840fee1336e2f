"""Proxima: a near-storage graph ANN search accelerator.

Sub-packages: ``proxima.golden`` (numpy golden model, the executable spec),
``proxima.hdl`` (Amaranth RTL), ``proxima.sim`` (cocotb verification harness),
``proxima.fpga`` (board tops, host link, driver).  ``proxima.config`` holds the one
configuration object every part is elaborated from.
"""

from .config import ConfigError, ProximaConfig, preset

__all__ = ["ConfigError", "ProximaConfig", "preset"]
__version__ = "0.1.0"
