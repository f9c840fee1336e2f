"""NAND controller cycle model: hand-computed cycles, golden.nand equivalence, data, errors."""

from __future__ import annotations

import random

import numpy as np
import pytest

from proxima.config import preset
from proxima.golden.layout import Layout, reads_for_events
from proxima.golden.nand import Phase, TimingParams, simulate
from proxima.golden.nandctl import (
    ACCEPT_TO_START, DONE_TO_BEAT, CtlParams, NandControllerModel, NandCtlError, Request,
    check_request, expected_data, nand_completion, requests_from_reads, store_words,
    word_address,
)

SMALL = preset("tiny").with_(nand={"page_bytes": 512, "pages_per_core": 8})


def _params(**kw) -> CtlParams:
    base = dict(cores=3, depth=2, tR_cycles=3, transfer_cycles=2, pages=4, beat_bits=512)
    return CtlParams.from_cfg(SMALL, **(base | kw))


def _image(p: CtlParams, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, p.store_bytes, dtype=np.uint8)


def test_params_from_presets_reuse_the_timing_model():
    for name in ("tiny", "default", "paper"):
        cfg = preset(name)
        tp = TimingParams.from_cfg(cfg)
        p = CtlParams.from_cfg(cfg)
        assert p.service == tp.service_cycles and p.cores == tp.total_cores
        assert p.depth == cfg.engine.queues and p.pages == cfg.nand.pages_per_core
        assert p.beats * p.beat_bits == 8 * cfg.nand.access_bytes
    d = CtlParams.from_cfg(preset("default"))
    assert (d.service, d.cores, d.beat_bits, d.beats) == (56, 20, 256, 4)  # engine.path_bits
    assert CtlParams.from_cfg(preset("default"), tR_cycles=4, transfer_cycles=0).service == 4
    # the store read latency: engine.store_latency (the FPGA preset registers the read)
    assert [CtlParams.from_cfg(preset(n)).read_latency for n in ("tiny", "default", "paper")] \
        == [1, 3, 2]
    assert CtlParams.from_cfg(preset("tiny"), read_latency=3).done_to_beat == 3
    assert CtlParams.from_cfg(preset("tiny").override(["engine.store_latency=2"])
                              ).done_to_beat == DONE_TO_BEAT + 1


def test_one_core_two_requests_hand_cycles():
    # service 5, 2 beats of 512 bits; see tests/hdl/test_nandctl.py for the derivation
    p = _params()
    m = NandControllerModel(p, _image(p))
    res = m.run([Request(1, 0, 2, 128), Request(2, 0, 0, 0)])
    assert res.accept == [0, 1]
    assert res.start == {0: 2, 1: 7} and res.done == {0: 7, 1: 12}
    w0 = (2 * p.page_bytes + 128) // p.beat_bytes
    assert [(b.cycle, b.tag, b.last) for b in res.beats] == \
        [(8, 1, False), (9, 1, True), (13, 2, False), (14, 2, True)]
    assert [b.data for b in res.beats[:2]] == m.words[w0:w0 + 2]
    assert res.cycles == 15 and not res.error and res.completion_stalls == 0


def test_two_cores_in_parallel_and_round_robin_order():
    p = _params()
    res = NandControllerModel(p).run([Request(3, 0, 0, 0), Request(4, 1, 1, 256)])
    assert res.done == {0: 7, 1: 8}
    assert [(b.cycle, b.tag) for b in res.beats] == [(8, 3), (9, 3), (10, 4), (11, 4)]
    # three cores complete in the same cycle: granted after the last granted core (2)
    m = NandControllerModel(_params(beat_bits=1024, cores=3))
    for c in (2, 0, 1):
        m.fifo[c].append((c, Request(c, c, 0, 0)))
    beats = []
    for _ in range(12):
        beats.append(m.step(None, True)[1])
    assert [(b.cycle, b.tag) for b in beats if b] == [(7, 0), (8, 1), (9, 2)]


