"""Cycle-level model of the NAND controller (the spec of :mod:`proxima.hdl.nandctl`).

The controller takes access requests on one stream, queues them per NAND core, lets every
core spend the NAND service time on its head request, and returns each access's bytes from
a backing store as a burst of beats on one response stream.  The RTL's accept and beat
cycles are checked against :meth:`NandControllerModel.step`, so the rules are exact.

Parameters (:class:`CtlParams`, defaults from the configuration)
----------------------------------------------------------------
``cores``      ``C`` = ``nand.cores + nand.raw_vector_cores`` (index cores, then raw cores,
               the numbering of :class:`proxima.golden.layout.Read`).
``depth``      ``D``: entries of each core's request FIFO (default ``engine.queues``).
``service``    cycles one access occupies its core: ``tR_cycles + transfer_cycles`` of
               :class:`proxima.golden.nand.TimingParams` (``from_cfg``; both overridable).
``access_bytes`` ``A`` (``nand.access_bytes``), ``page_bytes`` ``P`` (``nand.page_bytes``).
``pages``      pages per core held by the backing store (power of two, default
               ``nand.pages_per_core``; small in tests).  The request's page field is
               ``clog2(nand.pages_per_core)`` bits wide regardless.
``beat_bits``  width of a response beat (power of two, ``8 .. 8A``; default: the shared
               memory path's width, :func:`path_word_bits`).
               ``nb = 8A / beat_bits`` beats per access.
``tag_bits``   request tag width (default: enough to number every request the controller
               can hold, ``clog2(C * (D + 2) + 1)``).
``read_latency`` ``L`` (``engine.store_latency``, 1..3): stages of the store read
               pipeline, from the engine's load to the output register (rule 2), all
               advancing together.  1: the store's one-cycle read port feeds the output
               register; the RTL registers the store address at ``L >= 2`` and the read
               data at ``L = 3`` (:mod:`proxima.hdl.nandctl`).

Backing store
-------------
``pages * P`` bytes per core, core ``c`` first.  Word ``w`` of the store is the
``beat_bits``-bit little-endian value of store bytes ``[w*bb, (w+1)*bb)``
(``bb = beat_bits / 8``); an access ``(core, page, offset)`` covers words
``word_address = ((core * pages + page) * P + offset) / bb`` up to ``+ nb - 1``.
Beat ``i`` of the response carries word ``word_address + i``.

Requests
--------
``Request(tag, core, page, offset)``, ``offset`` in bytes.  A request is *bad* if
``core >= C``, ``page >= pages`` or ``offset`` is not a multiple of ``A`` below ``P``.  With
``strict=True`` (default) the model raises :class:`NandCtlError` on a bad request; with
``strict=False`` it models the RTL: a bad request is accepted in the cycle it is offered, gets
no response and sets the sticky ``error`` flag.

Events instead of addresses
---------------------------
:func:`requests_for_events` maps tagged search events ``(tag, kind, v)`` to requests through
the layout rules (:func:`proxima.golden.layout.reads_for_events`: core round-robin mapping,
hot frames on consecutive cores, no code read after a hot frame); the RTL twin is
:class:`proxima.hdl.nandctl.NandAddressMapper`, whose output feeds the controller.

Cycle rules
-----------
State at the start of cycle ``t``: per core a FIFO (``<= D`` requests), a service register
(``busy``, ``rem``, the request) and a one-entry *done slot*; the output engine (``active``,
the request being sent, next beat index ``idx``); the read pipeline of ``L`` stages, each
empty or holding a beat, the last of them the output register (``out_valid``, beat);
``last`` = the most recently granted core (initially ``C - 1``).  Inputs of the cycle: the
offered request (``valid`` + payload) and ``out_ready``.  Everything below reads the state at
the start of the cycle; all updates happen together at the clock edge.

1. *Output*: if ``out_valid and out_ready`` the beat in the output register is emitted
   (its emission cycle is ``t``).  ``advance = not out_valid or out_ready``.
2. *Engine* (only if ``advance``): every pipeline stage moves one stage on (the last one into
   the output register) and the engine loads the first stage: if ``active``, beat ``idx`` of
   its request (``last`` flag on beat ``nb - 1``, which also ends ``active``).  Otherwise it
   grants the core ``g = round_robin_pick(done slot full?, last)`` (the rule of
   :func:`proxima.golden.arbiter.round_robin_pick`), empties that done slot, sets
   ``last = g``, loads beat 0 and becomes ``active`` if ``nb > 1``.  With nothing to load the
   first stage empties.  Without ``advance`` nothing moves (the whole pipeline holds: the
   store's read enable is ``advance``).  With ``L = 1`` the first stage is the output
   register.
3. *Cores*: a busy core with ``rem > 1`` counts down.  A busy core with ``rem == 1``
   *completes* if its done slot is empty (at the start of the cycle): the request moves to
   the done slot; otherwise it stalls (output back-pressure delays the completion hand-off
   and keeps the core occupied).  A core that is idle or completes pops its FIFO head (if
   any) in the same cycle and starts it with ``rem = service``.
4. *Input*: the offered request is accepted iff it is bad (``strict=False``) or its core's
   FIFO holds fewer than ``D`` requests at the start of the cycle (a pop in the same cycle
   does not make room until the next one).  It is appended after the pop.

Consequences, with no stalls: a request accepted in cycle ``a`` at an idle, empty core is
popped in ``a + 1``; its *start* (first service cycle) is ``a + 2``; its *done* cycle (first
cycle in the done slot) is ``start + service``; beat ``i`` is emitted at ``done + L + i``
(``done_to_beat``) if the engine is free.  In general ``start = max(accept + ACCEPT_TO_START, free)`` where
``free`` is the done cycle of the core's previous request -- exactly the rule of
:mod:`proxima.golden.nand` (``start = max(arrival, free)``, ``done = start + service``) as
long as no completion stalls (:func:`nand_completion`, tested equal).  With ``nb`` beats per
access the output carries at most one access per ``nb`` cycles; when cores complete faster
than that (or ``out_ready`` is low) done slots stay full and cores stall: a stalled core
completes in the cycle *after* the engine empties its slot (slots are sampled at the start
of the cycle), and the engine, which grants only in a cycle it loads beat 0, leaves one empty
output cycle after a burst if no slot was full at the start of that cycle.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple, Sequence

import numpy as np

from proxima.config import ProximaConfig

from .arbiter import round_robin_pick
from .layout import EVENT_KINDS, Layout, LayoutError, Read, reads_for_events
from .nand import TimingParams

__all__ = ["NandCtlError", "CtlParams", "Request", "Beat", "RunResult", "NandControllerModel",
           "requests_from_reads", "word_address", "store_words", "nand_completion",
           "ACCEPT_TO_START", "DONE_TO_BEAT", "READ_LATENCIES", "check_request", "expected_data",
           "requests_for_events", "default_word_bits", "path_word_bits"]

#: cycles from a request's accept cycle to its earliest first service cycle (FIFO, pop)
ACCEPT_TO_START = 2
#: cycles from a request's done cycle to its first beat's earliest emission with a one-cycle
#: store read (the output register); in general ``CtlParams.done_to_beat`` = ``read_latency``
DONE_TO_BEAT = 1
#: store read latencies the controller supports (``engine.store_latency``)
READ_LATENCIES = (1, 2, 3)


class NandCtlError(ValueError):
    """Bad parameters, image or request for the NAND controller."""


def _clog2(n: int) -> int:
    return max(1, (int(n) - 1).bit_length())


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def default_word_bits(cfg: ProximaConfig) -> int:
    """The NAND data-bus width (the controller's beat, the gap decoder's input word): the
    smallest power of two ``>= 2 * id_bits``, capped at one access (``8 * access_bytes``)."""
    wb = 1 << (2 * cfg.id_bits - 1).bit_length()
    return min(wb, 8 * cfg.nand.access_bytes)


def path_word_bits(cfg: ProximaConfig) -> int:
    """The shared memory path's width (the controller's beat, the store word):
    ``engine.path_bits`` within ``default_word_bits(cfg) .. 8 * nand.access_bytes`` (one
    access; 0 gives :func:`default_word_bits`)."""
    return min(max(default_word_bits(cfg), int(cfg.engine.path_bits)),
               8 * cfg.nand.access_bytes)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise NandCtlError(message)


@dataclass(frozen=True)
class CtlParams:
    cores: int
    depth: int
    service: int
    access_bytes: int
    page_bytes: int
    pages: int
    page_bits: int
    beat_bits: int
    tag_bits: int
    read_latency: int = 1

    def __post_init__(self) -> None:
        _require(self.cores >= 1, f"cores must be >= 1, got {self.cores}")
        _require(self.depth >= 1, f"FIFO depth must be >= 1, got {self.depth}")
        _require(self.service >= 1, f"service cycles must be >= 1, got {self.service}")
        _require(_is_pow2(self.access_bytes) and not self.page_bytes % self.access_bytes,
                 f"access_bytes ({self.access_bytes}) must be a power of two dividing "
                 f"page_bytes ({self.page_bytes})")
        _require(_is_pow2(self.page_bytes),
                 f"page_bytes must be a power of two, got {self.page_bytes}")
        _require(_is_pow2(self.pages) and self.pages <= 1 << self.page_bits,
                 f"store pages per core must be a power of two <= 2**{self.page_bits}, "
                 f"got {self.pages}")
        _require(_is_pow2(self.beat_bits) and 8 <= self.beat_bits <= 8 * self.access_bytes,
                 f"beat_bits must be a power of two in 8..{8 * self.access_bytes}, "
                 f"got {self.beat_bits}")
        _require(self.tag_bits >= 1, f"tag_bits must be >= 1, got {self.tag_bits}")
        _require(self.read_latency in READ_LATENCIES,
                 f"store read latency must be one of {READ_LATENCIES}, got {self.read_latency}")

    @classmethod
    def from_cfg(cls, cfg: ProximaConfig, *, cores: int | None = None,
                 depth: int | None = None, tR_cycles: int | None = None,
                 transfer_cycles: int | None = None, pages: int | None = None,
                 beat_bits: int | None = None, tag_bits: int | None = None,
                 read_latency: int | None = None) -> "CtlParams":
        tp = TimingParams.from_cfg(cfg)
        c = tp.total_cores if cores is None else int(cores)
        d = cfg.engine.queues if depth is None else int(depth)
        tr = tp.tR_cycles if tR_cycles is None else int(tR_cycles)
        tx = tp.transfer_cycles if transfer_cycles is None else int(transfer_cycles)
        if tr < 0 or tx < 0:
            raise NandCtlError(f"tR_cycles and transfer_cycles must be >= 0, got {tr}, {tx}")
        if beat_bits is None:
            beat_bits = path_word_bits(cfg)
        return cls(cores=c, depth=d, service=tr + tx, access_bytes=cfg.nand.access_bytes,
                   page_bytes=cfg.nand.page_bytes,
                   pages=cfg.nand.pages_per_core if pages is None else int(pages),
                   page_bits=_clog2(cfg.nand.pages_per_core), beat_bits=int(beat_bits),
                   tag_bits=_clog2(c * (d + 2) + 1) if tag_bits is None else int(tag_bits),
                   read_latency=cfg.engine.store_latency if read_latency is None
                   else int(read_latency))

    # ---- derived sizes ---------------------------------------------------------------
    @property
    def done_to_beat(self) -> int:
        """Cycles from a done cycle to the first beat's earliest emission: ``L``."""
        return DONE_TO_BEAT + self.read_latency - 1

    @property
    def beat_bytes(self) -> int:
        return self.beat_bits // 8

    @property
    def beats(self) -> int:
        """``nb``: beats per access."""
        return self.access_bytes // self.beat_bytes

    @property
    def core_bits(self) -> int:
        return _clog2(self.cores)

    @property
    def offset_bits(self) -> int:
        return _clog2(self.page_bytes)

    @property
    def words_per_page(self) -> int:
        return self.page_bytes // self.beat_bytes

    @property
    def core_words(self) -> int:
        return self.pages * self.words_per_page

    @property
    def store_words(self) -> int:
        return self.cores * self.core_words

    @property
    def store_bytes(self) -> int:
        return self.store_words * self.beat_bytes

    @property
    def addr_bits(self) -> int:
        return _clog2(self.store_words)


