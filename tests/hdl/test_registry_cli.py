"""Block registry and the ``proxima hdl`` CLI."""

from __future__ import annotations

import argparse

import pytest
from amaranth.back import verilog

from proxima.cli_hdl import add_parser, main
from proxima.config import preset
from proxima.hdl.registry import (BLOCKS, FPGA_OPTIONS, UnknownBlockError, block_names,
                                   build_block, fpga_options)


def test_every_block_builds_from_the_config():
    import gc
    import warnings

    from amaranth.lib import wiring
    with warnings.catch_warnings():  # built, deliberately not elaborated
        warnings.filterwarnings("ignore", message=".*created but never used")
        for name in BLOCKS:  # constructing is cheap; each block's own tests elaborate it
            for p in ("tiny", "default"):
                assert isinstance(build_block(name, preset(p)), wiring.Component), name
        gc.collect()


@pytest.mark.parametrize("name", ["sorter", "arbiter"])
def test_block_converts_to_verilog(name):
    text = verilog.convert(build_block(name, preset("tiny")), name=f"t_{name}", emit_src=False)
    assert f"module t_{name}" in text


def test_unknown_block():
    with pytest.raises(UnknownBlockError, match="registered blocks: .*sorter"):
        build_block("nope", preset("tiny"))


def test_cli_writes_verilog_with_overrides(tmp_path):
    out = tmp_path / "s.v"
    assert main(["hdl", "verilog", "sorter", "--preset", "tiny", "--set",
                 "engine.id_bits=12", "-o", str(out)]) == 0
    text = out.read_text()
    cfg = preset("tiny").override(["engine.id_bits=12"])
    width = cfg.engine.sorter_n * cfg.sort_key_bits
    assert "module proxima_sorter" in text and f"input [{width - 1}:0] i__payload;" in text


def test_cli_errors(tmp_path, capsys):
    assert main(["hdl", "verilog", "bogus", "-o", str(tmp_path / "x.v")]) == 2
    assert "unknown HDL block" in capsys.readouterr().err
    assert main(["hdl", "verilog", "sorter", "--set", "engine.nope=1",
                 "-o", str(tmp_path / "x.v")]) == 2
    assert not (tmp_path / "x.v").exists()
    assert main(["hdl", "verilog", "sorter", "--index", str(tmp_path / "i.pxi"),
                 "-o", str(tmp_path / "x.v")]) == 2
    assert "engine only" in capsys.readouterr().err and not (tmp_path / "x.v").exists()
    assert main(["hdl", "verilog", "engine", "--index", str(tmp_path / "missing.pxi"),
                 "-o", str(tmp_path / "x.v")]) == 2
    assert "cannot read" in capsys.readouterr().err and not (tmp_path / "x.v").exists()


def test_cli_writes_the_engine_for_a_preset_and_for_an_image(tmp_path, capsys):
    """``hdl verilog engine``: the top with its ports, for the preset's nominal geometry or
    for an image file (its configuration and codebook: --set is refused there)."""
    from tests.hdl.test_engine import _image

    class _Factory:  # what _image needs of pytest's tmp_path_factory
        @staticmethod
        def mktemp(name):
            (tmp_path / name).mkdir()
            return tmp_path / name

    out = tmp_path / "e.v"
    assert main(["hdl", "verilog", "engine", "--preset", "tiny", "-o", str(out)]) == 0
    text = out.read_text()
    assert "module proxima_engine(" in text
    for port in ("query__valid", "mem_req__payload", "mem_resp__payload", "result__payload",
                 "cb_wr__payload", "done", "busy", "error"):
        assert port in text.split(");", 1)[0]
    cfg = preset("tiny").with_(graph={"R": 8})
    img = _image(_Factory, cfg, n=64, n_hot=4)
    image = tmp_path / "engine" / "tiny.pxi"
    out2 = tmp_path / "e2.v"
    assert main(["hdl", "verilog", "engine", "--index", str(image), "--set", "graph.R=16",
                 "-o", str(out2)]) == 2
    assert "--set does not apply" in capsys.readouterr().err and not out2.exists()
    assert main(["hdl", "verilog", "engine", "--index", str(image), "-o", str(out2)]) == 0
    assert "module proxima_engine(" in out2.read_text()
    assert img.layout.n == 64