def test_fifo_full_back_pressure_hand_cycles():
    p = _params(depth=1, beat_bits=1024)
    reqs = [Request(t, 2, 0, 0) for t in range(3)]
    m = NandControllerModel(p)
    assert m.ready(reqs[0])
    res = m.run(reqs)
    assert res.accept == [0, 2, 7]
    assert [b.cycle for b in res.beats] == [8, 13, 18]


def test_output_back_pressure_delays_completion():
    p = _params(beat_bits=1024)  # service 5, one beat per access
    reqs = [Request(0, 0, 0, 0), Request(1, 0, 0, 128), Request(2, 0, 0, 256)]
    free = NandControllerModel(p).run(reqs)
    assert free.done == {0: 7, 1: 12, 2: 17} and free.completion_stalls == 0
    # out_ready low until cycle 20: req 0's beat waits in the output register (from 8), req 1
    # in the done slot (from 12); req 2 reaches rem == 1 in 16 and stalls until the engine
    # takes req 1 in 20 -> completes in 21 (done 22, 5 stalled cycles), granted in 22 while
    # the output register ran empty in 22 -> beats 20, 21, 23
    res = NandControllerModel(p).run(reqs, out_ready=lambda t: t >= 20)
    assert res.done == {0: 7, 1: 12, 2: 22} and res.completion_stalls == 5
    assert [b.cycle for b in res.beats] == [20, 21, 23]


def test_nand_completion_equals_golden_nand():
    # one access per query, all queries in flight: golden.nand's finish is the access's
    # completion under its start = max(arrival, free) rule with every arrival 0
    rng = np.random.default_rng(3)
    cores = rng.integers(0, 5, 200).tolist()
    tp = TimingParams(tR_cycles=7, transfer_cycles=4, index_cores=5, raw_cores=0,
                      pq_codes_per_cycle=1, sorter_cycles=0, exact_cycles=1, cycle_ns=10.0,
                      queues=200)
    ref = simulate([[Phase("frame", (c,), 0)] for c in cores], tp)
    _, done = nand_completion([0] * len(cores), cores, tp.service_cycles)
    assert done == ref.finish.tolist()


@pytest.mark.parametrize("seed,latency", [(0, 1), (1, 1), (2, 1), (0, 2), (1, 3)])
def test_model_without_stalls_follows_the_nand_rule(seed, latency):
    # enough service time for the one-beat output to drain: no completion ever stalls, so
    # start = max(accept + ACCEPT_TO_START, free) and done = start + service exactly
    p = _params(cores=4, depth=3, tR_cycles=17, transfer_cycles=3, beat_bits=1024,
                tag_bits=10, read_latency=latency)
    rng = np.random.default_rng(seed)
    reqs = [Request(i % (1 << p.tag_bits), int(rng.integers(0, 4)), 0, 0) for i in range(300)]
    rnd = random.Random(seed)
    offer = [rnd.random() < 0.3 for _ in range(100_000)]
    res = NandControllerModel(p).run(reqs, offer.__getitem__)
    assert res.completion_stalls == 0
    start, done = nand_completion([a + ACCEPT_TO_START for a in res.accept],
                                  [r.core for r in reqs], p.service)
    assert [res.start[i] for i in range(300)] == start
    assert [res.done[i] for i in range(300)] == done
    # and every response leaves done_to_beat (= the read latency) after its done cycle at
    # the earliest
    first = {}
    for b in res.beats:
        first.setdefault(b.tag, b.cycle)
    assert p.done_to_beat == latency
    assert all(first[r.tag] >= done[i] + p.done_to_beat for i, r in enumerate(reqs))
    assert any(first[r.tag] == done[i] + p.done_to_beat for i, r in enumerate(reqs))


