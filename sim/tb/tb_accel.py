"""cocotb testbench of :class:`proxima.hdl.accel.Accelerator` (the generated Verilog, NAND
store and controller inside the design) against golden.search.

Data (``PROXIMA_TB_PARAMS["data"]``): a JSON file written by :func:`accel_transactions`: the
port formats, the entry vertex and its code, the NAND service time, the file of the NAND
store's bytes (``store_file``: for a design built with ``external_store=True``, whose store
port the bench serves as a synchronous read port, each core's part of the file at the start of
the design's core: :class:`StoreWords`; none for a store inside the design), the codebook's
``cb_wr`` beats (written after the reset, for a design elaborated without a codebook), and
per query its tag, its vector and the golden expectation (:func:`golden_expectation`: top-k ids and exact distances, every
counter but ``cycles``, the termination reason, the read counts per kind and the exact
sequence of NAND accesses ``reads_for_events(search(...).events)``).

Other parameters: ``p_valid`` (probability of offering the next query beat in an idle cycle),
``p_ready`` (of taking a ``result`` / ``stats`` beat in a cycle), ``max_inflight`` (start a
query only while fewer than that many are unfinished: fewer queries in flight than the
design has contexts), ``out`` (write the records
of every query and the global counters there as JSON), ``progress`` (a file the bench
rewrites with the number of finished queries every few thousand cycles), ``strict`` (default
true: the first mismatch fails the test; false: mismatches are only counted in ``out``, for
``proxima sim``).

The bench feeds the tagged queries on ``query``, takes ``result`` and ``stats`` with random
back-pressure and records, every cycle, the ``mon_*`` NAND request monitor by tag.
:class:`TagBoard` checks each query when its ``stats`` beat arrives (:func:`check_query`):
result beats (contiguous per query, ids, exact distances, ``last``), ``error``,
``converged``, every counter but ``cycles``, the read counts and the exact access sequence.
A query expected to fail (``expect["error"] == 1``: a corrupt frame on its path) is checked
for ``error = 1``, well-formed result beats and the accesses up to the corrupt frame.
At the end of a batch: ``idle``, ``g_queries`` = the queries, every ``core_busy`` at most
``g_cycles``, their sum at least service time x accesses, ``g_busy <= g_cycles``.

Tests: ``accel_batch`` (every query of ``queries``), ``accel_reset`` (``queries`` until
``reset_after`` of them finished, a one-cycle ``soft_reset``, a check that nothing of the
lost queries comes out and that the counters restarted, then ``queries2``, all checked).
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from proxima.sim.runner import tb_params
from proxima.sim.tb import bench

__all__ = ["READ_COUNTERS", "STATS_COUNTERS", "golden_expectation", "accel_transactions",
           "query_beats",
           "write_store", "frame_to_corrupt", "expect_error", "corrupt_frame", "check_query", "TagBoard",
           "check_globals"]

#: stats fields counting each kind of NAND access (kind name of golden.layout.EVENT_KINDS)
READ_COUNTERS = {"frame_reads": "frame", "code_reads": "code", "raw_reads": "raw"}
#: the engine counters a query's stats carry (``cycles`` is not compared with golden)
STATS_COUNTERS = ("hops", "pq_dists", "exact_dists", "checks", "inserted", "final_T",
                  "final_reranked")
GLOBAL_COUNTERS = ("g_cycles", "g_busy", "g_queries", "g_arb_wait", "g_sort")


# ---- the golden side (plain Python, no simulator) -------------------------------------
def golden_expectation(ref, layout) -> dict:
    """What the RTL must give for one query, from a traced ``golden.search`` result.

    ``reads``: the accesses (hot copy 0); with ``layout.hot_copies = X > 1`` also
    ``reads_copies``, the accesses when run by a context reading copy ``c`` (context
    ``q`` reads copy ``q % X``)."""
    from proxima.golden.layout import EVENT_KINDS, reads_for_events

    def reads(copy):
        return [[r.core, r.page, r.offset, EVENT_KINDS.index(r.kind)]
                for r in reads_for_events(ref.events, layout, copy)]

    r0 = reads(0)
    kinds = Counter(EVENT_KINDS[r[3]] for r in r0)
    counters = {n: int(ref.counters[n]) for n in STATS_COUNTERS}
    counters.update({c: kinds.get(k, 0) for c, k in READ_COUNTERS.items()})
    out = {"ids": [int(i) for i in ref.ids], "dists": [int(d) for d in ref.dists],
           "counters": counters, "converged": int(ref.reason == "converged"),
           "error": 0, "reads": r0}
    if layout.hot_copies > 1:
        out["reads_copies"] = [r0] + [reads(c) for c in range(1, layout.hot_copies)]
    return out


def accel_transactions(index, queries, layout, accel, *, tags=None, refs=None,
                       cfg=None, store_file=None, codebook=None) -> dict:
    """JSON-able test data for :mod:`tb_accel`: port formats and golden expectations.

    ``index``: the golden :class:`~proxima.golden.index.Index` of the image; ``accel``: the
    elaborated-or-not :class:`~proxima.hdl.accel.Accelerator` (its port layouts);
    ``tags``: one per query (default ``0, 1, ...``); ``refs``: traced golden results if
    already computed (else ``golden.search_batch`` with ``trace=True``); ``store_file``: the
    store's bytes (:func:`write_store`) when ``accel`` has ``external_store``: each core's
    part of the file is mapped onto the first words of the design's core (``accel.pages``
    pages per core; the rest reads as zeros), so one build serves every image that fits;
    ``codebook``: the bench writes it through ``cb_wr`` after the reset (for an accelerator
    elaborated without one, e.g. :meth:`~proxima.hdl.accel.Accelerator.from_config`)."""
    from proxima.golden.nandctl import CtlParams
    from proxima.golden.search_batch import search_batch
    from proxima.hdl.nandctl import geometry_word

    cfg = cfg or layout.cfg
    if refs is None:
        refs = search_batch(index, queries, cfg, trace=True)
    tags = list(range(len(queries))) if tags is None else [int(t) for t in tags]
    if len(set(tags)) != len(tags):
        raise ValueError("query tags must be distinct within a batch")
    if getattr(accel, "external_store", False) and store_file is None:
        raise ValueError("the accelerator's store port is external: give store_file")
    cores = cfg.nand.cores + cfg.nand.raw_vector_cores
    beat_bytes = accel.path_bits // 8
    store = {}
    if store_file is not None:  # the file itself is read by the bench (it may not exist yet)
        store = {"core_words": accel.pages * cfg.nand.page_bytes // beat_bytes}
    cb = None
    if codebook is not None:
        from proxima.hdl.pq import pack_codebook

        fmt = bench.fields(accel.cb_wr.payload.shape())
        cb = {"fmt": fmt, "beats": [bench.pack({"addr": a, "centroid": w}, fmt)
                                    for a, w in enumerate(pack_codebook(cfg, codebook))]}
    return {
        "entry": int(index.entry), "dim": cfg.vec.dim, "k": cfg.search.k,
        "geom": geometry_word(cfg, layout),
        "entry_code": int.from_bytes(bytes(np.asarray(index.codes[index.entry], np.uint8)),
                              "little"),
        "store_file": None if store_file is None else str(store_file), **store,
        "codebook": cb,
        "beat_bytes": beat_bytes, "hot_copies": layout.hot_copies,
        "service": CtlParams.from_cfg(cfg).service,
        "cores": cores,
        "query": bench.fields(accel.query.payload.shape()),
        "result": bench.fields(accel.result.payload.shape()),
        "stats": bench.fields(accel.stats.payload.shape()),
        "queries": [{"tag": t, "vec": [int(x) for x in q], "expect": golden_expectation(r, layout)}
                    for t, q, r in zip(tags, queries, refs)],
    }


def write_store(path, store) -> Path:
    """Write the store contents (``Accelerator.store_image``: bytes in store order) for the
    bench's ``store_file``."""
    path = Path(path)
    np.ascontiguousarray(store, dtype=np.uint8).tofile(path)
    return path