class Request(NamedTuple):
    tag: int
    core: int
    page: int
    offset: int  # bytes


class Beat(NamedTuple):
    cycle: int  # cycle of the transfer (valid and ready high)
    tag: int
    data: int
    last: bool


@dataclass
class RunResult:
    accept: list[int]  # accept cycle per request
    beats: list[Beat]  # every emitted beat in order
    start: dict[int, int]  # request index -> first service cycle (good requests)
    done: dict[int, int]  # request index -> first cycle in the done slot
    cycles: int  # cycles simulated
    error: bool
    completion_stalls: int  # core-cycles lost to a full done slot


def check_request(params: CtlParams, req: Request) -> str | None:
    """Why ``req`` is bad (None if good); fields must also fit their widths."""
    tag, core, page, offset = (int(x) for x in req)
    if not 0 <= tag < 1 << params.tag_bits:
        return f"tag {tag} does not fit {params.tag_bits} bits"
    if not 0 <= page < 1 << params.page_bits or not 0 <= core < 1 << params.core_bits \
            or not 0 <= offset < 1 << params.offset_bits:
        return f"request {tuple(req)} does not fit the request fields"
    if core >= params.cores:
        return f"core {core} out of range 0..{params.cores - 1}"
    if page >= params.pages:
        return f"page {page} out of range 0..{params.pages - 1} (store pages per core)"
    if offset % params.access_bytes:
        return f"offset {offset} is not a multiple of the access size {params.access_bytes}"
    return None