def test_add_parser_into_a_parent_parser():
    ap = argparse.ArgumentParser()
    add_parser(ap.add_subparsers(dest="command"))
    args = ap.parse_args(["hdl", "verilog", "arbiter", "-o", "a.v"])
    assert args.func.__name__ == "cmd_verilog" and args.block == "arbiter"
    assert block_names() == sorted(BLOCKS)


def test_fpga_defaults_apply_only_to_the_measurement_path():
    import copy
    import gc
    import warnings
    before = copy.deepcopy(FPGA_OPTIONS)
    cfg = preset("tiny")
    with warnings.catch_warnings():  # built, deliberately not elaborated
        warnings.filterwarnings("ignore", message=".*created but never used")
        # simulation / Verilog export / cocotb: the portable generic RAM
        assert build_block("pq", cfg).bram == "generic"
        # FPGA measurement: DP16KD unless an explicit option says otherwise
        assert build_block("pq", cfg, **fpga_options("pq")).bram == "ecp5"
        gc.collect()
    assert fpga_options("pq") == {"bram": "ecp5"} == FPGA_OPTIONS["pq"]
    given = {"bram": "generic", "ram_regs": 3}
    assert fpga_options("pq", given) == given and given == {"bram": "generic", "ram_regs": 3}
    assert fpga_options("pq", {"ram_regs": 3}) == {"bram": "ecp5", "ram_regs": 3}
    assert fpga_options("arbiter", {"group": 8}) == {"group": 8}
    assert set(FPGA_OPTIONS) <= set(BLOCKS)
    assert FPGA_OPTIONS == before  # not mutated by the calls above


# ---- the registry is the one list of blocks --------------------------------------------
def test_every_block_names_its_golden_twin_and_testbench():
    import importlib.util

    from proxima.hdl.registry import golden_twin
    for name, block in BLOCKS.items():
        twins = golden_twin(name)
        assert twins and all(callable(t) for t in twins), name
        assert all(p.startswith("proxima.golden.") for p in block.golden), name
        assert importlib.util.find_spec(block.testbench) is not None, (name, block.testbench)
    with pytest.raises(UnknownBlockError):
        golden_twin("nope")


def test_replay_takes_its_blocks_from_the_registry():
    from proxima.hdl.registry import replay_blocks
    from proxima.sim.replay import BLOCKS as REPLAYED
    assert REPLAYED == replay_blocks() == tuple(n for n, b in BLOCKS.items() if b.replay)
    assert {"bloom", "pq", "exact", "sorter", "gapdec", "pagecache"} == set(REPLAYED)


def test_architecture_table_matches_the_registry():
    """docs/ARCHITECTURE.md's registry table: one row per block, with the registry's golden
    twins and testbench."""
    import re
    from pathlib import Path

    from proxima.sim.runner import REPO_ROOT
    text = (Path(REPO_ROOT) / "docs" / "ARCHITECTURE.md").read_text()
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\| `(\w+)` \| `hdl/[\w/]+\.py` \| (.*) \| `(sim/tb/\w+\.py)` \| (yes|no) \|$",
                     line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3), m.group(4) == "yes")
    assert set(rows) == set(BLOCKS)
    for name, block in BLOCKS.items():
        twin_cell, tb, replay = rows[name]
        for path in block.golden:
            module, _, attr = path.partition(":")
            file = "golden/" + module.removeprefix("proxima.golden.").replace(".", "/") + ".py"
            assert f"`{file}`" in twin_cell and f"`{attr}`" in twin_cell, (name, path)
        assert tb == block.testbench.removeprefix("proxima.").replace(".", "/") + ".py"
        assert replay == block.replay, name