@pytest.mark.parametrize("latency", [2, 3])
def test_longer_store_read_shifts_every_beat_without_back_pressure(latency):
    # with the output always ready the read pipeline only delays: the same accepts, starts,
    # done cycles and beat order, every beat latency - 1 cycles later than with latency 1
    rng = np.random.default_rng(latency)
    reqs = [Request(i % 64, int(rng.integers(0, 3)), int(rng.integers(0, 4)),
                    int(rng.integers(0, 4)) * 128) for i in range(300)]
    rnd = random.Random(latency)
    offer = [rnd.random() < 0.7 for _ in range(100_000)]
    runs = []
    for L in (1, latency):
        p = _params(beat_bits=256, tag_bits=6, read_latency=L)
        runs.append(NandControllerModel(p, _image(p, 9)).run(reqs, offer.__getitem__))
    one, long = runs
    assert one.completion_stalls > 0  # the output engine is busy: grants are contended
    assert (one.accept, one.start, one.done) == (long.accept, long.start, long.done)
    assert [b._replace(cycle=b.cycle + latency - 1) for b in one.beats] == long.beats


def test_longer_store_read_under_back_pressure_matches_data():
    # random output back-pressure: the beats differ in timing, never in data or order per
    # request
    p = _params(beat_bits=128, tag_bits=8, read_latency=2)
    img = _image(p, 6)
    rng = np.random.default_rng(6)
    reqs = [Request(i % 256, int(rng.integers(0, 3)), int(rng.integers(0, 4)),
                    int(rng.integers(0, 4)) * 128) for i in range(150)]
    rnd = random.Random(6)
    ready = [rnd.random() < 0.4 for _ in range(100_000)]
    res = NandControllerModel(p, img).run(reqs, out_ready=ready.__getitem__)
    assert all(ready[b.cycle] for b in res.beats)
    per = {}
    for b in res.beats:
        per.setdefault(b.tag, []).append(b.data)
    exp = expected_data(p, store_words(p, img), reqs)
    assert [per[r.tag] for r in reqs] == exp


def test_random_run_data_and_order():
    p = _params(beat_bits=128, tag_bits=8)
    img = _image(p, 4)
    rng = np.random.default_rng(5)
    reqs = [Request(i % (1 << p.tag_bits), int(rng.integers(0, 3)), int(rng.integers(0, 4)),
                    int(rng.integers(0, 4)) * 128) for i in range(200)]
    rnd = random.Random(5)
    ready = [rnd.random() < 0.5 for _ in range(100_000)]
    res = NandControllerModel(p, img).run(reqs, out_ready=ready.__getitem__)
    bursts = [res.beats[i:i + p.beats] for i in range(0, len(res.beats), p.beats)]
    assert all(not b.last for bu in bursts for b in bu[:-1]) and all(bu[-1].last for bu in bursts)
    assert all(len({b.tag for b in bu}) == 1 for bu in bursts)
    # each burst is the data of the request it is tagged with (tags unique here)
    data = dict(zip([r.tag for r in reqs], expected_data(p, store_words(p, img), reqs)))
    assert all([b.data for b in bu] == data[bu[0].tag] for bu in bursts)
    assert sorted(b[0].tag for b in bursts) == sorted(r.tag for r in reqs)
    raw = img.tobytes()
    r = reqs[0]
    a = (r.core * p.pages + r.page) * p.page_bytes + r.offset
    assert b"".join(x.to_bytes(p.beat_bytes, "little") for x in data[r.tag]) == \
        raw[a:a + p.access_bytes]
    assert word_address(p, r) * p.beat_bytes == a


def test_requests_from_layout_reads():
    cfg = preset("tiny")
    p = CtlParams.from_cfg(cfg)
    lay = Layout(cfg, 200, 6, 8)
    reads = reads_for_events([("frame", 3), ("code", 9), ("frame", 50), ("code", 51),
                              ("raw", 7)], lay)
    reqs = requests_from_reads(p, reads, first_tag=(1 << p.tag_bits) - 1)
    assert [r.core for r in reqs] == [r.core for r in reads]
    assert reqs[0].tag == (1 << p.tag_bits) - 1 and reqs[1].tag == 0
    assert all(check_request(p, r) is None for r in reqs)
    assert reqs[-1].core == cfg.nand.cores + 7 % cfg.nand.raw_vector_cores
    with pytest.raises(NandCtlError, match="one access"):
        requests_from_reads(p, [reads[0]._replace(nbytes=64)])