def word_address(params: CtlParams, req: Request) -> int:
    """Store word of beat 0 of the access (module doc)."""
    return ((req.core * params.pages + req.page) * params.page_bytes + req.offset) \
        // params.beat_bytes


def store_words(params: CtlParams, image) -> list[int]:
    """The store as ``store_words`` little-endian ``beat_bits`` words (memory init).

    ``image``: bytes / uint8 array of ``store_bytes`` bytes, or ``(cores, pages * P)`` uint8."""
    img = np.ascontiguousarray(np.asarray(image, dtype=np.uint8)
                               if not isinstance(image, (bytes, bytearray))
                               else np.frombuffer(bytes(image), dtype=np.uint8))
    if img.size != params.store_bytes:
        raise NandCtlError(f"store image has {img.size} bytes, expected {params.store_bytes} "
                           f"({params.cores} cores x {params.pages} pages x "
                           f"{params.page_bytes} B)")
    raw = img.reshape(-1).tobytes()
    bb = params.beat_bytes
    return [int.from_bytes(raw[i:i + bb], "little") for i in range(0, len(raw), bb)]


def requests_from_reads(params: CtlParams, reads: Iterable[Read], first_tag: int = 0
                        ) -> list[Request]:
    """Requests for layout :class:`~proxima.golden.layout.Read` s (the core round-robin
    mapping of :mod:`proxima.golden.layout`), tags ``first_tag, first_tag + 1, ...`` modulo
    ``2**tag_bits``.  Raises on a read that is not one access."""
    out = []
    for i, r in enumerate(reads):
        if r.nbytes != params.access_bytes:
            raise NandCtlError(f"read {r} is {r.nbytes} B, the controller moves one access "
                               f"({params.access_bytes} B)")
        out.append(Request((first_tag + i) % (1 << params.tag_bits), r.core, r.page, r.offset))
    return out


