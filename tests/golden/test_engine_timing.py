"""Engine timing model (golden/engine_timing.py): its rules, and its cycles against the RTL.

The RTL comparison runs two ``tiny`` queries through :class:`proxima.hdl.engine.SearchEngine`
in the Amaranth simulator with the golden NAND controller serving its reads
(``tests/hdl/engine_timing_rtl.py``) and checks the model's per-query cycles within 2%.
"""

from __future__ import annotations

import gc
import random
import warnings
from dataclasses import replace

import numpy as np
import pytest

from proxima.config import preset
from proxima.golden.engine_timing import (EngineCosts, EngineTimingError, Step, frame_extra,
                                          block_latencies, nand_bound, predict,
                                          query_program, simulate_batch)
from proxima.golden.layout import reads_for_events
from proxima.golden.nandctl import CtlParams, NandControllerModel, Request
from proxima.golden.search import search
from tests.golden.conftest import clustered_u8


@pytest.fixture(scope="module")
def tiny_img(tmp_path_factory):
    from tests.hdl.engine_timing_rtl import tiny_image
    return tiny_image(tmp_path_factory.mktemp("engine_timing"))


@pytest.fixture(scope="module")
def tiny_refs(tiny_img):
    qs = clustered_u8(24, tiny_img.index.cfg.vec.dim, seed=200)
    return qs, [search(tiny_img.index, q) for q in qs]


@pytest.mark.parametrize("name", ["tiny", "default", "paper"])
def test_block_latencies_are_the_rtl_blocks(name):
    """The latencies the model waits on are the RTL blocks' own attributes."""
    from proxima.hdl.bloom import BloomFilter
    from proxima.hdl.candidates import CandidateListWithSorter
    from proxima.hdl.engine_mem import MemReader
    from proxima.hdl.exact import ExactDistanceUnit
    from proxima.hdl.pq import PQUnit
    from amaranth.hdl import UnusedElaboratable
    cfg = preset(name)
    with warnings.catch_warnings():  # the blocks are never elaborated
        warnings.simplefilter("ignore", UnusedElaboratable)
        pq, ex, cand = PQUnit(cfg), ExactDistanceUnit(cfg), CandidateListWithSorter(cfg)
        rtl = {"pq_build": pq.build_latency, "pq": pq.latency, "exact": ex.latency,
               "exact_beats": ex.beats, "bloom": BloomFilter(cfg).latency,
               "select": cand.select_latency, "merge": cand.merge_cycles,
               "read": MemReader.request_latency}
        del pq, ex, cand
        gc.collect()
    assert block_latencies(cfg) == rtl


def test_nand_path_follows_the_controller_model():
    """Lone accesses raised at random cycles on random cores: the model's accept and beat
    emission cycles equal :class:`NandControllerModel`'s (in-order requests held until
    accepted, per-core queues of ``depth``, done slots, completion stalls, the round-robin
    output engine, ``nb`` beats per access); with ``lanes`` > 1 the controller's path is
    that many context beats wide (``ctl_nb = nb / lanes`` beats on the response bus); at
    store read latencies 1 to 3 (``store_latency``, the controller's ``read_latency``)."""
    rnd = random.Random(5)
    for nb, service, cores, depth, lanes, lat in (
            (4, 7, 3, 0, 1, 1), (1, 5, 4, 0, 1, 1), (8, 3, 2, 0, 1, 1), (4, 9, 3, 1, 1, 1),
            (2, 12, 2, 2, 1, 1), (1, 4, 3, 0, 8, 1), (2, 6, 4, 1, 4, 1),
            # the store read latency (engine.store_latency): 2 on the FPGA board, and 3
            (4, 7, 3, 0, 1, 2), (1, 4, 3, 0, 8, 2), (2, 6, 4, 1, 4, 2), (1, 5, 4, 0, 1, 3)):
        n = 40
        times = sorted(rnd.sample(range(200), n))
        core = [rnd.randrange(cores) for _ in range(n)]
        costs = replace(EngineCosts.single_engine(preset("tiny")).zero_compute(),
                        nb=nb * lanes, ctl_nb=nb, service=service, resp_delay=0,
                        ctl_depth=depth, store_latency=lat)
        progs = [[Step(t, [(c, 0)])] for t, c in zip(times, core)]
        res = simulate_batch(progs, costs, n, cores, trace=True)
        emit = {q: d - nb * lanes + 1 for q, a, d, _ in res.trace}
        accept = [a for _, a, _, _ in sorted(res.trace)]
        # the same requests through the cycle model, each offered from its cycle on
        p = CtlParams(cores=cores, depth=depth or n, service=service, access_bytes=8 * nb,
                      page_bytes=256, pages=1, page_bits=1, beat_bits=64, tag_bits=8,
                      read_latency=lat)
        ctl = NandControllerModel(p)
        first, acc_t, i = {}, [], 0
        for t in range(times[-1] + n * (service + nb) + 10):
            req = Request(i, core[i], 0, 0) if i < n and t >= times[i] else None
            acc, beat = ctl.step(req, True)
            if acc:
                acc_t.append(t)
                i += 1
            if beat is not None:
                first.setdefault(beat.tag, beat.cycle)
        assert accept == acc_t, (nb, service, cores, depth, lat)
        assert emit == first, (nb, service, cores, depth, lat)
        assert res.busy.sum() >= n * service


