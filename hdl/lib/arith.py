"""Arithmetic pieces: constant divmod, pipelined adder tree, ``|x - y|`` and the LUT squarer
(no DSP block), all enable-free pipelines of reset-less registers."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Signal
from amaranth.utils import ceil_log2, exact_log2

from .logic import pipe_reg

__all__ = ["divmod_const", "tree_depth", "pipelined_tree", "abs_diff_stage",
           "square_stages", "square_pipeline"]


def divmod_const(x, d: int):
    """Unsigned ``(x // d, x % d)`` by a constant ``d``: bit slices when ``d`` is a power of
    two, Amaranth's constant division otherwise."""
    d = int(d)
    if d < 1:
        raise ValueError(f"divisor must be >= 1, got {d}")
    if d & (d - 1) == 0:
        k = exact_log2(d)
        return x >> k, x[:k] if k else Const(0, 1)
    return x // d, x % d


def tree_depth(n: int) -> int:
    """Adder levels of a balanced tree over ``n`` inputs (0 for one input)."""
    return ceil_log2(max(1, int(n)))


def pipelined_tree(m, values, name: str, levels_per_stage: int = 1, enable=None):
    """Balanced adder tree with a register after every ``levels_per_stage`` adder levels (and
    after the last); each sum is one bit wider than its widest operand (no overflow).
    ``enable`` (optional) gates every register.  Returns ``(sum, register stages)``; a
    single input comes back as is, with 0 stages."""
    values = list(values)
    stages = 0
    while len(values) > 1:
        for _ in range(levels_per_stage):
            if len(values) > 1:
                sums = [values[i] + values[i + 1] for i in range(0, len(values) - 1, 2)]
                if len(values) % 2:
                    sums.append(values[-1])
                values = sums
        regs = [Signal(len(v), name=f"{name}{stages}_{i}", reset_less=True)
                for i, v in enumerate(values)]
        assigns = [r.eq(v) for r, v in zip(regs, values)]
        if enable is None:
            m.d.sync += assigns
        else:
            with m.If(enable):
                m.d.sync += assigns
        values = regs
        stages += 1
    return values[0], stages


def abs_diff_stage(m, x, y, width: int, name: str):
    """Register ``|x - y|`` of two unsigned ``width``-bit values (one stage: both differences
    in parallel, the borrow of ``x - y`` picks the result)."""
    d_xy = Signal(width + 1, name=f"{name}_xy")
    d_yx = Signal(width, name=f"{name}_yx")
    m.d.comb += [d_xy.eq(x - y), d_yx.eq(y - x)]
    return pipe_reg(m, Mux(d_xy[width], d_yx, d_xy[:width]), width, name)


def _table(m, v, width: int, func, out_width: int, name: str):
    """``func(v)`` of a small unsigned ``v`` as a truth table (sum of minterms per output
    bit): synthesis builds LUTs, never a multiplier."""
    out = Signal(out_width, name=name)
    bits = []
    for j in range(out_width):
        ones = [i for i in range(1 << width) if (func(i) >> j) & 1]
        bits.append(Cat(*(v == i for i in ones)).any() if ones else 0)
    m.d.comb += out.eq(Cat(*bits))
    return out


def square_stages(width: int) -> int:
    """Register stages of :func:`square_pipeline` for a ``width``-bit input."""
    if width < 2:
        return 1
    return 1 + max(0, tree_depth(width - width // 2) - 1) + 1


def square_pipeline(m, a, width: int, name: str):
    """``a**2`` of the unsigned ``width``-bit ``a`` in LUT logic, registered after
    :func:`square_stages` ``(width)`` enable-free stages.

    ``a = h * 2**k + l`` (``k = width // 2``); ``a**2 = ((h**2 << 2k) | l**2) + (h * l << (k +
    1))``.  Stage 1 registers ``h**2`` and ``l**2`` (truth tables) and the first level of the
    shift-and-add of ``h * l``; each further stage adds one level; the last stage adds
    ``h * l << (k + 1)`` to the concatenation."""
    if width < 2:  # 0 or 1: the square is the value
        return pipe_reg(m, a, max(1, width), f"{name}_sq")
    k = width // 2
    hw = width - k
    h, lo = a[k:], a[:k]
    hh = pipe_reg(m, _table(m, h, hw, lambda i: i * i, 2 * hw, f"{name}_hh_t"), 2 * hw,
                  f"{name}_hh")
    ll = pipe_reg(m, _table(m, lo, k, lambda i: i * i, 2 * k, f"{name}_ll_t"), 2 * k,
                  f"{name}_ll")
    rows = [Mux(h[i], lo, 0) << i for i in range(hw)]
    stage = 0
    while True:  # one adder level of the partial products per stage (at least one stage)
        if len(rows) > 1:
            sums = [rows[i] + rows[i + 1] for i in range(0, len(rows) - 1, 2)]
            if len(rows) % 2:
                sums.append(rows[-1])
            rows = sums
        rows = [pipe_reg(m, r, len(r), f"{name}_p{stage}_{i}") for i, r in enumerate(rows)]
        stage += 1
        if stage > 1:
            hh = pipe_reg(m, hh, 2 * hw, f"{name}_hh{stage}")
            ll = pipe_reg(m, ll, 2 * k, f"{name}_ll{stage}")
        if len(rows) == 1:
            break
    sq = pipe_reg(m, Cat(ll, hh) + (rows[0] << (k + 1)), 2 * width, f"{name}_sq")
    assert stage + 1 == square_stages(width)
    return sq