def requests_for_events(params: CtlParams, layout: Layout,
                        events: Iterable[tuple[int, str, int]]) -> list[Request]:
    """Requests for a stream of tagged search events ``(tag, kind, v)``: the reads of
    :func:`proxima.golden.layout.reads_for_events` (the core round-robin mapping, hot frames,
    no code read after a hot frame) of the whole sequence, in order, each carrying its
    event's tag.  The spec of :class:`proxima.hdl.nandctl.NandAddressMapper`."""
    out: list[Request] = []
    after_hot = False
    for tag, kind, v in events:
        if not 0 <= int(tag) < 1 << params.tag_bits:
            raise NandCtlError(f"tag {tag} does not fit {params.tag_bits} bits")
        if kind not in EVENT_KINDS:
            raise LayoutError(f"unknown event kind {kind!r}; expected one of {EVENT_KINDS}")
        # one event at a time, with the hot-frame state carried over
        if kind == "code" and after_hot:
            reads: list[Read] = []
        else:
            reads = reads_for_events([(kind, v)], layout)
        if kind == "frame":
            after_hot = int(v) < layout.hot
        for r in reads:
            if r.nbytes != params.access_bytes:
                raise NandCtlError(f"read {r} is not one access of {params.access_bytes} B")
            out.append(Request(int(tag), r.core, r.page, r.offset))
    return out


