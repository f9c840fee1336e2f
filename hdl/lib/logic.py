"""Small combinational and register idioms: OR tree, prefix OR, round-robin pick, one-hot
to binary, thermometer code, pipeline registers and register copies that synthesis keeps
apart."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Signal

__all__ = ["or_tree", "prefix_or", "rr_pick", "onehot_to_binary", "pipe_reg", "reg_chain",
           "register_copies", "thermometer"]


def or_tree(values, width: int = 1):
    """Bitwise OR of ``values`` as a balanced tree (``Const(0, width)`` if empty)."""
    values = list(values)
    if not values:
        return Const(0, width)
    while len(values) > 1:
        values = [values[k] | values[k + 1] if k + 1 < len(values) else values[k]
                  for k in range(0, len(values), 2)]
    return values[0]


def prefix_or(m, x, name: str):
    """``(p, any)``: ``p[k]`` = some bit of ``x`` below ``k`` (``p[0] = 0``), ``any`` = some
    bit of ``x``; plain OR reductions per bit (no carry chain)."""
    n = len(x)
    xs = Signal(n, name=f"{name}_x")
    m.d.comb += xs.eq(x)
    p = Signal(n, name=name)
    m.d.comb += p.eq(Cat(Const(0, 1), *(xs[:k].any() for k in range(1, n))))
    return p, xs.any()


def rr_pick(m, v, above_last, pv, name: str):
    """Round-robin pick over the valid bits ``v`` given the thermometer ``above_last`` (bits
    strictly above the last grant) and ``pv`` = :func:`prefix_or` of ``v``.

    Returns ``(one-hot pick, bits strictly above the pick)``, both meaningless when ``v`` is
    zero.  The pick is the lowest valid bit above ``last`` if there is one, else the lowest
    valid bit: :func:`proxima.golden.arbiter.round_robin_pick`.  Prefix ORs only:
    ``pick[k] = v[k] & (above_last[k] ? no valid bit above last below k : no valid bit below
    k and none above last)``."""
    n = len(v)
    pa, any_a = prefix_or(m, v & above_last, f"{name}_pa")
    oh = Signal(n, name=f"{name}_oh")
    ab = Signal(n, name=f"{name}_above")
    m.d.comb += [
        oh.eq(v & ((above_last & ~pa) | (~above_last & ~pv & ~any_a.replicate(n)))),
        ab.eq(Mux(any_a, pa, pv)),
    ]
    return oh, ab


def onehot_to_binary(onehot, bits: int):
    """Binary index of a one-hot value (``bits`` wide): bit ``b`` is the OR of the positions
    with bit ``b`` set (0 for a zero input)."""
    return Cat(or_tree([onehot[k] for k in range(len(onehot)) if (k >> b) & 1])
               for b in range(bits))


def pipe_reg(m, value, width: int | None = None, name: str | None = None, *, domain="sync"):
    """An enable-free, reset-less register of ``value`` (``width`` bits, default
    ``len(value)``)."""
    r = Signal(len(value) if width is None else width, name=name, reset_less=True)
    m.d[domain] += r.eq(value)
    return r


def reg_chain(m, value, n: int, name: str):
    """``value`` through ``n`` enable-free, reset-less registers in series (the last one;
    ``value`` itself for ``n = 0``)."""
    for i in range(n):
        value = pipe_reg(m, value, name=f"{name}_r{i}")
    return value


def register_copies(m, name: str, nxt, count: int, guard=None, *, enable=None,
                    reset_less: bool = False):
    """``count`` one-bit registers that all hold ``nxt`` of the previous load (every cycle,
    or the cycles with ``enable``), built so that yosys' ``opt_merge`` keeps them apart
    (identical flip-flops would be merged back into one, whatever ``keep`` says).

    * ``guard`` given: copy ``k`` loads ``nxt & ~(q_k & guard)``.  The caller guarantees
      that ``guard`` and a copy at 1 never meet when ``nxt`` matters, so every copy equals
      ``nxt``; each copy's own output in its next state makes it structurally distinct.
    * ``guard=None``: copy ``k`` has the initial value ``k`` (at most two copies); the
      caller guarantees that a copy is never read before its first load.

    Returns the registers (named ``{name}{k}``)."""
    count = int(count)
    if guard is None and count > 2:
        raise ValueError("without a guard at most two register copies can be kept apart "
                         f"(initial values 0 and 1), asked for {count}")
    regs = []
    for k in range(count):
        q = Signal(name=f"{name}{k}", reset_less=reset_less,
                   init=0 if guard is not None else k)
        value = nxt if guard is None else nxt & ~(q & guard)
        if enable is None:
            m.d.sync += q.eq(value)
        else:
            with m.If(enable):
                m.d.sync += q.eq(value)
        regs.append(q)
    return regs


def thermometer(x, n: int):
    """``Cat(x > s for s in range(n))`` as plain AND / OR logic of the bits of ``x`` (no
    comparator cells, which yosys would map to a carry chain per bit)."""
    bits = [x[b] for b in range(len(x))]
    out = []
    for s in range(n):
        if s >> len(bits):
            out.append(Const(0, 1))
            continue
        gt, eq = Const(0, 1), Const(1, 1)
        for b in reversed(range(len(bits))):
            if (s >> b) & 1:
                eq = eq & bits[b]
            else:
                gt = gt | (eq & bits[b])
                eq = eq & ~bits[b]
        out.append(gt)
    return Cat(*out)
