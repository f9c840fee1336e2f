"""A real bitstream in the test suite: the smallest board build (iCEBreaker, link + store,
the ``tiny`` preset) through ``proxima fpga build`` with the YoWASP tools, from elaboration
to the packed bitstream, about 20 s.  The ULX3S-85F builds take an hour and live in the
benchmarks (``docs/BOARD.md``)."""

from __future__ import annotations

import json

import pytest

from proxima.cli import main

#: size of an iCE40 UP5K bitstream (``icepack``): fixed by the device
UP5K_BITSTREAM_BYTES = 104_090


def test_icebreaker_bitstream_builds_and_meets_its_clock(tmp_path, capsys):
    out = tmp_path / "ice"
    assert main(["fpga", "build", "--board", "icebreaker", "--out", str(out),
                 "--json", str(tmp_path / "report.json")]) == 0
    text = capsys.readouterr().out
    assert "requested: met" in text and "bitstream" in text
    assert (out / "top.bin").stat().st_size == UP5K_BITSTREAM_BYTES
    r = json.loads((tmp_path / "report.json").read_text())
    assert r == json.loads((out / "report.json").read_text())
    assert r["board"] == "icebreaker" and not r["engine"]
    assert r["timing_met"] and r["fmax_mhz"] >= r["clock_mhz"] == 12.0
    for used, avail in r["cells"].values():
        assert 0 <= used <= avail
    assert r["cells"]["LUT4"][0] > 500 and r["cells"]["BRAM"][0] > 0
    assert r["image"]["n_max"] > 0 and r["store_bytes"] > 0


def test_build_fails_on_a_timing_violation(tmp_path, capsys):
    """The ULX3S link alone (about 95 MHz) asked for 150 MHz: the whole flow runs, the
    bitstream and the report are written, and the build says so and exits with status 1."""
    out = tmp_path / "ulx3s"
    assert main(["fpga", "build", "--board", "ulx3s-85f", "--link-only", "--preset", "tiny",
                 "--clock", "150", "--out", str(out)]) == 1
    cap = capsys.readouterr()
    r = json.loads((out / "report.json").read_text())
    assert not r["timing_met"] and r["fmax_mhz"] < r["clock_mhz"] == 150.0
    assert "timing violation" in cap.err and "Traceback" not in cap.err
    assert (out / "top.bit").stat().st_size > 0


@pytest.mark.parametrize("argv,message", [
    (["--board", "icebreaker", "--clock", "48"], "12 MHz oscillator"),
    (["--board", "icebreaker", "--vertices", "5000"], "of block RAM the icebreaker link"),
    (["--board", "ulx3s-85f", "--vertices", "4000"], "DP16KD, "),
])
def test_build_refuses_clearly_before_the_tools(tmp_path, capsys, argv, message):
    """A clock the board cannot make, a store larger than the block RAM left for it: status 2
    before any tool runs (not a placement failure minutes later), one line, no bitstream."""
    out = tmp_path / "b"
    assert main(["fpga", "build", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()