class StoreWords:
    """The words the store port reads: core ``c``'s part of the store file (``file_core_words``
    words) at the first of the design's ``core_words`` words of core ``c``, zeros beyond."""

    def __init__(self, path: str, beat_bytes: int, cores: int, core_words: int):
        raw = Path(path).read_bytes()
        if len(raw) % (cores * beat_bytes):
            raise ValueError(f"{path}: {len(raw)} bytes is not a whole number of "
                             f"{beat_bytes}-byte words on each of {cores} cores")
        if beat_bytes in (1, 2, 4, 8):
            self.words = np.frombuffer(raw, dtype=f"<u{beat_bytes}").tolist()
        else:
            self.words = [int.from_bytes(raw[i:i + beat_bytes], "little")
                          for i in range(0, len(raw), beat_bytes)]
        self.core_words, self.file_core_words = core_words, len(self.words) // cores
        if self.file_core_words > core_words:
            raise ValueError(f"the image's store ({self.file_core_words} words per core) "
                             f"exceeds the design's ({core_words})")

    def __getitem__(self, addr: int) -> int:
        core, off = divmod(addr, self.core_words)
        return self.words[core * self.file_core_words + off] if off < self.file_core_words else 0


def frame_to_corrupt(refs, layout, victim: int, others=None) -> int:
    """A vertex whose normal frame query ``victim`` reads and no other query of ``refs``
    (nor of the traced results ``others``) reads: not hot, not the entry."""
    mine = [v for kind, v in refs[victim].events if kind == "frame" and v >= layout.hot]
    seen = set()
    for i, r in enumerate(list(refs) + list(others or ())):
        if i != victim:
            seen.update(v for kind, v in r.events if kind == "frame")
    for v in mine[1:]:  # not the first expansion: the query has started when it fails
        if v not in seen:
            return int(v)
    raise ValueError(f"every frame query {victim} reads is read by another query")


