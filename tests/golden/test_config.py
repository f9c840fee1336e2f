"""The one configuration object: presets, derived widths, validation, round trips."""

import json

import pytest

from proxima.config import ConfigError, ProximaConfig, preset


@pytest.mark.parametrize("name", ["tiny", "default", "paper"])
def test_presets_validate_and_round_trip(name):
    cfg = preset(name)
    assert ProximaConfig.from_json(cfg.to_json()) == cfg


def test_paper_preset_matches_the_published_design():
    cfg = preset("paper")
    assert (cfg.graph.R, cfg.pq.M, cfg.engine.queues, cfg.nand.cores) == (64, 32, 256, 512)
    assert cfg.nand.access_bytes == 128 and cfg.engine.clock_mhz == 1000.0
    assert cfg.bloom.bits == 12 * 1024 * 8 and cfg.bloom.hashes == 8
    assert cfg.tR_cycles == 300


def test_derived_widths_hold_their_worst_cases():
    for name in ("tiny", "default", "paper"):
        cfg = preset(name)
        raw_max = cfg.dsub * 255 ** 2
        assert raw_max < (1 << cfg.adt_raw_bits)
        assert (raw_max >> cfg.adt_shift) <= (1 << cfg.pq.adt_bits)
        assert cfg.pq.M * cfg.adt_max < (1 << cfg.pq_dist_bits)
        assert cfg.vec.dim * 255 ** 2 < (1 << cfg.exact_dist_bits)
        assert cfg.sort_key_bits == cfg.pq_dist_bits + cfg.id_bits


def test_default_widths_by_hand():
    cfg = preset("default")  # dim 128, M 16 -> dsub 8; 8 * 65025 = 520200 -> 19 bits
    assert (cfg.dsub, cfg.adt_raw_bits, cfg.adt_shift) == (8, 19, 3)
    assert cfg.pq_dist_bits == 20  # 16 * 65535 = 1048560 < 2**20
    assert cfg.exact_dist_bits == 23  # 128 * 65025 = 8323200 < 2**23
    assert cfg.search.beta_fx == 271  # round(1.06 * 256)


@pytest.mark.parametrize("change, msg", [
    ({"vec": {"dim": 100}}, "divisible by pq.M"),
    ({"search": {"k": 100}}, "search.k"),
    ({"search": {"r": 0}}, "search.r"),
    ({"search": {"L": 72}}, "multiple of it"),
    ({"engine": {"sorter_n": 48}}, "power of two"),
    ({"engine": {"sorter_stages_per_reg": 0}}, "sorter_stages_per_reg"),
    ({"engine": {"path_bits": 96}}, "path_bits"),
    ({"bloom": {"bits": 1001}}, "multiple of bloom.hashes"),
    ({"nand": {"page_bytes": 1000}}, "page_bytes"),
    ({"graph": {"R": 1}}, "graph.R"),
])
def test_impossible_configurations_are_rejected(change, msg):
    with pytest.raises(ConfigError, match=msg):
        preset("default").with_(**change)


def test_list_longer_than_the_sorter_is_cut_into_chunks():
    cfg = preset("default").with_(engine={"sorter_n": 32}, search={"L": 64})
    assert (cfg.list_chunks, cfg.merge_passes) == (2, 4)
    cfg = preset("default").with_(engine={"sorter_n": 64}, search={"L": 48})
    assert (cfg.list_chunks, cfg.merge_passes) == (1, 2)
    # a neighbour row longer than the sorter is merged in sub-batches of sorter_n keys
    cfg = preset("default").with_(engine={"sorter_n": 16}, search={"L": 64}, graph={"R": 32})
    assert (cfg.list_chunks, cfg.merge_passes) == (4, 8)
    assert [cfg.insert_merges(b) for b in (0, 1, 16, 17, 32)] == [0, 1, 1, 2, 2]
    with pytest.raises(ConfigError, match="insert batch"):
        cfg.insert_merges(-1)


def test_default_preset_sorter():
    """The FPGA preset: 16-input sorter, two network stages per register group (latency
    2 * 5 + 1 = 11), L = 64 in four chunks, R = 32 rows in two sub-batches; 5 * 11 + 7 * 4
    + 3 = 86 cycles per merge."""
    cfg = preset("default")
    assert (cfg.engine.sorter_n, cfg.graph.R, cfg.search.L) == (16, 32, 64)
    assert (cfg.sorter_latency, cfg.list_chunks, cfg.insert_cycles) == (11, 4, 86)


