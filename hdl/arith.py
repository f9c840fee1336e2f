"""Arithmetic idioms shared by the blocks, written so that yosys maps them well on ECP5."""

from __future__ import annotations

__all__ = ["carry_out"]


def carry_out(b, an):
    """``a < b`` for ``an = ~a`` (both ``k`` bits), as the carry out of ``b + an``.

    ``b + (2**k - 1 - a) >= 2**k`` exactly when ``b > a``.  An addition of two registers
    needs no LUT in front of the ECP5 carry chain and none behind it.  Written as ``~an <
    b``, yosys puts an inverter LUT in front of every bit of one operand; written as ``a <=
    b``, ``alumacc`` adds an equality reduction (a LUT tree) behind the chain.  For ``a <=
    b`` pass ``Cat(1, b)`` and ``Cat(1, an)`` (``b + ~a + 1``)."""
    k = len(b)
    assert len(an) == k
    return (b + an)[k]