def corrupt_frame(frames, layout, v: int):
    """A copy of the index cores' bytes with ``v``'s normal frame header corrupt: degree
    ``2**deg_bits - 1 > R`` (the gap decoder rejects it; ``v``'s PQ code, read by other
    queries, is untouched)."""
    bad = (1 << layout.deg_bits) - 1
    if bad <= layout.R:
        raise ValueError(f"R = {layout.R} fills the degree field: no corrupt degree exists")
    core, page, off = layout.frame_address(v)
    out = frames.copy()
    pos = page * layout.cfg.nand.page_bytes + off
    out[core, pos] = (int(out[core, pos]) & ~bad & 0xFF) | bad
    return out


def expect_error(entry: dict, layout, v: int) -> dict:
    """The expectation of a query whose path reads ``v``'s corrupt frame: ``error = 1``,
    its accesses as golden's up to and including that frame."""
    frame = [list(layout.frame_address(v)) + [0]]
    reads = entry["reads"]
    cut = next(i for i in range(len(reads)) if reads[i] == frame[0]) + 1
    return dict(entry, error=1, reads=reads[:cut])


def check_query(exp: dict, results: list, stats: dict, reads: list) -> list[str]:
    """Mismatch lines of one query (empty: it matches): ``results`` its result beats
    ``(id, dist, last)``, ``stats`` its stats beat's fields, ``reads`` its monitored
    accesses ``[core, page, offset, kind]``."""
    bad = []
    if exp["error"]:
        if stats["error"] != 1:
            bad.append("error = 0, a corrupt frame was on its path")
        n = len(exp["reads"])
        if reads[:n] != exp["reads"]:
            bad.append(f"accesses up to the corrupt frame differ: {reads[:n]} vs {exp['reads']}")
        if [r[2] for r in results] != [0] * (len(results) - 1) + [1] * bool(results):
            bad.append(f"result beats without a single final last: {results}")
        return bad
    if "reads_copies" in exp:
        exp = dict(exp, reads=exp["reads_copies"][stats["context"] % len(exp["reads_copies"])])
    if stats["error"]:
        bad.append("error = 1")
    want = [[i, d, int(j == len(exp["ids"]) - 1)]
            for j, (i, d) in enumerate(zip(exp["ids"], exp["dists"]))]
    if [list(r) for r in results] != want:
        bad.append(f"result {[list(r) for r in results]}, golden {want}")
    for name, v in exp["counters"].items():
        if stats[name] != v:
            bad.append(f"{name} = {stats[name]}, golden {v}")
    if stats["converged"] != exp["converged"]:
        bad.append(f"converged = {stats['converged']}, golden {exp['converged']}")
    if reads != exp["reads"]:
        n_ok = next((i for i, (a, b) in enumerate(zip(reads, exp["reads"])) if a != b),
                    min(len(reads), len(exp["reads"])))
        bad.append(f"{len(reads)} accesses, golden {len(exp['reads'])}; first {n_ok} agree"
                   + (f"; access {n_ok}: {reads[n_ok] if n_ok < len(reads) else None} vs "
                      f"{exp['reads'][n_ok] if n_ok < len(exp['reads']) else None}"))
    return bad