def test_program_reads_are_the_layout_reads(tiny_img, tiny_refs):
    """A query's program issues exactly its golden reads, on their cores, in order."""
    lay = tiny_img.layout
    costs = EngineCosts.from_cfg(lay.cfg)
    for r in tiny_refs[1][:8]:
        prog = query_program(r.events, r.counters, lay, costs, merge_skips=r.merge_skips)
        cores = [core for st in prog for core, _ in st.accesses]
        assert cores == [rd.core for rd in reads_for_events(r.events, lay)]
        # the program's compute covers at least the ADT build and every check's DUMP
        comp = sum(st.compute for st in prog)
        assert comp >= r.counters["checks"] * (lay.cfg.search.L + 4)


def test_batch_rules(tiny_img, tiny_refs):
    cfg, lay = tiny_img.layout.cfg, tiny_img.layout
    refs = tiny_refs[1]
    costs = EngineCosts.from_cfg(cfg)
    one = predict(cfg, lay, refs, 1)
    # one queue: the queries back to back (fed, run, released), their latencies add up
    per_query = costs.feed + costs.release
    assert one.total_cycles == int(one.latency.sum()) + len(refs) * per_query \
        - costs.release + 1 + costs.done_to_stats
    assert one.accesses == sum(len(reads_for_events(r.events, lay)) for r in refs)
    totals = [predict(cfg, lay, refs, q).total_cycles for q in (1, 2, 4, 8)]
    assert all(b < a for a, b in zip(totals, totals[1:]))
    for q in (1, 8):
        got, bound = predict(cfg, lay, refs, q), nand_bound(cfg, lay, refs, q)
        assert bound.total_cycles < got.total_cycles
        assert bound.qps > got.qps
        assert np.all(got.utilisation <= 1) and np.all(bound.utilisation <= 1)
        # busy = every access' service plus the completion stalls
        assert (got.busy - got.stalls).sum() == got.accesses * costs.service
        assert np.all(got.stalls >= 0)
    # the response bus bounds the batch: ctl_nb beats per access, one beat per cycle; a
    # path as narrow as the context's beat gives the lowest bound, one access wide the highest
    bounds = {}
    for pb in (32, 256, 8 * cfg.nand.access_bytes):
        pcfg = cfg.with_(engine={"path_bits": pb})
        bounds[pb] = nand_bound(pcfg, lay, refs, 64)
        assert bounds[pb].total_cycles >= bounds[pb].accesses * EngineCosts.from_cfg(pcfg).ctl_nb
    assert EngineCosts.from_cfg(cfg.with_(engine={"path_bits": 1024})).ctl_nb == 1
    assert [EngineCosts.from_cfg(preset(n)).store_latency for n in ("tiny", "default")] == [1, 3]
    assert bounds[32].total_cycles > bounds[256].total_cycles >= bounds[1024].total_cycles
    # bare events: the checks guessed from the raw runs, close to the counters' placement
    # (neither has the merge plan: every merge a full one)
    evs = [r.events for r in refs]
    bare = predict(cfg, lay, evs, 2).total_cycles
    counted = predict(cfg, lay, evs, 2, counters_per_query=[r.counters for r in refs])
    assert abs(bare / counted.total_cycles - 1) < 0.02
    # the merge plan (SearchResult.merge_skips) shortens the batch by the skipped merges
    assert any(f for r in refs for f in r.merge_skips)
    assert predict(cfg, lay, refs, 2).total_cycles < counted.total_cycles
    with pytest.raises(EngineTimingError):
        predict(cfg, lay, refs, 0)


def test_single_engine_cycles_match_the_rtl(tiny_img, tiny_refs):
    """The model of the single-query engine against the RTL's ``cycles`` counter, the same
    memory path (golden NAND controller, 4 reorder slots, no arbiter): within 2% per query."""
    from tests.hdl.engine_timing_rtl import run_engine
    qs, refs = tiny_refs
    lay = tiny_img.layout
    got = run_engine(tiny_img, qs[:2])
    costs = EngineCosts.single_engine(lay.cfg)
    for g, r in zip(got, refs):
        assert g["hops"] == r.counters["hops"]
        prog = query_program(r.events, r.counters, lay, costs, merge_skips=r.merge_skips)
        res = simulate_batch([prog], costs, 1, lay.total_cores)
        model = int(res.latency[0]) + 1 + costs.count_offset
        assert abs(model / g["cycles"] - 1) < 0.02, (model, g["cycles"])


