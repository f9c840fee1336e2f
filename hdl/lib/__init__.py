"""Gateware library shared by the blocks of :mod:`proxima.hdl`.

=============================  ==========================================================
module                         contents
=============================  ==========================================================
:mod:`~proxima.hdl.lib.fifo`   stream queues on :mod:`amaranth.lib.fifo` (:class:`Queue`),
                               a two-entry skid buffer with a registered ``ready``
                               (:class:`SkidBuffer`), a register ring for wide entries
                               (:class:`RegisterRing`)
:mod:`~proxima.hdl.lib.logic`  OR tree, prefix OR, round-robin pick, one-hot to binary,
                               pipeline registers, register copies kept apart from
                               yosys' ``opt_merge``
:mod:`~proxima.hdl.lib.arith`  constant divmod, pipelined adder tree, ``|x - y|``, LUT
                               squarer stages
:mod:`~proxima.hdl.lib.vendor` ECP5 pieces with a generic fallback: :class:`BlockRAM`
                               (``impl="generic"`` / ``"ecp5"`` DP16KD, selected
                               explicitly) and the carry-chain compare :func:`carry_out`
=============================  ==========================================================

Widths and logarithms come from :mod:`amaranth.utils` (``ceil_log2``, ``exact_log2``,
``bits_for``).  Every piece has a unit test in ``tests/hdl/test_lib.py``.
"""