class TagBoard:
    """Scoreboard keyed by tag: result beats and monitored accesses are collected per tag,
    and a query is checked (:func:`check_query`) when its stats beat arrives.

    ``strict``: raise an ``AssertionError`` at the first mismatch (naming the query and tag);
    else collect them in ``mismatches`` (``{tag: lines}``).  A beat or access for a tag that
    is not expected or already finished, and a query's result beats interleaved with
    another's, always fail."""

    def __init__(self, queries: list[dict], strict: bool = True):
        self.exp = {q["tag"]: q["expect"] for q in queries}
        self.order = {q["tag"]: i for i, q in enumerate(queries)}
        self.strict = strict
        self.results: dict[int, list] = defaultdict(list)
        self.reads: dict[int, list] = defaultdict(list)
        self.records: dict[int, dict] = {}
        self.mismatches: dict[int, list[str]] = {}
        self.open: int | None = None  # tag whose result beats are coming

    def _known(self, tag: int, what: str) -> None:
        if tag not in self.exp:
            raise AssertionError(f"{what} with tag {tag}: no such query in flight")
        if tag in self.records:
            raise AssertionError(f"{what} with tag {tag}: that query already finished")

    def read(self, tag: int, access: list[int], cycle: int) -> None:
        self._known(tag, f"NAND access {access} at cycle {cycle}")
        self.reads[tag].append(access)

    def result(self, beat: dict, cycle: int) -> None:
        tag = beat["tag"]
        self._known(tag, f"result beat {beat} at cycle {cycle}")
        if self.open is not None and self.open != tag:
            raise AssertionError(f"result beat of tag {tag} at cycle {cycle} inside the "
                                 f"beats of tag {self.open}")
        self.results[tag].append((beat["id"], beat["dist"], beat["last"]))
        self.open = None if beat["last"] else tag

    def stats(self, beat: dict, cycle: int) -> None:
        tag = beat["tag"]
        self._known(tag, f"stats beat at cycle {cycle}")
        if self.open == tag:
            raise AssertionError(f"stats of tag {tag} at cycle {cycle} before its last "
                                 f"result beat")
        res, reads = self.results.pop(tag, []), self.reads.pop(tag, [])
        bad = check_query(self.exp[tag], res, beat, reads)
        self.records[tag] = {"tag": tag, "query": self.order[tag], "stats": beat,
                             "results": res, "accesses": len(reads), "done_cycle": cycle}
        if bad:
            self.mismatches[tag] = bad
            if self.strict:
                raise AssertionError(f"query {self.order[tag]} (tag {tag}): " + "; ".join(bad))

    @property
    def done(self) -> bool:
        return len(self.records) == len(self.exp)

    def status(self) -> str:
        return (f"{len(self.records)}/{len(self.exp)} queries finished; waiting for tags "
                f"{sorted(set(self.exp) - set(self.records))[:8]}")