def test_sorter_stages_per_reg_sets_every_merge_cost():
    """One network stage per register group (the paper and tiny presets'): a pass of 2 * 10
    + 1 = 21 cycles, a merge of 5 * 21 + 7 * 4 + 3 = 136; the RTL sorter and list take the
    same figure from the configuration, and it may change on a built index (an engine
    setting)."""
    from proxima.config import is_search_time
    cfg = preset("default").with_(engine={"sorter_stages_per_reg": 1})
    assert (cfg.sorter_latency, cfg.insert_cycles) == (21, 136)
    assert (preset("tiny").engine.sorter_stages_per_reg,
            preset("paper").engine.sorter_stages_per_reg) == (1, 1)
    assert is_search_time("engine", "sorter_stages_per_reg")


def test_override_strings():
    cfg = preset("default").override(["search.L=96", "search.beta=1.1", "layout.reorder=false"])
    assert cfg.search.L == 96 and cfg.search.beta == 1.1 and cfg.layout.reorder is False
    for bad in ["search.L", "nosuch.x=1", "search.nosuch=1", "search.L=abc"]:
        with pytest.raises(ConfigError):
            preset("default").override([bad])


def test_from_dict_rejects_unknown_keys():
    d = json.loads(preset("tiny").to_json())
    d["search"]["bogus"] = 1
    with pytest.raises(ConfigError, match="bogus"):
        ProximaConfig.from_dict(d)
    with pytest.raises(ConfigError, match="JSON"):
        ProximaConfig.from_json("{not json")
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("huge")


@pytest.mark.parametrize("setting, msg", [
    ("layout.reorder=banana", "true or false"), ("engine.clock_mhz=nan", "finite"),
    ("search.beta=inf", "finite"), ("pq.train_iters=-1", "pq.train_iters"),
    ("pq.train_size=0", "pq.train_size"), ("nand.page_bytes=0", "nand.page_bytes"),
    ("graph.alpha=1e400", "finite"), ("search.L=", "integer"), ("vec.dim=1.5", "integer"),
    ("bloom.seed=-1", "bloom.seed"), ("engine.queues=0", "engine.queues"),
])
def test_bad_values_are_refused_when_parsed(setting, msg):
    with pytest.raises(ConfigError, match=msg):
        preset("default").override([setting])


def test_types_checked_on_every_path():
    """A value of the wrong kind is named, whether it comes from with_, from_dict or JSON."""
    with pytest.raises(ConfigError, match="search.L must be an integer"):
        preset("default").with_(search={"L": "64"})
    with pytest.raises(ConfigError, match="layout.reorder must be true or false"):
        preset("default").with_(layout={"reorder": 1})
    d = json.loads(preset("tiny").to_json())
    d["search"]["beta"] = float("inf")
    with pytest.raises(ConfigError, match="search.beta must be a finite number"):
        ProximaConfig.from_json(json.dumps(d))
    d["search"]["beta"] = 1.06
    d["engine"] = [1]
    with pytest.raises(ConfigError, match="section 'engine' must be a mapping"):
        ProximaConfig.from_dict(d)


def test_search_time_overrides():
    from proxima.config import SEARCH_TIME_FIELDS, is_search_time
    cfg = preset("default")
    ok = cfg.override(["search.L=96", "bloom.hashes=2", "cache.ways=2", "engine.queues=64",
                       "engine.clock_mhz=200", "nand.tR_ns=3000",
                       "nand.transfer_bytes_per_ns=1.0"], search_time=True)
    assert (ok.search.L, ok.engine.queues, ok.nand.tR_ns) == (96, 64, 3000.0)
    for fixed in ("graph.R=16", "pq.M=8", "vec.dim=64", "engine.id_bits=24",
                  "nand.page_bytes=8192", "nand.cores=8", "layout.hot_fraction=0.1",
                  "layout.reorder=false"):
        with pytest.raises(ConfigError, match="fixed when the index is built"):
            cfg.override([fixed], search_time=True)
        cfg.override([fixed])  # build time: allowed
    assert is_search_time("search", "beta") and not is_search_time("engine", "id_bits")
    assert set(SEARCH_TIME_FIELDS) <= {"search", "bloom", "cache", "engine", "nand"}
