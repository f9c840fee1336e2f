"""Shared pieces of the cocotb testbenches in ``sim/tb/``: clock and reset, stream drive and
capture with random stalls, payload fields, and the golden comparison.

Every testbench drives the Verilog that Amaranth writes for one block, so the ports follow
Amaranth's naming: a stream ``s`` is the three signals ``s__valid``, ``s__ready`` and
``s__payload`` (a packed integer), the clock is ``clk`` and the reset ``rst``.

* :func:`setup`, :func:`generators`, :func:`stall_probabilities`, :func:`random_query`: the
  configuration and parameters, the seeded random generators, the stall probabilities of
  the test parameters, test queries.
* :func:`reset` starts a 10 ns clock and holds ``rst`` for three cycles with every input
  stream idle (``valid`` and ``payload`` 0) and every output stream not ready.
* :func:`run` advances the clock cycle by cycle and, in each cycle, lets its *agents*
  drive their inputs (before the clock edge's ``ReadOnly`` phase) and then sample the
  handshakes (in ``ReadOnly``), until all are done.  :class:`Source` offers a list of beats
  on an input stream and holds each until it is accepted (stream rule); :class:`Sink`
  takes beats from an output stream.  Both stall at random: a source starts to offer its
  next beat with probability ``p`` in each idle cycle, a sink is ready with probability
  ``p`` in each cycle (``p >= 1``: always, with no random draw; ``p`` may also be a
  function of the cycle number).  :func:`pump` runs one source and one sink.  A testbench
  with other ports (a memory, a store) adds an agent of its own: any object with
  ``drive(rnd, cycle)``, ``sample(cycle)`` and ``done``; :class:`Probe` only watches.
* :class:`Scoreboard` compares the transactions of one stream, in order, with the golden
  model's as they arrive (a sink's ``check``) and checks their number at the end;
  :func:`compare` does the same for a list captured before comparing, :func:`mismatches`
  lists every difference (the replay counts them).
* :func:`fields`, :func:`unpack` and :func:`pack` convert packed payloads from and to the
  fields of an Amaranth ``StructLayout``.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Iterable, Mapping, Sequence

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["CLOCK_NS", "RESET_CYCLES", "setup", "generators", "stall_probabilities",
           "random_query", "reset", "chance", "Source", "Sink", "Probe", "run", "pump",
           "Scoreboard", "mismatches", "compare", "fields", "unpack", "pack"]

CLOCK_NS = 10
RESET_CYCLES = 3


def setup(offset: int = 0):
    """``(cfg, params, rnd, rng)``: the configuration and test parameters passed by
    ``run_cocotb`` and :func:`generators` ``(offset)``."""
    from proxima.sim.runner import tb_config, tb_params
    return (tb_config(), tb_params(), *generators(offset))


def generators(offset: int = 0) -> tuple[random.Random, np.random.Generator]:
    """``random.Random`` (stalls) and numpy ``Generator`` (data), both seeded with cocotb's
    seed plus ``offset`` (the seed ``run_cocotb`` prints)."""
    seed = cocotb.RANDOM_SEED + offset
    return random.Random(seed), np.random.default_rng(seed)


def stall_probabilities(params: Mapping[str, Any], default: float = 0.7) -> tuple[float, float]:
    """``(p_valid, p_ready)`` from the test parameters."""
    return float(params.get("p_valid", default)), float(params.get("p_ready", default))


def random_query(cfg, rng: np.random.Generator, index: int = 0) -> np.ndarray:
    """A query vector: random elements, but all zeros for ``index`` 1 and all maxima for
    ``index`` 2 (the extremes of the arithmetic)."""
    q = rng.integers(0, cfg.vec.elem_max + 1, size=cfg.vec.dim)
    if index == 1:
        q[:] = 0
    elif index == 2:
        q[:] = cfg.vec.elem_max
    return q


def _handle(dut, name: str):
    return getattr(dut, name)


async def reset(dut, inputs: Iterable[str] = (), outputs: Iterable[str] = (),
                signals: Mapping[str, int] | None = None, cycles: int = RESET_CYCLES):
    """Start ``dut.clk`` and hold ``dut.rst`` high for ``cycles`` cycles.

    ``inputs``: input streams set idle (``valid`` and ``payload`` 0); ``outputs``: output
    streams set not ready; ``signals``: other inputs and their values during and after the
    reset."""
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    dut.rst.value = 1
    for s in inputs:
        _handle(dut, f"{s}__valid").value = 0
        _handle(dut, f"{s}__payload").value = 0
    for s in outputs:
        _handle(dut, f"{s}__ready").value = 0
    for name, value in (signals or {}).items():
        _handle(dut, name).value = value
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


Gate = float | Callable[[int], bool]


def chance(gate: Gate, rnd: random.Random | None, cycle: int) -> bool:
    """One stall decision: ``gate`` is a probability (``>= 1``: always, no draw) or a
    function of the cycle number."""
    if callable(gate):
        return bool(gate(cycle))
    if gate >= 1.0:
        return True
    return rnd.random() < gate


class Source:
    """Offers ``beats`` (packed payloads) on input stream ``name``, one at a time, each held
    until accepted; starts to offer the next with probability ``p`` per idle cycle.
    ``beats`` may be an endless iterable (the source is then never done).

    ``accept_cycles``: the cycle in which each beat was accepted.  Subclasses with other
    handshake signals override :meth:`present`, :meth:`set_valid` and :meth:`accepted`."""

    def __init__(self, dut, name: str, beats: Iterable[Any], p: Gate = 1.0):
        self.dut, self.name, self.p = dut, name, p
        self.valid_h = _handle(dut, f"{name}__valid")
        self.payload_h = _handle(dut, f"{name}__payload")
        self.ready_h = _handle(dut, f"{name}__ready")
        # a sequence is offered as it is; any other iterable (e.g. an endless generator of
        # random payloads) is drawn from when a beat starts to be offered
        self.beats = list(beats) if isinstance(beats, Sequence) else []
        self._more = None if isinstance(beats, Sequence) else iter(beats)
        self.sent = 0
        self.offering = False
        self.accept_cycles: list[int] = []

    # -- port access (override for other handshakes) --
    def present(self, beat) -> None:
        self.payload_h.value = beat

    def set_valid(self, offering: bool) -> None:
        self.valid_h.value = int(offering)

    def accepted(self) -> bool:
        return bool(int(self.ready_h.value))

    # -- agent protocol --
    def drive(self, rnd, cycle: int) -> None:
        if not self.offering and not self.done and chance(self.p, rnd, cycle):
            if self.sent == len(self.beats):
                try:
                    self.beats.append(next(self._more))
                except StopIteration:
                    self._more = None
            self.offering = self.sent < len(self.beats)
            if self.offering:
                self.present(self.beats[self.sent])
        self.set_valid(self.offering)

    def sample(self, cycle: int) -> None:
        if self.offering and self.accepted():
            self.took(self.beats[self.sent], cycle)
            self.sent += 1
            self.offering = False

    def took(self, beat, cycle: int) -> None:
        self.accept_cycles.append(cycle)

    def stop(self) -> None:
        self.set_valid(False)

    @property
    def done(self) -> bool:
        return self._more is None and self.sent >= len(self.beats)

    @property
    def current(self):
        """The beat on offer (``None`` when not offering)."""
        return self.beats[self.sent] if self.offering else None

    def status(self) -> str:
        return f"{self.name}: {self.sent}/{len(self.beats)} beats sent"


class Sink:
    """Takes beats from output stream ``name``, ready with probability ``p`` per cycle.

    ``limit``: take at most this many beats (``ready`` stays low after them) and be done
    then; ``check``: called with each beat (after ``unpack``), e.g. a :class:`Scoreboard`,
    and the sink is done when the check is; ``keep``: store the beats in ``beats`` (their
    cycles in ``cycles`` always)."""

    def __init__(self, dut, name: str, p: Gate = 1.0, *, limit: int | None = None,
                 check: Callable[[Any], None] | None = None,
                 unpack: Callable[[int], Any] | None = None, keep: bool = True):
        self.dut, self.name, self.p, self.limit = dut, name, p, limit
        self.check, self.unpack, self.keep = check, unpack, keep
        self.valid_h = _handle(dut, f"{name}__valid")
        self.payload_h = _handle(dut, f"{name}__payload")
        self.ready_h = _handle(dut, f"{name}__ready")
        self.beats: list[Any] = []
        self.cycles: list[int] = []
        self.ready = False

    def drive(self, rnd, cycle: int) -> None:
        full = self.limit is not None and len(self.cycles) >= self.limit
        self.ready = not full and chance(self.p, rnd, cycle)
        self.ready_h.value = int(self.ready)

    def sample(self, cycle: int) -> None:
        if self.ready and int(self.valid_h.value):
            beat = int(self.payload_h.value)
            if self.unpack is not None:
                beat = self.unpack(beat)
            if self.check is not None:
                self.check(beat)
            if self.keep:
                self.beats.append(beat)
            self.cycles.append(cycle)

    def stop(self) -> None:
        self.ready_h.value = 0

    @property
    def done(self) -> bool:
        if self.limit is not None:
            return len(self.cycles) >= self.limit
        if self.check is not None:
            return bool(getattr(self.check, "done", True))
        return True

    def status(self) -> str:
        want = self.limit if self.limit is not None else \
            len(getattr(self.check, "expected", ())) or "?"
        return f"{self.name}: {len(self.cycles)}/{want} beats taken"


class Probe:
    """An agent that only watches: calls ``sample(cycle)`` in each cycle's ``ReadOnly``
    phase (e.g. to note a status flag or the current cycle)."""

    done = True

    def __init__(self, sample: Callable[[int], None]):
        self.sample = sample

    def drive(self, rnd, cycle: int) -> None:
        pass


async def run(dut, agents: Sequence[Any], rnd: random.Random | None = None, *,
              max_cycles: int | None = None, cycles: int | None = None,
              until: Callable[[], bool] | None = None, stop: bool = True) -> int:
    """Clock ``agents`` until every one is done (or ``until()`` holds, or for exactly
    ``cycles`` cycles); returns the number of cycles.  Each cycle: every agent's
    ``drive(rnd, cycle)`` in order, ``ReadOnly``, every agent's ``sample(cycle)`` in order,
    the clock edge.  More than ``max_cycles`` cycles is a timeout (an ``AssertionError``
    naming each agent's progress).  ``stop``: afterwards the sources stop offering and the
    sinks stop taking."""
    cycle = 0
    if cycles is not None:
        max_cycles = cycles if max_cycles is None else max_cycles
        done = lambda: cycle >= cycles  # noqa: E731
    elif until is not None:
        done = until
    else:
        done = lambda: all(a.done for a in agents)  # noqa: E731
    if max_cycles is None:
        raise ValueError("run() needs max_cycles or cycles")
    while not done():
        if cycle >= max_cycles:
            progress = "; ".join(a.status() for a in agents if hasattr(a, "status"))
            raise AssertionError(f"timeout after {cycle} cycles: {progress}")
        for a in agents:
            a.drive(rnd, cycle)
        await ReadOnly()
        for a in agents:
            a.sample(cycle)
        await RisingEdge(dut.clk)
        cycle += 1
    if stop:
        for a in agents:
            if hasattr(a, "stop"):
                a.stop()
    return cycle


async def pump(dut, src, beats, dst, n_out, p_valid, p_ready, rnd, max_cycles):
    """Send ``beats`` on stream ``src`` while taking ``n_out`` beats from ``dst`` (either may
    be ``None``), both with random stalls.  Returns (output beats, accept cycles, output
    cycles)."""
    agents = []
    source = sink = None
    if src is not None:
        source = Source(dut, src, beats, p_valid)
        agents.append(source)
    if dst is not None:
        sink = Sink(dut, dst, p_ready, limit=n_out)
        agents.append(sink)
    await run(dut, agents, rnd, max_cycles=max_cycles)
    return (sink.beats if sink else [], source.accept_cycles if source else [],
            sink.cycles if sink else [])


class Scoreboard:
    """The golden transactions of one stream, compared in order with what the DUT gives.

    Calling it with a transaction compares it with the next expected one and raises an
    ``AssertionError`` (``"<what> <index>: got <g>, golden <e>"``, or ``explain(index,
    got, expected)``) at the first difference or at a transaction beyond the expected
    ones; :meth:`finish` checks that all arrived.  ``done``: every expected one arrived."""

    def __init__(self, expected: Iterable[Any], what: str = "transaction",
                 explain: Callable[[int, Any, Any], str] | None = None):
        self.expected = list(expected)
        self.what, self.explain = what, explain
        self.count = 0

    def __call__(self, got) -> None:
        k = self.count
        exp = self.expected[k] if k < len(self.expected) else None
        if k >= len(self.expected) or got != exp:
            if self.explain is not None:
                raise AssertionError(self.explain(k, got, exp))
            raise AssertionError(f"{self.what} {k}: got {got}, golden "
                                 f"{exp if k < len(self.expected) else 'nothing'}")
        self.count += 1

    @property
    def done(self) -> bool:
        return self.count >= len(self.expected)

    def finish(self) -> None:
        if self.count != len(self.expected):
            raise AssertionError(f"{self.what}: {self.count} transactions, golden has "
                                 f"{len(self.expected)}")


def mismatches(got: Sequence[Any], expected: Sequence[Any], what: str = "transaction",
               explain: Callable[[int, Any, Any], str] | None = None) -> list[str]:
    """One line per transaction of ``got`` that differs from ``expected`` (in order), and per
    one missing or extra (``None`` on the side that lacks it)."""
    def line(k, g, e):
        return explain(k, g, e) if explain is not None else f"{what} {k}: got {g}, golden {e}"

    out = [line(k, g, e) for k, (g, e) in enumerate(zip(got, expected)) if g != e]
    for k in range(min(len(got), len(expected)), max(len(got), len(expected))):
        out.append(line(k, got[k] if k < len(got) else None,
                        expected[k] if k < len(expected) else None))
    return out


def compare(got: Sequence[Any], expected: Sequence[Any], what: str = "transaction",
            explain: Callable[[int, Any, Any], str] | None = None) -> None:
    """Every transaction of ``got`` equals ``expected``'s, in order, and the counts agree
    (checked first); an ``AssertionError`` names the first difference."""
    if len(got) != len(expected):
        raise AssertionError(f"{what}: {len(got)} transactions, golden has {len(expected)}")
    bad = mismatches(got, expected, what, explain)
    if bad:
        raise AssertionError(bad[0])


def fields(layout) -> dict[str, tuple[int, int]]:
    """``{name: (offset, width)}`` of an Amaranth ``StructLayout`` (a JSON-able port format)."""
    return {name: (f.offset, f.width) for name, f in layout}


def unpack(value: int, fmt, names: Sequence[str] | None = None):
    """The fields of packed ``value``: ``fmt`` a ``StructLayout`` or a :func:`fields` dict;
    a dict of all fields, or the tuple of ``names``."""
    fmt = fmt if isinstance(fmt, Mapping) else fields(fmt)
    value = int(value)

    def get(name):
        off, width = fmt[name]
        return (value >> off) & ((1 << width) - 1)

    if names is None:
        return {name: get(name) for name in fmt}
    return tuple(get(name) for name in names)


def pack(values: Mapping[str, int], fmt) -> int:
    """Inverse of :func:`unpack`: the payload with ``values`` in their fields."""
    fmt = fmt if isinstance(fmt, Mapping) else fields(fmt)
    out = 0
    for name, v in values.items():
        off, width = fmt[name]
        if not 0 <= int(v) < 1 << width:
            raise ValueError(f"field {name} = {v} does not fit in {width} bits")
        out |= int(v) << off
    return out