# ---- the simulator side ---------------------------------------------------------------
class _Monitor:
    """Agent recording the ``mon_*`` NAND request monitor (one access per cycle with
    ``mon_valid``) into a :class:`TagBoard`."""

    done = True

    def __init__(self, dut, board: TagBoard):
        self.valid = dut.mon_valid
        self.fields = [dut.mon_tag, dut.mon_core, dut.mon_page, dut.mon_offset, dut.mon_kind]
        self.board = board
        self.count = 0

    def drive(self, rnd, cycle: int) -> None:
        pass

    def sample(self, cycle: int) -> None:
        if int(self.valid.value):
            tag, *access = (int(h.value) for h in self.fields)
            self.board.read(tag, access, cycle)
            self.count += 1


class _Store:
    """Agent serving the store port as a synchronous read port with enable: the word
    addressed in a cycle with ``store_en`` is presented on ``store_data`` from the next
    cycle on, and held."""

    done = True

    def __init__(self, dut, words: StoreWords):
        self.en, self.addr, self.data = dut.store_en, dut.store_addr, dut.store_data
        self.words = words
        self.next: int | None = None
        self.shown: int | None = None

    def drive(self, rnd, cycle: int) -> None:
        if self.next is not None and self.next != self.shown:
            self.data.value = self.next
            self.shown = self.next

    def sample(self, cycle: int) -> None:
        if int(self.en.value):
            self.next = self.words[int(self.addr.value)]


class _Progress:
    """Agent rewriting ``path`` with the finished query count every ``every`` cycles."""

    done = True

    def __init__(self, path: str | None, board: TagBoard, log, every: int = 4096):
        self.path, self.board, self.every, self.log = path and Path(path), board, every, log

    def drive(self, rnd, cycle: int) -> None:
        pass

    def sample(self, cycle: int) -> None:
        if cycle % self.every == 0:
            if self.path is not None:
                self.path.write_text(str(len(self.board.records)))
            if cycle % (64 * self.every) == 0 and cycle:
                self.log.info("cycle %d: %s", cycle, self.board.status())

    def status(self) -> str:
        return self.board.status()


class _Sink(bench.Sink):
    """:class:`bench.Sink` writing ``ready`` only when it changes (one VPI write less per
    cycle: the bench runs hundreds of thousands of cycles)."""

    _shown: bool | None = None

    def drive(self, rnd, cycle: int) -> None:
        full = self.limit is not None and len(self.cycles) >= self.limit
        self.ready = not full and bench.chance(self.p, rnd, cycle)
        if self.ready != self._shown:
            self.ready_h.value = int(self.ready)
            self._shown = self.ready

    def stop(self) -> None:
        super().stop()
        self._shown = False


class _Source(bench.Source):
    """:class:`bench.Source` writing ``valid`` only when it changes."""

    _shown: bool | None = None

    def set_valid(self, offering: bool) -> None:
        if offering != self._shown:
            self.valid_h.value = int(offering)
            self._shown = offering


def query_beats(d: dict, queries: list[dict]) -> list[int]:
    """The packed ``query`` beats of ``queries`` (``dim`` per query, tagged) in the format of
    the bench data ``d``."""
    return [bench.pack({"tag": q["tag"], "data": x}, d["query"])
            for q in queries for x in q["vec"]]