def test_single_engine_cycles_follow_the_sorter_stages(tiny_img, tiny_refs):
    """Two sorter stages per register group (``engine.sorter_stages_per_reg``, a shorter
    merge): the model of the same configuration follows the RTL within 2%, and the query is
    shorter than with one stage."""
    from tests.hdl.engine_timing_rtl import run_engine
    from proxima.golden.layout import Layout
    qs, refs = tiny_refs
    lay1 = tiny_img.layout
    cfg = lay1.cfg.with_(engine={"sorter_stages_per_reg": 2})
    lay = Layout(cfg, lay1.n, lay1.hot, lay1.gap_width)
    got = run_engine(tiny_img, qs[:1], cfg=cfg)[0]
    costs = EngineCosts.single_engine(cfg)
    r = refs[0]
    prog = query_program(r.events, r.counters, lay, costs, merge_skips=r.merge_skips)
    res = simulate_batch([prog], costs, 1, lay.total_cores)
    model = int(res.latency[0]) + 1 + costs.count_offset
    assert abs(model / got["cycles"] - 1) < 0.02, (model, got["cycles"])
    costs1 = EngineCosts.single_engine(lay1.cfg)
    prog1 = query_program(r.events, r.counters, lay1, costs1, merge_skips=r.merge_skips)
    one = simulate_batch([prog1], costs1, 1, lay1.total_cores)
    assert res.latency[0] < one.latency[0]


def test_program_rules(tiny_img):
    """The step structure of a hand-made query (module doc of golden/engine_timing)."""
    lay = tiny_img.layout
    cfg = lay.cfg
    c = EngineCosts.from_cfg(cfg)
    s = cfg.search
    Ci = cfg.nand.cores
    normal, hot = 100, 3  # vertex 3 is hot (12 hot vertices), 100 is not
    codes = list(range(200, 200 + c.sorter_n + 2))  # two sub-batches
    events = [("code", 0), ("frame", normal)] + [("code", v) for v in codes] + \
        [("frame", hot), ("code", 150), ("code", 151), ("raw", 7), ("raw", 8),
         ("frame", 120)]
    counters = {"checks": 2, "final_T": 0, "final_reranked": 0}
    prog = query_program(events, counters, lay, c)
    # entry, frame, 2 code sub-batches, their merges, hot frame, 2 raws (check 0), frame,
    # check 1 + final
    assert [len(a) for _, a, _, _ in prog] == [1, 1, c.sorter_n, 2, 0, lay.hot_accesses, 1,
                                               1, 1, 0]
    rs = c.read_start
    assert rs == 1
    assert prog[0] == Step(c.entry_pre + rs, [(0, 0)])
    assert prog[1] == Step(c.entry_post + c.select + rs,
                           [(normal % Ci, frame_extra(lay, c.nb, hot=False))], c.adt_ready + rs)
    assert prog[2].compute == c.frame_to_code + rs and prog[3].compute == c.merge_gap
    assert all(x == c.code_extra for _, x in prog[2].accesses)
    # the list is ready merge_tail after the last code, and after the first sub-batch's
    # merge (merge_tail after its codes) and the second's (merge_cycles)
    assert prog[4] == Step(c.merge_tail, (), 0, [(2, c.merge_tail + c.merge_cycles)])
    assert prog[5].compute == c.select + rs
    # the hot frame's 2 codes from its buffer, one merge, then check 0 (T0 slots, 2 raw)
    inserted = len(codes) + 2
    ntop = min(s.T0, 1 + inserted)
    assert prog[6].compute == c.hot_to_code + 2 * c.hot_code + c.merge_tail + c.check_pre \
        + (ntop - 2) * c.slot + c.slot + rs
    assert prog[7].compute == c.exact_post + c.slot + rs
    assert prog[8].compute == c.exact_post + c.check_post + c.select + rs
    # the last frame passed no neighbour (no merge); check 1 (T0 + T_step slots, all
    # cached), then the final loop over the list
    ntop = min(s.T0 + s.T_step, 1 + inserted)
    length = min(s.L, 1 + inserted)
    assert prog[9].compute == c.empty_frame + c.check_pre \
        + ntop * c.slot + c.check_post + c.final_pre + length * c.slot + c.final_post
    # the merge plan: a skipped merge takes skip_cycles instead of merge_cycles (the
    # second sub-batch's, then the hot frame's)
    tail0 = c.merge_tail - c.merge_cycles
    assert c.skip_cycles == cfg.insert_skip_cycles < c.merge_cycles
    sk = query_program(events, counters, lay, c, merge_skips=[False, True, True])
    assert sk[4] == Step(tail0 + c.skip_cycles, (), 0,
                         [(2, tail0 + c.merge_cycles + c.skip_cycles)])
    assert sk[6].compute == prog[6].compute - c.merge_cycles + c.skip_cycles
    assert sk[:4] == prog[:4] and sk[5] == prog[5] and sk[7:] == prog[7:]
    assert query_program(events, counters, lay, c, merge_skips=[False] * 3) == prog
    for wrong in ([False] * 2, [False] * 4):  # a plan of another search: refused
        with pytest.raises(EngineTimingError, match="merge plan"):
            query_program(events, counters, lay, c, merge_skips=wrong)
