"""Stream driving shared by the cocotb testbenches."""

from __future__ import annotations

from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["pump"]


async def pump(dut, src, beats, dst, n_out, p_valid, p_ready, rnd, max_cycles):
    """Send ``beats`` on stream ``src`` while taking ``n_out`` beats from ``dst``, both with
    random stalls.  Returns (output beats, accept cycles, output cycles)."""
    out, acc_c, out_c = [], [], []
    sent, offering, cycle = 0, False, 0
    while sent < len(beats) or len(out) < n_out:
        if cycle >= max_cycles:
            raise AssertionError(f"timeout on {src}/{dst}: sent {sent}/{len(beats)}, "
                                 f"received {len(out)}/{n_out}")
        if src is not None:
            if not offering and sent < len(beats) and rnd.random() < p_valid:
                offering = True
                getattr(dut, f"{src}__payload").value = beats[sent]
            getattr(dut, f"{src}__valid").value = int(offering)
        r = dst is not None and len(out) < n_out and rnd.random() < p_ready
        if dst is not None:
            getattr(dut, f"{dst}__ready").value = int(r)
        await ReadOnly()
        if offering and int(getattr(dut, f"{src}__ready").value):
            sent += 1
            offering = False
            acc_c.append(cycle)
        if r and int(getattr(dut, f"{dst}__valid").value):
            out.append(int(getattr(dut, f"{dst}__payload").value))
            out_c.append(cycle)
        await RisingEdge(dut.clk)
        cycle += 1
    if src is not None:
        getattr(dut, f"{src}__valid").value = 0
    if dst is not None:
        getattr(dut, f"{dst}__ready").value = 0
    return out, acc_c, out_c