def _globals(dut, cores: int) -> dict:
    out = {n: int(getattr(dut, n).value) for n in GLOBAL_COUNTERS}
    out["core_busy"] = [int(getattr(dut, f"core_busy__{c}").value) for c in range(cores)]
    out["idle"] = int(dut.idle.value)
    return out


async def _reset(dut, d: dict) -> list[int] | None:
    """Clock, reset, inputs idle; returns the store words when the bench serves the store."""
    signals = {"entry": d["entry"], "entry_code": d["entry_code"], "geom": d["geom"],
               "soft_reset": 0}
    words = None
    if d.get("store_file"):
        words = StoreWords(d["store_file"], d["beat_bytes"], d["cores"], d["core_words"])
        signals["store_data"] = 0
    await bench.reset(dut, inputs=["query", "cb_wr"], outputs=["result", "stats"],
                      signals=signals)
    if d.get("codebook"):
        beats = d["codebook"]["beats"]
        await bench.run(dut, [bench.Source(dut, "cb_wr", beats)],
                        max_cycles=16 * len(beats) + 1000)
    return words


async def _batch(dut, d: dict, queries: list[dict], p: dict, rnd, store, *,
                 stop_after=None):
    """Run ``queries`` (until ``stop_after`` of them finished, if given); returns the
    board, the monitor and the cycles."""
    p_valid, p_ready = bench.stall_probabilities(p, 1.0)
    board = TagBoard(queries, strict=bool(p.get("strict", True)))
    mon = _Monitor(dut, board)
    src = _Source(dut, "query", query_beats(d, queries), p_valid)
    limit = p.get("max_inflight")
    if limit:  # a new query starts only while fewer than `limit` are unfinished
        dim = d["dim"]

        def gate(cycle: int) -> bool:
            if src.sent % dim == 0 and src.sent // dim - len(board.records) >= int(limit):
                return False
            return bench.chance(p_valid, rnd, cycle)
        src.p = gate
    res = _Sink(dut, "result", p_ready, keep=False,
                     unpack=lambda v: bench.unpack(v, d["result"]),
                     check=lambda b: board.result(b, cycles()))
    st = _Sink(dut, "stats", p_ready, keep=False,
                    unpack=lambda v: bench.unpack(v, d["stats"]),
                    check=lambda b: board.stats(b, cycles()))
    clock = {"cycle": 0}
    tick = bench.Probe(lambda c: clock.update(cycle=c))
    cycles = lambda: clock["cycle"]  # noqa: E731
    agents = [tick, mon, src, res, st, _Progress(p.get("progress"), board, dut._log)]
    if store is not None:
        agents.insert(0, store)
    until = (lambda: len(board.records) >= stop_after) if stop_after is not None \
        else (lambda: board.done)
    n = await bench.run(dut, agents, rnd, until=until,
                        max_cycles=int(p.get("max_cycles", 100_000 + 60_000 * len(queries))))
    return board, mon, n


async def _settle(dut, cycles: int = 64) -> int:
    """Clock until ``idle`` (at most ``cycles``); returns the cycles waited."""
    for i in range(cycles):
        await ReadOnly()
        if int(dut.idle.value):
            return i
        await RisingEdge(dut.clk)
    raise AssertionError(f"idle still low {cycles} cycles after the batch")


def check_globals(g: dict, d: dict, queries: int, accesses: int) -> None:
    """Assert the Accelerator's global counters ``g`` after a batch of ``queries`` queries and
    ``accesses`` monitored NAND accesses against the bench data ``d``: idle, query count,
    busy cycles within the run, per-core busy cycles at least the service time, at least
    one merge per query into the shared sorter."""
    assert g["idle"] == 1, "idle low after the batch"
    assert g["g_queries"] == queries, f"g_queries = {g['g_queries']}, sent {queries} stats"
    assert g["g_busy"] <= g["g_cycles"], g
    assert all(b <= g["g_cycles"] for b in g["core_busy"]), g
    # a core holds an access from the start of its service until the output engine takes
    # it (longer than the service time while responses are stalled)
    assert sum(g["core_busy"]) >= d["service"] * accesses, (
        f"core_busy sums to {sum(g['core_busy'])}, below {accesses} accesses x service "
        f"{d['service']} = {d['service'] * accesses}")
    # every query merges its entry into its list at least once
    assert g["g_sort"] >= queries, g