def test_bad_requests():
    p = _params()
    with pytest.raises(NandCtlError, match="core 3 out of range"):
        NandControllerModel(p).run([Request(0, 3, 0, 0)])
    with pytest.raises(NandCtlError, match="page 5"):
        NandControllerModel(p).step(Request(0, 0, 5, 0), True)
    with pytest.raises(NandCtlError, match="multiple of the access"):
        NandControllerModel(p).ready(Request(0, 0, 0, 64))
    with pytest.raises(NandCtlError, match="does not fit"):  # even when not strict
        NandControllerModel(p, strict=False).step(Request(0, 0, 8, 0), True)
    res = NandControllerModel(p, strict=False).run(
        [Request(0, 3, 0, 0), Request(1, 1, 0, 0), Request(2, 0, 0, 3)])
    assert res.accept == [0, 1, 2] and res.error and {b.tag for b in res.beats} == {1}


def test_bad_parameters_and_image():
    with pytest.raises(NandCtlError, match="depth"):
        _params(depth=0)
    with pytest.raises(NandCtlError, match="beat_bits"):
        _params(beat_bits=8192)
    with pytest.raises(NandCtlError, match="power of two"):
        _params(pages=16)  # > 2**page_bits (8 pages per core in the config)
    with pytest.raises(NandCtlError, match="service"):
        _params(tR_cycles=0, transfer_cycles=0)
    with pytest.raises(NandCtlError, match="read latency"):
        _params(read_latency=4)
    from proxima.config import ConfigError
    for bad in (0, 4):
        with pytest.raises(ConfigError, match="engine.store_latency must be in 1..3"):
            preset("tiny").override([f"engine.store_latency={bad}"])
    with pytest.raises(NandCtlError, match="store image has"):
        NandControllerModel(_params(), b"\0" * 10)
    with pytest.raises(NandCtlError, match="did not finish"):
        NandControllerModel(_params()).run([Request(0, 0, 0, 0)], out_ready=lambda t: False,
                                           max_cycles=100)


def test_requests_for_events_are_the_layout_reads_with_event_tags():
    from proxima.golden.layout import LayoutError
    from proxima.golden.nandctl import requests_for_events
    cfg = preset("tiny")
    p = CtlParams.from_cfg(cfg)
    lay = Layout(cfg, 300, 10, 9)
    rng = np.random.default_rng(9)
    kinds = ("frame", "code", "raw")
    events = [(i % 16, kinds[int(rng.integers(0, 3))], int(rng.integers(0, 300)))
              for i in range(200)]
    events[5:8] = [(1, "frame", 2), (2, "code", 40), (3, "code", 41)]  # codes after a hot frame
    reqs = requests_for_events(p, lay, events)
    reads = reads_for_events([(k, v) for _, k, v in events], lay)
    assert [(r.core, r.page, r.offset) for r in reqs] == \
        [(r.core, r.page, r.offset) for r in reads]
    # tags: each event's reads carry its tag, in event order
    tags = []
    for i, (tag, k, v) in enumerate(events):
        n = len(reads_for_events([(kk, vv) for _, kk, vv in events[:i + 1]], lay)) - \
            len(reads_for_events([(kk, vv) for _, kk, vv in events[:i]], lay))
        tags += [tag] * n
    assert [r.tag for r in reqs] == tags
    hot3 = requests_for_events(p, lay, events[5:8])
    assert [r.tag for r in hot3] == [1] * lay.hot_accesses  # no code reads after a hot frame
    assert len(requests_for_events(p, lay, [(2, "code", 40)])) == lay.code_access_count
    with pytest.raises(LayoutError, match="out of range"):
        requests_for_events(p, lay, [(0, "raw", 300)])
    with pytest.raises(LayoutError, match="unknown event kind"):
        requests_for_events(p, lay, [(0, "page", 3)])
    with pytest.raises(NandCtlError, match="tag"):
        requests_for_events(p, lay, [(1 << p.tag_bits, "raw", 3)])