def nand_completion(arrivals: Sequence[int], cores: Sequence[int], service: int
                    ) -> tuple[list[int], list[int]]:
    """The per-access rule of :mod:`proxima.golden.nand`: accesses in order, each core in FIFO
    order, ``start = max(arrival, free)``, ``done = start + service``, ``free = done``."""
    free: dict[int, int] = {}
    start, done = [], []
    for a, c in zip(arrivals, cores):
        s = max(int(a), free.get(int(c), 0))
        start.append(s)
        done.append(s + service)
        free[int(c)] = s + service
    return start, done


class NandControllerModel:
    """Cycle-accurate model; call :meth:`step` once per cycle (rules in the module doc)."""

    def __init__(self, params: CtlParams, image=None, *, strict: bool = True):
        self.p = params
        self.strict = strict
        self.words = store_words(params, image) if image is not None \
            else [0] * params.store_words
        C = params.cores
        self.fifo: list[deque] = [deque() for _ in range(C)]
        self.busy = [False] * C
        self.rem = [0] * C
        self.cur: list = [None] * C  # (index, Request)
        self.slot: list = [None] * C
        self.active = False
        self.eng = None  # (index, Request, base word)
        self.idx = 0
        # the read pipeline: pipe[-1] is the output register (None: empty)
        self.pipe: list[tuple[int, int, bool] | None] = [None] * params.read_latency
        self.last = C - 1
        self.error = False
        self.cycle = 0
        self.n_in = 0  # requests accepted so far (their index)
        self.start: dict[int, int] = {}
        self.done: dict[int, int] = {}
        self.completion_stalls = 0

    def _bad(self, req: Request) -> bool:
        why = check_request(self.p, req)
        if why is not None and (self.strict or "does not fit" in why):
            raise NandCtlError(f"bad request: {why}")
        return why is not None

    @property
    def out_valid(self) -> bool:
        return self.pipe[-1] is not None

    def ready(self, req: Request) -> bool:
        """``req.ready`` in this cycle if ``req`` is offered."""
        return self._bad(req) or len(self.fifo[req.core]) < self.p.depth

    def _beat(self, base: int, i: int, tag: int) -> tuple[int, int, bool]:
        return (tag, self.words[base + i], i == self.p.beats - 1)

    def step(self, req: Request | None, out_ready: bool) -> tuple[bool, Beat | None]:
        """One cycle: ``req`` offered (None: valid low), ``out_ready``.
        Returns (request accepted, beat emitted in this cycle or None)."""
        p, t = self.p, self.cycle
        # 1. output
        emitted = None
        if self.out_valid and out_ready:
            emitted = Beat(t, *self.pipe[-1])
        advance = not self.out_valid or out_ready
        # input decision uses the start-of-cycle FIFO levels
        accepted, bad = False, False
        if req is not None:
            req = Request(*(int(x) for x in req))
            bad = self._bad(req)
            accepted = bad or len(self.fifo[req.core]) < p.depth
        # 2. engine
        full = [s is not None for s in self.slot]
        take = None
        if advance:
            load = None
            if self.active:
                _, r, base = self.eng
                load = self._beat(base, self.idx, r.tag)
                self.idx += 1
                if self.idx == p.beats:
                    self.active = False
            else:
                g = round_robin_pick(full, self.last)
                if g is not None:
                    take = g
                    k, r = self.slot[g]
                    base = word_address(p, r)
                    self.last = g
                    load = self._beat(base, 0, r.tag)
                    if p.beats > 1:
                        self.active, self.eng, self.idx = True, (k, r, base), 1
            self.pipe = [load] + self.pipe[:-1]
        # 3. cores
        new_slot = list(self.slot)
        if take is not None:
            new_slot[take] = None
        for c in range(p.cores):
            free_now = not self.busy[c]
            if self.busy[c]:
                if self.rem[c] > 1:
                    self.rem[c] -= 1
                elif not full[c]:
                    new_slot[c] = self.cur[c]
                    self.done[self.cur[c][0]] = t + 1
                    self.busy[c] = False
                    free_now = True
                else:
                    self.completion_stalls += 1
            if free_now and self.fifo[c]:
                self.cur[c] = self.fifo[c].popleft()
                self.busy[c], self.rem[c] = True, p.service
                self.start[self.cur[c][0]] = t + 1
        self.slot = new_slot
        # 4. input
        if accepted:
            if bad:
                self.error = True
            else:
                self.fifo[req.core].append((self.n_in, req))
            self.n_in += 1
        self.cycle += 1
        return accepted, emitted

    def idle(self) -> bool:
        return not (any(b is not None for b in self.pipe) or self.active or any(self.busy)
                    or any(s is not None for s in self.slot) or any(self.fifo))

    def run(self, requests: Sequence[Request], offer: Callable[[int], bool] | None = None,
            out_ready: Callable[[int], bool] | None = None, max_cycles: int | None = None
            ) -> RunResult:
        """Drive ``requests`` in order and run until every response is out.

        Driver rule (the cocotb testbench uses the same): in cycle ``t``, if no request is
        being offered and some are left, the next one is offered iff ``offer(t)``; an offered
        request stays offered (valid high) until accepted.  ``out_ready(t)`` is the output's
        ready in cycle ``t``.  Both default to always true."""
        offer = offer or (lambda t: True)
        out_ready = out_ready or (lambda t: True)
        n = len(requests)
        good = sum(check_request(self.p, Request(*r)) is None for r in requests)
        if max_cycles is None:
            max_cycles = 1000 + (n + 1) * (self.p.service + self.p.beats) * 8
        accept: list[int] = []
        beats: list[Beat] = []
        nxt, offering = 0, False
        t0 = self.cycle
        while len(accept) < n or len(beats) < good * self.p.beats or not self.idle():
            t = self.cycle
            if t - t0 >= max_cycles:
                raise NandCtlError(f"run did not finish in {max_cycles} cycles "
                                   f"({len(accept)}/{n} accepted, {len(beats)} beats)")
            if not offering and nxt < n and offer(t):
                offering = True
            acc, beat = self.step(requests[nxt] if offering else None, out_ready(t))
            if acc:
                accept.append(t)
                nxt += 1
                offering = False
            if beat is not None:
                beats.append(beat)
        return RunResult(accept, beats, dict(self.start), dict(self.done), self.cycle - t0,
                         self.error, self.completion_stalls)


def expected_data(params: CtlParams, words: Sequence[int], requests: Sequence[Request]
                  ) -> list[list[int]]:
    """Beat data of each good request, independent of timing (a cross-check of the model)."""
    out = []
    for r in requests:
        if check_request(params, r) is None:
            b = word_address(params, r)
            out.append([int(words[b + i]) for i in range(params.beats)])
    return out