def _write_out(p: dict, payload: dict) -> None:
    if p.get("out"):
        Path(p["out"]).write_text(json.dumps(payload))


@cocotb.test()
async def accel_batch(dut):
    """Every query of the data file, checked per tag against golden."""
    p = tb_params()
    d = json.loads(Path(p["data"]).read_text())
    rnd, _ = bench.generators()
    words = await _reset(dut, d)
    store = None if words is None else _Store(dut, words)
    t0 = time.perf_counter()
    board, mon, n = await _batch(dut, d, d["queries"], p, rnd, store)
    wait = await _settle(dut)
    wall = time.perf_counter() - t0
    g = _globals(dut, d["cores"])
    _write_out(p, {"records": sorted(board.records.values(), key=lambda r: r["query"]),
                   "mismatches": {str(k): v for k, v in board.mismatches.items()},
                   "globals": g, "cycles": n + wait, "wall_s": wall, "accesses": mon.count})
    check_globals(g, d, len(d["queries"]), mon.count)
    errors = sum(r["stats"]["error"] for r in board.records.values())
    dut._log.info("%d queries, %d accesses, %d cycles in %.1f s (%.0f cycles/s), "
                  "%d with error, %d mismatching", len(board.records), mon.count, n, wall,
                  n / max(wall, 1e-9), errors, len(board.mismatches))


@cocotb.test()
async def accel_reset(dut):
    """``soft_reset`` in the middle of a batch, then a clean batch."""
    p = tb_params()
    d = json.loads(Path(p["data"]).read_text())
    rnd, _ = bench.generators(1)
    words = await _reset(dut, d)
    store = None if words is None else _Store(dut, words)
    first, second = d["queries"], d["queries2"]
    stop_after = int(p["reset_after"])
    board, mon, n = await _batch(dut, d, first, p, rnd, store, stop_after=stop_after)
    lost = len(first) - len(board.records)
    assert lost > 0, "every query finished before the reset: nothing was in flight"
    dut._log.info("soft_reset after %d of %d queries (cycle %d)", len(board.records),
                  len(first), n)
    dut.soft_reset.value = 1
    await RisingEdge(dut.clk)
    dut.soft_reset.value = 0
    # nothing of the lost queries may come out, nor may they read
    dut.result__ready.value = 1
    dut.stats__ready.value = 1
    for c in range(2_000):
        await ReadOnly()
        for name in ("result", "stats"):
            assert not int(getattr(dut, f"{name}__valid").value), \
                f"{name} beat {c} cycles after soft_reset (a lost query's)"
        assert not int(dut.mon_valid.value), f"NAND request {c} cycles after soft_reset"
        await RisingEdge(dut.clk)
    await ReadOnly()
    g = _globals(dut, d["cores"])
    assert g["idle"] == 1, "idle low after soft_reset"
    assert g["g_queries"] == 0 and g["g_cycles"] <= 2_001, f"counters not cleared: {g}"
    await RisingEdge(dut.clk)
    dut.result__ready.value = 0
    dut.stats__ready.value = 0
    board2, mon2, n2 = await _batch(dut, d, second, p, rnd, store)
    wait = await _settle(dut)
    g = _globals(dut, d["cores"])
    check_globals(g, d, len(second), mon2.count)
    dut._log.info("after the reset: %d queries, %d accesses, %d cycles, all match",
                  len(board2.records), mon2.count, n2 + wait)
